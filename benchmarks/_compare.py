"""Running the same worker script against this checkout and an older commit (bench_train,
bench_inference; not a benchmark itself).

The older commit is extracted with ``git archive`` into a temporary folder; each worker runs
in a subprocess with ``PYTHONPATH`` set to the code under test, so both are measured by the
same script, on the same inputs, alternating, in one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def extract_commit(commit: str, parent: Path | None = None) -> Path:
    """``git archive COMMIT`` of this repository unpacked into a new temporary folder."""
    out = Path(tempfile.mkdtemp(prefix=f"genvis_{commit[:10]}_", dir=parent))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def run_worker(script: str, code: Path, args: list[str], nice: int = 0) -> dict:
    """Run ``benchmarks/<script>`` with genvis imported from ``code``; its last stdout line (json)."""
    env = dict(os.environ, PYTHONPATH=str(code))
    cmd = [sys.executable, str(HERE / script), *args]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} with {code} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
