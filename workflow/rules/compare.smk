# Seed-replicated comparisons: experiment a against experiment b on one dataset and split,
# each trained once per configured seed (runs/<dataset>/<experiment>/seeds/s<seed>/), then
# `genvis compare`: per-seed video AP, the seed means, and the 95% interval of their
# difference under a paired bootstrap over the split's videos.
#   reports/comparisons/<name>.json   the numbers (and the bootstrap draws)
#   reports/comparisons/<name>.png    per-seed AP and the bootstrap distribution
# Target diagnose: both sides again with MinVIS and with oracle association (genvis infer
# --association), scored side by side with genvis diagnose:
#   reports/comparisons/<name>.diagnosis.json / .diagnosis.md / .diagnosis.png
#   reports/comparisons/<name>.videos/<experiment>/video_<id>.png   the first seed's tracks of
#       both sides on the split's longest videos (genvis visualize)


def comparison_cfg(name):
    """The config block comparisons.<name>, checked against the datasets and experiments."""
    comps = {**table4_long_comparisons(), **(config.get("comparisons") or {})}  # table4.smk
    if name not in comps:
        raise ConfigError(f"comparisons.{name}",
                          f"comparison not configured (configured: {', '.join(sorted(comps)) or 'none'})")
    c = comps[name]
    d = dataset_cfg(c["dataset"])
    if c["split"] not in d.get("eval_splits", []):
        raise ConfigError(f"comparisons.{name}.split",
                          f"{c['split']!r} is not an eval split of {c['dataset']} (eval_splits: {d.get('eval_splits', [])})")
    for side in ("a", "b"):
        experiment_cfg(c[side])
    if c["a"] == c["b"]:
        raise ConfigError(f"comparisons.{name}", f"a and b are the same experiment ({c['a']!r})")
    return c


def comparison_results(name, side, association=None):
    """The results json of every seed of one side ("a" or "b") of a comparison: with the
    experiment's own association, or with ``association`` (rule infer_seed_association)."""
    c = comparison_cfg(name)
    sub = "" if association is None else f"{association}/"
    return [f"runs/{c['dataset']}/{c[side]}/seeds/s{int(s)}/{c['split']}/{sub}results.json" for s in c["seeds"]]


def comparison_gt(wildcards):
    """The annotation json of the split a comparison is judged on."""
    c = comparison_cfg(wildcards.comparison)
    return split_annotations(c["dataset"], c["split"])


DIAGNOSIS_ASSOCIATIONS = ("minvis", "oracle")


def diagnosis_rows(name):
    """[(label, [results json per seed])] of the diagnosis of one comparison: each side with
    its own association, then with each of DIAGNOSIS_ASSOCIATIONS."""
    c = comparison_cfg(name)
    rows = []
    for side in ("a", "b"):
        rows.append((f"{c[side]} / own", comparison_results(name, side)))
        for assoc in DIAGNOSIS_ASSOCIATIONS:
            rows.append((f"{c[side]} / {assoc}", comparison_results(name, side, assoc)))
    return rows


# videos drawn per side by rule visualize_comparison: the longest of the split, where
# propagation over many clips is hardest
VISUALIZED_VIDEOS = 3


def diagnosis_targets():
    """Every configured comparison's diagnosis json, markdown tables and figure, and the
    contact sheets of its longest videos."""
    comparison_targets()  # the same checks (ConfigError when none is configured)
    return [f"reports/comparisons/{n}.{ext}" for n in sorted(config["comparisons"])
            for ext in ("diagnosis.json", "diagnosis.md", "diagnosis.png", "videos")]


def comparison_targets():
    """Every configured comparison's json and png; ConfigError if none is configured."""
    comps = config.get("comparisons") or {}
    if not comps:
        raise ConfigError("comparisons", "none configured: the compare target needs a 'comparisons' block")
    return [f"reports/comparisons/{n}.{ext}" for n in sorted(comps) if comparison_cfg(n) for ext in ("json", "png")]


