"""The real wandb package, in a virtual environment of its own, run offline in a subprocess.

The environment is made by scripts/install-wandb-venv.sh (``make test`` runs it first; this
fixture runs it too, so ``pytest tests/interop`` works alone: a second run installs nothing).
It is at ``.venv-wandb`` beside the project, or where ``AFS_WANDB_VENV`` says.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SIDE = Path(__file__).with_name("wandb_side.py")

WandbRun = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def wandb_python() -> Path:
    venv = Path(os.environ.get("AFS_WANDB_VENV") or REPO / ".venv-wandb")
    subprocess.run([str(REPO / "scripts/install-wandb-venv.sh"), str(venv)], check=True,
                   timeout=600)
    return venv / "bin/python"


@pytest.fixture(scope="session")
def run_wandb(wandb_python: Path, tmp_path_factory: pytest.TempPathFactory) -> WandbRun:
    """``run_wandb(command, spec, *args)``: tests/interop/wandb_side.py's answer, offline.

    wandb writes its staging copies, cache and settings under WANDB_DATA_DIR,
    WANDB_CACHE_DIR, WANDB_CONFIG_DIR and HOME: all in a temporary folder of the session.
    """
    home = tmp_path_factory.mktemp("wandb-home")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WANDB_", "ARTIFACTFS_"))}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", HOME=str(home),
               WANDB_DATA_DIR=str(home / "data"), WANDB_CACHE_DIR=str(home / "cache"),
               WANDB_CONFIG_DIR=str(home / "config"), WANDB_DIR=str(home / "runs"))
    env.pop("PYTHONPATH", None)  # wandb's python must not import this checkout

    def run(command: str, spec: list[Any], *args: str,
            extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        """``extra_env``: more of wandb's environment (the AWS configuration of an S3
        service, say)."""
        spec_file = home / f"spec-{os.urandom(4).hex()}.json"
        spec_file.write_text(json.dumps(spec))
        proc = subprocess.run([str(wandb_python), str(SIDE), command, str(spec_file), *args],
                              env={**env, **(extra_env or {})}, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    return run
