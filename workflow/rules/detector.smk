# Stage one, part 1: the frame detector, trained on a split of the dataset
# (genvis train-detector) or imported from an official checkpoint (genvis import-checkpoint).


def _detector_inputs(wildcards):
    det = detector_cfg(wildcards.dataset, wildcards.detector)
    key = f"datasets.{wildcards.dataset}.detectors.{wildcards.detector}"
    kind, source = detector_source(wildcards.dataset, wildcards.detector)
    inputs = {"config": repo_file(det["config"], f"{key}.config", "detector config")}
    if kind == "train":
        inputs["annotations"] = split_annotations(wildcards.dataset, source)
    else:
        inputs["checkpoint"] = source
    return inputs


def _detector_kind(wildcards):
    return detector_source(wildcards.dataset, wildcards.detector)[0]


def _detector_args(wildcards, input, output):
    """Arguments of train-detector or import-checkpoint (paths and settings, not device)."""
    det = detector_cfg(wildcards.dataset, wildcards.detector)
    kind, source = detector_source(wildcards.dataset, wildcards.detector)
    if kind == "checkpoint":
        return f"--checkpoint {input.checkpoint} --config {input.config} --out {output}"
    args = (f"--annotations {input.annotations} --image-root {split_image_root(wildcards.dataset, source)}"
            f" --config {input.config} --out {output}")
    if det["train"].get("iterations"):
        args += f" --iterations {int(det['train']['iterations'])}"
    return args


rule detector:
    """detectors/<dataset>/<detector>.pt, trained or imported as the config says."""
    input:
        unpack(_detector_inputs),
    output:
        "detectors/{dataset}/{detector}.pt",
    params:
        kind=_detector_kind,
        args=_detector_args,
    log:
        "logs/{dataset}/detector/{detector}.log",
    threads: THREADS
    resources:
        gpu=GPUS,
    shell:
        "if [ {params.kind} = train ]; then "
        + THREAD_ENV + " genvis train-detector {params.args} --device " + DEVICE
        + " --threads {threads} --no-progress; "
        "else " + THREAD_ENV + " genvis import-checkpoint {params.args}; fi > {log} 2>&1"
