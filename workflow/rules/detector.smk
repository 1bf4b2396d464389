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


def _detector_command(wildcards, input, output):
    det = detector_cfg(wildcards.dataset, wildcards.detector)
    kind, source = detector_source(wildcards.dataset, wildcards.detector)
    if kind == "checkpoint":
        return f"genvis import-checkpoint --checkpoint {input.checkpoint} --config {input.config} --out {output}"
    cmd = (f"genvis train-detector --annotations {input.annotations}"
           f" --image-root {split_image_root(wildcards.dataset, source)}"
           f" --config {input.config} --out {output}")
    if det["train"].get("iterations"):
        cmd += f" --iterations {int(det['train']['iterations'])}"
    return cmd


rule detector:
    """detectors/<dataset>/<detector>.pt, trained or imported as the config says."""
    input:
        unpack(_detector_inputs),
    output:
        "detectors/{dataset}/{detector}.pt",
    params:
        command=_detector_command,
    log:
        "logs/{dataset}/detector/{detector}.log",
    threads: THREADS
    resources:
        gpu=GPUS,
    shell:
        THREAD_ENV + " {params.command} > {log} 2>&1"
