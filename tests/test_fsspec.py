"""``artifact://`` through fsspec (artifactfs/sdk/fsspec_fs.py), on the embedded store and on
a real server (the ``transport`` fixture): the tree the mount shows, verified reads, and
writes that commit one version per transaction."""

from __future__ import annotations

import base64
import hashlib
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pandas as pd
import pytest
from helpers import make_tree, rand_bytes

from artifactfs.core.errors import DigestMismatch
from artifactfs.sdk import Artifact
from artifactfs.sdk.fsspec_fs import ArtifactFileSystem, TransactionRequired

BIG = rand_bytes(3 * (1 << 20) + 12345, seed=7)  # three chunks and a bit: chunked reads
CSV = b"a,b\n1,x\n2,y\n3,z\n"


@pytest.fixture
def fs_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The test's store (or server) as the process environment, as a notebook would have
    it: pandas makes its filesystem from the URL alone."""
    for key in [k for k in os.environ if k.startswith("ARTIFACTFS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("ARTIFACTFS_") or key == "HOME":
            monkeypatch.setenv(key, value)
    yield env
    ArtifactFileSystem.clear_instance_cache()


@pytest.fixture
def fs(fs_env: dict[str, str]) -> Iterator[ArtifactFileSystem]:
    fs = fsspec.filesystem("artifact")
    try:
        yield fs
    finally:
        fs.api.close()


@pytest.fixture
def saved(fs: ArtifactFileSystem, tmp_path: Path) -> Artifact:
    src = make_tree(tmp_path / "src", {"table.csv": CSV, "big.bin": BIG,
                                       "sub/deeper/n.txt": b"nested", "sub/m.txt": b"m"})
    art = Artifact("data", "dataset", api=fs.api)
    art.add_dir(src)
    art.aliases = ["best"]
    art.save("proj")
    return art


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_the_entry_point_names_the_filesystem(fs_env: dict[str, str]) -> None:
    assert fsspec.get_filesystem_class("artifact") is ArtifactFileSystem


def test_listings_follow_the_mount_layout(fs: ArtifactFileSystem, saved: Artifact) -> None:
    assert fs.ls("artifact://", detail=False) == ["proj"]
    assert fs.ls("proj", detail=False) == ["proj/dataset"]
    assert fs.ls("proj/dataset", detail=False) == [
        "proj/dataset/data:best", "proj/dataset/data:latest", "proj/dataset/data:v0"]
    top = fs.ls("artifact://proj/dataset/data:v0")
    assert [(o["name"], o["type"]) for o in top] == [
        ("proj/dataset/data:v0/big.bin", "file"), ("proj/dataset/data:v0/sub", "directory"),
        ("proj/dataset/data:v0/table.csv", "file")]
    assert top[0]["size"] == len(BIG) and top[0]["digest"] == _md5(BIG)
    # the short form and the entity's form name the same files
    assert fs.ls("proj/data:latest/sub", detail=False) == [
        "proj/data:latest/sub/deeper", "proj/data:latest/sub/m.txt"]
    assert fs.cat_file("local/proj/data:best/sub/m.txt") == b"m"
    assert fs.info("proj/data:latest")["version"] == "v0"
    assert fs.info("proj/data:latest")["digest"] == saved.digest


def test_info_exists_isdir_find_glob_checksum(fs: ArtifactFileSystem, saved: Artifact) -> None:
    assert fs.isdir("proj/data:v0/sub") and not fs.isdir("proj/data:v0/table.csv")
    assert fs.isfile("proj/data:v0/table.csv")
    assert fs.exists("proj/dataset") and not fs.exists("proj/model")
    assert not fs.exists("proj/data:v7/table.csv") and not fs.exists("proj/data:v0/nope")
    assert not fs.exists("nope") and not fs.exists("proj/data:v0/sub/nope/x")
    assert fs.find("proj/data:v0/sub") == ["proj/data:v0/sub/deeper/n.txt",
                                           "proj/data:v0/sub/m.txt"]
    assert fs.find("proj/data:v0", maxdepth=1) == ["proj/data:v0/big.bin",
                                                   "proj/data:v0/table.csv"]
    assert "proj/data:v0/sub/deeper" in fs.find("proj/data:v0", withdirs=True)
    assert fs.glob("artifact://proj/data:v0/**/*.txt") == [
        "proj/data:v0/sub/deeper/n.txt", "proj/data:v0/sub/m.txt"]
    assert fs.checksum("proj/data:v0/table.csv") == _md5(CSV)
    assert fs.checksum("proj/data:v0") == saved.digest
    with pytest.raises(FileNotFoundError, match="no artifact"):
        fs.info("proj/data:nosuch")
    with pytest.raises(FileNotFoundError, match="has type dataset, not model"):
        fs.info("local/proj/model/data:v0")


def test_random_access_reads_verified_ranges(fs: ArtifactFileSystem, saved: Artifact) -> None:
    with fs.open("proj/data:v0/big.bin", "rb") as f:
        f.seek(2 * (1 << 20) - 10)
        assert f.read(100) == BIG[2 * (1 << 20) - 10: 2 * (1 << 20) + 90]
        f.seek(-5, 2)
        assert f.read() == BIG[-5:]
    assert fs.cat_file("proj/data:v0/big.bin", start=10, end=20) == BIG[10:20]
    assert fs.cat_file("proj/data:v0/big.bin", start=-3) == BIG[-3:]
    assert fs.cat("proj/data:v0/table.csv") == CSV


def test_a_range_fetches_only_the_chunks_it_covers(fs: ArtifactFileSystem, saved: Artifact,
                                                   tmp_path: Path) -> None:
    cold = ArtifactFileSystem(cache_dir=str(tmp_path / "cold-cache"))  # nothing cached yet
    try:
        chunk = 1 << 20
        assert cold.cat_file("proj/data:v0/big.bin", start=chunk + 5, end=chunk + 50) == (
            BIG[chunk + 5: chunk + 50])
        fetched = cold.api.content.stats.bytes
        assert 0 < fetched <= chunk + 4096  # chunk 1 (and its index), not the 3 MiB file
        assert cold.cat_file("proj/data:v0/big.bin", start=chunk + 60, end=chunk + 70) == (
            BIG[chunk + 60: chunk + 70])
        assert cold.api.content.stats.bytes == fetched  # the same chunk: from the cache
    finally:
        cold.api.close()


@pytest.mark.parametrize("transport", ["embedded"])  # damages the store's blob folder
def test_a_damaged_blob_is_never_handed_out(fs: ArtifactFileSystem, saved: Artifact,
                                             tmp_path: Path, transport: str) -> None:
    blob = next(p for p in (tmp_path / "store").rglob("*")
                if p.is_file() and p.read_bytes() == CSV)
    blob.write_bytes(CSV.replace(b"x", b"q"))
    cold = ArtifactFileSystem(cache_dir=str(tmp_path / "cold-cache"))  # nothing cached yet
    try:
        with pytest.raises(DigestMismatch):
            cold.cat_file("proj/data:v0/table.csv")
    finally:
        cold.api.close()


def test_get_file_skips_a_file_whose_digest_matches(fs: ArtifactFileSystem, saved: Artifact,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    fs.get("proj/data:v0/", str(out), recursive=True)
    assert (out / "big.bin").read_bytes() == BIG
    assert (out / "sub" / "deeper" / "n.txt").read_bytes() == b"nested"
    before = fs.api.content.stats.as_dict()
    kept = out / "big.bin"
    mtime = kept.stat().st_mtime_ns
    fs.get_file("proj/data:v0/big.bin", str(kept))
    assert kept.stat().st_mtime_ns == mtime  # not written again
    assert fs.api.content.stats.as_dict() == before  # nor fetched
    (out / "table.csv").write_bytes(b"changed")
    fs.get_file("proj/data:v0/table.csv", str(out / "table.csv"))
    assert (out / "table.csv").read_bytes() == CSV


def test_writes_outside_a_transaction_are_refused(fs: ArtifactFileSystem,
                                                  saved: Artifact) -> None:
    with pytest.raises(TransactionRequired, match="needs a transaction"):
        fs.pipe_file("proj/data:latest/new.txt", b"x")
    with pytest.raises(TransactionRequired):
        fs.open("proj/data:latest/new.txt", "wb")
    with pytest.raises(TransactionRequired):
        fs.rm("proj/data:latest/table.csv")
    assert len(fs.api.artifacts(None, "proj/data")) == 1


def test_a_transaction_commits_one_version(fs: ArtifactFileSystem, saved: Artifact,
                                           tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(b"from a local file")
    with fs.transaction:
        fs.pipe_file("proj/data:best/piped.txt", b"piped")
        fs.put_file(str(local), "proj/data:best/put/local.bin")
        with fs.open("proj/data:best/opened.txt", "wb") as f:
            f.write(b"opened")
        fs.rm("proj/data:best/sub", recursive=True)
        # the transaction reads its own writes; the registry has nothing new yet
        assert fs.cat_file("proj/data:best/piped.txt") == b"piped"
        assert not fs.exists("proj/data:best/sub/m.txt")
        assert len(fs.api.artifacts(None, "proj/data")) == 1
        with pytest.raises(FileExistsError):
            fs.pipe_file("proj/data:best/piped.txt", b"again", mode="create")
    versions = fs.api.artifacts(None, "proj/data")
    assert [v.version for v in versions] == ["v0", "v1"]
    new = fs.api.artifact("proj/data:best")
    assert new.version == "v1" and "latest" in new.aliases
    assert sorted(e.path for e in new.manifest) == [
        "big.bin", "opened.txt", "piped.txt", "put/local.bin", "table.csv"]
    assert fs.cat_file("proj/data:v1/put/local.bin") == b"from a local file"
    assert fs.cat_file("proj/data:best/opened.txt") == b"opened"
    with pytest.raises(PermissionError, match="never changes"), fs.transaction:
        fs.pipe_file("proj/data:v0/x.txt", b"x")


def test_an_exception_in_a_transaction_commits_nothing(fs: ArtifactFileSystem,
                                                       saved: Artifact) -> None:
    with pytest.raises(RuntimeError, match="boom"), fs.transaction:
        fs.pipe_file("proj/data:latest/half.txt", b"half")
        raise RuntimeError("boom")
    assert len(fs.api.artifacts(None, "proj/data")) == 1
    assert not fs.exists("proj/data:latest/half.txt")


def test_a_new_artifact_needs_its_type(fs: ArtifactFileSystem, saved: Artifact) -> None:
    with pytest.raises(FileNotFoundError, match="needs its type"), fs.transaction:
        fs.pipe_file("proj/fresh:latest/a.txt", b"a")
    with fs.transaction:
        fs.pipe_file("proj/model/fresh:candidate/a.txt", b"a")
    art = fs.api.artifact("proj/fresh:candidate")
    assert art.type == "model" and art.version == "v0"
    assert fs.ls("proj", detail=False) == ["proj/dataset", "proj/model"]
    with pytest.raises(FileNotFoundError, match="has no alias nosuch"), fs.transaction:
        fs.pipe_file("proj/data:nosuch/a.txt", b"a")
    with pytest.raises(FileNotFoundError, match="has type dataset, not model"), fs.transaction:
        fs.pipe_file("proj/model/data:latest/a.txt", b"a")
    assert len(fs.api.artifacts(None, "proj/data")) == 1


def test_bad_paths_get_clear_errors(fs: ArtifactFileSystem, saved: Artifact) -> None:
    with pytest.raises(FileNotFoundError, match="NAME:vN or NAME:ALIAS"):
        fs.ls("proj/dataset/data")
    with pytest.raises(ValueError, match="project"):
        fs.ls("pr oj")
    with pytest.raises(IsADirectoryError):
        fs.cat_file("proj/data:v0/sub")
    with pytest.raises(TypeError, match="takes no option"):
        ArtifactFileSystem(nonsense=1)


def test_pandas_reads_csv_and_parquet_and_writes_parquet(fs: ArtifactFileSystem,
                                                         saved: Artifact) -> None:
    df = pd.read_csv("artifact://proj/data:latest/table.csv")
    assert df["a"].tolist() == [1, 2, 3] and df["b"].tolist() == ["x", "y", "z"]
    frame = pd.DataFrame({"n": range(1000), "s": [f"row{i}" for i in range(1000)]})
    with fs.transaction:
        frame.to_parquet("artifact://proj/data:latest/frame.parquet")
        frame.to_csv("artifact://proj/data:latest/frame.csv", index=False)
    assert fs.info("proj/data:latest")["version"] == "v1"
    back = pd.read_parquet("artifact://proj/dataset/data:v1/frame.parquet")
    pd.testing.assert_frame_equal(back, frame)
    assert pd.read_csv("artifact://proj/data:v1/frame.csv")["s"].iloc[-1] == "row999"


def test_a_changed_environment_gets_its_own_filesystem(fs: ArtifactFileSystem,
                                                       saved: Artifact, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert fsspec.filesystem("artifact") is fs  # pandas finds the one whose transaction is open
    monkeypatch.setenv("ARTIFACTFS_PROJECT", "other")
    other = fsspec.filesystem("artifact")
    try:
        assert other is not fs and other.api.config.project == "other"
    finally:
        other.api.close()


def test_storage_options_configure_it(fs_env: dict[str, str], tmp_path: Path) -> None:
    fs = ArtifactFileSystem(store=str(tmp_path / "elsewhere"), project="p", entity="e")
    try:
        config = fs.api.config
        assert (config.store_dir, config.project, config.entity) == (
            tmp_path / "elsewhere", "p", "e")
    finally:
        fs.api.close()


@pytest.mark.parametrize("transport", ["embedded"])  # it makes an embedded store of its own
def test_the_docs_whole_example_runs(tmp_path: Path, transport: str) -> None:
    """docs/fsspec.md promises its example runs as it is: run it, in a process of its own."""
    doc = (Path(__file__).parent.parent / "docs" / "fsspec.md").read_text()
    example = doc.split("## A whole example", 1)[1].split("```python\n", 1)[1].split("```")[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
    env["HOME"] = env["TMPDIR"] = str(tmp_path)  # its temporary folder goes with the test's
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__file__).parent.parent),
                                                    env.get("PYTHONPATH")] if p)
    done = subprocess.run([sys.executable, "-c", example], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "['demo/dataset/squares:latest', 'demo/dataset/squares:v0']"
    assert lines[1] == "30" and lines[2] and lines[-1] == "v1"


@pytest.mark.parametrize("transport", ["embedded"])
def test_a_pickled_filesystem_reads_in_another_process(fs: ArtifactFileSystem,
                                                      saved: Artifact, tmp_path: Path) -> None:
    """What Dask and Spark do with a filesystem: pickle it to a worker, whose environment
    need not name the store; the storage options do."""
    sent = ArtifactFileSystem(store=str(tmp_path / "store"),
                              cache_dir=str(tmp_path / "worker-cache"))
    try:
        assert pickle.loads(pickle.dumps(sent)) is sent  # the same process: the same one
        code = ("import pickle, sys\n"
                "fs = pickle.loads(sys.stdin.buffer.read())\n"
                "sys.stdout.buffer.write(fs.cat_file('proj/data:latest/table.csv'))\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
        env["HOME"] = str(tmp_path / "worker-home")
        done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(sent),
                              env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout == CSV
    finally:
        sent.api.close()


@pytest.mark.parametrize("transport", ["embedded"])  # a server's key is of one entity
def test_writes_to_another_entity_commit_there(fs: ArtifactFileSystem) -> None:
    with fs.transaction:
        fs.pipe_file("team/proj/model/net:latest/w.bin", b"weights")
    assert fs.cat_file("team/proj/model/net:v0/w.bin") == b"weights"
    assert fs.info("team/proj/net:latest")["version"] == "v0"  # ENTITY/PROJECT/NAME
    assert fs.ls("artifact://", detail=False) == []  # the configured entity has none
