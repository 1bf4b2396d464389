# Stage one, part 1: the frame detector, trained on a split of the dataset
# (genvis train-detector) or imported from an official checkpoint (genvis import-checkpoint).


#: workflow dataset -> the dataset whose official test size an inferred detector config uses
#: (YouTube-VIS 2022 is evaluated with the 2021 models)
OFFICIAL_DATASETS = {"ovis": "ovis", "ytvis19": "ytvis19", "ytvis21": "ytvis21", "ytvis22": "ytvis21"}


def _detector_inputs(wildcards):
    det = detector_cfg(wildcards.dataset, wildcards.detector)
    key = f"datasets.{wildcards.dataset}.detectors.{wildcards.detector}"
    kind, source = detector_source(wildcards.dataset, wildcards.detector)
    inputs = {}
    if det.get("config") is not None:  # null: import-checkpoint infers it from the checkpoint
        inputs["config"] = repo_file(det["config"], f"{key}.config", "detector config")
    if kind == "train":
        inputs["annotations"] = split_annotations(wildcards.dataset, source)
    else:
        inputs["checkpoint"] = source
    return inputs


def _detector_kind(wildcards):
    return detector_source(wildcards.dataset, wildcards.detector)[0]


def _detector_files(wildcards, input, output):
    """Input/output paths of train-detector or import-checkpoint."""
    if "checkpoint" in input.keys():
        config = f" --config {input.config}" if "config" in input.keys() else ""
        if not config and wildcards.dataset in OFFICIAL_DATASETS:  # the official test size
            config = f" --dataset {OFFICIAL_DATASETS[wildcards.dataset]}"
        return f"--checkpoint {input.checkpoint}{config} --out {output}"
    return f"--annotations {input.annotations} --config {input.config} --out {output}"


def _detector_settings(wildcards):
    """Settings of train-detector (image root, iterations). A function of the wildcards
    only, so Snakemake records it and re-trains when it changes."""
    det = detector_cfg(wildcards.dataset, wildcards.detector)
    kind, source = detector_source(wildcards.dataset, wildcards.detector)
    if kind == "checkpoint":
        return ""
    args = f" --image-root {split_image_root(wildcards.dataset, source)}"
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
        files=_detector_files,
        settings=_detector_settings,
    log:
        "logs/{dataset}/detector/{detector}.log",
    threads: DETECTOR_TRAIN_THREADS
    resources:
        gpu=GPUS,
    shell:
        "if [ {params.kind} = train ]; then "
        + THREAD_ENV + " exec genvis train-detector {params.files}{params.settings} --device " + DEVICE
        + " --threads {threads} --resume-interrupted --no-progress; "
        "else " + THREAD_ENV + " exec genvis import-checkpoint {params.files}; fi > {log} 2>&1"


rule detector_ap:
    """detectors/<dataset>/<detector>.<split>.frame_ap.json: the detector's frame mask AP on a
    split with ground truth (genvis detector-ap; datasets.<dataset>.detector_ap_frames frames
    per video), shown in the summary report."""
    input:
        detector="detectors/{dataset}/{detector}.pt",
        annotations=lambda wc: split_annotations(wc.dataset, wc.split),
    output:
        "detectors/{dataset}/{detector}.{split}.frame_ap.json",
    params:
        image_root=lambda wc: split_image_root(wc.dataset, wc.split),
        frames=lambda wc: int(dataset_cfg(wc.dataset).get("detector_ap_frames") or 0),
    wildcard_constraints:
        dataset=NAME,
        detector=NAME,
        split=NAME,
    log:
        "logs/{dataset}/detector/{detector}.{split}.frame_ap.log",
    threads: THREADS
    resources:
        gpu=GPUS,
    shell:
        THREAD_ENV + " exec genvis detector-ap --detector {input.detector} --annotations {input.annotations}"
        " --image-root {params.image_root} --out {output} --frames-per-video {params.frames}"
        " --device " + DEVICE + " --threads {threads} --no-progress > {log} 2>&1"
