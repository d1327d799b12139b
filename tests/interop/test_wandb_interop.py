"""artifactfs and the real wandb package (0.31.0, offline) agree on artifacts both ways.

wandb builds artifacts with its public API (MD5 and XXH128: files, folders, new_file,
file:// references with and without checksum, http and s3 references with checksum=False);
``artifactfs import`` takes them in as a user would and must commit wandb's own digest. The
other way, artifacts made by artifactfs are exported with ``artifactfs export`` and loaded
by wandb's ``ArtifactManifest.from_manifest_json``, which must give artifactfs's digest, and
wandb's own ``verify()`` must accept the exported folder.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import make_tree
from test_cli import embedded_only, ok

from artifactfs import Api, Artifact
from artifactfs.core.digests import md5_b64
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.posix import symlink_entry

Run = Callable[..., subprocess.CompletedProcess[str]]
WandbRun = Callable[..., dict[str, Any]]  # the run_wandb fixture (tests/interop/conftest.py)

ALGORITHMS = ("MD5", "XXH128")
BIG = random.Random(18).randbytes(1536 * 1024)  # over one chunk: artifactfs indexes it
FILES = {
    "a.txt": b"hello\n",
    "empty.bin": b"",
    "sub/b.txt": b"world",
    "big.bin": BIG,
    "donn\u00e9es/\u00e9t\u00e9.txt": b"non-ASCII paths sort by code point\n",
}


@pytest.fixture(scope="session")
def wandb_built(run_wandb: WandbRun, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, tuple[Path, str]]:
    """One MD5 and one XXH128 artifact made by wandb: name -> (its folder, wandb's digest).

    Each folder holds ``manifest.json`` (to_manifest_json()) and ``root/`` (its files)."""
    data = make_tree(tmp_path_factory.mktemp("wandb-src") / "data", FILES)
    ops: list[list[Any]] = [
        ["add_dir", {"local_path": str(data)}],
        ["add_dir", {"local_path": str(data / "sub"), "name": "copy"}],
        ["add_file", {"local_path": str(data / "a.txt"), "name": "named/a.txt"}],
        ["new_file", {"name": "notes/new.txt", "text": "made by new_file\n"}],
        ["add_reference", {"uri": (data / "a.txt").as_uri(), "name": "refs/a.txt"}],
        ["add_reference", {"uri": (data / "sub").as_uri(), "name": "refs/folder"}],
        ["add_reference", {"uri": (data / "a.txt").as_uri(), "name": "refs/unchecked",
                           "checksum": False}],
        ["add_reference", {"uri": "https://example.com/data/shard-0.tar", "checksum": False}],
        ["add_reference", {"uri": "s3://bucket/prefix/shard-1.tar", "checksum": False}],
    ]
    out = tmp_path_factory.mktemp("wandb-built")
    spec = [{"name": f"w-{alg.lower()}", "algorithm": alg, "ops": ops} for alg in ALGORITHMS]
    digests = run_wandb("build", spec, str(out))
    return {name: (out / name, d["digest"]) for name, d in digests.items()}


def contents(folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((folder / "manifest.json").read_text())["contents"]
    return result


def test_wandb_made_what_the_test_expects(wandb_built: dict[str, tuple[Path, str]]) -> None:
    """The artifacts hold every kind of entry the tests below are about."""
    md5, xxh = contents(wandb_built["w-md5"][0]), contents(wandb_built["w-xxh128"][0])
    assert md5["a.txt"] == {"digest": md5_b64(b"hello\n"), "size": 6}
    assert xxh["a.txt"] == {"digest": "a7qGx+Bp9W1aELQ18cjknA==", "size": 6,
                            "extra": {"alg": "XXH128"}}
    for manifest in (md5, xxh):
        assert manifest["refs/folder/b.txt"]["ref"].startswith("file://")
        assert manifest["refs/a.txt"]["digest"] == md5_b64(b"hello\n")  # MD5 in both
        assert manifest["shard-0.tar"] == {"digest": "https://example.com/data/shard-0.tar",
                                           "ref": "https://example.com/data/shard-0.tar"}
        # s3 with checksum=False: the key is the path (docs/wandb-format.md §5)
        assert manifest["prefix/shard-1.tar"]["ref"] == "s3://bucket/prefix/shard-1.tar"
        assert "notes/new.txt" in manifest and "copy/b.txt" in manifest


def test_wandb_artifacts_import_with_wandbs_digest_and_export_back(
    run_cli: Run, run_wandb: WandbRun, wandb_built: dict[str, tuple[Path, str]],
    tmp_path: Path,
) -> None:
    """wandb -> artifactfs import -> artifactfs export -> wandb: the digest never changes,
    references stay references, and wandb's verify() accepts the exported folder."""
    loads = []
    for name, (folder, digest) in wandb_built.items():
        done = ok(run_cli("import", str(folder / "manifest.json"), str(folder / "root"),
                          f"interop/{name}", "--type", "dataset", "--alias", "from-wandb"))
        assert done.stdout.strip() == f"interop/{name}:v0"
        assert f"digest: {digest}" in done.stderr
        listed = json.loads(ok(run_cli("ls", f"interop/{name}:from-wandb", "--json")).stdout)
        assert listed["version"]["digest"] == digest
        theirs, ours = contents(folder), listed["manifest"]["contents"]
        assert sorted(ours) == sorted(theirs)
        for path, entry in theirs.items():
            assert ours[path]["digest"] == entry["digest"], path
            assert ours[path].get("ref") == entry.get("ref"), path
            assert ours[path].get("extra", {}).get("alg") == entry.get("extra", {}).get("alg")
            assert "local_path" not in ours[path]
        out = tmp_path / "export" / name
        shown = ok(run_cli("export", f"interop/{name}:from-wandb", str(out))).stdout
        manifest_file = out.with_name(f"{name}.wandb_manifest.json")
        assert f"(digest {digest})" in shown
        loads.append({"name": name, "manifest": str(manifest_file),
                      "algorithm": "XXH128" if "xxh" in name else "MD5", "root": str(out)})
    loaded = run_wandb("load", loads)
    for name, (folder, digest) in wandb_built.items():
        assert loaded[name]["digest"] == digest
        assert loaded[name]["verified"] == "ok"
        theirs = contents(folder)
        for path, entry in loaded[name]["entries"].items():
            assert entry["digest"] == theirs[path]["digest"]
            assert entry.get("ref") == theirs[path].get("ref")
            assert entry.get("extra") == theirs[path].get("extra"), path


@embedded_only
def test_the_servers_copy_of_the_manifest_imports_with_the_same_digest(
    run_cli: Run, wandb_built: dict[str, tuple[Path, str]], tmp_path: Path,
) -> None:
    """What a W&B server keeps (docs/wandb-format.md §1, written by wandb-core): contents
    sorted, every entry with size (0 on references), skip_cache and the client's staging
    path. Those keys are dropped; the digest is the client's."""
    for name, (folder, digest) in wandb_built.items():
        data = json.loads((folder / "manifest.json").read_text())
        served = {}
        for path in sorted(data["contents"]):
            entry = dict(data["contents"][path])
            entry.setdefault("size", 0)
            entry["skip_cache"] = False
            if "ref" not in entry:
                entry["local_path"] = f"/home/u/.local/share/wandb/artifacts/staging/{path}"
            served[path] = entry
        data["contents"] = served
        manifest = tmp_path / f"{name}.json"
        manifest.write_text(json.dumps(data, sort_keys=True))
        done = ok(run_cli("import", str(manifest), str(folder / "root"),
                          f"interop/{name}-served", "--type", "dataset"))
        assert f"digest: {digest}" in done.stderr
        listed = json.loads(ok(run_cli("ls", f"interop/{name}-served:v0", "--json")).stdout)
        for entry in listed["manifest"]["contents"].values():
            assert "local_path" not in entry and "skip_cache" not in entry


def artifactfs_made(api: Api, tmp_path: Path, algorithm: str) -> Artifact:
    """An artifact made by artifactfs: files (one chunk-indexed) and references."""
    kwargs = {} if algorithm == "MD5" else {"digest_algorithm": algorithm}
    art = Artifact(f"a-{algorithm.lower()}", "model", **kwargs)
    art._client = api
    art.add_dir(make_tree(tmp_path / f"src-{algorithm}", FILES))
    for entry in (
        ManifestEntry("refs/a.txt", md5_b64(b"hello\n"), 6,
                      ref=(tmp_path / f"src-{algorithm}/a.txt").as_uri()),
        ManifestEntry("refs/page.html", "d41d8cd98f00b204e9800998ecf8427e", 120,
                      ref="https://example.com/page.html",
                      extra={"etag": '"d41d8cd98f00b204e9800998ecf8427e"'}),
        ManifestEntry("refs/shard.tar", "9b2cf535f27731c974343645a3985328", 4096,
                      ref="s3://bucket/shards/shard.tar",
                      extra={"etag": "9b2cf535f27731c974343645a3985328", "versionID": "3"}),
        ManifestEntry("refs/unchecked.bin", "https://example.com/u.bin", 0,
                      ref="https://example.com/u.bin"),
    ):
        art.manifest.add(entry)
    return art.save(project="interop")


def test_artifactfs_exports_load_in_wandb_with_the_same_digest(
    run_cli: Run, run_wandb: WandbRun, api: Api, tmp_path: Path,
) -> None:
    loads, digests = [], {}
    for algorithm in ALGORITHMS:
        art = artifactfs_made(api, tmp_path, algorithm)
        assert art.manifest["big.bin"].chunk_index_sha256 is not None
        out = tmp_path / "export" / algorithm
        ok(run_cli("export", f"interop/{art.name}", str(out)))
        digests[algorithm] = art.digest
        loads.append({"name": algorithm, "algorithm": algorithm, "root": str(out),
                      "manifest": str(out.with_name(f"{algorithm}.wandb_manifest.json"))})
    # a symlink (a mount's save makes them; here an import of one): wandb has none, so it
    # loads the entry with its digest but its verify() hashes what the link points to
    root = make_tree(tmp_path / "linked", {"v2/model.bin": b"weights"})
    (root / "latest").symlink_to("v2/model.bin")
    link = symlink_entry("latest", "v2/model.bin")
    linked = api.import_wandb(
        {"version": 1, "storagePolicy": "wandb-storage-policy-v1", "storagePolicyConfig": {},
         "contents": {"latest": link.to_dict(),
                      "v2/model.bin": {"digest": md5_b64(b"weights"), "size": 7}}},
        root, "interop/linked", type="model")
    out = tmp_path / "export" / "linked"
    ok(run_cli("export", "interop/linked:v0", str(out)))
    assert (out / "latest").is_symlink()
    loads.append({"name": "linked", "algorithm": "MD5", "root": str(out),
                  "manifest": str(out.with_name("linked.wandb_manifest.json"))})
    loaded = run_wandb("load", loads)
    assert loaded["linked"]["digest"] == linked.digest
    assert loaded["linked"]["entries"]["latest"]["extra"] == {"symlink": "v2/model.bin"}
    assert loaded["linked"]["verified"] == "Digest mismatch for file: latest"
    for algorithm in ALGORITHMS:
        result = loaded[algorithm]
        assert result["digest"] == digests[algorithm]
        assert result["verified"] == "ok"
        entries = result["entries"]
        # how artifactfs stores the bytes stays out; what the file is, stays in
        assert "chunkIndexSha256" not in json.dumps(entries)
        assert '"md5"' not in json.dumps(entries)
        alg = entries["a.txt"].get("extra", {}).get("alg")
        assert alg == (None if algorithm == "MD5" else "XXH128")
        assert entries["refs/shard.tar"]["extra"] == {
            "etag": "9b2cf535f27731c974343645a3985328", "versionID": "3"}
        assert entries["refs/unchecked.bin"]["ref"] == "https://example.com/u.bin"
