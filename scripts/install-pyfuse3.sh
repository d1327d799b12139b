#!/usr/bin/env bash
# install-pyfuse3.sh VENV: install pyfuse3 3.5.0 with artifactfs's small patch into VENV.
#
# Why: a read-only mount answers the kernel's OPEN with ENOSYS, so the kernel stops sending
# OPEN and RELEASE for files (one daemon round trip each, per file and epoch) and keeps their
# pages cached. Every READ then carries file handle 0, and pyfuse3 3.5 hands read() only the
# handle, dropping the inode libfuse gives it. patches/pyfuse3-3.5.0-artifactfs.patch makes
# read() receive the inode when the handle is 0, and sets pyfuse3.NO_HANDLE_READ_GIVES_INODE,
# which the daemon checks at run time (a plain pyfuse3 keeps the open-per-file path). It
# also sends a read's reply without holding the GIL, so worker threads fetching and
# hashing run while up to a MiB is copied into the kernel; and it adds
# readdir_reply_unlinked, a listing entry by name, inode number and type alone, for which
# the kernel makes no dentry (a find over a million files then costs the kernel a third).
# Its session loop reads a request that is already waiting at once, and waits on the
# (now non-blocking) fd through trio only when none is: a lookup cost the daemon about
# 100 us of CPU, half of it in that wait.
# docs/architecture.md says more.
#
# The patched build is pinned: pyfuse3 3.5.0 from its sdist, Cython 3.2.4 (the version its
# sdist was generated with), built in a throw-away environment, installed as
# 3.5.0+artifactfs.N (which pyproject's pyfuse3==3.5.0 accepts). Safe to run again: an
# installed patched build is left alone.
set -euo pipefail
venv=$1
here=$(cd "$(dirname "$0")/.." && pwd)
version=3.5.0
local_version="$version+artifactfs.4"  # bump with every change to the patch
patch_file="$here/patches/pyfuse3-$version-artifactfs.patch"

if "$venv/bin/python" - "$local_version" <<'EOF' 2>/dev/null; then
import importlib.metadata, sys
import pyfuse3
ok = getattr(pyfuse3, "NO_HANDLE_READ_GIVES_INODE", False)
sys.exit(0 if ok and importlib.metadata.version("pyfuse3") == sys.argv[1] else 1)
EOF
    exit 0
fi

echo "building pyfuse3 $local_version (pyfuse3 $version with patches/$(basename "$patch_file"))"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/pip" download -q --no-deps --no-binary :all: "pyfuse3==$version" -d "$work"
tar -xzf "$work/pyfuse3-$version.tar.gz" -C "$work"
src="$work/pyfuse3-$version"
# git apply works outside a repository too, and refuses a patch that does not fit exactly
(cd "$src" && git apply --whitespace=nowarn "$patch_file")
python3 -m venv "$work/build"
"$work/build/bin/pip" install -q 'Cython==3.2.4' 'setuptools>=78.1.1' 'setuptools_scm>=8.0'
SETUPTOOLS_SCM_PRETEND_VERSION="$local_version" \
    "$work/build/bin/pip" wheel -q --no-deps --no-build-isolation -w "$work/dist" "$src"
# a plain pyfuse3 of the same version would be kept: take it out first (trio, its one
# dependency, is installed with it when missing)
"$venv/bin/pip" uninstall -q -y pyfuse3 2>/dev/null || true
"$venv/bin/pip" install -q "$work"/dist/pyfuse3-*.whl
"$venv/bin/python" -c 'import pyfuse3; assert pyfuse3.NO_HANDLE_READ_GIVES_INODE'
