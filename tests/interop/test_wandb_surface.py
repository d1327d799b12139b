"""Every public name of wandb's ``Artifact``, ``ArtifactManifest`` and ``ArtifactManifestEntry``
(wandb 0.31, from the real package) exists on artifactfs's, except those listed here with the
reason. A new wandb that adds a name fails this test until it is built or listed."""

from __future__ import annotations

import pytest
from conftest import WandbRun

from artifactfs import Artifact
from artifactfs.core.errors import InvalidRequest
from artifactfs.core.limits import check_tags
from artifactfs.sdk.entry import ArtifactManifestEntry
from artifactfs.sdk.manifest import ArtifactManifest

NOT_PROVIDED: dict[str, dict[str, str]] = {
    "Artifact": {
        "ttl": "a time-to-live needs a place in the schema and a deleter (docs/sdk.md)",
        "link": "links between collections (W&B's registry) are not kept (docs/sdk.md)",
        "unlink": "links between collections (W&B's registry) are not kept (docs/sdk.md)",
    },
    "ArtifactManifest": {},
    "ArtifactManifestEntry": {},
}
OURS = {"Artifact": Artifact, "ArtifactManifest": ArtifactManifest,
        "ArtifactManifestEntry": ArtifactManifestEntry}
# pydantic's own methods on wandb's manifest and entry models: not W&B's API
PYDANTIC = {"construct", "copy", "dict", "from_orm", "json", "parse_file", "parse_obj",
            "parse_raw", "schema", "schema_json", "update_forward_refs", "validate"}
# instance attributes of ours that dir() of the class does not show
INSTANCE = {"ArtifactManifestEntry": {"local_path", "skip_cache"},
            "ArtifactManifest": {"digest_algorithm", "storage_policy"}}


@pytest.mark.parametrize("cls", sorted(OURS))
def test_no_public_name_of_wandb_is_missing(run_wandb: WandbRun, cls: str) -> None:
    theirs = set(run_wandb("surface", [cls])[cls])
    theirs = {n for n in theirs if not n.startswith("model_") and n not in PYDANTIC}
    ours = set(dir(OURS[cls])) | INSTANCE.get(cls, set())
    missing = sorted(theirs - ours - set(NOT_PROVIDED[cls]))
    assert missing == [], f"wandb's {cls} has {missing}, which artifactfs's lacks"
    stale = sorted(set(NOT_PROVIDED[cls]) & ours)
    assert stale == [], f"{stale} are provided now: take them off NOT_PROVIDED"


TAG_CANDIDATES = [
    "resnet", "needs review", "two  spaces", "a-b_c", "ünïcode", "数据", "v1.2", "a,b",
    " lead", "trail ", "", "tab\tin", "semi;colon", "slash/ed", "x" * 256, "line\nbreak",
    "dup", "dup", "UPPER", "0", "-", "_",
]


def test_a_tag_is_what_wandb_takes_as_one(run_wandb: WandbRun) -> None:
    """artifactfs checks tags with W&B's rule: the same candidates pass and fail, and
    together they come back deduplicated in the same order."""
    theirs = run_wandb("tags", TAG_CANDIDATES)

    def ours_takes(tag: str) -> bool:
        try:
            check_tags([tag])
        except InvalidRequest:
            return False
        return True

    assert [t for t in TAG_CANDIDATES if ours_takes(t)] == theirs["valid"]
    assert check_tags(theirs["valid"]) == theirs["together"]
