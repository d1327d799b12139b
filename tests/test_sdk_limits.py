"""The SDK refuses what the registry would refuse before it uploads anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from artifactfs.core.errors import ArtifactFSError
from artifactfs.sdk import Api, Artifact


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def blob_files(env: dict[str, str]) -> list[Path]:
    return [p for p in (Path(env["ARTIFACTFS_STORE"]) / "blobs").rglob("*") if p.is_file()]


@pytest.mark.parametrize(("field", "value", "said"), [
    ("metadata", _nested(500), "deep"),
    ("metadata", {"k": "x" * (2 << 20)}, "metadata"),
    ("description", "d" * (1 << 17), "description"),
    ("description", "bad \ud800 text", "surrogate"),
])
def test_a_save_the_registry_would_refuse_uploads_nothing(
    api: Api, tmp_path: Path, env: dict[str, str], field: str, value: object, said: str
) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"payload that must not be uploaded\n")
    art = Artifact("limits", "dataset", **{field: value})
    art._client = api
    art.add_file(str(src))
    with pytest.raises(ArtifactFSError, match=said):
        art.save(project="vision")
    assert blob_files(env) == []
    assert api.registry.list_projects("local") == []


def test_a_path_with_a_control_character_is_refused_before_upload(
    api: Api, tmp_path: Path, env: dict[str, str]
) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    art = Artifact("limits", "dataset")
    art._client = api
    art.add_file(str(src), name="a\x1bb.bin")
    with pytest.raises(ArtifactFSError, match=r"\\x1b"):
        art.save(project="vision")
    assert blob_files(env) == []
