#!/usr/bin/env bash
# make-venv.sh VENV SPEC: create the virtual environment if needed, install SPEC into it.
set -euo pipefail
venv=$1 spec=$2
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
fi
# pyfuse3 first, patched (scripts/install-pyfuse3.sh says why), so the project's pin finds it
"$(dirname "$0")/install-pyfuse3.sh" "$venv"
"$venv/bin/pip" install -q -e "$spec"
"$venv/bin/python" -c 'import artifactfs, pyfuse3'
