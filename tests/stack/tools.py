"""Command-line tools the static tests run that are not Python packages of .venv.

checkov pins its own dependencies (boto3 among them) and would clash with the project's
.venv, so it lives in a venv of its own made by .ci/checkov.sh (the terraform test's
way: one checkov for the whole suite). `checkov_bin()` makes sure that venv exists
(the script installs it on first use and is a no-op after) and returns the executable,
for a test to run with the arguments it needs (`-d deploy`, `--framework ...`).
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

from tests.stack.ci import missing

REPO = Path(__file__).resolve().parents[2]
CHECKOV_SH = REPO / ".ci" / "checkov.sh"


def clean_env() -> dict[str, str]:
    """The environment for a tool from its own venv: nothing of this interpreter's
    (PYTHONPATH, PYTHONHOME, the activated VIRTUAL_ENV) may leak into it."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k not in drop}


@cache
def checkov_bin() -> Path:
    """The checkov executable of .ci/checkov.sh's venv ($CHECKOV_VENV, else
    .venv-checkov), installed on first use; `missing()` when it cannot be."""
    venv = Path(os.environ.get("CHECKOV_VENV") or REPO / ".venv-checkov")
    try:
        # `--version` goes through the script's install step, then checkov prints its
        # version and exits: nothing is scanned.
        run = subprocess.run(
            ["bash", str(CHECKOV_SH), "--version"],
            cwd=REPO,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
    except FileNotFoundError:
        missing("bash", "checkov is installed by .ci/checkov.sh")
    if run.returncode == 70:
        missing("checkov", f"bash .ci/checkov.sh could not install it: {run.stderr[-800:]}")
    assert run.returncode == 0, f"checkov --version failed ({run.returncode}): {run.stderr}"
    binary = venv / "bin" / "checkov"
    assert binary.is_file(), f".ci/checkov.sh ran but {binary} does not exist"
    return binary
