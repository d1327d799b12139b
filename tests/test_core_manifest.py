"""W&B v1 manifests (artifactfs.core.manifest) and digests (artifactfs.core.digests)."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from typing import Any

import pytest

from artifactfs.core.chunks import CHUNK_INDEX_EXTRA_KEY
from artifactfs.core.digests import (
    artifact_digest,
    blob_key,
    blob_key_or_none,
    is_md5_digest,
    md5_b64,
)
from artifactfs.core.errors import InvalidManifest
from artifactfs.core.limits import MAX_SIZE
from artifactfs.core.manifest import (
    STORAGE_POLICY,
    Manifest,
    ManifestEntry,
    validate_entry_path,
    validate_for_commit,
)

HELLO = "XUFAKrxLKna5cZ2REBfFkg=="


def _wandb_manifest() -> dict[str, Any]:
    """A manifest as W&B writes it, with keys this version does not know."""
    return {
        "version": 1,
        "storagePolicy": "wandb-storage-policy-v1",
        "storagePolicyConfig": {"storageLayout": "V2", "storageRegion": "coreweave-us"},
        "futureTopLevel": {"nested": [1, 2, 3]},
        "contents": {
            "hello.txt": {"digest": HELLO, "size": 5},
            "data/train/0001.bin": {
                "digest": md5_b64(b"x" * 10),
                "size": 10,
                "birthArtifactID": "QXJ0aWZhY3Q6MTIzNDU2",
                "extra": {"note": "kept", CHUNK_INDEX_EXTRA_KEY: "ab" * 32},
                "localPath": "/home/user/.cache/wandb/xyz",
                "skipCache": True,
            },
            "remote/table.csv": {
                "digest": "\"5f1e2d3c4b5a69788796a5b4c3d2e1f0\"",
                "size": 1234,
                "ref": "s3://bucket/path/table.csv",
                "futureEntryKey": {"a": None},
            },
        },
    }


# ---- the two required vectors -----------------------------------------------------------


def test_entry_digest_vector() -> None:
    assert md5_b64(b"hello") == "XUFAKrxLKna5cZ2REBfFkg=="


def test_artifact_digest_vector() -> None:
    manifest = Manifest([ManifestEntry("my_object.pb", "1234567890abcde", 0)])
    assert manifest.digest() == "8aec0d6978da8c2b0bf5662b3fd043a4"
    loaded = Manifest.from_json(
        json.dumps(
            {
                "version": 1,
                "storagePolicy": "wandb-storage-policy-v1",
                "storagePolicyConfig": {},
                "contents": {"my_object.pb": {"digest": "1234567890abcde", "size": 1}},
            }
        )
    )
    assert loaded.digest() == "8aec0d6978da8c2b0bf5662b3fd043a4"


# ---- digests ----------------------------------------------------------------------------


def test_md5_b64_is_base64_of_md5() -> None:
    for data in (b"", b"a", bytes(range(256)) * 10):
        assert md5_b64(data) == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert md5_b64(b"") == "1B2M2Y8AsgTpgAmY7PhCfg=="


def test_blob_key_is_hex_md5() -> None:
    assert blob_key(HELLO) == hashlib.md5(b"hello").hexdigest()
    assert is_md5_digest(HELLO)
    assert blob_key_or_none(HELLO) == "5d41402abc4b2a76b9719d911017c592"


@pytest.mark.parametrize(
    "digest",
    ["", "1234567890abcde", "\"etag\"", "XUFAKrxLKna5cZ2REBfFkg=", "XUFAKrxLKna5cZ2REBfFk!==",
     base64.b64encode(b"x" * 17).decode(), "5d41402abc4b2a76b9719d911017c592"],
)
def test_non_md5_digests_name_no_blob(digest: str) -> None:
    assert not is_md5_digest(digest)
    assert blob_key_or_none(digest) is None
    with pytest.raises(InvalidManifest, match="not a base64 MD5"):
        blob_key(digest)


def test_artifact_digest_sorts_by_path_and_uses_only_path_and_digest() -> None:
    pairs = [("b.txt", HELLO), ("a/c.txt", md5_b64(b"c")), ("a.txt", md5_b64(b"a"))]
    expected = hashlib.md5(
        b"wandb-artifact-manifest-v1\n"
        + "".join(f"{p}:{d}\n" for p, d in sorted(pairs)).encode()
    ).hexdigest()
    assert artifact_digest(pairs) == expected
    assert artifact_digest(reversed(pairs)) == expected
    one = Manifest([ManifestEntry(p, d, 1) for p, d in pairs])
    two = Manifest(
        [ManifestEntry(p, d, 999, extra={"k": "v"}, birth_artifact_id="x")
         for p, d in reversed(pairs)]
    )
    assert one.digest() == two.digest() == expected
    three = Manifest([ManifestEntry(p, d, 1) for p, d in pairs[:2]])
    assert three.digest() != expected


def test_empty_manifest_digest() -> None:
    assert Manifest().digest() == hashlib.md5(b"wandb-artifact-manifest-v1\n").hexdigest()


# ---- round trips ------------------------------------------------------------------------


def test_wandb_manifest_round_trips_with_unknown_keys() -> None:
    raw = _wandb_manifest()
    manifest = Manifest.from_json(json.dumps(raw))
    assert manifest.to_dict() == raw
    assert json.loads(manifest.to_json()) == raw
    again = Manifest.from_json(manifest.to_json())
    assert again.to_dict() == raw
    assert again.to_json() == manifest.to_json()
    assert again.digest() == manifest.digest()


def test_unknown_keys_are_kept_at_top_level_and_per_entry() -> None:
    manifest = Manifest.from_json(json.dumps(_wandb_manifest()))
    assert manifest.unknown == {"futureTopLevel": {"nested": [1, 2, 3]}}
    entry = manifest["data/train/0001.bin"]
    assert entry.unknown == {"localPath": "/home/user/.cache/wandb/xyz", "skipCache": True}
    assert manifest["remote/table.csv"].unknown == {"futureEntryKey": {"a": None}}
    out = json.loads(manifest.to_json())
    assert out["futureTopLevel"] == {"nested": [1, 2, 3]}
    assert out["contents"]["data/train/0001.bin"]["skipCache"] is True
    assert out["contents"]["remote/table.csv"]["futureEntryKey"] == {"a": None}
    assert out["storagePolicyConfig"]["storageRegion"] == "coreweave-us"


def test_known_fields_are_read() -> None:
    manifest = Manifest.from_json(json.dumps(_wandb_manifest()).encode())
    assert manifest.storage_policy == STORAGE_POLICY == "wandb-storage-policy-v1"
    assert len(manifest) == 3
    assert manifest.size == 5 + 10 + 1234
    entry = manifest["data/train/0001.bin"]
    assert (entry.digest, entry.size) == (md5_b64(b"x" * 10), 10)
    assert entry.birth_artifact_id == "QXJ0aWZhY3Q6MTIzNDU2"
    assert entry.extra["note"] == "kept"
    assert entry.chunk_index_sha256 == "ab" * 32
    ref = manifest["remote/table.csv"]
    assert ref.ref == "s3://bucket/path/table.csv"
    assert ref.chunk_index_sha256 is None
    assert manifest["hello.txt"].ref is None
    assert "hello.txt" in manifest
    assert manifest.get("nope") is None
    assert sorted(e.path for e in manifest) == sorted(manifest.entries)


def test_written_form_is_wandb_v1() -> None:
    manifest = Manifest([ManifestEntry("b.txt", HELLO, 5), ManifestEntry("a.txt", HELLO, 5)])
    out = json.loads(manifest.to_json())
    assert out["version"] == 1
    assert out["storagePolicy"] == "wandb-storage-policy-v1"
    assert isinstance(out["storagePolicyConfig"], dict)
    assert out["contents"] == {
        "a.txt": {"digest": HELLO, "size": 5},
        "b.txt": {"digest": HELLO, "size": 5},
    }
    assert list(out["contents"]) == ["a.txt", "b.txt"]


def test_missing_or_null_size_reads_as_zero() -> None:
    raw = {"version": 1, "contents": {"a": {"digest": HELLO}, "b": {"digest": HELLO, "size": None}}}
    manifest = Manifest.from_dict(raw)
    assert manifest["a"].size == 0
    assert manifest["b"].size == 0
    assert manifest.storage_policy == STORAGE_POLICY


def test_copy_is_independent() -> None:
    original = Manifest.from_json(json.dumps(_wandb_manifest()))
    copy = original.copy()
    assert copy.to_dict() == original.to_dict()
    copy.remove("hello.txt")
    copy["data/train/0001.bin"].extra["note"] = "changed"
    copy.add(ManifestEntry("new.txt", HELLO, 5))
    assert "hello.txt" in original
    assert "new.txt" not in original
    assert original["data/train/0001.bin"].extra["note"] == "kept"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "must be a JSON object"),
        ({"contents": {}}, "version None is not supported"),
        ({"version": 2, "contents": {}}, "version 2 is not supported"),
        ({"version": "1", "contents": {}}, "is not supported"),
        ({"version": 1, "contents": []}, "'contents' must be an object"),
        ({"version": 1, "contents": {}, "storagePolicyConfig": [1]}, "storagePolicyConfig"),
        ({"version": 1, "contents": {"a": "x"}}, "must be an object"),
        ({"version": 1, "contents": {"a": {"size": 1}}}, "has no digest"),
        ({"version": 1, "contents": {"a": {"digest": "", "size": 1}}}, "has no digest"),
        ({"version": 1, "contents": {"a": {"digest": 5, "size": 1}}}, "has no digest"),
        ({"version": 1, "contents": {"a": {"digest": HELLO, "size": -1}}}, "invalid size"),
        ({"version": 1, "contents": {"a": {"digest": HELLO, "size": "5"}}}, "invalid size"),
        ({"version": 1, "contents": {"a": {"digest": HELLO, "size": True}}}, "invalid size"),
        ({"version": 1, "contents": {"a": {"digest": HELLO, "size": 1.5}}}, "invalid size"),
        ({"version": 1, "contents": {"a": {"digest": HELLO, "ref": 3}}}, "non-string ref"),
        ({"version": 1, "contents": {"a": {"digest": HELLO, "birthArtifactID": 3}}},
         "non-string birthArtifactID"),
        ({"version": 1, "contents": {"a": {"digest": HELLO, "extra": [1]}}}, "non-object extra"),
    ],
)
def test_malformed_manifests_are_refused(raw: object, message: str) -> None:
    with pytest.raises(InvalidManifest, match=message):
        Manifest.from_json(json.dumps(raw))


@pytest.mark.parametrize("text", ["", "{", "not json", b"\xff\xfe\x00", "[1, 2"])
def test_non_json_is_refused(text: str | bytes) -> None:
    with pytest.raises(InvalidManifest, match="not valid JSON"):
        Manifest.from_json(text)


# ---- path rules -------------------------------------------------------------------------

BAD_PATHS = [
    pytest.param("/etc/passwd", "absolute", id="absolute"),
    pytest.param("/", "absolute", id="root"),
    pytest.param("..", "'..' part", id="dotdot"),
    pytest.param("../x", "'..' part", id="dotdot-first"),
    pytest.param("a/../../x", "'..' part", id="dotdot-middle"),
    pytest.param("a/..", "'..' part", id="dotdot-last"),
    pytest.param(".", "'.'", id="dot"),
    pytest.param("./a", "'.'", id="dot-first"),
    pytest.param("a/./b", "'.'", id="dot-middle"),
    pytest.param("a//b", "empty", id="empty-middle"),
    pytest.param("a/", "empty", id="trailing-slash"),
    pytest.param("", "non-empty", id="empty"),
    pytest.param("a\x00b", "NUL", id="nul"),
    pytest.param("dir/\x00", "NUL", id="nul-part"),
    pytest.param("x" * 256, "longer than 255 bytes", id="long-part"),
    pytest.param("ok/" + "y" * 256 + "/z", "longer than 255 bytes", id="long-middle-part"),
    pytest.param("\u00e9" * 128, "longer than 255 bytes", id="long-part-in-bytes"),
]


@pytest.mark.parametrize(("path", "message"), BAD_PATHS)
def test_bad_paths_are_refused_when_adding(path: str, message: str) -> None:
    manifest = Manifest()
    with pytest.raises(InvalidManifest, match=message):
        manifest.add(ManifestEntry(path, HELLO, 5))
    assert len(manifest) == 0
    with pytest.raises(InvalidManifest, match=message):
        Manifest([ManifestEntry(path, HELLO, 5)])
    with pytest.raises(InvalidManifest, match=message):
        validate_entry_path(path)


@pytest.mark.parametrize(("path", "message"), BAD_PATHS)
def test_bad_paths_are_refused_when_loading(path: str, message: str) -> None:
    raw = {
        "version": 1,
        "storagePolicy": STORAGE_POLICY,
        "storagePolicyConfig": {},
        "contents": {"fine.txt": {"digest": HELLO, "size": 5}, path: {"digest": HELLO, "size": 5}},
    }
    text = json.dumps(raw)
    with pytest.raises(InvalidManifest, match=message):
        Manifest.from_json(text)
    with pytest.raises(InvalidManifest, match=message):
        Manifest.from_dict(raw)


@pytest.mark.parametrize("path", [None, 5, b"a.txt"])
def test_non_string_paths_are_refused(path: object) -> None:
    with pytest.raises(InvalidManifest, match="non-empty string"):
        validate_entry_path(path)


@pytest.mark.parametrize(
    "path",
    ["a", "a.txt", "dir/sub/file.bin", ".hidden", "a/.b", "...", "a/...", "a b/c d.txt",
     "x" * 255, "\u00e9" * 127 + "x", "d/" + "z" * 255, "back\\slash", "weird:name",
     "\u00fcml/\u00e4"],
)
def test_good_paths_are_accepted(path: str) -> None:
    assert validate_entry_path(path) == path
    manifest = Manifest([ManifestEntry(path, HELLO, 5)])
    loaded = Manifest.from_json(manifest.to_json())
    assert list(loaded.entries) == [path]


def _follows_the_part_rules(path: str) -> bool:
    """The path rules written out part by part, to check the quick test against."""
    if not path or "\x00" in path or path.startswith("/"):
        return False
    return all(
        part not in ("", ".", "..") and len(part.encode("utf-8", "surrogateescape")) <= 255
        for part in path.split("/")
    )


def test_the_quick_path_test_agrees_with_the_part_rules() -> None:
    # pieces that make every kind of bad part, and long paths of short parts
    pieces = ["a", "b7", ".", "..", "/", "//", "\x00", "\u00e9", " ", "x" * 100, "y" * 256]
    rng = random.Random(20261128)
    for _ in range(20_000):
        path = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 7)))
        if _follows_the_part_rules(path):
            assert validate_entry_path(path) == path
        else:
            with pytest.raises(InvalidManifest):
                validate_entry_path(path)


@pytest.mark.parametrize(
    "value",
    [
        {"digest": HELLO},
        {"digest": HELLO, "size": 5},
        {"digest": HELLO, "ref": "s3://bucket/a"},
        {"digest": HELLO, "birthArtifactID": "QXJ0"},
        {"digest": HELLO, "extra": {"k": "v"}},
        {"digest": HELLO, "futureKey": [1]},
        {"digest": HELLO, "size": 5, "ref": "s3://bucket/a", "futureKey": None},
    ],
)
def test_every_field_of_a_short_entry_is_read(value: dict[str, Any]) -> None:
    entry = ManifestEntry.from_dict("a.bin", value)
    assert entry.to_dict() == {"size": 0, **value}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("a", "a/b"),
        ("a/b", "a"),
        ("a/b", "a/b/c"),
        ("a/b/c/d", "a/b"),
        ("x/y/z", "x"),
    ],
)
def test_file_and_folder_clash_is_refused_when_adding(first: str, second: str) -> None:
    manifest = Manifest([ManifestEntry(first, HELLO, 5)])
    with pytest.raises(InvalidManifest, match="folder"):
        manifest.add(ManifestEntry(second, HELLO, 5))
    assert list(manifest.entries) == [first]


@pytest.mark.parametrize(("first", "second"), [("a", "a/b"), ("a/b", "a"), ("x/y/z", "x/y")])
def test_file_and_folder_clash_is_refused_when_loading(first: str, second: str) -> None:
    raw = {"version": 1, "contents": {first: {"digest": HELLO}, second: {"digest": HELLO}}}
    with pytest.raises(InvalidManifest, match="folder"):
        Manifest.from_json(json.dumps(raw))


def test_similar_names_do_not_clash() -> None:
    manifest = Manifest(
        [ManifestEntry(p, HELLO, 5) for p in ("a", "ab/c", "a.d/e", "a-b", "b/a", "b/ab/a")]
    )
    assert len(manifest) == 6


def test_removing_the_last_file_of_a_folder_frees_the_name() -> None:
    manifest = Manifest([ManifestEntry("a/b", HELLO, 5), ManifestEntry("a/c", HELLO, 5)])
    manifest.remove("a/b")
    with pytest.raises(InvalidManifest, match="folder"):
        manifest.add(ManifestEntry("a", HELLO, 5))
    manifest.remove("a/c")
    manifest.add(ManifestEntry("a", HELLO, 5))
    assert list(manifest.entries) == ["a"]
    with pytest.raises(KeyError):
        manifest.remove("nope")


def test_add_replaces_unless_told_not_to() -> None:
    manifest = Manifest([ManifestEntry("a", HELLO, 5)])
    manifest.add(ManifestEntry("a", md5_b64(b"x"), 1))
    assert manifest["a"].digest == md5_b64(b"x")
    assert len(manifest) == 1
    with pytest.raises(InvalidManifest, match="already exists"):
        manifest.add(ManifestEntry("a", HELLO, 5), overwrite=False)
    assert manifest["a"].digest == md5_b64(b"x")


# ---- what may be committed (validate_for_commit) ---------------------------------------------


def _committable(contents: dict[str, Any], **top: Any) -> Manifest:
    return Manifest.from_dict({"version": 1, "contents": contents, **top})


def test_a_plain_manifest_may_be_committed() -> None:
    validate_for_commit(_committable({
        "a.txt": {"digest": HELLO, "size": 5},
        "dir/é 😀.bin": {"digest": HELLO, "size": MAX_SIZE - 8,
                         "extra": {"k": [1, {"x": "y"}]}},
        "ref.csv": {"digest": '"9b2cf535f27731c974343645a3985328"', "size": 3,
                    "ref": "s3://bucket/dir/ref.csv"},
    }))
    validate_for_commit(Manifest())


@pytest.mark.parametrize(
    ("path", "shown"),
    [("a\x1bb", "'a\\x1bb'"), ("new\nline", "'new\\nline'"), ("del\x7f", "'del\\x7f'"),
     ("tab\there", "'tab\\there'"), ("dir/\ud800", "'dir/\\ud800'"), ("\udcff", "'\\udcff'")],
)
def test_paths_with_control_characters_or_surrogates_are_refused_escaped(
    path: str, shown: str
) -> None:
    # a lone surrogate is refused on load already (no UTF-8 can hold it); controls at commit
    with pytest.raises(InvalidManifest) as info:
        validate_for_commit(Manifest([ManifestEntry(path, HELLO, 5)]))
    message = str(info.value)
    assert shown in message, message
    assert message.isprintable(), message


def test_surrogate_paths_from_json_are_refused_when_loaded() -> None:
    text = '{"version": 1, "contents": {"\\ud800": {"digest": "HELLO", "size": 5}}}'
    raw = json.loads(text.replace("HELLO", HELLO))
    with pytest.raises(InvalidManifest, match=r"path '\\ud800' holds an unpaired surrogate"):
        Manifest.from_dict(raw)


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        ({"a": {"digest": HELLO, "size": MAX_SIZE + 1}},
         r"entry 'a' has size 9223372036854775808; the largest size is 2\*\*63-1"),
        ({"a": {"digest": HELLO, "size": 10**30}}, "entry 'a' has size"),
        ({"a": {"digest": "x", "size": 2**62, "ref": "s3://b/a"},
          "b": {"digest": "y", "size": 2**62, "ref": "s3://b/b"}},
         r"sizes add up to 9223372036854775808; a version holds at most 2\*\*63-1 bytes"),
        ({"a": {"digest": "not-md5", "size": 1}}, "entry 'a' has digest 'not-md5', not a base64"),
        ({"a": {"digest": HELLO[:-3] + "===", "size": 1}}, "not a base64 MD5"),
    ],
)
def test_sizes_and_digests_past_their_bounds_are_refused(
    contents: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidManifest, match=message):
        validate_for_commit(_committable(contents))


@pytest.mark.parametrize(
    "ref", ["s3://bucket/key", "S3://bucket/key", "gs://b/o", "https://host/x?y=1",
            "http://host/x", "file:///data/x.csv", "wandb-artifact://abc123/path/x"],
)
def test_references_of_known_schemes_are_accepted(ref: str) -> None:
    validate_for_commit(_committable({"r": {"digest": "etag-1", "size": 1, "ref": ref}}))


@pytest.mark.parametrize(
    ("ref", "digest", "message"),
    [
        ("ftp://host/x", "e", "a reference is a URI SCHEME://... with SCHEME one of file, gs"),
        ("javascript:alert(1)", "e", "a reference is a URI"),
        ("s3:/bucket", "e", "a reference is a URI"),
        ("s3://", "e", "a reference is a URI"),
        ("bucket/key", "e", "a reference is a URI"),
        ("s3://b/\x00x", "e", r"ref 's3://b/\\x00x' contains a control character"),
        ("s3://b/x\n", "e", "control character"),
        ("s3://b/\ud800", "e", "unpaired surrogate"),
        ("s3://b/" + "k" * 5000, "e", "longer than 4096 characters"),
        ("s3://b/k", "two words", "a reference's digest is an ETag, an MD5 or the URI"),
        ("s3://b/k", "tab\tin", "a reference's digest"),
        ("s3://b/k", "e" * 4097, "at most 4096 printable characters"),
    ],
)
def test_bad_references_are_refused(ref: str, digest: str, message: str) -> None:
    with pytest.raises(InvalidManifest, match=message) as info:
        validate_for_commit(_committable({"r": {"digest": digest, "size": 1, "ref": ref}}))
    assert str(info.value).isprintable()


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("top", "entry", "message"),
    [
        ({}, {"extra": _nested(65)}, "entry 'a' extra is nested deeper than 64 levels"),
        ({}, {"extra": {"x": "y" * (64 << 10)}}, "entry 'a' extra is .* bytes as JSON; the limit"),
        ({}, {"future": _nested(65)}, "entry 'a' unknown keys is nested deeper than 64"),
        ({}, {"future": "\ud800"}, "entry 'a' unknown keys holds .* unpaired surrogate"),
        ({}, {"birthArtifactID": "a\x1b"}, "birthArtifactID 'a\\\\x1b' contains a control"),
        ({"storagePolicyConfig": _nested(65)}, {},
         "manifest storagePolicyConfig is nested deeper than 64 levels"),
        ({"futureTop": {"x": "y" * (1 << 20)}}, {}, "manifest unknown keys is .* the limit is"),
        ({"storagePolicy": "p\x00"}, {}, "manifest storagePolicy 'p\\\\x00' contains"),
    ],
)
def test_json_values_a_manifest_stores_are_bounded(
    top: dict[str, Any], entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidManifest, match=message):
        validate_for_commit(_committable({"a": {"digest": HELLO, "size": 5, **entry}}, **top))


def test_extra_at_the_depth_bound_may_be_committed() -> None:
    validate_for_commit(_committable({"a": {"digest": HELLO, "size": 5, "extra": _nested(64)}}))


def test_a_non_string_storage_policy_is_refused() -> None:
    with pytest.raises(InvalidManifest, match="'storagePolicy' must be a string"):
        Manifest.from_dict({"version": 1, "storagePolicy": ["x"], "contents": {}})


def test_to_json_in_slices_equals_one_sorted_dump() -> None:
    """to_json writes the entries in slices (so a server thread does not hold the GIL for
    seconds); the text must be exactly what one json.dumps with sorted keys gives."""
    rng = random.Random(7)
    contents: dict[str, Any] = {}
    for i in range(5003):  # more than two slices, and a partial last one
        entry: dict[str, Any] = {"digest": HELLO, "size": rng.randrange(10**6)}
        if i % 7 == 0:
            entry["extra"] = {"z": 1, "a": [2, {"y": 3, "b": "é"}]}
        if i % 11 == 0:
            entry["zz_future"] = "u"
        contents[f"d{rng.randrange(50)}/f{i}-{rng.random()}.bin"] = entry
    manifest = Manifest.from_dict({"version": 1, "contents": contents, "aTop": 1,
                                   "zTop": {"b": 2, "a": 1}})
    expected = json.dumps(manifest.to_dict(), sort_keys=True, separators=(",", ":"))
    assert manifest.to_json() == expected
    assert Manifest().to_json() == json.dumps(Manifest().to_dict(), sort_keys=True,
                                              separators=(",", ":"))


def test_removals_free_folders_and_the_file_folder_rule_still_holds() -> None:
    """Removals rebuild the folder set lazily, once: what they freed can become a file, and
    a path under a file is still refused."""
    m = Manifest([ManifestEntry("a/b/c", "x", 1), ManifestEntry("k", "x", 1)])
    m.remove("a/b/c")
    m.add(ManifestEntry("a/b", "x", 1))  # no longer a folder: may be a file now
    with pytest.raises(InvalidManifest, match="is a file"):
        m.add(ManifestEntry("a/b/d", "x", 1))
    with pytest.raises(InvalidManifest, match="is a file"):
        m.add(ManifestEntry("k/z", "x", 1))
    m.add(ManifestEntry("a/e", "x", 1))
    with pytest.raises(InvalidManifest, match="already a folder"):
        m.add(ManifestEntry("a", "x", 1))
    assert sorted(m.entries) == ["a/b", "a/e", "k"]


def test_many_removals_from_a_large_manifest_stay_linear() -> None:
    """20,000 removals and replacements in 100,000 entries: each once rebuilt the whole
    folder set (minutes); counted, not timed: the set is rebuilt at most once per run of
    removals."""
    m = Manifest(ManifestEntry(f"d{i % 100}/f{i}", "x", 1) for i in range(100_000))
    rebuilt = 0
    original = Manifest._add

    def counting(self: Manifest, path: str, entry: ManifestEntry, overwrite: bool = True):
        nonlocal rebuilt
        rebuilt += self._folders_stale
        return original(self, path, entry, overwrite)

    Manifest._add = counting  # type: ignore[method-assign]
    try:
        for i in range(20_000):
            m.remove(f"d{i % 100}/f{i}")
        for i in range(20_000, 40_000):
            m.add(ManifestEntry(f"d{i % 100}/f{i}", "y", 2))
    finally:
        Manifest._add = original  # type: ignore[method-assign]
    assert rebuilt == 1 and len(m) == 80_000
