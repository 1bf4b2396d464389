# IDOL (ECCV 2022) association trained on the same caches, and its supplement's Table 1 as a
# target: `snakemake --cores 2 idol_table1` -> reports/idol_table1.md, reports/idol_table1.csv.
#
# Rows come from config idol_table1.rows. Every row's experiment is trained once per seed by
# rule train_seed (train.smk: runs/<dataset>/<experiment>/seeds/s<seed>/model.pt, from the
# cache of the dataset's train split and with --init-heads <the dataset's detector>, the same
# inputs as the quickstart's, so nothing is re-extracted). IDOL rows are then inferred with
# the row's matching and temporal weighting (rule infer_idol_variant:
# .../s<seed>/<split>/idol-<matching>-<on|off>/results.json); the other rows with their
# experiment's own association (rule infer_seed). Rule evaluate_seed scores both kinds.

import shlex


def idol_table_cfg():
    """config idol_table1, with its dataset, split and experiments checked."""
    t = config.get("idol_table1")
    if not t:
        raise ConfigError("idol_table1", "not configured: the idol_table1 target needs an 'idol_table1' block")
    d = dataset_cfg(t["dataset"])
    if t["split"] not in d.get("eval_splits", []):
        raise ConfigError("idol_table1.split",
                          f"{t['split']!r} is not an eval split of {t['dataset']} (eval_splits: {d.get('eval_splits', [])})")
    for i, row in enumerate(t["rows"]):
        experiment_cfg(row["experiment"])
        if "temporal" in row and "matching" not in row:
            raise ConfigError(f"idol_table1.rows[{i}].temporal", "needs matching (IDOL rows set both)")
    return t


def idol_row_metrics(row):
    """metrics.json of every seed of one idol_table1 row."""
    t = idol_table_cfg()
    sub = ""
    if "matching" in row:
        sub = f"idol-{row['matching']}-{'on' if row.get('temporal', True) else 'off'}/"
    return [f"runs/{t['dataset']}/{row['experiment']}/seeds/s{int(s)}/{t['split']}/{sub}metrics.json"
            for s in t["seeds"]]


def idol_table_outputs():
    idol_table_cfg()
    return ["reports/idol_table1.md", "reports/idol_table1.csv"]


def _idol_table_rows(wildcards):
    # a function of the (empty) wildcards: Snakemake reruns the table when rows or seeds change
    return " ".join("--row " + shlex.quote(r["label"]) + " " + " ".join(idol_row_metrics(r))
                    for r in idol_table_cfg()["rows"])


rule infer_idol_variant:
    """Results json of a seeded IDOL model with a chosen matching and temporal weighting."""
    input:
        unpack(_infer_inputs),
    output:
        "runs/{dataset}/{experiment}/seeds/s{seed}/{split}/idol-{matching}-{temporal}/results.json",
    wildcard_constraints:
        matching="embeddings|multi_cue",
        temporal="on|off",
    log:
        "logs/{dataset}/{experiment}/seeds/s{seed}/{split}/infer_idol-{matching}-{temporal}.log",
    threads: STAGE_TWO_THREADS
    resources:
        gpu=GPUS,
    shell:
        THREAD_ENV + " exec genvis infer --cache {input.cache} --annotations {input.annotations}"
        " --model {input.model} --out {output} --association idol --idol-matching {wildcards.matching}"
        " --idol-temporal {wildcards.temporal} --device " + DEVICE + " --threads {threads} --no-progress > {log} 2>&1"


rule evaluate_seed:
    """metrics.json beside a seeded run's results.json (own association or an IDOL variant)."""
    input:
        gt=lambda wc: split_annotations(wc.dataset, wc.split),
        results="runs/{dataset}/{experiment}/seeds/s{seed}/{split}/{variant}results.json",
    output:
        "runs/{dataset}/{experiment}/seeds/s{seed}/{split}/{variant}metrics.json",
    wildcard_constraints:
        variant="(idol-(embeddings|multi_cue)-(on|off)/)?",
    log:
        "logs/{dataset}/{experiment}/seeds/s{seed}/{split}/{variant}evaluate.log",
    threads: 1
    shell:
        "exec genvis evaluate --gt {input.gt} --results {input.results} --out {output} > {log} 2>&1"


rule idol_table:
    """reports/idol_table1.md and .csv: mean ± std over seeds of every configured row."""
    input:
        lambda wc: [m for r in idol_table_cfg()["rows"] for m in idol_row_metrics(r)],
    output:
        md="reports/idol_table1.md",
        csv="reports/idol_table1.csv",
    params:
        rows=_idol_table_rows,
        title=lambda wc: shlex.quote(f"IDOL supplement Table 1 on {idol_table_cfg()['dataset']} / {idol_table_cfg()['split']}"),
    log:
        "logs/reports/idol_table1.log",
    shell:
        "exec genvis seed-table {params.rows} --out-md {output.md} --out-csv {output.csv}"
        " --title {params.title}"
        " --command 'snakemake --cores 2 idol_table1' > {log} 2>&1"
