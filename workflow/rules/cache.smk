# Stage one, part 2: run the frozen detector over every frame of a split, once, into Zarr.
# Inputs and params are only the split, the detector and the input resolution: no
# stage-two setting reaches this rule, so changing an experiment never re-extracts.
# Changing the detector (its .pt) or min_size/max_size (params) re-runs it.


def _size_args(wildcards):
    det = detector_cfg(wildcards.dataset, wildcards.detector)
    args = ""
    if det.get("min_size"):
        args += f" --min-size {int(det['min_size'])}"
    if det.get("max_size"):
        args += f" --max-size {int(det['max_size'])}"
    return args


rule extract:
    """cache/<dataset>/<split>/<detector>.zarr: frame queries + raw mask features (float16)."""
    input:
        annotations=lambda wc: split_annotations(wc.dataset, wc.split),
        detector="detectors/{dataset}/{detector}.pt",
    output:
        directory("cache/{dataset}/{split}/{detector}.zarr"),
    params:
        image_root=lambda wc: split_image_root(wc.dataset, wc.split),
        size=_size_args,
    log:
        "logs/{dataset}/extract/{split}/{detector}.log",
    threads: THREADS * EXTRACT_WORKERS
    resources:
        gpu=GPUS,
    shell:
        # --threads: torch threads per process (each dask worker gets as many)
        "OMP_NUM_THREADS=" + str(THREADS) + " MKL_NUM_THREADS=" + str(THREADS) + " exec genvis extract"
        " --annotations {input.annotations} --image-root {params.image_root}"
        " --detector {input.detector} --out {output}{params.size}"
        " --device " + DEVICE + " --threads " + str(THREADS) + EXTRACT_CLUSTER_ARG + " --no-progress > {log} 2>&1"
