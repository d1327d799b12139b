"""``artifactfs import`` and ``export`` without the wandb package: what each refuses, and why
nothing is committed then (tests/interop/ checks both against the real wandb package)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import make_tree
from test_cli import embedded_only, ok, refused

from artifactfs import Api, Artifact
from artifactfs.core.digests import artifact_digest, md5_b64
from artifactfs.core.errors import InvalidManifest
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.posix import symlink_entry
from artifactfs.sdk.wandb_io import plan_import

Run = Callable[..., subprocess.CompletedProcess[str]]

FILES = {"a.txt": b"hello\n", "empty.bin": b"", "sub/b.txt": b"world"}
# docs/wandb-format.md §3: the three files' artifact digest, computed by wandb 0.31
W_DIGEST = "7b3aacded2e9ac3d284f56f37fb8a278"


def wandb_json(files: dict[str, bytes], **more: dict[str, Any]) -> dict[str, Any]:
    """What wandb's to_manifest_json() writes for ``files`` (MD5), plus entries ``more``."""
    contents: dict[str, Any] = {
        p: {"digest": md5_b64(b), "size": len(b)} for p, b in files.items()
    }
    contents.update(more)
    return {"version": 1, "storagePolicy": "wandb-storage-policy-v1",
            "storagePolicyConfig": {"storageLayout": "V2"}, "contents": contents}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "root", FILES)


def write(tmp_path: Path, data: object, name: str = "manifest.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_the_documented_digest_is_kept(root: Path) -> None:
    plan = plan_import(wandb_json(FILES), root)
    assert plan.digest == W_DIGEST
    assert plan.manifest.digest() == W_DIGEST
    assert sorted(plan.local) == sorted(FILES)


def test_an_xxh128_artifact_is_told_by_its_entries(root: Path) -> None:
    """docs/wandb-format.md §3's vectors: W&B's JSON does not say the algorithm; an entry's
    extra.alg does, and each file is checked in it and given the MD5 naming its blob."""
    xxh = {"a.txt": "a7qGx+Bp9W1aELQ18cjknA==", "empty.bin": "maoG0wFHmNhgAcMkRo1Jfw==",
           "sub/b.txt": "+g04qbOCgNCJHkmFvbJYPg=="}
    data = wandb_json({}, **{p: {"digest": d, "size": len(FILES[p]), "extra": {"alg": "XXH128"}}
                             for p, d in xxh.items()})
    plan = plan_import(data, root)
    assert plan.digest_algorithm == "XXH128"
    assert plan.digest == "122caba8543812319f8ee487bf15c6a3"
    assert plan.manifest["a.txt"].extra == {"alg": "XXH128", "md5": md5_b64(b"hello\n")}
    # told otherwise, the same entries hash as wandb's MD5 loader would hash them
    assert plan_import(data, root, digest_algorithm="md5").digest == artifact_digest(xxh.items())
    (root / "a.txt").write_bytes(b"hellO\n")
    with pytest.raises(InvalidManifest, match=r"'a.txt'.*does not match its XXH128 digest"):
        plan_import(data, root)


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: (r / "a.txt").unlink(), r"entry 'a.txt': .*/a.txt is missing"),
    (lambda r: (r / "a.txt").write_bytes(b"jello\n"),
     r"entry 'a.txt': .*/a.txt does not match its MD5 digest sZRqySSS0jR8YjW00mERhA=="),
    (lambda r: (r / "sub/b.txt").write_bytes(b"world!"),
     r"entry 'sub/b.txt': .*/b.txt has 6 bytes, the manifest says 5"),
    (lambda r: (r / "sub/extra.txt").write_bytes(b"?"),
     r"holds 'sub/extra.txt', which the manifest does not list.*--ignore-extra"),
    (lambda r: os.symlink("a.txt", r / "link"), r"holds 'link', which the manifest does not"),
])
def test_a_folder_that_differs_is_refused_naming_the_entry(
    root: Path, change: Callable[[Path], None], message: str
) -> None:
    change(root)
    with pytest.raises(InvalidManifest, match=message):
        plan_import(wandb_json(FILES), root)


def test_extra_files_can_be_left_out(root: Path) -> None:
    (root / "notes.txt").write_text("mine")
    plan = plan_import(wandb_json(FILES), root, extra_files="ignore")
    assert plan.ignored == ["notes.txt"]
    assert "notes.txt" not in plan.manifest
    assert plan.digest == W_DIGEST


