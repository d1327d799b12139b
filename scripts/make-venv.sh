#!/usr/bin/env bash
# make-venv.sh VENV SPEC: create the virtual environment if needed, install SPEC into it.
set -euo pipefail
venv=$1 spec=$2
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
fi
"$venv/bin/pip" install -q -e "$spec"
"$venv/bin/python" -c 'import artifactfs, pyfuse3'
