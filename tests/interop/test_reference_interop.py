"""``add_reference`` makes the entries the real wandb package (0.31.0) makes for the same
calls (docs/wandb-format.md, section 5): wandb builds them offline in its own environment,
artifactfs builds them here, and each entry (path, digest, ref, size, extra) and the
artifact digest must agree, in MD5 and XXH128 artifacts. The http(s) source is a real
server on loopback (tests/refsources.py), which wandb reads with its own GET.

One difference is deliberate and checked as such: an http(s) object without an ETag gets
the MD5 of its body here, where wandb stores its URL (issue 18)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import make_tree
from refsources import HttpSource, serving
from seaweed import SeaweedS3

from artifactfs import Artifact
from artifactfs.core.digests import artifact_digest, md5_b64

WandbRun = Callable[..., dict[str, Any]]
FILES = {"a.txt": b"hello\n", "empty.bin": b"", "sub/b.txt": b"world"}


@pytest.fixture
def http_source() -> Iterator[HttpSource]:
    with serving() as source:
        yield source


def test_add_reference_makes_wandbs_entries(run_wandb: WandbRun, tmp_path: Path,
                                            http_source: HttpSource) -> None:
    data = make_tree(tmp_path / "data", FILES)
    tagged = http_source.put("/models/w.bin", b"weights" * 100, etag='"w-1"')
    untagged = http_source.put("/plain.txt", b"no etag\n")
    calls: list[dict[str, Any]] = [
        {"uri": (data / "a.txt").as_uri()},
        {"uri": (data / "a.txt").as_uri(), "name": "named/a.txt"},
        {"uri": data.as_uri(), "name": "tree"},
        {"uri": (data / "sub/b.txt").as_uri(), "name": "unchecked.txt", "checksum": False},
        {"uri": tagged},
        {"uri": tagged, "name": "w-unchecked.bin", "checksum": False},
        {"uri": "s3://bucket/prefix/shard-1.tar", "checksum": False},
        {"uri": untagged, "name": "plain.txt"},
    ]
    out = tmp_path / "wandb"
    # one run of wandb for both algorithms: its start is most of this test's time
    run_wandb("build", [{"name": f"refs-{alg}", "algorithm": alg,
                         "ops": [["add_reference", c] for c in calls]}
                        for alg in ("MD5", "XXH128")], str(out))
    for algorithm in ("MD5", "XXH128"):
        theirs = json.loads((out / f"refs-{algorithm}/manifest.json").read_text())["contents"]
        check_against(theirs, calls, algorithm, data, untagged)


def check_against(theirs: dict[str, Any], calls: list[dict[str, Any]], algorithm: str,
                  data: Path, untagged: str) -> None:
    art = Artifact("refs", "dataset", digest_algorithm=algorithm)
    for call in calls:
        art.add_reference(**call)
    ours = json.loads(art.manifest.to_json())["contents"]
    assert sorted(ours) == sorted(theirs)
    for path, entry in theirs.items():
        mine = ours[path]
        if path == "plain.txt":  # the deliberate difference: the MD5 of the body
            assert entry["digest"] == untagged and mine["digest"] == md5_b64(b"no etag\n")
            continue
        assert (mine["digest"], mine.get("ref"), mine.get("extra")) == (
            entry["digest"], entry.get("ref"), entry.get("extra")), (algorithm, path)
        # wandb writes no size where it has none (checksum=False over http or s3): 0 here
        assert mine["size"] == entry.get("size", 0), (algorithm, path)
    assert theirs["w.bin"]["extra"] == {"etag": '"w-1"'}  # what wandb itself wrote
    assert theirs["tree/sub/b.txt"]["ref"] == (data / "sub/b.txt").as_uri()
    # the artifact digest agrees once the one deliberate difference is left out
    art.remove("plain.txt")
    del theirs["plain.txt"]
    assert art.manifest.digest() == artifact_digest(
        [(p, e["digest"]) for p, e in theirs.items()], algorithm)


def test_add_reference_of_s3_makes_wandbs_entries(
        run_wandb: WandbRun, seaweed: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """An object, a prefix (an empty object under it skipped) and a versioned bucket's
    object, read by wandb's own boto3 and by artifactfs's from the same AWS configuration
    (SeaweedFS's S3 gateway)."""
    s3 = seaweed.client()
    prefix = f"interop-{secrets.token_hex(4)}"
    bucket = f"interop-versioned-{secrets.token_hex(4)}"
    for key, body in {"a.bin": b"A" * 3000, "sub/b.bin": b"B" * 10, "empty": b""}.items():
        s3.put_object(Bucket=seaweed.bucket, Key=f"{prefix}/{key}", Body=body)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="v.bin", Body=b"first")
    s3.put_object(Bucket=bucket, Key="v.bin", Body=b"second")
    calls: list[dict[str, Any]] = [
        {"uri": f"s3://{seaweed.bucket}/{prefix}/a.bin"},
        {"uri": f"s3://{seaweed.bucket}/{prefix}/a.bin", "name": "named.bin"},
        {"uri": f"s3://{seaweed.bucket}/{prefix}", "name": "all"},
        {"uri": f"s3://{bucket}/v.bin"},
    ]
    out = Path(seaweed.folder) / f"wandb-{prefix}"
    run_wandb("build", [{"name": "s3", "algorithm": "MD5",
                         "ops": [["add_reference", c] for c in calls]}], str(out),
              extra_env=seaweed.env)
    theirs = json.loads((out / "s3/manifest.json").read_text())["contents"]
    for name, value in seaweed.env.items():
        monkeypatch.setenv(name, value)
    art = Artifact("s3", "dataset")
    for call in calls:
        art.add_reference(**call)
    ours = json.loads(art.manifest.to_json())["contents"]
    assert sorted(ours) == sorted(theirs) == ["a.bin", "all/a.bin", "all/sub/b.bin",
                                              "named.bin", "v.bin"]
    for path, entry in theirs.items():
        assert ours[path] == entry, path
    assert "versionID" in theirs["v.bin"]["extra"]  # wandb found the bucket versioned too