@pytest.mark.parametrize(("manifest", "message"), [
    ("{not json", r"manifest.json is not valid JSON"),
    ("[1, 2]", r"not a W&B manifest: not a JSON object"),
    ({"contents": {}}, r"has no 'version'"),
    ({**wandb_json({}), "version": 2}, r"manifest version 2;"),
    ({**wandb_json({}), "version": "1"}, r"manifest version '1';"),
    ({**wandb_json({}), "version": True}, r"manifest version true;"),
    ({**wandb_json({}), "storagePolicy": "other"}, r"storagePolicy 'other'"),
    ({**wandb_json({}), "storagePolicy": None}, r"storagePolicy null;"),
    ({**wandb_json({}), "contents": []}, r"'contents' must be a JSON object"),
    # W&B's loader takes these paths unchecked (docs/wandb-format.md §4); a download of them
    # would write outside its folder
    (wandb_json({"../x": b"up"}), r"entry path '../x' has an empty, '.' or '..' part"),
    (wandb_json({"/etc/x": b"abs"}), r"entry path '/etc/x' is absolute"),
    (wandb_json(FILES, **{"c.txt": {"size": 3}}), r"entry 'c.txt' has no digest"),
    (wandb_json(FILES, **{"c.txt": {"digest": md5_b64(b"c"), "size": -1}}),
     r"entry 'c.txt' has an invalid size -1"),
    (wandb_json(FILES, **{"c.txt": {"digest": md5_b64(b"c"), "size": 1,
                                          "extra": {"alg": "SHA1"}}}),
     r"entry 'c.txt' has digest algorithm 'SHA1'"),
    # a draft-to-draft reference: W&B rewrites it at upload, so no server's copy holds one
    (wandb_json(FILES, **{"r": {"digest": "d", "ref": "wandb-client-artifact://1/x"}}),
     r"entry 'r' has ref 'wandb-client-artifact://1/x'; a reference is a URI"),
])
def test_a_bad_manifest_is_refused(tmp_path: Path, root: Path, manifest: object,
                                   message: str) -> None:
    with pytest.raises(InvalidManifest, match=message):
        plan_import(write(tmp_path, manifest), root)


def test_the_servers_copy_loses_its_client_keys(root: Path) -> None:
    """The server's wandb_manifest.json (docs/wandb-format.md §1): sorted, every entry with
    size, skip_cache and the client's staging path; a reference with size 0."""
    data = wandb_json(FILES, **{"r.bin": {"digest": "https://h/r.bin", "ref": "https://h/r.bin",
                                          "size": 0}})
    for path, entry in data["contents"].items():
        entry["skip_cache"] = False
        entry["local_path"] = f"/home/u/.local/share/wandb/artifacts/staging/{path}"
    # wandb's download() fetches a file:// reference into the folder: left alone, not extra
    data["contents"]["refs/a.txt"] = {"digest": md5_b64(b"hello\n"), "size": 6,
                                      "ref": "file:///data/a.txt", "skip_cache": False}
    make_tree(root, {"refs/a.txt": b"hello\n"})
    plan = plan_import(data, root)
    for entry in plan.manifest:
        assert entry.unknown == {}
    assert plan.manifest["r.bin"].ref == "https://h/r.bin"
    assert plan.references == 2 and sorted(plan.local) == sorted(FILES)
    assert plan.digest == artifact_digest([*((p, md5_b64(b)) for p, b in FILES.items()),
                                           ("r.bin", "https://h/r.bin"),
                                           ("refs/a.txt", md5_b64(b"hello\n"))])


def test_storage_extra_keys_are_computed_again(tmp_path: Path) -> None:
    big = os.urandom(1536 * 1024)  # over a chunk: artifactfs gives it a chunk index
    root = make_tree(tmp_path / "root", {"big.bin": big, "run.sh": b"#!/bin/sh\n"})
    data = wandb_json({"big.bin": big, "run.sh": b"#!/bin/sh\n"})
    data["contents"]["big.bin"]["extra"] = {"chunkIndexSha256": "0" * 64, "note": "kept"}
    data["contents"]["run.sh"]["extra"] = {"mode": "0755"}
    plan = plan_import(data, root)
    extra = plan.manifest["big.bin"].extra
    assert extra["note"] == "kept"
    assert extra["chunkIndexSha256"] != "0" * 64 and len(extra["chunkIndexSha256"]) == 64
    assert plan.manifest["run.sh"].extra == {"mode": "0755"}


def test_a_symlink_entry_needs_that_link(root: Path) -> None:
    link = symlink_entry("sub/latest", "b.txt").to_dict()
    data = wandb_json(FILES, **{"sub/latest": link})
    with pytest.raises(InvalidManifest, match=r"entry 'sub/latest' is a symlink to 'b.txt'"):
        plan_import(data, root)
    os.symlink("b.txt", root / "sub/latest")
    plan = plan_import(data, root)
    assert "sub/latest" not in plan.local


