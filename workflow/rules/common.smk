# Shared helpers of the genvis workflow: config lookups that name the config key on error,
# path conventions, and the resources every compute rule declares.
#
# Every lookup is called from an input/params function, so a dataset whose paths are not
# configured only fails for the targets that need it (e.g. ovis_eval), never at parse time.

import os
from pathlib import Path

from genvis.errors import ConfigError
from genvis.settings import cli_flags, workflow_overrides

REPO = Path(workflow.basedir)

THREADS = config["resources"]["threads"]
STAGE_TWO_THREADS = config["resources"]["stage_two_threads"]
DETECTOR_TRAIN_THREADS = config["resources"].get("detector_train_threads", THREADS)
GPUS = config["resources"]["gpu"]
# dask scale-out (genvis.cluster): a running scheduler for extract and infer jobs, or local
# worker processes for each extract job (each with THREADS torch threads).
DASK_SCHEDULER = config.get("dask_scheduler")
EXTRACT_WORKERS = 1 if DASK_SCHEDULER else config["resources"].get("extract_workers", 1)
SCHEDULER_ARG = f" --scheduler {DASK_SCHEDULER}" if DASK_SCHEDULER else ""
EXTRACT_CLUSTER_ARG = SCHEDULER_ARG or (f" --workers {EXTRACT_WORKERS}" if EXTRACT_WORKERS > 1 else "")
# torch reads these at import: keep each job to the threads it declared (shared machines).
THREAD_ENV = "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"
# Every rule starts genvis with `exec`: genvis replaces the job's shell and is Snakemake's own
# child, so it ends when Snakemake dies, even by kill -9 (genvis.utils.process.die_with_parent).

NAME = "[A-Za-z0-9][A-Za-z0-9_-]*"

# torch device of a job: cuda when it was given a GPU (resources.gpu), else cpu. Chosen in
# the shell, not as a param, so running the same job on a GPU node is no reason to re-run it.
DEVICE = "$( [ {resources.gpu} -gt 0 ] && echo cuda || echo cpu )"


wildcard_constraints:
    dataset=NAME,
    split=NAME,
    detector=NAME,
    experiment=NAME,
    report=NAME,
    of=NAME,
    part="train|holdout",
    fraction="0\\.[0-9]+",
    seed="[0-9]+",
    n="[1-9][0-9]*",
    scale="(0\\.[0-9]+|1\\.0)",


def dataset_cfg(dataset):
    """The config block of a dataset; ConfigError naming datasets.<dataset> if absent."""
    try:
        return config["datasets"][dataset]
    except KeyError:
        known = ", ".join(sorted(config["datasets"])) or "none"
        raise ConfigError(f"datasets.{dataset}", f"dataset not configured (configured: {known})") from None


def split_cfg(dataset, split):
    """The config block of one split; ConfigError naming the key if absent."""
    splits = dataset_cfg(dataset)["splits"]
    if split not in splits:
        raise ConfigError(f"datasets.{dataset}.splits.{split}",
                          f"split not configured (configured: {', '.join(sorted(splits))})")
    return splits[split]


def experiment_cfg(experiment):
    """The config block of one experiment; ConfigError naming experiments.<name> if absent."""
    if experiment not in config["experiments"]:
        raise ConfigError(f"experiments.{experiment}",
                          f"experiment not configured (configured: {', '.join(sorted(config['experiments']))})")
    return config["experiments"][experiment]


def init_from(experiment):
    """The experiment whose trained model initialises this one (experiments.<name>.init_from:
    the paper fine-tunes GenVIS from VITA weights), or None. ConfigError on an unknown name
    or a cycle."""
    seen = [experiment]
    first = base = experiment_cfg(experiment).get("init_from")
    while base:
        if base not in config["experiments"]:
            raise ConfigError(f"experiments.{seen[-1]}.init_from", f"unknown experiment {base!r}")
        if base in seen:
            raise ConfigError(f"experiments.{experiment}.init_from",
                              f"initialisation cycle {' -> '.join(seen + [base])}")
        seen.append(base)
        base = config["experiments"][base].get("init_from")
    return first


def detector_cfg(dataset, detector):
    """The config block of one detector of a dataset."""
    dets = dataset_cfg(dataset)["detectors"]
    if detector not in dets:
        raise ConfigError(f"datasets.{dataset}.detectors.{detector}",
                          f"detector not configured (configured: {', '.join(sorted(dets))})")
    return dets[detector]


