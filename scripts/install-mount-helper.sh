#!/usr/bin/env bash
# install-mount-helper.sh VENV: make mount(8) find artifactfs's mount helper.
#
# For "mount -t fuse.artifactfs" and fstab lines of that type, util-linux's mount(8) runs
# /sbin/mount.fuse.artifactfs (it looks for mount.TYPE.SUBTYPE in /sbin, /sbin/fs.d and
# /sbin/fs before falling back to mount.fuse). That name is linked here to the console
# script pyproject.toml installs into VENV, so it runs VENV's Python and artifactfs. On
# Debian 12 and 13 /sbin is /usr/sbin (merged /usr), where the link goes. A link that
# already leads to this VENV is left alone; one to another checkout's, or a dangling one,
# is replaced (the last "make" wins); a file of another origin there is refused, not
# overwritten. Needs root; without it, says what to run and exits 0, since only mounting
# through mount(8) needs the link ("artifactfs mount" does not).
set -euo pipefail
venv=$(cd "$1" && pwd)
target="$venv/bin/mount.artifactfs"
link=/usr/sbin/mount.fuse.artifactfs
if [ ! -x "$target" ]; then
    echo "install-mount-helper.sh: $target is missing; install the project into $venv first" >&2
    exit 1
fi
if [ "$(readlink "$link" 2>/dev/null || true)" = "$target" ]; then
    exit 0
fi
if [ -e "$link" ] && [ ! -L "$link" ]; then
    echo "install-mount-helper.sh: $link exists and is not a link; left as it is" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "note: for mount -t fuse.artifactfs and fstab lines, run as root:" >&2
    echo "  ln -sfn $target $link" >&2
    exit 0
fi
ln -sfn "$target" "$link"
echo "mount helper: $link -> $target"
