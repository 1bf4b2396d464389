# Local scoring: video AP/AR (YouTube-VIS protocol, plus AP/AR per OVIS occlusion level) of
# a results json against a split with ground truth; DAVIS splits also get DAVIS 2017 J&F.


def evaluate_args(wildcards):
    """Extra `genvis evaluate` options of a split: --protocol davis for a DAVIS split."""
    return "--protocol davis" if is_davis_split(wildcards.dataset, wildcards.split) else ""


rule evaluate:
    """metrics.json next to results.json (at the default or at a chosen N_f^eval)."""
    input:
        gt=lambda wc: split_annotations(wc.dataset, wc.split),
        results="runs/{dataset}/{experiment}/{split}/{variant}results.json",
    output:
        "runs/{dataset}/{experiment}/{split}/{variant}metrics.json",
    params:
        args=evaluate_args,
    log:
        "logs/{dataset}/{experiment}/{split}/{variant}evaluate.log",
    wildcard_constraints:
        variant="(nf[1-9][0-9]*/|propagate/|minvis/|oracle/)?",
    threads: 1
    shell:
        "exec genvis evaluate --gt {input.gt} --results {input.results} --out {output} {params.args} > {log} 2>&1"