def test_progress_is_shown_for_the_check_and_the_upload(api: Api, root: Path,
                                                         tmp_path: Path) -> None:
    seen: dict[str, list[int]] = {}

    def factory(label: str, total: int) -> Callable[[int], None]:
        seen[label] = [total]
        return seen[label].append

    api.progress = factory
    art = api.import_wandb(wandb_json(FILES), root, "interop/files", type="dataset",
                           aliases=["from-wandb"])
    assert art.digest == W_DIGEST and "from-wandb" in art.aliases
    total = sum(map(len, FILES.values()))
    assert seen["check files"][0] == total and sum(seen["check files"][1:]) == total
    assert seen["upload files"][0] == total and sum(seen["upload files"][1:]) == total
    written = api.export_wandb("interop/files:from-wandb", tmp_path / "out")
    assert written == tmp_path / "out.wandb_manifest.json"
    assert json.loads(written.read_text()) == wandb_json(dict(sorted(FILES.items())))


@embedded_only
def test_cli_refuses_in_one_line_and_commits_nothing(run_cli: Run, tmp_path: Path,
                                                     root: Path) -> None:
    manifest = write(tmp_path, wandb_json(FILES))
    (root / "sub/b.txt").write_bytes(b"World")
    err = refused(run_cli("import", str(manifest), str(root), "interop/x", "--type", "dataset"))
    assert err.count("\n") == 1 and "entry 'sub/b.txt'" in err
    bad = write(tmp_path, wandb_json({**FILES, "../x": b""}), "bad.json")
    err = refused(run_cli("import", str(bad), str(root), "interop/x", "--type", "dataset"))
    assert "entry path '../x'" in err
    assert "not found" in refused(run_cli("ls", "interop"))


@embedded_only
def test_export_then_import_keeps_the_digest(run_cli: Run, api: Api, tmp_path: Path,
                                             root: Path) -> None:
    """artifactfs's own round trip: what export writes, import takes back, and a reference
    stays a reference with its W&B keys."""
    art = Artifact("files", "dataset")
    art._client = api
    art.add_dir(root)
    art.manifest.add(ManifestEntry("data.tar", "abc123", 10, ref="s3://bucket/data.tar",
                                   extra={"etag": '"abc123"', "versionID": "v1"}))
    art.save(project="interop")
    out = tmp_path / "out" / "files"
    shown = ok(run_cli("export", "interop/files:v0", str(out))).stdout
    manifest_file = out.with_name("files.wandb_manifest.json")
    assert f"manifest: {manifest_file} (digest {art.digest})" in shown
    assert "ArtifactManifest.from_manifest_json" in shown
    assert sorted(p.name for p in out.rglob("*")) == ["a.txt", "b.txt", "empty.bin", "sub"]
    data = json.loads(manifest_file.read_text())
    assert data["contents"]["data.tar"] == {
        "digest": "abc123", "ref": "s3://bucket/data.tar", "size": 10,
        "extra": {"etag": '"abc123"', "versionID": "v1"}}
    done = ok(run_cli("import", str(manifest_file), str(out), "interop/again", "--type", "x"))
    assert done.stdout.strip() == "interop/again:v0"
    assert f"digest: {art.digest}" in done.stderr
    # exported again into the same folder: the files there are kept, the manifest rewritten
    ok(run_cli("export", "interop/again:v0", str(out)))


@embedded_only
def test_export_refuses_a_manifest_inside_the_folder_or_a_foreign_file(
        run_cli: Run, api: Api, tmp_path: Path, root: Path) -> None:
    art = Artifact("files", "dataset")
    art._client = api
    art.add_dir(root)
    art.save(project="interop")
    out = tmp_path / "out"
    err = refused(run_cli("export", "interop/files:v0", str(out),
                          "--manifest", str(out / "wandb_manifest.json")))
    assert "would be inside" in err
    assert not out.exists()
    make_tree(out, {"stale.txt": b"old"})
    err = refused(run_cli("export", "interop/files:v0", str(out)))
    assert "holds 'stale.txt', which local/interop/files:v0 does not have" in err
    assert not (tmp_path / "out.wandb_manifest.json").exists()


def test_an_empty_manifest_is_nothing_to_import(api: Api, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="nothing to import: the manifest lists no entries"):
        api.import_wandb(wandb_json({}), tmp_path / "empty", "interop/none", type="dataset")
    assert api.registry.list_projects(api.config.entity) == []
