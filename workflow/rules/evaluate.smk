# Local scoring: video AP/AR (YouTube-VIS protocol) of a results json against a split
# with ground truth.


rule evaluate:
    """metrics.json next to results.json (at the default or at a chosen N_f^eval)."""
    input:
        gt=lambda wc: split_annotations(wc.dataset, wc.split),
        results="runs/{dataset}/{experiment}/{split}/{variant}results.json",
    output:
        "runs/{dataset}/{experiment}/{split}/{variant}metrics.json",
    log:
        "logs/{dataset}/{experiment}/{split}/{variant}evaluate.log",
    wildcard_constraints:
        variant="(nf[1-9][0-9]*/)?",
    threads: 1
    shell:
        "exec genvis evaluate --gt {input.gt} --results {input.results} --out {output} > {log} 2>&1"
