# Stage two: train the GenVIS video modules (or a baseline) from the cache of the
# dataset's train split, then infer clip by clip on any split.
#
# Two trees of runs: runs/<dataset>/<experiment>/ (the experiment yaml's train.seed) and
# runs/<dataset>/<experiment>/seeds/s<seed>/ (genvis train --seed <seed>, for the
# seed-replicated comparisons of compare.smk). A fine-tuned experiment starts from its
# init_from experiment's model in the same tree (the same seed).


def _seed(wildcards):
    """The seed of a seeded run (runs/.../seeds/s<seed>/...), else None."""
    return getattr(wildcards, "seed", None)


def _model(dataset, experiment, seed):
    return model_path(dataset, experiment) if seed is None else seeded_model_path(dataset, experiment, seed)


def _train_init(wildcards):
    """(detector file for --init-heads or None, model file for --init-model or None)."""
    d = dataset_cfg(wildcards.dataset)
    detector = None
    if d.get("init_heads", True):
        detector = f"detectors/{wildcards.dataset}/{dataset_detector(wildcards.dataset)}.pt"
    base = init_from(wildcards.experiment)
    return detector, (_model(wildcards.dataset, base, _seed(wildcards)) if base else None)


def train_split(dataset, experiment):
    """The split an experiment trains on: experiments.<name>.train_split, else the dataset's."""
    split = experiment_cfg(experiment).get("train_split") or dataset_cfg(dataset)["train_split"]
    split_cfg(dataset, split)
    return split


def _train_inputs(wildcards):
    e = experiment_cfg(wildcards.experiment)
    split = train_split(wildcards.dataset, wildcards.experiment)
    inputs = {
        "cache": cache_path(wildcards.dataset, split),
        "annotations": split_annotations(wildcards.dataset, split),
        "config": repo_file(e["config"], f"experiments.{wildcards.experiment}.config", "experiment config"),
    }
    detector, base_model = _train_init(wildcards)
    if detector:
        inputs["detector"] = detector
    if base_model:
        inputs["init_model"] = base_model
    return inputs


def _train_args(wildcards):
    # A function of the wildcards only: Snakemake records such params and re-runs the job
    # when they change (params computed from input/output are not tracked).
    # the dataset's train_iterations (e.g. the GPU overlay's) over the experiment entry's
    overrides = workflow_overrides(experiment_cfg(wildcards.experiment), dataset_cfg(wildcards.dataset))
    args = cli_flags(iterations=overrides["iterations"])
    detector, base_model = _train_init(wildcards)
    if detector:
        args += f" --init-heads {detector}"
    if base_model:
        args += f" --init-model {base_model}"
    if _seed(wildcards) is not None:
        args += f" --seed {int(_seed(wildcards))}"
    return args


TRAIN_SHELL = (
    THREAD_ENV + " exec genvis train --cache {input.cache} --annotations {input.annotations}"
    " --config {input.config} --out {output}{params.args} --device " + DEVICE + " --threads {threads}"
    " --resume-interrupted --no-progress > {log} 2>&1"
)
INFER_SHELL = (
    THREAD_ENV + " exec genvis infer --cache {input.cache} --annotations {input.annotations}"
    " --model {input.model} --out {output}{params.args} --device " + DEVICE + " --threads {threads}" + SCHEDULER_ARG
    + " --no-progress > {log} 2>&1"
)


rule train:
    """runs/<dataset>/<experiment>/model.pt (+ losses.csv and checkpoints beside it)."""
    input:
        unpack(_train_inputs),
    output:
        "runs/{dataset}/{experiment}/model.pt",
    params:
        args=_train_args,
    log:
        "logs/{dataset}/{experiment}/train.log",
    threads: STAGE_TWO_THREADS
    resources:
        gpu=GPUS,
    shell:
        TRAIN_SHELL


rule train_seed:
    """runs/<dataset>/<experiment>/seeds/s<seed>/model.pt: the experiment with train.seed = <seed>."""
    input:
        unpack(_train_inputs),
    output:
        "runs/{dataset}/{experiment}/seeds/s{seed}/model.pt",
    params:
        args=_train_args,
    log:
        "logs/{dataset}/{experiment}/seeds/s{seed}/train.log",
    threads: STAGE_TWO_THREADS
    resources:
        gpu=GPUS,
    shell:
        TRAIN_SHELL


def _infer_inputs(wildcards):
    return {
        "cache": cache_path(wildcards.dataset, wildcards.split),
        "annotations": split_annotations(wildcards.dataset, wildcards.split),
        "model": _model(wildcards.dataset, wildcards.experiment, _seed(wildcards)),
    }


#: predictions per video of the official evaluation (TEST.DETECTIONS_PER_IMAGE of the
#: official GenVIS configs: OVIS 20, YouTube-VIS 2019/2021 10), used with official models
OFFICIAL_TOP_K = {"ovis": 20, "ytvis19": 10, "ytvis21": 10, "ytvis22": 10}


