#!/usr/bin/env bash
# Installs what the peer benchmark (benchmarks/peers.py) needs, only what is missing: the
# Debian packages nginx (serves the blobs and a browsable tree), rclone (the peer FUSE mount),
# fio (random reads) and curl (the network limit), and torch==2.13.0, CPU build, into the
# virtual environment (the DataLoader of workload 9, benchmarks/dataloader.py). Safe to run
# again: a second run installs nothing.
# The nginx package's own service is never started or enabled here: the benchmark runs its
# own nginx in the foreground, on loopback, with a config file in its work folder.
# torch is kept out of the project's test dependencies (pyproject.toml): it is large and only
# the benchmark uses it. pip finds the CPU wheel where this machine's pip configuration points.
#
#   scripts/install-bench-deps.sh [VENV]     # VENV defaults to .venv beside this script's folder
set -euo pipefail

VENV="${1:-$(cd "$(dirname "$0")/.." && pwd)/.venv}"
TORCH=torch==2.13.0

install_torch() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "no virtual environment at $VENV: run 'make venv' first (torch goes into it)" >&2
        return 1
    fi
    if "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
        return 0
    fi
    echo "installing $TORCH (CPU build) into $VENV"
    "$VENV/bin/pip" install -q "$TORCH"
}

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v rclone >/dev/null || need+=(rclone)
command -v fio >/dev/null || need+=(fio)
command -v curl >/dev/null || need+=(curl)

if [ ${#need[@]} -eq 0 ]; then
    install_torch
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "the peer benchmark needs these Debian packages: ${need[*]}" >&2
    echo "run as root, or: sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
echo "installing benchmark packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# Keep the package's service from starting during the install (containers have no init
# anyway); policy-rc.d is removed again whatever happens.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
install_torch
