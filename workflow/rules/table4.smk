# Table 4 at the paper's length (target table4_long): the Table 4 rows and GenVIS online,
# each trained with the table4_long experiments' iterations (10,000) once per seed, every
# row compared with the N_v = 1 baseline by genvis compare (AP, HOTA, AssA with paired
# video-bootstrap intervals) and diagnosed with MinVIS and oracle association; plus the
# budget-matched control (GenVIS fine-tuned from the baseline against the baseline
# fine-tuned as long). Output:
#   reports/table4_long/table.md, table.csv, report.md     one row per Table 4 row
#   reports/comparisons/t4l_<row>.json / .png / .diagnosis.*   per row (t4l_cl_nv2, ...)
#   reports/comparisons/t4l_control.*                      the budget-matched control
# The comparisons are named here, not in config['comparisons'], so `snakemake compare` does
# not train them.


def table4_long_cfg():
    """The table4_long block; ConfigError when the config has none."""
    t = config.get("table4_long")
    if not t:
        raise ConfigError("table4_long", "missing: the table4_long target needs a 'table4_long' block")
    return t


def _t4l_name(experiment):
    """Comparison name of a table4_long row: t4l_<experiment> (once prefixed)."""
    return experiment if experiment.startswith("t4l_") else f"t4l_{experiment}"


def table4_long_comparisons():
    """{comparison name: comparison block} of the table4_long rows (t4l_<experiment>) and of
    its control (t4l_control); {} without a table4_long block."""
    t = config.get("table4_long")
    if not t:
        return {}
    common = {"dataset": t["dataset"], "split": t["split"], "seeds": list(t["seeds"]),
              "bootstrap": int(t.get("bootstrap", 1000))}
    out = {}
    for r in t["rows"]:
        if r["experiment"] == t["baseline"]:
            continue
        out[_t4l_name(r["experiment"])] = {**common, "a": r["experiment"], "b": t["baseline"],
                                         **({"horizon": int(r["horizon"])} if r.get("horizon") else {})}
    c = t.get("control")
    if c:
        out["t4l_control"] = {**common, "a": c["a"], "b": c["b"],
                              **({"horizon": int(c["horizon"])} if c.get("horizon") else {})}
    return out


def table4_long_spec():
    """genvis report --comparison-table spec of the table (rows -> comparison / diagnosis jsons)."""
    t = table4_long_cfg()
    cols = ["experiment", "N_v", "CL", "UVLA", "IPM"]
    comps = table4_long_comparisons()
    rows = []
    for r in t["rows"]:
        if r["experiment"] == t["baseline"]:
            continue
        n = _t4l_name(r["experiment"])
        rows.append({"labels": {k: r.get(k) for k in cols}, "comparison": f"reports/comparisons/{n}.json",
                     "diagnosis": f"reports/comparisons/{n}.diagnosis.json"})
    base = [r for r in t["rows"] if r["experiment"] == t["baseline"]]
    if not rows:
        raise ConfigError("table4_long.rows", "no row besides the baseline")
    for n in comps:
        comparison_cfg(n)  # checks datasets, splits, experiments
    return {"title": f"Table 4 at {t['dataset']} / {t['split']}: {len(t['seeds'])} seeds, against "
                     f"{t['baseline']} (paired video bootstrap, {int(t.get('bootstrap', 1000))} draws)",
            "label_columns": cols,
            "baseline": {"labels": {k: (base[0].get(k) if base else None) for k in cols} | {"experiment": t["baseline"]}},
            "rows": rows}


def table4_long_inputs(wildcards=None):
    """Every comparison / diagnosis file the table and the control need."""
    files = []
    for n in table4_long_comparisons():
        files += [f"reports/comparisons/{n}.{ext}" for ext in ("json", "png", "diagnosis.json", "diagnosis.md")]
    return files


localrules:
    table4_long_spec,


rule table4_long_spec:
    """reports/table4_long.spec.json: which comparison fills which row."""
    output:
        "reports/table4_long.spec.json",
    params:
        spec=lambda wc: json.dumps(table4_long_spec(), indent=1),
    shell:
        "printf '%s\\n' {params.spec:q} > {output}.tmp && mv {output}.tmp {output}"


rule table4_long_report:
    """reports/table4_long/: table.md, table.csv, report.md."""
    input:
        spec="reports/table4_long.spec.json",
        files=table4_long_inputs,
    output:
        directory("reports/table4_long"),
    log:
        "logs/table4_long/report.log",
    threads: 1
    shell:
        "exec genvis report --comparison-table {input.spec} --out-dir {output} > {log} 2>&1"
