"""``wandb-artifact://`` references through a real server: a key may commit references only
to versions its entity reads, and reading one needs read access to the target too."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from server.conftest import ENTITY, OTHER

from artifactfs import Api
from artifactfs.config import Config
from artifactfs.core.artifact_refs import UnresolvedReference
from artifactfs.core.digests import md5_b64
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.store import Store

DATA = b"the team's own bytes\n"


def ref_manifest(target_id: str, size: int = len(DATA)) -> dict[str, Any]:
    return {"version": 1, "storagePolicy": "wandb-storage-policy-v1",
            "storagePolicyConfig": {"storageLayout": "V2"},
            "contents": {"r.txt": {"digest": md5_b64(DATA), "size": size,
                                   "ref": f"wandb-artifact://{target_id}/f.txt"}}}


def api_for(reg: Any, key: str, entity: str, tmp_path: Path) -> Api:
    return Api(config=Config.from_env({
        "ARTIFACTFS_REGISTRY": reg.url, "ARTIFACTFS_API_KEY": key,
        "ARTIFACTFS_ENTITY": entity, "ARTIFACTFS_CACHE_DIR": str(tmp_path / f"cache-{entity}"),
        "HOME": str(tmp_path / "home")}))


def test_a_key_references_only_versions_its_entity_reads(registry: Any) -> None:
    target = registry.commit("p", "t", {"f.txt": DATA})
    missing = "0123456789abcdef01234567"
    answers = {}
    for who, client, target_id in (("other", registry.other, target["id"]),
                                   ("missing", registry.rw, missing)):
        r = client.post(registry.collection("p", "r", entity=OTHER if who == "other"
                                            else ENTITY) + "/versions",
                        json={"type": "dataset", "manifest": ref_manifest(target_id)})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["type"] == "UnresolvedReference", err
        answers[who] = err["message"].replace(target_id, "ID")
    # another entity's version reads as one that does not exist: nothing is learnt from it
    assert answers["other"] == answers["missing"]
    # the team's own key may, and W&B's size 0 is filled in with the target's
    r = registry.rw.post(registry.collection("p", "r") + "/versions",
                         json={"type": "dataset", "manifest": ref_manifest(target["id"], 0)})
    assert r.status_code == 201, r.text
    made = registry.rw.get(f"/versions/{r.json()['id']}/manifest").json()
    assert made["contents"]["r.txt"]["size"] == len(DATA)
    assert r.json()["size"] == len(DATA)


def test_reading_a_reference_needs_read_access_to_its_target(
        registry: Any, tmp_path: Path) -> None:
    """The store's owner (no key) may reference any entity's version; a key of the entity
    holding the referencing version then still cannot read through it what its entity
    may not read."""
    target = registry.commit("p", "t", {"f.txt": DATA})
    store = Store(registry.store)
    try:
        mine = b"other's own\n"
        store.blobs.put_stream(io.BytesIO(mine), md5_b64(mine))
        store.commit(entity=OTHER, project="p", name="r", type_="dataset", manifest=Manifest([
            ManifestEntry("r.txt", md5_b64(DATA), len(DATA),
                          ref=f"wandb-artifact://{target['id']}/f.txt"),
            ManifestEntry("own.txt", md5_b64(mine), len(mine))]))
    finally:
        store.db.close()
    team = api_for(registry, registry.rw_key, ENTITY, tmp_path)
    other = api_for(registry, registry.other_key, OTHER, tmp_path)
    try:
        art = other.artifact("p/r:latest")
        root = tmp_path / "dl"
        art.get_entry("own.txt").download(str(root))
        assert (root / "own.txt").read_bytes() == mine
        with pytest.raises(UnresolvedReference, match="not readable with this key"):
            art.get_entry("r.txt").download(str(root))
        assert not (root / "r.txt").exists()
        # the team's key reads the target (and, in its own entity, the reference would too)
        t = team.artifact("p/t:latest")
        assert Path(t.get_entry("f.txt").download(str(tmp_path / "t"))).read_bytes() == DATA
    finally:
        team.close()
        other.close()
