"""What keeps a manifest of a million entries small in memory, and that it changes nothing else.

An entry read without ``extra`` or unknown keys shares one read-only empty mapping for both
(two dicts each were 164 MB at ImageNet's 1.28 million entries), and ``from_json`` empties
each parsed entry object once it is read, so the JSON and the manifest are not both whole
in memory. These check the behaviour around that: the same manifest comes out, the shared
mapping cannot be changed by accident, an entry can still be given extra keys, and a dict
handed to ``from_dict`` is left as it was unless it is given up with ``consume``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from artifactfs.core.errors import InvalidManifest
from artifactfs.core.manifest import Manifest, ManifestEntry

HELLO = "XUFAKrxLKna5cZ2REBfFkg=="


def raw_manifest() -> dict[str, Any]:
    return {
        "version": 1, "storagePolicy": "wandb-storage-policy-v1",
        "storagePolicyConfig": {"storageLayout": "V2"},
        "contents": {
            "n01/n01_1.JPEG": {"digest": HELLO, "size": 5},
            "n01/n01_2.JPEG": {"digest": HELLO, "size": 5},
            "n02/n02_1.JPEG": {"digest": HELLO, "size": 5, "extra": {"mode": "0755"}},
            "n02/n02_2.JPEG": {"digest": HELLO, "size": 5, "localPath": "/x"},
            "n02/n02_3.JPEG": {"digest": HELLO, "size": 5, "extra": {}},
        },
    }


def test_plain_entries_share_one_read_only_mapping() -> None:
    m = Manifest.from_json(json.dumps(raw_manifest()))
    a, b = m["n01/n01_1.JPEG"], m["n01/n01_2.JPEG"]
    assert a.extra is b.extra is a.unknown  # no dict of their own
    assert a.extra == {} and not a.extra and a.unknown == {}
    with pytest.raises(TypeError):
        a.extra["mode"] = "0755"  # type: ignore[index]
    assert b.extra == {}
    a.extra = {"mode": "0755"}  # an entry is given extra keys by a dict of its own
    assert a.extra == {"mode": "0755"} and b.extra == {}
    assert m["n02/n02_3.JPEG"].extra == {}  # an empty extra reads as none


def test_entries_with_keys_keep_their_own() -> None:
    m = Manifest.from_json(json.dumps(raw_manifest()))
    with_extra = m["n02/n02_1.JPEG"]
    assert with_extra.extra == {"mode": "0755"} and with_extra.unknown == {}
    with_extra.extra["note"] = "own dict"
    assert m["n01/n01_1.JPEG"].extra == {}
    assert m["n02/n02_2.JPEG"].unknown == {"localPath": "/x"}


def test_the_same_manifest_comes_out() -> None:
    raw = raw_manifest()
    text = json.dumps(raw)
    parsed = Manifest.from_json(text)
    kept = Manifest.from_dict(copy.deepcopy(raw))
    assert parsed.to_json() == kept.to_json()
    assert parsed.digest() == kept.digest()
    assert [e.path for e in parsed] == list(raw["contents"])
    # written and read again, it stays the same; a copy has mutable dicts of its own
    again = Manifest.from_json(parsed.to_json())
    assert again.to_json() == parsed.to_json()
    dup = again.copy()
    dup["n01/n01_1.JPEG"].extra["mode"] = "0644"
    assert again["n01/n01_1.JPEG"].extra == {}


def test_from_dict_leaves_its_input_unless_consumed() -> None:
    raw = raw_manifest()
    before = copy.deepcopy(raw)
    Manifest.from_dict(raw)
    assert raw == before
    consumed = Manifest.from_dict(raw, consume=True)
    assert consumed.to_json() == Manifest.from_dict(before).to_json()
    assert all(v == {} for v in raw["contents"].values())  # given up, and emptied


def test_constructed_entries_still_get_dicts_of_their_own() -> None:
    a, b = ManifestEntry("a", HELLO, 5), ManifestEntry("b", HELLO, 5)
    a.extra["mode"] = "0755"
    assert b.extra == {}


@pytest.mark.parametrize(("contents", "message"), [
    ({"a": {"digest": HELLO}, "a/b": {"digest": HELLO}}, "needs 'a' to be a folder"),
    ({"a/b": {"digest": HELLO}, "a": {"digest": HELLO}}, "'a' is already a folder"),
    ({"ok/1": {"digest": HELLO}, "x/../y": {"digest": HELLO}}, "'..' part"),
    ({"ok/1": {"digest": HELLO}, "a\n/../b": {"digest": HELLO}}, "'..' part"),
    ({"ok/1": {"digest": HELLO}, "": {"digest": HELLO}}, "non-empty"),
    ({"ok/1": {"digest": HELLO}, "ok/2": {"digest": HELLO, "size": -1}}, "invalid size"),
    ({"ok/1": {"digest": HELLO}, "ok/2": {"size": 1}}, "has no digest"),
])
def test_every_rule_still_holds_among_many_plain_entries(contents: dict[str, Any],
                                                         message: str) -> None:
    """Plain entries are checked all at once; one that breaks a rule is still named."""
    plain = {f"d{i}/f{i}.JPEG": {"digest": HELLO, "size": 5} for i in range(50)}
    raw = {"version": 1, "contents": {**plain, **contents}}
    with pytest.raises(InvalidManifest, match=message):
        Manifest.from_dict(raw)


def test_unusual_paths_among_plain_ones_are_kept() -> None:
    contents = {"d/f.JPEG": {"digest": HELLO, "size": 5}, "line\nbreak": {"digest": HELLO},
                ".hidden/x": {"digest": HELLO}, "é/ü": {"digest": HELLO, "size": 1}}
    m = Manifest.from_dict({"version": 1, "contents": contents})
    assert list(m.entries) == list(contents)
    assert m["é/ü"].size == 1 and m["line\nbreak"].size == 0
