"""The Snakemake workflow, run through Snakemake itself in a temporary working directory.

Dry runs check the DAG (jobs per rule, key-named config errors, profile rule names); the
end-to-end test runs the real pipeline on a few tiny synthetic videos (quickstart and a
small ablations report), then checks with dry runs that a stage-two change schedules no
extraction while a resolution change does.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
DEFAULT_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def run_snakemake(workdir: Path, *args: str, config: dict | None = None, timeout: float = 120,
                  overlays: tuple[Path, ...] = ()):
    """Run ``python -m snakemake`` on the repository's Snakefile in ``workdir``; ``overlays``
    are config files Snakemake merges over ``config``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir)]
    if config is not None:
        cfg = workdir / "test_config.yaml"
        cfg.write_text(yaml.safe_dump(config))
        cmd += ["--configfile", str(cfg), *map(str, overlays), "--replace-workflow-config"]
    env = dict(os.environ)
    # the rules call `genvis`: the one installed next to this interpreter
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=workdir)


def job_counts(text: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a Snakemake run into {rule: count} (without 'total')."""
    if "Nothing to be done" in text:
        return {}
    lines = text.splitlines()
    start = lines.index("Job stats:")
    counts = {}
    for line in lines[start + 3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


def placeholder_config(tmp_path: Path) -> dict:
    """The repository config with detector / experiment yamls replaced by files in tmp_path.

    A dry run only checks that these files exist; it never reads them.
    """
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    det = tmp_path / "detector.yaml"
    exp = tmp_path / "experiment.yaml"
    det.write_text("placeholder: true\n")
    exp.write_text("placeholder: true\n")
    for d in cfg["datasets"].values():
        for detector in d["detectors"].values():
            detector["config"] = str(det)
    for e in cfg["experiments"].values():
        e["config"] = str(exp)
    return cfg


def fake_ovis(tmp_path: Path, cfg: dict) -> dict:
    """Point the OVIS entries at tiny files (a dry run only checks that they exist)."""
    root = tmp_path / "ovis"
    (root / "train").mkdir(parents=True)
    (root / "valid").mkdir()
    for name in ("annotations_train.json", "annotations_valid.json", "r50.pth"):
        (root / name).write_text("{}")
    ovis = cfg["datasets"]["ovis"]
    ovis["splits"]["train_full"] = {"annotations": str(root / "annotations_train.json"),
                                    "image_root": str(root / "train")}
    ovis["splits"]["valid"] = {"annotations": str(root / "annotations_valid.json"),
                               "image_root": str(root / "valid")}
    ovis["detectors"]["r50"]["checkpoint"] = str(root / "r50.pth")
    return cfg


def test_ovis_eval_without_paths_fails_naming_the_key(tmp_path):
    proc = run_snakemake(tmp_path, "-n", "ovis_eval", config=placeholder_config(tmp_path))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "datasets.ovis.splits.train_full.annotations: not set" in out
    assert not (tmp_path / "data").exists() and not (tmp_path / "cache").exists()


def test_ovis_eval_with_paths_lists_expected_jobs(tmp_path):
    cfg = fake_ovis(tmp_path, placeholder_config(tmp_path))
    proc = run_snakemake(tmp_path, "-n", "-p", "ovis_eval", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_exp = len(cfg["datasets"]["ovis"]["experiments"])
    assert job_counts(proc.stdout) == {
        "holdout_split": 1, "detector": 1, "extract": 3, "train": n_exp, "infer": n_exp,
        "infer_submission": n_exp, "evaluate": n_exp, "report_spec": 1, "report": 1, "ovis_eval": 1,
    }
    out = proc.stdout
    assert f"genvis import-checkpoint --checkpoint {tmp_path}/ovis/r50.pth" in out
    assert "genvis train-detector" in out  # the shell branches on the detector kind
    for split in ("train", "holdout", "valid"):
        assert f"--out cache/ovis/{split}/r50.zarr" in out
    assert "--out-holdout data/ovis/holdout/train_full-f0.1-s0/holdout.json" in out
    assert "--zip runs/ovis/genvis_online/valid/submission/results.zip" in out
    # valid has no ground truth: it is never evaluated
    assert "runs/ovis/genvis_online/valid/metrics.json" not in out


def test_official_model_is_not_trained(tmp_path):
    cfg = fake_ovis(tmp_path, placeholder_config(tmp_path))
    ckpt = tmp_path / "genvis_r50_ovis_online.pth"
    ckpt.write_text("{}")
    cfg["datasets"]["ovis"]["official_models"]["genvis_online"] = str(ckpt)
    proc = run_snakemake(tmp_path, "-n", "-p", "ovis_eval", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["train"] == len(cfg["datasets"]["ovis"]["experiments"]) - 1
    assert f"--model {ckpt}" in proc.stdout
    assert "runs/ovis/genvis_online/model.pt" not in proc.stdout


def test_quickstart_and_ablations_dry_run(tmp_path):
    cfg = placeholder_config(tmp_path)
    proc = run_snakemake(tmp_path, "-n", "quickstart", "ablations", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    a = cfg["ablations"]
    experiments = set(cfg["datasets"]["synth"]["experiments"])
    experiments |= {r["experiment"] for t in ("table4", "table5", "table6") for r in a[t]}
    experiments |= {a["fig3"]["online"], a["fig3"]["semi_online"]}
    nf_points = {(a["fig3"][k], n) for k in ("online", "semi_online") for n in a["fig3"]["n_f_eval"]}
    nf_points |= {(r["experiment"], r["N_f"]) for r in a["table6"]}
    default_points = set(cfg["datasets"]["synth"]["experiments"])
    default_points |= {r["experiment"] for t in ("table4", "table5") for r in a[t]}
    # the summary's association table: every quickstart experiment again with oracle association
    synth = cfg["datasets"]["synth"]
    oracle_rows = [(e, s, x) for e in synth["experiments"] for s in synth["eval_splits"]
                   for x in synth["summary_associations"]]
    assert synth["summary_associations"] == ["oracle"]
    assert counts == {
        "synth": 1, "synth_train_split": 1,  # the detector's 192 training videos (split train_det)
        "detector": 1, "detector_ap": len(cfg["datasets"]["synth"]["eval_splits"]),
        "extract": 2, "train": len(experiments),
        "infer": len(default_points), "infer_n_f_eval": len(nf_points),
        "infer_association": len(oracle_rows),
        "evaluate": len(default_points) + len(nf_points) + len(oracle_rows),
        "report_spec": 2, "report": 2, "quickstart": 1, "ablations": 1,
    }


def test_idol_table1_dry_run_trains_every_row_and_seed_from_the_quickstart_caches(tmp_path):
    cfg = placeholder_config(tmp_path)
    proc = run_snakemake(tmp_path, "-n", "-p", "idol_table1", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    t = cfg["idol_table1"]
    seeds = len(t["seeds"])
    experiments = {r["experiment"] for r in t["rows"]}
    idol_rows = [r for r in t["rows"] if "matching" in r]
    assert job_counts(proc.stdout) == {
        "synth": 1, "synth_train_split": 1, "detector": 1, "extract": 2, "train_seed": len(experiments) * seeds,
        "infer_idol_variant": len(idol_rows) * seeds, "infer_seed": (len(t["rows"]) - len(idol_rows)) * seeds,
        "evaluate_seed": len(t["rows"]) * seeds, "idol_table": 1, "idol_table1": 1}
    out = proc.stdout
    # the quickstart's caches and detector, no other extraction
    assert "--out cache/synth/train_det/tiny.zarr" in out and "--out cache/synth/valid/tiny.zarr" in out
    assert "--init-heads detectors/synth/tiny.pt" in out
    assert "--association idol --idol-matching multi_cue --idol-temporal off" in out
    assert "--out runs/synth/idol/seeds/s4/valid/idol-embeddings-on/results.json" in out
    assert "genvis seed-table --row 'ID head, multi-cue matching' runs/synth/idol_idhead/seeds/s0/valid/" in out
    assert "--out-md reports/idol_table1.md --out-csv reports/idol_table1.csv" in out


def test_idol_table1_needs_its_config_block(tmp_path):
    cfg = placeholder_config(tmp_path)
    del cfg["idol_table1"]
    proc = run_snakemake(tmp_path, "-n", "idol_table1", config=cfg)
    assert proc.returncode != 0 and "idol_table1: not configured" in proc.stdout + proc.stderr


def test_init_from_trains_the_base_model_first_and_passes_it(tmp_path):
    cfg = placeholder_config(tmp_path)
    cfg["experiments"]["genvis_online"]["init_from"] = "minvis_nv1"
    cfg["datasets"]["synth"]["experiments"] = ["genvis_online"]
    proc = run_snakemake(tmp_path, "-n", "-p", "runs/synth/genvis_online/model.pt", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout)["train"] == 2          # minvis_nv1 is built first
    line = next(x for x in proc.stdout.splitlines() if "--out runs/synth/genvis_online/model.pt" in x)
    assert "--init-model runs/synth/minvis_nv1/model.pt" in line
    cfg["experiments"]["minvis_nv1"]["init_from"] = "genvis_online"
    proc = run_snakemake(tmp_path, "-n", "runs/synth/genvis_online/model.pt", config=cfg)
    assert proc.returncode != 0
    assert "initialisation cycle genvis_online -> minvis_nv1 -> genvis_online" in proc.stdout + proc.stderr


def test_diagnose_reruns_inference_of_the_seeded_models_with_minvis_and_oracle(tmp_path):
    cfg = placeholder_config(tmp_path)
    comps = cfg["comparisons"]
    proc = run_snakemake(tmp_path, "-n", "-p", "diagnose", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {(c[k], s) for c in comps.values() for k in ("a", "b") for s in c["seeds"]}
    counts = job_counts(proc.stdout)
    assert counts["infer_seed_association"] == 2 * len(runs)      # minvis and oracle, each model once
    assert counts["diagnose_comparison"] == counts["visualize_comparison"] == len(comps) and counts["diagnose"] == 1
    assert counts["train_seed"] == counts["infer_seed"] == len(runs)
    lines = proc.stdout.splitlines()
    e = next(iter(comps.values()))["a"]
    oracle = next(x for x in lines if f"--out runs/synth_large/{e}/seeds/s0/valid/oracle/results.json" in x)
    assert "--association oracle" in oracle and f"--model runs/synth_large/{e}/seeds/s0/model.pt" in oracle
    name = sorted(comps)[0]
    line = next(x for x in lines if f"--out reports/comparisons/{name}.diagnosis.json" in x)
    assert line.count("--row ") == 6 and f"--horizon {comps[name]['horizon']}" in line
    assert f"--plot reports/comparisons/{name}.diagnosis.png" in line
    assert f"--row '{comps[name]['a']} / oracle' runs/synth_large/{comps[name]['a']}/seeds/s0/valid/oracle/results.json" in line


def test_compare_trains_every_seed_and_fine_tunes_from_the_same_seed(tmp_path):
    cfg = placeholder_config(tmp_path)
    comps = cfg["comparisons"]
    proc = run_snakemake(tmp_path, "-n", "-p", "compare", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    experiments = {c[k] for c in comps.values() for k in ("a", "b")}
    runs = {(c[k], s) for c in comps.values() for k in ("a", "b") for s in c["seeds"]}
    assert len(runs) < sum(2 * len(c["seeds"]) for c in comps.values())   # the shared baseline runs once
    counts = job_counts(proc.stdout)
    assert counts["train_seed"] == counts["infer_seed"] == len(runs)
    assert counts["compare_seeds"] == len(comps) and counts["compare"] == 1
    assert "train" not in counts and "infer" not in counts     # seeded runs only
    lines = proc.stdout.splitlines()
    for e in experiments:
        base = cfg["experiments"][e].get("init_from")
        line = next(x for x in lines if f"--out runs/synth_large/{e}/seeds/s3/model.pt" in x)
        assert "--seed 3 " in line
        if base:
            assert f"--init-model runs/synth_large/{base}/seeds/s3/model.pt" in line
        else:
            assert "--init-model" not in line
    name = sorted(comps)[0]
    line = next(x for x in lines if f"--out reports/comparisons/{name}.json" in x)
    a = [f"runs/synth_large/{comps[name]['a']}/seeds/s{s}/valid/results.json" for s in comps[name]["seeds"]]
    assert f"--a {' '.join(a)} --b " in line and f"--plot reports/comparisons/{name}.png" in line


def test_table4_long_dry_run_trains_every_row_per_seed_at_10k(tmp_path):
    cfg = placeholder_config(tmp_path)
    t = cfg["table4_long"]
    proc = run_snakemake(tmp_path, "-n", "-p", "table4_long", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    experiments = {r["experiment"] for r in t["rows"]} | {t["control"]["a"], t["control"]["b"]}
    assert counts["train_seed"] == counts["infer_seed"] == len(experiments) * len(t["seeds"])
    n_comparisons = len(t["rows"]) - 1 + 1   # every row but the baseline, and the control
    assert counts["compare_seeds"] == counts["diagnose_comparison"] == n_comparisons
    assert counts["table4_long_report"] == 1 and "compare" not in counts
    lines = proc.stdout.splitlines()
    for e in experiments:
        line = next(x for x in lines if f"--out runs/synth/{e}/seeds/s4/model.pt" in x)
        assert "--iterations 10000 " in line and "--seed 4 " in line
        assert " --resume-interrupted " in line   # a killed 10k-iteration job continues
    ft = next(x for x in lines if f"--out runs/synth/{t['control']['a']}/seeds/s2/model.pt" in x)
    assert f"--init-model runs/synth/{t['baseline']}/seeds/s2/model.pt" in ft
    line = next(x for x in lines if "--out reports/comparisons/t4l_cl_nv2.json" in x)
    assert f"--b runs/synth/{t['baseline']}/seeds/s0/valid/results.json" in line
    assert "genvis report --comparison-table reports/table4_long.spec.json --out-dir reports/table4_long" in proc.stdout
    # the table's comparisons are not part of the compare target
    proc = run_snakemake(tmp_path, "-n", "compare", config=cfg)
    assert proc.returncode == 0 and "t4l_" not in proc.stdout


def test_table4_short_overlay_trains_every_row_at_700_on_three_seeds(tmp_path):
    """config/overlays/table4_short.yaml merges into the t4l_* entries and the table4_long
    block: the same jobs as the full table, 700 iterations, seeds 0-2."""
    cfg = placeholder_config(tmp_path)
    t = cfg["table4_long"]
    proc = run_snakemake(tmp_path, "-n", "-p", "table4_long", config=cfg,
                         overlays=(REPO / "config" / "overlays" / "table4_short.yaml",))
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    experiments = {r["experiment"] for r in t["rows"]} | {t["control"]["a"], t["control"]["b"]}
    assert counts["train_seed"] == len(experiments) * 3
    lines = proc.stdout.splitlines()
    for e in experiments:
        line = next(x for x in lines if f"--out runs/synth/{e}/seeds/s2/model.pt" in x)
        assert "--iterations 700 " in line and "--seed 2 " in line
        assert not any(f"--out runs/synth/{e}/seeds/s3/" in x for x in lines)


def test_table4_long_without_block_names_the_key(tmp_path):
    cfg = placeholder_config(tmp_path)
    del cfg["table4_long"]
    proc = run_snakemake(tmp_path, "-n", "table4_long", config=cfg)
    assert proc.returncode != 0 and "needs a 'table4_long' block" in proc.stderr + proc.stdout


def test_gpu_overlay_trains_longer_on_cuda(tmp_path):
    """config/overlays/gpu_compare.yaml merges over the config: 10,000 iterations, cuda."""
    overlay = REPO / "config" / "overlays" / "gpu_compare.yaml"
    iterations = yaml.safe_load(overlay.read_text())["datasets"]["synth_large"]["train_iterations"]
    proc = run_snakemake(tmp_path, "compare", "-n", "-p", "--resources", "gpu=1",
                         config=placeholder_config(tmp_path), overlays=(overlay,))
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = [x for x in proc.stdout.splitlines() if "genvis train " in x]
    assert train and all(f"--iterations {iterations} " in x and "[ 1 -gt 0 ]" in x for x in train)
    cfg = placeholder_config(tmp_path)
    plain = run_snakemake(tmp_path, "compare", "-n", "-p", config=cfg)
    train = [x for x in plain.stdout.splitlines() if "genvis train " in x]
    assert train and all("[ 0 -gt 0 ]" in x for x in train)
    for x in train:                 # without the overlay: the experiment entry's iterations, if any
        e = re.search(r"--out runs/synth_large/([^/]+)/seeds/", x).group(1)
        own = cfg["experiments"][e].get("iterations")
        assert (f"--iterations {own} " in x) if own else ("--iterations" not in x), x
    assert any("--iterations" in x for x in train) and any("--iterations" not in x for x in train)


@pytest.mark.parametrize("change,message", [
    ({"a": "no_such_experiment"}, "experiments.no_such_experiment: experiment not configured"),
    ({"split": "train"}, "comparisons.c.split: 'train' is not an eval split of synth"),
    ({"b": "genvis_online"}, "comparisons.c: a and b are the same experiment"),
])
def test_bad_comparison_names_the_key(tmp_path, change, message):
    cfg = placeholder_config(tmp_path)
    cfg["comparisons"] = {"c": {"dataset": "synth", "split": "valid", "a": "genvis_online", "b": "minvis_nv1",
                                "seeds": [0, 1], **change}}
    proc = run_snakemake(tmp_path, "-n", "compare", config=cfg)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_experiment_on_an_augment_split_extracts_it_and_trains_on_it(tmp_path):
    cfg = placeholder_config(tmp_path)
    cfg["datasets"]["synth"]["splits"]["train_aug"] = {"augment": {"of": "train", "views": 2, "seed": 1}}
    cfg["experiments"]["base_aug"] = {"config": cfg["experiments"]["minvis_nv1"]["config"],
                                      "train_split": "train_aug", "iterations": 50}
    cfg["experiments"]["ft_aug"] = {"config": cfg["experiments"]["genvis_online"]["config"],
                                    "train_split": "train_aug", "init_from": "base_aug"}
    cfg["datasets"]["synth"]["experiments"] = ["ft_aug"]
    proc = run_snakemake(tmp_path, "-n", "-p", "runs/synth/ft_aug/valid/metrics.json", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["augment_split"] == 1 and counts["train"] == 2
    assert counts["extract"] == 2                                  # train_aug and valid; never plain train
    lines = proc.stdout.splitlines()
    aug = "data/synth/augment/train-v2-s1-m0.6"
    line = next(x for x in lines if "genvis augment " in x)
    assert ("--annotations data/synth/synth/train.json --image-root data/synth/synth/frames --views 2"
            f" --seed 1 --min-scale 0.6 --out {aug} ") in line
    line = next(x for x in lines if "genvis extract " in x and "train_aug" in x)
    assert f"--annotations {aug}/annotations.json --image-root {aug}/frames" in line
    base = next(x for x in lines if "--out runs/synth/base_aug/model.pt" in x)
    assert f"--cache cache/synth/train_aug/tiny.zarr --annotations {aug}/annotations.json" in base
    assert "--iterations 50 " in base
    ft = next(x for x in lines if "--out runs/synth/ft_aug/model.pt" in x)
    assert "--init-model runs/synth/base_aug/model.pt" in ft and "--iterations" not in ft
    cfg["experiments"]["ft_aug"]["train_split"] = "no_such_split"
    proc = run_snakemake(tmp_path, "-n", "runs/synth/ft_aug/valid/metrics.json", config=cfg)
    assert proc.returncode != 0
    assert "datasets.synth.splits.no_such_split: split not configured" in proc.stdout + proc.stderr


def test_synth_train_split_adds_training_videos_and_keeps_the_dataset_ones(tmp_path):
    cfg = placeholder_config(tmp_path)
    synth = cfg["datasets"]["synth"]
    synth["splits"]["train_30"] = {"synth_train": {"videos": 30}}
    synth["synth"].update(color_jitter=20, lookalike_jitter=30, lookalike_offset=1)  # reach both genvis synth jobs
    cfg["experiments"]["base_30"] = {"config": cfg["experiments"]["minvis_nv1"]["config"],
                                     "train_split": "train_30", "iterations": 50}
    proc = run_snakemake(tmp_path, "-n", "-p", "runs/synth/base_30/valid/metrics.json", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    gen = next(x for x in lines if "genvis synth " in x and "synth_train" in x)
    valid = synth["synth"]["valid_videos"]
    assert f"--out data/synth/synth_train/30 --videos {30 + valid} --seed 0" in gen
    assert f"--valid-videos {valid} " in gen
    own_gen = next(x for x in lines if "genvis synth --out data/synth/synth " in x)
    for job in (gen, own_gen):
        assert "--color-jitter 20.0 --lookalike-jitter 30.0 --lookalike-offset 1.0" in job
    base = next(x for x in lines if "--out runs/synth/base_30/model.pt" in x)
    assert "--cache cache/synth/train_30/tiny.zarr --annotations data/synth/synth_train/30/train.json" in base
    # generate both for real: the split's first videos are the dataset's train split, frame for frame
    proc = run_snakemake(tmp_path, "--cores", "2", "data/synth/synth/train.json",
                         "data/synth/synth_train/30/train.json", config=cfg, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    own = json.loads((tmp_path / "data/synth/synth/train.json").read_text())
    more = json.loads((tmp_path / "data/synth/synth_train/30/train.json").read_text())
    assert len(own["videos"]) == synth["synth"]["videos"] - valid and len(more["videos"]) == 30
    assert more["videos"][:len(own["videos"])] == own["videos"]
    ids = {v["id"] for v in own["videos"]}
    assert [a for a in more["annotations"] if a["video_id"] in ids] == own["annotations"]
    for name in (own["videos"][0]["file_names"][0], own["videos"][-1]["file_names"][-1]):
        assert ((tmp_path / "data/synth/synth_train/30/frames" / name).read_bytes()
                == (tmp_path / "data/synth/synth/frames" / name).read_bytes())


def test_synth_train_split_needs_fixed_valid_videos(tmp_path):
    cfg = placeholder_config(tmp_path)
    cfg["datasets"]["synth"]["splits"]["train_30"] = {"synth_train": {"videos": 30}}
    cfg["datasets"]["synth"]["synth"]["valid_videos"] = None
    cfg["experiments"]["base_30"] = {"config": cfg["experiments"]["minvis_nv1"]["config"],
                                     "train_split": "train_30"}
    proc = run_snakemake(tmp_path, "-n", "runs/synth/base_30/valid/metrics.json", config=cfg)
    assert proc.returncode != 0
    assert "datasets.synth.synth.valid_videos: must be set for datasets.synth.splits.train_30" in (
        proc.stdout + proc.stderr)
    # the rule's output asked for directly: the same named error, not a TypeError
    proc = run_snakemake(tmp_path, "-n", "data/synth/synth_train/30/train.json", config=cfg)
    assert proc.returncode != 0
    assert "datasets.synth.synth.valid_videos: must be set for data/synth/synth_train/30" in proc.stdout + proc.stderr


def test_missing_davis_root_names_the_key(tmp_path):
    cfg = placeholder_config(tmp_path)
    cfg["datasets"]["davis"]["splits"]["train"]["davis"]["root"] = str(tmp_path / "no_davis_here")
    proc = run_snakemake(tmp_path, "-n", "davis_eval", config=cfg)
    assert proc.returncode != 0
    assert "datasets.davis.splits.train.davis.root: dir" in proc.stdout + proc.stderr
    assert "no_davis_here" in proc.stdout + proc.stderr


def test_schema_rejects_bad_config(tmp_path):
    cfg = placeholder_config(tmp_path)
    cfg["resources"]["threads"] = 0
    proc = run_snakemake(tmp_path, "-n", "quickstart", config=cfg)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "0 is less than the minimum of 1" in out and "threads" in out


def test_slurm_profile_names_existing_rules(tmp_path):
    profile = yaml.safe_load((REPO / "config" / "profiles" / "slurm" / "config.yaml").read_text())
    proc = run_snakemake(tmp_path, "--list-rules", config=placeholder_config(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rules = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert set(profile["set-threads"]) <= rules
    assert set(profile["set-resources"]) <= rules
    gpu_rules = {r for r, res in profile["set-resources"].items() if res.get("gpu")}
    assert {"detector", "extract", "train", "infer"} <= gpu_rules


# ---------------------------------------------------------------------------------------
# End to end: the real pipeline on a tiny synthetic set


def tiny_config() -> dict:
    """Repository config reduced to a tiny synthetic run.

    4 videos of 16-18 frames at 64x64, a detector trained for 3 iterations, the online and
    semi-online GenVIS experiments trained for 2 iterations each: the numbers are not
    meaningful, the test checks that every stage runs and hands the next one valid files.
    """
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    synth = cfg["datasets"]["synth"]
    # N_v x N_f = 5 x 3 = 15 frames is the longest training sample: videos must hold it
    synth["synth"] = {"videos": 4, "seed": 3, "height": 64, "width": 64, "min_length": 16, "max_length": 18}
    det = synth["detectors"][synth["detector"]]
    det["train"]["iterations"] = 3
    det["train"]["split"] = "train"  # not the quickstart's 192-video detector split
    synth["splits"].pop("train_det", None)
    synth["train_split"] = "train"  # stage two too
    det["min_size"] = 64
    det["max_size"] = 64
    synth["train_iterations"] = 2
    online, semi = cfg["ablations"]["fig3"]["online"], cfg["ablations"]["fig3"]["semi_online"]
    synth["experiments"] = [online, semi]
    cfg["datasets"] = {"synth": synth}
    cfg["experiments"] = {e: cfg["experiments"][e] for e in synth["experiments"]}
    cfg["ablations"] = {
        "dataset": "synth", "split": "valid",
        "table6": [{"experiment": online, "N_f": 1}, {"experiment": semi, "N_f": 3}],
        "fig3": {"online": online, "semi_online": semi, "n_f_eval": [1, 3]},
    }
    cfg["comparisons"] = {"tiny": {"dataset": "synth", "split": "valid", "a": online, "b": semi,
                                   "seeds": [0, 1], "bootstrap": 20, "horizon": 3}}
    cfg["resources"] = {"threads": 1, "stage_two_threads": 1, "gpu": 0}
    return cfg


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    cfg = tiny_config()
    proc = run_snakemake(workdir, "--cores", "2", "quickstart", "ablations", "compare", "diagnose", config=cfg,
                         timeout=900)
    if proc.returncode != 0:
        logs = "\n".join(f"== {p.relative_to(workdir)}\n{p.read_text()[-1500:]}"
                         for p in sorted((workdir / "logs").rglob("*.log")))
        pytest.fail(f"tiny workflow failed:\n{proc.stderr[-4000:]}\n{logs}")
    return workdir, cfg


@pytest.mark.slow
def test_tiny_workflow_end_to_end(tiny_run):
    workdir, cfg = tiny_run
    experiments = cfg["datasets"]["synth"]["experiments"]
    report = workdir / "reports" / "synth" / "summary"
    rows = list(csv.DictReader((report / "results.csv").read_text().splitlines()))
    assert [r["experiment"] for r in rows] == experiments
    for row in rows:
        metrics = json.loads((workdir / "runs" / "synth" / row["experiment"] / "valid" / "metrics.json").read_text())
        for key in ("AP", "AP50", "AP75", "AR1", "AR10", "HOTA", "DetA", "AssA", "IDF1"):
            assert 0.0 <= metrics[key] <= 100.0
            assert float(row[key]) == pytest.approx(metrics[key], abs=1e-4)
        assert metrics["AP50"] >= metrics["AP75"]
    detector = cfg["datasets"]["synth"]["detector"]
    det_rows = list(csv.DictReader((report / "detector.csv").read_text().splitlines()))
    frame_ap = json.loads((workdir / "detectors" / "synth" / f"{detector}.valid.frame_ap.json").read_text())
    assert [r["split"] for r in det_rows] == ["valid"] and 0 <= frame_ap["AP"] <= 100
    assert float(det_rows[0]["AP"]) == pytest.approx(frame_ap["AP"], abs=1e-4)
    # the association table: each experiment with its own association, then with the oracle's
    assoc = list(csv.DictReader((report / "association.csv").read_text().splitlines()))
    assert [(r["experiment"], r["association"]) for r in assoc] == [
        (e, a) for e in experiments for a in ("own", "oracle")]
    for r in assoc:
        sub = "" if r["association"] == "own" else "oracle/"
        m = json.loads((workdir / "runs/synth" / r["experiment"] / "valid" / sub / "metrics.json").read_text())
        assert float(r["AP"]) == pytest.approx(m["AP"], abs=1e-4)
        assert float(r["AssA"]) == pytest.approx(m["AssA"], abs=1e-4)
    oracle = json.loads((workdir / "runs/synth" / experiments[0] / "valid/oracle/results.json").read_text())
    assert oracle and oracle != json.loads((workdir / "runs/synth" / experiments[0] / "valid/results.json").read_text())
    for e in experiments:
        assert (workdir / "runs" / "synth" / e / "model.pt").stat().st_size > 0
    ablations = workdir / "reports" / "synth" / "ablations"
    assert (ablations / "fig3.png").read_bytes()[:4] == b"\x89PNG"
    fig = list(csv.DictReader((ablations / "fig3.csv").read_text().splitlines()))
    assert [r["N_f^eval"] for r in fig] == ["1", "3"]
    t6 = list(csv.DictReader((ablations / "table6.csv").read_text().splitlines()))
    online_nf1 = json.loads((workdir / "runs/synth" / experiments[0] / "valid/nf1/metrics.json").read_text())
    assert float(t6[0]["AP"]) == pytest.approx(online_nf1["AP"], abs=1e-4)
    assert (workdir / "cache" / "synth" / "valid" / f"{cfg['datasets']['synth']['detector']}.zarr").is_dir()
    # a second run has nothing to do
    again = run_snakemake(workdir, "-n", "quickstart", "ablations", config=cfg)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout


@pytest.mark.slow
def test_tiny_compare_matches_per_seed_evaluation(tiny_run):
    """The compare target: per-seed AP equal to evaluating each seeded results file, seed 0
    trained by --seed equal to the yaml's seed 0, seed 1 a different model."""
    from genvis.model.checkpoint import load_model
    from genvis.data.results import read_results
    from genvis.data.ytvis import load_vis_json
    from genvis.evaluate.ytvis_eval import evaluate

    workdir, cfg = tiny_run
    c = cfg["comparisons"]["tiny"]
    rec = json.loads((workdir / "reports/comparisons/tiny.json").read_text())
    assert (workdir / "reports/comparisons/tiny.png").read_bytes()[:4] == b"\x89PNG"
    gt = load_vis_json(workdir / "data/synth/synth/valid.json")
    for side in ("a", "b"):
        aps = [evaluate(gt, read_results(workdir / f"runs/synth/{c[side]}/seeds/s{s}/valid/results.json", gt))["AP"]
               for s in c["seeds"]]
        assert [x if x is None else pytest.approx(x, abs=1e-4) for x in rec[f"{side}_ap"]] == aps
    assert rec["n_boot"] == 20 and len(rec["draws"]) == 20 and rec["label_a"] == c["a"]
    plain, _ = load_model(workdir / f"runs/synth/{c['a']}/model.pt")
    s0, meta0 = load_model(workdir / f"runs/synth/{c['a']}/seeds/s0/model.pt")
    s1, meta1 = load_model(workdir / f"runs/synth/{c['a']}/seeds/s1/model.pt")
    assert meta0["experiment"]["train"]["seed"] == 0 and meta1["experiment"]["train"]["seed"] == 1
    assert all(torch.equal(t, s0.state_dict()[n]) for n, t in plain.state_dict().items())
    assert not all(torch.equal(t, s1.state_dict()[n]) for n, t in plain.state_dict().items())


@pytest.mark.slow
def test_tiny_diagnose_scores_the_compare_models_under_every_association(tiny_run):
    """The diagnose target: the 'own' rows are the compare target's per-seed APs; the MinVIS and
    oracle rows come from re-running inference of the same seeded models."""
    workdir, cfg = tiny_run
    c = cfg["comparisons"]["tiny"]
    rec = json.loads((workdir / "reports/comparisons/tiny.json").read_text())
    diag = json.loads((workdir / "reports/comparisons/tiny.diagnosis.json").read_text())
    labels = [r["label"] for r in diag["rows"]]
    assert labels == [f"{c[s]} / {a}" for s in ("a", "b") for a in ("own", "minvis", "oracle")]
    rows = {r["label"]: r for r in diag["rows"]}
    for side in ("a", "b"):
        own = rows[f"{c[side]} / own"]["video_AP"]
        assert [x if x is None else pytest.approx(x, abs=1e-4) for x in rec[f"{side}_ap"]] == own
    assert diag["horizon"] == 3 and all("frame_AP_after" in r for r in diag["rows"])
    for assoc in ("minvis", "oracle"):   # genvis infer reports the association it used
        log = (workdir / f"logs/synth/{c['a']}/seeds/s1/valid/infer_{assoc}.log").read_text()
        assert f"association {assoc})" in log
    md = (workdir / "reports/comparisons/tiny.diagnosis.md").read_text()
    table, ranges = md.split("\n\n", 1)
    assert table.count("\n") == 1 + len(labels) and "frames 3+" in table
    assert ranges.startswith("Frame AP by frame range") and ranges.count("\n| ") == 1 + len(labels)
    assert diag["bins"][0] == [0, 3] and all(len(r["frame_AP_bins"]) == len(diag["bins"]) for r in diag["rows"])
    assert (workdir / "reports/comparisons/tiny.diagnosis.png").read_bytes()[:4] == b"\x89PNG"
    # contact sheets of the first seed of both sides on the longest valid videos
    from genvis.commands.visualize import longest_videos
    from genvis.data.ytvis import load_vis_json

    longest = longest_videos(load_vis_json(workdir / "data/synth/synth/valid.json"), 3)
    assert 1 <= len(longest) <= 3
    for side in ("a", "b"):
        sheets = workdir / "reports/comparisons/tiny.videos" / c[side]
        assert sorted(p.name for p in sheets.iterdir()) == sorted(f"video_{v}.png" for v in longest)
        assert all(p.read_bytes()[:4] == b"\x89PNG" for p in sheets.iterdir())
    log = (workdir / "logs/comparisons/tiny.videos.log").read_text()
    assert f"video {longest[0]}: " in log


@pytest.mark.slow
def test_stage_two_change_reruns_only_stage_two(tiny_run):
    workdir, cfg = tiny_run
    cfg = copy.deepcopy(cfg)
    cfg["datasets"]["synth"]["train_iterations"] += 1
    proc = run_snakemake(workdir, "-n", "quickstart", "ablations", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts.get("train") == len(cfg["datasets"]["synth"]["experiments"])
    assert "extract" not in counts and "detector" not in counts and "synth" not in counts


@pytest.mark.slow
def test_resolution_change_reruns_extraction(tiny_run):
    workdir, cfg = tiny_run
    cfg = copy.deepcopy(cfg)
    det = cfg["datasets"]["synth"]["detectors"][cfg["datasets"]["synth"]["detector"]]
    det["min_size"] = 96
    det["max_size"] = 96
    proc = run_snakemake(workdir, "-n", "quickstart", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts.get("extract") == 2  # train and valid caches
    assert "detector" not in counts and "synth" not in counts


@pytest.mark.slow
def test_detector_change_reruns_detector_and_extraction(tiny_run):
    workdir, cfg = tiny_run
    cfg = copy.deepcopy(cfg)
    cfg["datasets"]["synth"]["detectors"][cfg["datasets"]["synth"]["detector"]]["train"]["iterations"] += 1
    proc = run_snakemake(workdir, "-n", "quickstart", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts.get("detector") == 1 and counts.get("extract") == 2
    assert counts.get("train") == len(cfg["datasets"]["synth"]["experiments"])
    assert "synth" not in counts



@pytest.mark.slow
def test_tiny_idol_table1_runs_on_the_quickstart_caches_without_extraction(tiny_run):
    """After the quickstart, idol_table1 plans no synth / detector / extract job, and running
    it writes both tables with every row and the reproducing command."""
    workdir, cfg = tiny_run
    cfg = copy.deepcopy(cfg)
    online, semi = cfg["ablations"]["fig3"]["online"], cfg["ablations"]["fig3"]["semi_online"]
    for e in ("idol", "idol_contrastive", "idol_idhead"):
        cfg["experiments"][e] = DEFAULT_CONFIG["experiments"][e]
    rows = [r for r in DEFAULT_CONFIG["idol_table1"]["rows"] if "matching" in r]
    rows += [{"label": "GenVIS online", "experiment": online}, {"label": "GenVIS semi-online", "experiment": semi}]
    cfg["idol_table1"] = {"dataset": "synth", "split": "valid", "seeds": [0], "rows": rows}
    plan = run_snakemake(workdir, "-n", "idol_table1", config=cfg)
    assert plan.returncode == 0, plan.stderr[-3000:]
    counts = job_counts(plan.stdout)
    assert "extract" not in counts and "detector" not in counts and "synth" not in counts
    assert counts["train_seed"] == 3 and counts["infer_idol_variant"] == 5
    proc = run_snakemake(workdir, "--cores", "2", "idol_table1", config=cfg, timeout=900)
    if proc.returncode != 0:
        logs = "\n".join(f"== {p.relative_to(workdir)}\n{p.read_text()[-1500:]}"
                         for p in sorted((workdir / "logs").rglob("*idol*.log")))
        pytest.fail(f"idol_table1 failed:\n{proc.stderr[-4000:]}\n{logs}")
    md = (workdir / "reports" / "idol_table1.md").read_text()
    assert "snakemake --cores 2 idol_table1" in md and "+ temporal weighting (IDOL)" in md
    lines = (workdir / "reports" / "idol_table1.csv").read_text().splitlines()
    assert lines[0] == "# reproduce: snakemake --cores 2 idol_table1"
    table = list(csv.DictReader(lines[1:]))
    assert [r["method"] for r in table] == [r["label"] for r in rows]
    metrics = json.loads((workdir / "runs/synth/idol/seeds/s0/valid/idol-embeddings-on/metrics.json").read_text())
    assert float(table[4]["AP_mean"]) == pytest.approx(metrics["AP"], abs=1e-3)


def test_dask_options_reach_the_extract_and_infer_jobs(tmp_path):
    cfg = placeholder_config(tmp_path)
    cfg["resources"]["extract_workers"] = 2
    proc = run_snakemake(tmp_path, "-n", "-p", "runs/synth/minvis_nv1/valid/metrics.json", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    extract = [x for x in proc.stdout.splitlines() if "genvis extract " in x]
    assert extract and all(" --threads 1 --workers 2 " in x for x in extract)
    infer = next(x for x in proc.stdout.splitlines() if "genvis infer " in x)
    assert "--workers" not in infer and "--scheduler" not in infer
    cfg["dask_scheduler"] = "tcp://127.0.0.1:8786"
    proc = run_snakemake(tmp_path, "-n", "-p", "runs/synth/minvis_nv1/valid/metrics.json", config=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for tool in ("genvis extract ", "genvis infer "):
        line = next(x for x in lines if tool in x)
        assert " --scheduler tcp://127.0.0.1:8786 " in line and "--workers" not in line
    cfg["resources"]["extract_workers"] = 0
    proc = run_snakemake(tmp_path, "-n", "runs/synth/minvis_nv1/valid/metrics.json", config=cfg)
    assert proc.returncode != 0 and "extract_workers" in proc.stdout + proc.stderr


def test_detector_training_job_gets_its_own_threads_capped_at_cores(tmp_path):
    """resources.detector_train_threads (2 in the repository config) for the job that trains
    the detector, resources.threads (1) for extraction; --cores 1 caps the detector at 1."""
    cfg = placeholder_config(tmp_path)
    assert cfg["resources"]["detector_train_threads"] == 2 and cfg["resources"]["threads"] == 1
    for cores, want in (("2", 2), ("1", 1)):
        proc = run_snakemake(tmp_path, "-n", "-p", "--cores", cores, "quickstart", config=cfg)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = proc.stdout.splitlines()
        det = [s for s in lines if "genvis train-detector" in s]
        ext = [s for s in lines if "genvis extract" in s]
        assert len(det) == 1 and f"OMP_NUM_THREADS={want} " in det[0] and f"--threads {want} " in det[0]
        assert " --resume-interrupted " in det[0]   # a killed detector job continues
        assert ext and all("OMP_NUM_THREADS=1 " in s and "--threads 1 " in s for s in ext)
