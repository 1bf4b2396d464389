# Reports: tables (markdown + CSV) and Fig. 3 (PNG) from metrics.json files, via
# `genvis report --spec`. The spec is written from the config by a local rule, so changing
# a table's rows re-runs only the report.

import json

from genvis.report.metrics import ALL_METRICS, ASSOC_METRICS, DAVIS_METRICS, OCCLUSION_METRICS, PAPER_METRICS


def summary_spec(dataset):
    """Per-dataset summary: every experiment of the dataset on every eval split."""
    d = dataset_cfg(dataset)
    rows = [
        {"labels": {"experiment": e, "split": s}, "metrics": metrics_path(dataset, e, s)}
        for s in d.get("eval_splits", [])
        for e in d["experiments"]
    ]
    if not rows:
        raise ConfigError(f"datasets.{dataset}.eval_splits", "no eval_splits: nothing to report")
    tables = [{
        "name": "results",
        "title": f"{dataset}: video AP / AR and HOTA / DetA / AssA / IDF1 (percent) per experiment, "
                 f"detector {d['detector']}",
        "label_columns": ["experiment", "split"],
        "metrics": list(ALL_METRICS) + list(ASSOC_METRICS),
        "rows": rows,
    }, {
        "name": "occlusion",
        "title": f"{dataset}: AP / AR per occlusion level (ground-truth mBOR: slight [0, 0.25], "
                 "moderate [0.25, 0.5], heavy [0.5, 1]; OVIS)",
        "label_columns": ["experiment", "split"],
        "metrics": list(OCCLUSION_METRICS),
        "rows": rows,
    }]
    associations = list(d.get("summary_associations") or [])
    if associations:
        tables.append({
            "name": "association",
            "title": f"{dataset}: the same models with their own inter-clip association and with "
                     + ", ".join(associations) + " association (oracle: clips linked to the ground truth; "
                     "own minus oracle is what association loses)",
            "label_columns": ["experiment", "split", "association"],
            "metrics": ["AP", "AP50", "AP75", "AR10"] + list(ASSOC_METRICS),
            "rows": [row for r in rows for row in (
                [{"labels": {**r["labels"], "association": "own"}, "metrics": r["metrics"]}]
                + [{"labels": {**r["labels"], "association": a},
                    "metrics": f"runs/{dataset}/{r['labels']['experiment']}/{r['labels']['split']}/{a}/metrics.json"}
                   for a in associations])],
        })
    davis_rows = [r for r in rows if is_davis_split(dataset, r["labels"]["split"])]
    if davis_rows:
        tables.append({
            "name": "davis_jf",
            "title": f"{dataset}: DAVIS 2017 J&F (unsupervised protocol, percent)",
            "label_columns": ["experiment", "split"],
            "metrics": list(DAVIS_METRICS),
            "rows": davis_rows,
        })
    if d.get("detector_ap_frames") is not None:
        n = int(d["detector_ap_frames"])
        tables.append({
            "name": "detector",
            "title": f"{dataset}: frame detector {d['detector']}, frame mask AP (percent, identities ignored; "
                     + ("all frames" if n == 0 else f"{n} evenly spaced frames per video") + ")",
            "label_columns": ["detector", "split"],
            "metrics": ["AP", "AP50", "AP75"],
            "rows": [{"labels": {"detector": d["detector"], "split": s},
                      "metrics": f"detectors/{dataset}/{d['detector']}.{s}.frame_ap.json"}
                     for s in d.get("eval_splits", [])],
        })
    return {"title": f"{dataset}: video instance segmentation, local scoring", "tables": tables}


