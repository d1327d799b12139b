#!/usr/bin/env bash
# install-wandb-venv.sh DIR: a virtual environment of its own at DIR with the real wandb
# package, for the interop tests (tests/interop/): they build artifacts with wandb.Artifact
# and load artifactfs's exports with wandb's own from_manifest_json, in a subprocess of
# DIR/bin/python, offline.
#
# Why its own environment: wandb pins protobuf, pydantic and a Go binary (wandb-core) of its
# own, none of which artifactfs needs or should be tested against by accident; kept apart, the
# project's .venv stays what a user installs. Pinned so a new wandb release cannot change what
# the tests check without a change here: wandb 0.31.0 (docs/wandb-format.md was checked
# against 0.29.0-0.31.0), boto3 at the project's own pin (wandb's s3:// references need it
# even with checksum=False). About 15 s from the package index's cache on 2 cores.
# Safe to run again: an environment that already has both pins is left alone.
set -euo pipefail
venv=${1:?usage: install-wandb-venv.sh DIR}
WANDB=wandb==0.31.0
BOTO3=boto3==1.44.5

have() {
    "$venv/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as m, sys
sys.exit(not (m.version("wandb") == "0.31.0" and m.version("boto3") == "1.44.5"))
PY
}

if [ -x "$venv/bin/python" ] && have; then
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
echo "installing $WANDB and $BOTO3 into $venv (the interop tests' own environment)"
"$venv/bin/pip" install -q "$WANDB" "$BOTO3"
have || { echo "install-wandb-venv.sh: $venv lacks $WANDB or $BOTO3 after installing" >&2; exit 1; }