def _official_settings(dataset, experiment):
    """Inference settings of an official model: N_f^eval = the experiment yaml's N_f^eval,
    else its N_f (the official LEN_CLIP_WINDOW: 1 online, 3 semi-online), and the official
    top-k of known datasets."""
    import yaml

    path = repo_file(experiment_cfg(experiment)["config"], f"experiments.{experiment}.config", "experiment config")
    exp = yaml.safe_load(Path(path).read_text()) or {}
    n_f = ((exp.get("inference") or {}).get("n_f_eval") or (exp.get("train") or {}).get("n_f") or 1)
    return cli_flags(n_f_eval=int(n_f), top_k=OFFICIAL_TOP_K.get(dataset))


def _default_n_f_eval(wildcards):
    """--n-f-eval of experiments.<name>.n_f_eval, if set (genvis.settings resolves the rest);
    an official model (datasets.<d>.official_models) gets the official settings instead."""
    n_f_eval = workflow_overrides(experiment_cfg(wildcards.experiment))["n_f_eval"]
    official = dataset_cfg(wildcards.dataset).get("official_models", {}) or {}
    if n_f_eval is None and "seed" not in wildcards.keys() and official.get(wildcards.experiment):
        return _official_settings(wildcards.dataset, wildcards.experiment)
    return cli_flags(n_f_eval=n_f_eval)


rule infer:
    """Results json (YouTube-VIS format) at the experiment's default N_f^eval."""
    input:
        unpack(_infer_inputs),
    output:
        "runs/{dataset}/{experiment}/{split}/results.json",
    params:
        args=_default_n_f_eval,
    log:
        "logs/{dataset}/{experiment}/{split}/infer.log",
    threads: STAGE_TWO_THREADS
    resources:
        gpu=GPUS,
    shell:
        INFER_SHELL


rule infer_seed:
    """Results json of a seeded run (runs/<dataset>/<experiment>/seeds/s<seed>/<split>/)."""
    input:
        unpack(_infer_inputs),
    output:
        "runs/{dataset}/{experiment}/seeds/s{seed}/{split}/results.json",
    params:
        args=_default_n_f_eval,
    log:
        "logs/{dataset}/{experiment}/seeds/s{seed}/{split}/infer.log",
    threads: STAGE_TWO_THREADS
    resources:
        gpu=GPUS,
    shell:
        INFER_SHELL


rule infer_seed_association:
    """Results json of a seeded run with another inter-clip association than its experiment's
    (runs/<dataset>/<experiment>/seeds/s<seed>/<split>/<association>/; diagnose target)."""
    input:
        unpack(_infer_inputs),
    output:
        "runs/{dataset}/{experiment}/seeds/s{seed}/{split}/{association}/results.json",
    params:
        args=lambda wc: _default_n_f_eval(wc) + cli_flags(association=wc.association),
    wildcard_constraints:
        association="propagate|minvis|oracle",
    log:
        "logs/{dataset}/{experiment}/seeds/s{seed}/{split}/infer_{association}.log",
    threads: STAGE_TWO_THREADS
    resources:
        gpu=GPUS,
    shell:
        INFER_SHELL


rule infer_association:
    """Results json with another inter-clip association than the experiment's
    (runs/<dataset>/<experiment>/<split>/<association>/; the summary's association table)."""
    input:
        unpack(_infer_inputs),
    output:
        "runs/{dataset}/{experiment}/{split}/{association}/results.json",
    params:
        args=lambda wc: _default_n_f_eval(wc) + cli_flags(association=wc.association),
    wildcard_constraints:
        association="propagate|minvis|oracle",
    log:
        "logs/{dataset}/{experiment}/{split}/infer_{association}.log",
    threads: STAGE_TWO_THREADS
    resources:
        gpu=GPUS,
    shell:
        INFER_SHELL


rule infer_n_f_eval:
    """Results json at a chosen N_f^eval (Fig. 3, Table 6)."""
    input:
        unpack(_infer_inputs),
    output:
        "runs/{dataset}/{experiment}/{split}/nf{n}/results.json",
    log:
        "logs/{dataset}/{experiment}/{split}/infer_nf{n}.log",
    threads: STAGE_TWO_THREADS
    resources:
        gpu=GPUS,
    shell:
        THREAD_ENV + " exec genvis infer --cache {input.cache} --annotations {input.annotations}"
        " --model {input.model} --out {output} --n-f-eval {wildcards.n} --device " + DEVICE + " --threads {threads} --no-progress > {log} 2>&1"


rule infer_submission:
    """Results json plus the zip the OVIS / YouTube-VIS evaluation servers accept."""
    input:
        unpack(_infer_inputs),
    output:
        results="runs/{dataset}/{experiment}/{split}/submission/results.json",
        zip="runs/{dataset}/{experiment}/{split}/submission/results.zip",
    params:
        args=_default_n_f_eval,
    log:
        "logs/{dataset}/{experiment}/{split}/infer_submission.log",
    threads: STAGE_TWO_THREADS
    resources:
        gpu=GPUS,
    shell:
        THREAD_ENV + " exec genvis infer --cache {input.cache} --annotations {input.annotations}"
        " --model {input.model} --out {output.results} --zip {output.zip}{params.args} --device " + DEVICE + " --threads {threads} --no-progress > {log} 2>&1"