def ablations_spec(dataset):
    """Tables 4, 5, 6 and Fig. 3 of the paper on the configured dataset and split."""
    a = config.get("ablations")
    if a is None:
        raise ConfigError("ablations", "missing: the ablations target needs an 'ablations' block")
    if a["dataset"] != dataset:
        raise ConfigError("ablations.dataset", f"ablations are configured for {a['dataset']!r}, not {dataset!r}")
    split = a["split"]
    spec = {"title": f"{dataset} / {split}: GenVIS ablations (Tables 4-6, Fig. 3)", "tables": [], "figures": []}
    if a.get("table4"):
        spec["tables"].append({
            "name": "table4",
            "title": "Table 4: inter-clip association (CL, UVLA) and memory (IPM)",
            "label_columns": ["experiment", "N_v", "CL", "UVLA", "IPM"],
            "metrics": list(PAPER_METRICS) + list(ASSOC_METRICS),
            "rows": [{"labels": {k: r[k] for k in ("experiment", "N_v", "CL", "UVLA", "IPM")},
                      "metrics": metrics_path(dataset, r["experiment"], split)} for r in a["table4"]],
        })
    if a.get("table5"):
        spec["tables"].append({
            "name": "table5",
            "title": "Table 5: memory decoding in IPM",
            "label_columns": ["experiment", "decoding"],
            "metrics": list(PAPER_METRICS) + list(ASSOC_METRICS),
            "rows": [{"labels": {"experiment": r["experiment"], "decoding": r["decoding"]},
                      "metrics": metrics_path(dataset, r["experiment"], split)} for r in a["table5"]],
        })
    if a.get("table6"):
        spec["tables"].append({
            "name": "table6",
            "title": "Table 6: clip length N_f (N_f^train = N_f^eval)",
            "label_columns": ["experiment", "N_f"],
            "metrics": list(PAPER_METRICS) + list(ASSOC_METRICS),
            "rows": [{"labels": {"experiment": r["experiment"], "N_f": r["N_f"]},
                      "metrics": metrics_path(dataset, r["experiment"], split, r["N_f"])} for r in a["table6"]],
        })
    if a.get("fig3"):
        f = a["fig3"]
        spec["figures"].append({
            "name": "fig3",
            "title": "Fig. 3: AP against N_f^eval",
            "x_label": "N_f^eval",
            "metric": "AP",
            "series": [
                {"label": f"{label} ({f[key]})",
                 "points": [{"x": n, "metrics": metrics_path(dataset, f[key], split, n)} for n in f["n_f_eval"]]}
                for key, label in (("online", "online, N_f^train = 1"), ("semi_online", "semi-online, N_f^train = 3"))
            ],
        })
    for e in {r["metrics"].split("/")[2] for t in spec["tables"] for r in t["rows"]}:
        experiment_cfg(e)
    if not spec["tables"] and not spec["figures"]:
        raise ConfigError("ablations", "no table4 / table5 / table6 / fig3 configured")
    return spec


def ablations_target():
    """reports/<ablations.dataset>/ablations; ConfigError if the config has no ablations block."""
    if not config.get("ablations"):
        raise ConfigError("ablations", "missing: the ablations target needs an 'ablations' block")
    return f"reports/{config['ablations']['dataset']}/ablations"


def report_spec(dataset, report):
    """The spec (dict) of reports/<dataset>/<report>."""
    if report == "summary":
        return summary_spec(dataset)
    if report == "ablations":
        return ablations_spec(dataset)
    raise ConfigError(f"reports/{dataset}/{report}", "unknown report (known: summary, ablations)")


def report_metrics(dataset, report):
    """Every metrics.json the report reads."""
    spec = report_spec(dataset, report)
    files = [r["metrics"] for t in spec["tables"] for r in t["rows"]]
    files += [p["metrics"] for f in spec.get("figures", []) for s in f["series"] for p in s["points"]]
    return sorted(set(files))


localrules:
    report_spec,


rule report_spec:
    """reports/<dataset>/<report>.spec.json: which metrics file fills which cell."""
    output:
        "reports/{dataset}/{report}.spec.json",
    params:
        spec=lambda wc: json.dumps(report_spec(wc.dataset, wc.report), indent=1),
    # a shell rule, not run:, so the spec is computed once, in the main process, from the
    # config as given (run: jobs re-parse the workflow in a sub-process)
    shell:
        "printf '%s\\n' {params.spec:q} > {output}.tmp && mv {output}.tmp {output}"


rule report:
    """reports/<dataset>/<report>/: <table>.md/.csv, <figure>.png/.md/.csv, report.md."""
    input:
        spec="reports/{dataset}/{report}.spec.json",
        metrics=lambda wc: report_metrics(wc.dataset, wc.report),
    output:
        directory("reports/{dataset}/{report}"),
    log:
        "logs/{dataset}/report/{report}.log",
    threads: 1
    shell:
        "exec genvis report --spec {input.spec} --out-dir {output} > {log} 2>&1"