def existing_path(value, key, what, kind="path"):
    """``value`` as a path that exists; ConfigError naming ``key`` if unset or missing.

    ``kind`` is "file", "dir" or "path" (either).
    """
    if value is None or str(value).strip() == "":
        raise ConfigError(key, f"not set: point it at {what} (see README.md, 'Real datasets')")
    p = Path(os.path.expanduser(str(value)))
    ok = p.is_file() if kind == "file" else p.is_dir() if kind == "dir" else p.exists()
    if not ok:
        raise ConfigError(key, f"{kind if kind != 'path' else 'path'} {str(p)!r} does not exist ({what})")
    return str(p)


def repo_file(value, key, what):
    """A workflow-owned yaml (detector or experiment config): relative to the repository."""
    p = Path(os.path.expanduser(str(value)))
    if not p.is_absolute():
        p = REPO / p
    if not p.is_file():
        raise ConfigError(key, f"{what} {str(p)!r} does not exist")
    return str(p)


def holdout_dir(dataset, h):
    """Folder of a held-out split of split ``h['of']`` (fraction and seed in the name)."""
    return f"data/{dataset}/holdout/{h['of']}-f{float(h.get('fraction', 0.1))}-s{int(h.get('seed', 0))}"


def augment_dir(dataset, a):
    """Folder of an augmented split of split ``a['of']`` (views, seed and min_scale in the name)."""
    return (f"data/{dataset}/augment/{a['of']}-v{int(a['views'])}-s{int(a.get('seed', 0))}"
            f"-m{float(a.get('min_scale', 0.6))}")


def fixed_valid_videos(dataset, key):
    """The dataset's ``synth.valid_videos``, which a ``synth_train`` split (``key``) needs.

    Raises:
        ConfigError: the dataset has no synth settings, or none fixing valid_videos (without
            it the valid fraction, and so the train videos, would change with the count).
    """
    synth = dataset_cfg(dataset).get("synth")
    if synth is None:
        raise ConfigError(f"datasets.{dataset}.synth", f"missing: {key} needs genvis synth settings")
    if not synth.get("valid_videos"):
        raise ConfigError(f"datasets.{dataset}.synth.valid_videos",
                          f"must be set for {key}: with a valid fraction the train videos would differ")
    return int(synth["valid_videos"])


def synth_train_dir(dataset, split):
    """Folder of a ``synth_train`` split: genvis synth output with that many training videos
    (ConfigError from :func:`fixed_valid_videos`)."""
    fixed_valid_videos(dataset, f"datasets.{dataset}.splits.{split}.synth_train")
    return f"data/{dataset}/synth_train/{int(split_cfg(dataset, split)['synth_train']['videos'])}"


def split_annotations(dataset, split):
    """Path of a split's annotation json (an output of this workflow or a configured file)."""
    s = split_cfg(dataset, split)
    key = f"datasets.{dataset}.splits.{split}"
    if "synth" in s:
        if "synth" not in dataset_cfg(dataset):
            raise ConfigError(f"datasets.{dataset}.synth", "missing: a 'synth' split needs genvis synth settings")
        return f"data/{dataset}/synth/{s['synth']}.json"
    if "synth_train" in s:
        return f"{synth_train_dir(dataset, split)}/train.json"
    if "davis" in s:
        return f"data/{dataset}/davis/{split}.json"
    if "holdout" in s:
        h = s["holdout"]
        if h["of"] == split:
            raise ConfigError(f"{key}.holdout.of", "a split cannot be held out of itself")
        split_annotations(dataset, h["of"])  # the source split must exist and be configured
        return f"{holdout_dir(dataset, h)}/{h['part']}.json"
    if "augment" in s:
        a = s["augment"]
        if a["of"] == split:
            raise ConfigError(f"{key}.augment.of", "a split cannot be an augmentation of itself")
        split_annotations(dataset, a["of"])
        return f"{augment_dir(dataset, a)}/annotations.json"
    return existing_path(s.get("annotations"), f"{key}.annotations", "the split's annotation json", "file")


def is_davis_split(dataset, split):
    """True when the split is imported from a DAVIS folder, or held out of / augmented from one."""
    s = split_cfg(dataset, split)
    if "davis" in s:
        return True
    for kind in ("holdout", "augment"):
        if kind in s and s[kind]["of"] != split:
            return is_davis_split(dataset, s[kind]["of"])
    return False


