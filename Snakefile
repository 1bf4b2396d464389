# genvis: GenVIS (CVPR 2023) video instance segmentation in two stages.
#   stage one: frozen frame detector -> Zarr cache (cache/<dataset>/<split>/<detector>.zarr)
#   stage two: GenVIS video modules trained / evaluated from the cache (runs/...)
# Named targets: quickstart, synth_large_eval, davis_eval, ovis_eval, ytvis19_eval,
# ytvis21_eval, ytvis22_eval, ablations, compare, diagnose, table4_long, idol_table1. See README.md. Config: config/config.yaml
# (schema: workflow/schemas/).
#
# config/ and workflow/ are found relative to this file, so the workflow can run in any
# working directory (snakemake --directory DIR); outputs go there.

from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

configfile: str(Path(workflow.basedir) / "config" / "config.yaml")


validate(config, str(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"))


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/detector.smk"
include: "workflow/rules/cache.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/table4.smk"
include: "workflow/rules/idol.smk"


localrules:
    all,
    quickstart,
    synth_large_eval,
    davis_eval,
    ovis_eval,
    ytvis19_eval,
    ytvis21_eval,
    ytvis22_eval,
    ablations,
    compare,
    diagnose,
    table4_long,
    idol_table1,


rule all:
    """Default target: the quickstart."""
    default_target: True
    input:
        lambda wc: dataset_targets("synth"),


rule quickstart:
    """Synthetic benchmark end to end: synth, detector, extract, GenVIS + baselines, evaluate, report."""
    input:
        lambda wc: dataset_targets("synth"),


rule synth_large_eval:
    """Synthetic benchmark with 96 training videos and a 2,000-iteration detector (GenVIS vs the baseline)."""
    input:
        lambda wc: dataset_targets("synth_large"),


rule davis_eval:
    """DAVIS 2016 240p: import, EfficientNet-Lite0 detector, cache, GenVIS, held-out metrics."""
    input:
        lambda wc: dataset_targets("davis"),


rule ovis_eval:
    """OVIS: server zip for valid + metrics on a held-out part of train."""
    input:
        lambda wc: dataset_targets("ovis"),


rule ytvis19_eval:
    """YouTube-VIS 2019: server zip for valid + metrics on a held-out part of train."""
    input:
        lambda wc: dataset_targets("ytvis19"),


rule ytvis21_eval:
    """YouTube-VIS 2021: server zip for valid + metrics on a held-out part of train."""
    input:
        lambda wc: dataset_targets("ytvis21"),


rule ytvis22_eval:
    """YouTube-VIS 2022: server zip for valid + metrics on a held-out part of train."""
    input:
        lambda wc: dataset_targets("ytvis22"),


rule ablations:
    """Tables 4, 5, 6 and Fig. 3 (markdown, CSV, PNG) on config ablations.dataset / .split."""
    input:
        lambda wc: ablations_target(),


rule compare:
    """Every configured comparison: experiment a vs b over seeds, genvis compare (json + png)."""
    input:
        lambda wc: comparison_targets(),


rule diagnose:
    """Every configured comparison, both sides with own / MinVIS / oracle association (genvis diagnose)."""
    input:
        lambda wc: diagnosis_targets(),


rule table4_long:
    """Table 4 rows and GenVIS online at 10,000 iterations x 5 seeds against the N_v = 1 baseline
    (AP, HOTA, AssA with paired video-bootstrap intervals), the budget-matched control and the
    diagnosis: reports/table4_long/ (config: table4_long, experiments t4l_*)."""
    input:
        "reports/table4_long",


rule idol_table1:
    """IDOL supplement Table 1 analogue on config idol_table1 (reports/idol_table1.md, .csv)."""
    input:
        lambda wc: idol_table_outputs(),
