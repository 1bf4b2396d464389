# Data: generate the synthetic benchmark, import DAVIS, split a train set by video.
# Every output is an annotation json (YouTube-VIS / OVIS format) under data/<dataset>/.


def _synth_args(wildcards, train_videos=None):
    """genvis synth arguments from the dataset's settings; ``train_videos`` replaces the
    video count by that many training videos plus the dataset's valid_videos."""
    s = dataset_cfg(wildcards.dataset).get("synth")
    if s is None:
        raise ConfigError(f"datasets.{wildcards.dataset}.synth", "missing: genvis synth settings")
    if train_videos is None:
        videos = int(s.get('videos', 24))
    else:
        videos = train_videos + fixed_valid_videos(wildcards.dataset, f"data/{wildcards.dataset}/synth_train/{train_videos}")
    args = f"--videos {videos} --seed {int(s.get('seed', 0))}"
    for key in ("height", "width", "min_length", "max_length", "categories", "valid_videos"):
        if s.get(key):
            args += f" --{key.replace('_', '-')} {int(s[key])}"
    if s.get("style"):
        args += f" --style {s['style']}"
    for key in ("color_jitter", "lookalike_jitter", "lookalike_offset"):
        if s.get(key) is not None:
            args += f" --{key.replace('_', '-')} {float(s[key])}"
    return args


rule synth:
    """Synthetic OVIS-style occlusion benchmark: frames + train.json + valid.json."""
    output:
        train="data/{dataset}/synth/train.json",
        valid="data/{dataset}/synth/valid.json",
        frames=directory("data/{dataset}/synth/frames"),
    params:
        args=_synth_args,
        out=lambda wc: f"data/{wc.dataset}/synth",
    log:
        "logs/{dataset}/data/synth.log",
    threads: 1
    shell:
        "exec genvis synth --out {params.out} {params.args} --no-progress > {log} 2>&1"


rule synth_train_split:
    """More training videos of a synthetic dataset (split kind synth_train): genvis synth with
    the dataset's settings and {videos} training videos. Each generated video depends only on
    the seed, its split and its index, so the first videos are the dataset's train split and
    the valid videos are its valid videos (with other ids); valid.json here is not used."""
    output:
        train="data/{dataset}/synth_train/{videos}/train.json",
        frames=directory("data/{dataset}/synth_train/{videos}/frames"),
    params:
        args=lambda wc: _synth_args(wc, train_videos=int(wc.videos)),
        out=lambda wc: f"data/{wc.dataset}/synth_train/{wc.videos}",
    wildcard_constraints:
        videos=r"\d+",
    log:
        "logs/{dataset}/data/synth_train_{videos}.log",
    threads: 1
    shell:
        "exec genvis synth --out {params.out} {params.args} --no-progress > {log} 2>&1"


def _davis_cfg(wildcards):
    s = split_cfg(wildcards.dataset, wildcards.split)
    if "davis" not in s:
        raise ConfigError(f"datasets.{wildcards.dataset}.splits.{wildcards.split}", "not a davis split")
    return s["davis"]


def _davis_args(wildcards):
    d = _davis_cfg(wildcards)
    args = f"--category {d.get('category', 'object')!r}"
    if d.get("sequences"):
        args += " --sequences " + ",".join(d["sequences"])
    elif d.get("split"):
        args += f" --split {d['split']}"
    return args


rule import_davis:
    """DAVIS layout (JPEGImages/, Annotations/) -> YouTube-VIS json of one split."""
    input:
        root=lambda wc: existing_path(_davis_cfg(wc).get("root"),
                                      f"datasets.{wc.dataset}.splits.{wc.split}.davis.root",
                                      "a DAVIS-layout folder", "dir"),
    output:
        "data/{dataset}/davis/{split}.json",
    params:
        args=_davis_args,
    log:
        "logs/{dataset}/data/import_davis_{split}.log",
    threads: 1
    shell:
        "exec genvis import-davis --root {input.root} --out {output} {params.args} > {log} 2>&1"


rule holdout_split:
    """Split one split by video into train / held-out parts (local scoring)."""
    input:
        lambda wc: split_annotations(wc.dataset, wc.of),
    output:
        train="data/{dataset}/holdout/{of}-f{fraction}-s{seed}/train.json",
        holdout="data/{dataset}/holdout/{of}-f{fraction}-s{seed}/holdout.json",
    log:
        "logs/{dataset}/data/holdout_{of}-f{fraction}-s{seed}.log",
    threads: 1
    shell:
        "exec genvis split --annotations {input} --holdout-fraction {wildcards.fraction} --seed {wildcards.seed}"
        " --out-train {output.train} --out-holdout {output.holdout} > {log} 2>&1"


rule augment_split:
    """Another split plus randomly flipped and cropped views of its videos (genvis augment).
    Frames are written per video folder before the json, so a stopped job resumes."""
    input:
        lambda wc: split_annotations(wc.dataset, wc.of),
    output:
        "data/{dataset}/augment/{of}-v{n}-s{seed}-m{scale}/annotations.json",
    params:
        image_root=lambda wc: split_image_root(wc.dataset, wc.of),
        out=lambda wc, output: str(Path(output[0]).parent),
    log:
        "logs/{dataset}/data/augment_{of}-v{n}-s{seed}-m{scale}.log",
    threads: 1
    shell:
        "exec genvis augment --annotations {input} --image-root {params.image_root} --views {wildcards.n}"
        " --seed {wildcards.seed} --min-scale {wildcards.scale} --out {params.out} --no-progress > {log} 2>&1"
