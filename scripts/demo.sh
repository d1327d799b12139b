#!/usr/bin/env bash
# The walk-through behind `make demo`: an embedded store in ./demo-work, a sample dataset
# pushed, listed, downloaded and verified, then mounted and read with ordinary tools.
# Safe to run again: it starts from an empty ./demo-work each time.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/.venv/bin
work=$root/demo-work
mnt=$work/mnt

if [ -d "$mnt" ] && grep -q " $mnt fuse.artifactfs " /proc/mounts; then
    "$bin/artifactfs" umount "$mnt" || fusermount3 -uz "$mnt"
fi
rm -rf "$work"
mkdir -p "$work/data/images" "$mnt"

# the store, the cache, and the mount's log and staging (XDG_STATE_HOME, otherwise
# ~/.local/state/artifactfs): all in ./demo-work, so that nothing of the demo stays elsewhere
export ARTIFACTFS_STORE=$work/store ARTIFACTFS_CACHE_DIR=$work/cache XDG_STATE_HOME=$work/state
unset ARTIFACTFS_REGISTRY
cleanup() {
    if grep -q " $mnt fuse.artifactfs " /proc/mounts; then "$bin/artifactfs" umount "$mnt"; fi
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

"$bin/python" - "$work/data" <<'PY'
import csv, pathlib, random, sys
root = pathlib.Path(sys.argv[1])
rng = random.Random(7)
with open(root / "labels.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["image", "label"])
    for i in range(100):
        w.writerow([f"images/img-{i:03d}.bin", rng.choice(["cat", "dog", "bird"])])
for i in range(100):
    (root / "images" / f"img-{i:03d}.bin").write_bytes(rng.randbytes(2048))
(root / "README.md").write_text("A small sample dataset: 100 images and their labels.\n")
PY

echo "== an embedded registry in $ARTIFACTFS_STORE (no server) =="
step "$bin/artifactfs" push "$work/data" demo/pets --type dataset --alias first \
    --description "sample images with labels"
step "$bin/artifactfs" ls
step "$bin/artifactfs" ls demo
step "$bin/artifactfs" download demo/pets:latest --root "$work/download"
step "$bin/artifactfs" verify demo/pets:latest --root "$work/download"

echo
echo "== a second version from Python: only the changed file is stored again =="
step "$bin/python" - <<'PY'
import artifactfs, pathlib
art = artifactfs.Api().artifact("demo/pets:latest")
with art.new_file("README.md", mode="w") as f:
    f.write("A small sample dataset, now with a changed README.\n")
art.save()
print(art.qualified_name, "inherits", len(art.manifest) - 1, "unchanged files from v0")
PY
step "$bin/artifactfs" ls demo/pets

echo
echo "== mounted as folders: bytes are fetched and verified only when read =="
step "$bin/artifactfs" mount "$mnt"
step ls -l "$mnt/demo/dataset"
step ls -l "$mnt/demo/dataset/pets:latest"
step head -4 "$mnt/demo/dataset/pets:latest/labels.csv"
step sha256sum "$mnt/demo/dataset/pets:v0/README.md" "$mnt/demo/dataset/pets:v1/README.md"
step "$bin/python" - "$mnt" <<'PY'
import csv, sys
from collections import Counter
base = f"{sys.argv[1]}/demo/dataset/pets:latest"
with open(f"{base}/labels.csv") as f:
    labels = Counter(row["label"] for row in csv.DictReader(f))
with open(f"{base}/images/img-042.bin", "rb") as f:
    f.seek(1024)
    chunk = f.read(16)
print("labels:", dict(labels), "| 16 bytes of img-042 at offset 1024:", chunk.hex())
PY
step getfattr -d "$mnt/demo/dataset/pets:first"

echo
echo "== writing into an alias folder stages changes; save makes them a version =="
step cp "$work/data/labels.csv" "$mnt/demo/dataset/pets:latest/labels-copy.csv"
step rm "$mnt/demo/dataset/pets:latest/images/img-099.bin"
step "$bin/artifactfs" status "$mnt/demo/dataset/pets:latest"
step "$bin/artifactfs" save "$mnt/demo/dataset/pets:latest" -m "copy labels, drop img-099"
step "$bin/artifactfs" ls demo/pets
step "$bin/artifactfs" umount "$mnt"
echo
echo "Done. Everything lives in $work: the store in store/, the shared cache in cache/,"
echo "the mount's logs in state/artifactfs/logs/ and its staging in state/artifactfs/staging/."
echo "Run 'make demo' again to start over."