rule compare_seeds:
    """reports/comparisons/<name>.json and .png: genvis compare of a against b over the seeds."""
    input:
        gt=comparison_gt,
        a=lambda wc: comparison_results(wc.comparison, "a"),
        b=lambda wc: comparison_results(wc.comparison, "b"),
    output:
        json="reports/comparisons/{comparison}.json",
        png="reports/comparisons/{comparison}.png",
    params:
        # functions of the wildcards: a changed draw count or label re-runs the comparison
        args=lambda wc: (f"--bootstrap {int(comparison_cfg(wc.comparison).get('bootstrap', 1000))}"
                         f" --label-a {comparison_cfg(wc.comparison)['a']} --label-b {comparison_cfg(wc.comparison)['b']}"),
    wildcard_constraints:
        comparison=NAME,
    log:
        "logs/comparisons/{comparison}.log",
    threads: 1
    shell:
        "exec genvis compare --gt {input.gt} --a {input.a} --b {input.b} {params.args}"
        " --out {output.json} --plot {output.png} --no-progress > {log} 2>&1"


rule diagnose_comparison:
    """reports/comparisons/<name>.diagnosis.json, .md and .png: genvis diagnose of both sides
    with their own, MinVIS and oracle association (video AP, per-frame AP, split at the
    horizon and in ranges of horizon frames along the videos)."""
    input:
        gt=comparison_gt,
        results=lambda wc: [p for _, paths in diagnosis_rows(wc.comparison) for p in paths],
    output:
        json="reports/comparisons/{comparison}.diagnosis.json",
        md="reports/comparisons/{comparison}.diagnosis.md",
        png="reports/comparisons/{comparison}.diagnosis.png",
    params:
        rows=lambda wc: " ".join(f"--row '{label}' " + " ".join(paths) for label, paths in diagnosis_rows(wc.comparison)),
        horizon=lambda wc: (f" --horizon {int(comparison_cfg(wc.comparison)['horizon'])}"
                            if comparison_cfg(wc.comparison).get("horizon") else ""),
    wildcard_constraints:
        comparison=NAME,
    log:
        "logs/comparisons/{comparison}.diagnosis.log",
    threads: 1
    shell:
        "exec genvis diagnose --gt {input.gt} {params.rows}{params.horizon}"
        " --out {output.json} --table {output.md} --plot {output.png} > {log} 2>&1"


def _visualize_args(wildcards, side):
    """genvis visualize arguments (all but --out-dir) for the first seed of one side."""
    c = comparison_cfg(wildcards.comparison)
    results = comparison_results(wildcards.comparison, side)[0]
    label = f"{c[side]} (seed {int(c['seeds'][0])})"
    return (f"--annotations {comparison_gt(wildcards)} --image-root {split_image_root(c['dataset'], c['split'])}"
            f" --results {results} --longest {VISUALIZED_VIDEOS} --label '{label}' --no-progress")


rule visualize_comparison:
    """reports/comparisons/<name>.videos/<experiment>/video_<id>.png: contact sheets of the
    first seed's tracks of both sides beside the ground truth on the split's longest videos,
    each prediction in the colour of the instance it matches (genvis visualize)."""
    input:
        gt=comparison_gt,
        a=lambda wc: comparison_results(wc.comparison, "a")[0],
        b=lambda wc: comparison_results(wc.comparison, "b")[0],
    output:
        directory("reports/comparisons/{comparison}.videos"),
    params:
        a=lambda wc: _visualize_args(wc, "a"),
        b=lambda wc: _visualize_args(wc, "b"),
        a_name=lambda wc: comparison_cfg(wc.comparison)["a"],
        b_name=lambda wc: comparison_cfg(wc.comparison)["b"],
    wildcard_constraints:
        comparison=NAME,
    log:
        "logs/comparisons/{comparison}.videos.log",
    threads: 1
    shell:
        "(genvis visualize {params.a} --out-dir {output}/{params.a_name}"
        " && genvis visualize {params.b} --out-dir {output}/{params.b_name}) > {log} 2>&1"
