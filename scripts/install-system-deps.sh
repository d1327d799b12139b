#!/usr/bin/env bash
# Installs the Debian packages artifactfs needs, only those missing:
#   fuse3 (fusermount3), libfuse3-dev + pkg-config + gcc + Python headers (to build pyfuse3),
#   git (applies the project's pyfuse3 patch: scripts/install-pyfuse3.sh),
#   attr (getfattr/setfattr for the demo and tests), rsync (used by tests), nginx (the tests of
#   signed blob redirects run a private one; the package's own service is never started here),
#   postgresql (the store's tests on PostgreSQL start a private cluster of their own with its
#   initdb, found as /usr/lib/postgresql/<major>/bin: 15 on Debian 12, 17 on Debian 13; the
#   package's own service is never started here either, and no test touches its cluster),
#   mount (util-linux's mount(8) and umount(8): the tests mount through them, as fstab does),
#   systemd (systemd-analyze checks the unit templates of docs/mount.md; nothing is started).
#   chromium (the web view's browser tests drive it headless through Playwright: tests/test_web.py).
set -euo pipefail

need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
pkg-config --exists fuse3 2>/dev/null || need+=(libfuse3-dev pkg-config)
command -v gcc >/dev/null || need+=(gcc)
command -v git >/dev/null || need+=(git)
command -v getfattr >/dev/null || need+=(attr)
command -v rsync >/dev/null || need+=(rsync)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v mount >/dev/null || need+=(mount)
command -v systemd-analyze >/dev/null || need+=(systemd)
[ -x /usr/bin/chromium ] || need+=(chromium)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need+=(python3-dev)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)

if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "artifactfs needs these Debian packages: ${need[*]}" >&2
        echo "run as root, or: sudo apt-get install -y ${need[*]}" >&2
        exit 1
    fi
    echo "installing system packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # keep nginx's and postgresql's services from starting during the install (a container has no init anyway;
    # a server may have port 80 taken); a policy-rc.d made here is removed again
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    trap 'if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -e /dev/fuse ]; then
    echo "warning: /dev/fuse is missing; mounting will not work on this machine" >&2
fi
