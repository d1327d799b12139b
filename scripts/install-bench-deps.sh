#!/usr/bin/env bash
# Installs the Debian packages the peer benchmark (benchmarks/peers.py) needs, only those
# missing: nginx (serves the blobs and a browsable tree), rclone (the peer FUSE mount), fio
# (random reads) and curl (the network limit). Safe to run again: a second run installs nothing.
# The nginx package's own service is never started or enabled here: the benchmark runs its
# own nginx in the foreground, on loopback, with a config file in its work folder.
set -euo pipefail

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v rclone >/dev/null || need+=(rclone)
command -v fio >/dev/null || need+=(fio)
command -v curl >/dev/null || need+=(curl)

if [ ${#need[@]} -eq 0 ]; then
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