def split_image_root(dataset, split):
    """Folder the split's ``file_names`` are relative to."""
    s = split_cfg(dataset, split)
    key = f"datasets.{dataset}.splits.{split}"
    if "synth" in s:
        return f"data/{dataset}/synth/frames"
    if "synth_train" in s:
        return f"{synth_train_dir(dataset, split)}/frames"
    if "davis" in s:
        root = existing_path(s["davis"].get("root"), f"{key}.davis.root", "a DAVIS-layout folder", "dir")
        return str(Path(root) / "JPEGImages")
    if "holdout" in s:
        return split_image_root(dataset, s["holdout"]["of"])
    if "augment" in s:
        return f"{augment_dir(dataset, s['augment'])}/frames"
    return existing_path(s.get("image_root"), f"{key}.image_root", "the split's frame folder", "dir")


def dataset_detector(dataset):
    """Name of the detector whose cache the dataset's experiments read."""
    d = dataset_cfg(dataset)
    detector_cfg(dataset, d["detector"])
    return d["detector"]


def cache_path(dataset, split, detector=None):
    """Stage-one cache of (dataset, split, detector)."""
    return f"cache/{dataset}/{split}/{detector or dataset_detector(dataset)}.zarr"


def model_path(dataset, experiment):
    """The stage-two model: an official checkpoint if configured, else the trained one."""
    experiment_cfg(experiment)
    official = dataset_cfg(dataset).get("official_models", {}) or {}
    if official.get(experiment):
        return existing_path(official[experiment], f"datasets.{dataset}.official_models.{experiment}",
                             "an official GenVIS checkpoint (.pth)", "file")
    return f"runs/{dataset}/{experiment}/model.pt"


def seeded_model_path(dataset, experiment, seed):
    """The stage-two model trained with train.seed = ``seed`` (always trained, never official)."""
    experiment_cfg(experiment)
    return f"runs/{dataset}/{experiment}/seeds/s{int(seed)}/model.pt"


def metrics_path(dataset, experiment, split, n_f_eval=None):
    """metrics.json of an experiment on a split (at a given N_f^eval, or its default)."""
    sub = "" if n_f_eval is None else f"nf{int(n_f_eval)}/"
    return f"runs/{dataset}/{experiment}/{split}/{sub}metrics.json"


def dataset_targets(dataset):
    """Every final output of ``<dataset>_eval``: the summary report and server zips.

    Resolves (and so checks) every path the dataset's jobs need, so a missing path fails
    the dry run at once with the config key named.
    """
    d = dataset_cfg(dataset)
    if not d.get("experiments"):
        raise ConfigError(f"datasets.{dataset}.experiments", "no experiments listed")
    if not d.get("eval_splits") and not d.get("submit_splits"):
        raise ConfigError(f"datasets.{dataset}.eval_splits", "no eval_splits or submit_splits listed")
    detector = dataset_detector(dataset)
    needed_splits = {d["train_split"], *d.get("eval_splits", []), *d.get("submit_splits", [])}
    needed_splits |= {train_split(dataset, e) for e in d["experiments"]}   # train.smk
    for split in sorted(needed_splits):
        split_annotations(dataset, split)
    for split in sorted(needed_splits):
        split_image_root(dataset, split)
    detector_source(dataset, detector)
    targets = []
    for e in d["experiments"]:
        model_path(dataset, e)
        for split in d.get("submit_splits", []):
            targets.append(f"runs/{dataset}/{e}/{split}/submission/results.zip")
    if d.get("eval_splits"):
        targets.append(f"reports/{dataset}/summary")
    return targets


def detector_source(dataset, detector):
    """('train', split) or ('checkpoint', path) for a detector, checking what it needs."""
    det = detector_cfg(dataset, detector)
    key = f"datasets.{dataset}.detectors.{detector}"
    if det.get("config") is not None:
        repo_file(det["config"], f"{key}.config", "detector config")
    if "train" in det and det["train"] is not None:
        if det.get("config") is None:
            raise ConfigError(f"{key}.config", "not set: a detector trained here needs its yaml "
                              "(only an official checkpoint's architecture can be inferred)")
        split = det["train"]["split"]
        split_annotations(dataset, split)
        return "train", split
    return "checkpoint", existing_path(det.get("checkpoint"), f"{key}.checkpoint",
                                       "an official Mask2Former (.pkl) / VITA or GenVIS (.pth) checkpoint", "file")
