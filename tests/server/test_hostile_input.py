"""Hostile input against a real ``artifactfs serve``: every bad input answers a 4xx JSON error
saying what is wrong, and no stored row can make a read answer 500.

Sizes past SQLite's INTEGER, unpaired surrogates and control characters anywhere, references
of unknown schemes, numbers past a double, JSON nested or sized past its bounds, Range headers
of thousands of digits, bad percent-encoding and raw bytes in the request line and headers;
and rows written straight into the store's SQLite file, as an older version without bounds
wrote them, read back over HTTP.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from typing import Any

import httpx
import pytest
from helpers import wait_until

from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.core.limits import UNREADABLE_KEY

ENTITY = "team"
DATA = b"hostile input"
DIGEST = md5_b64(DATA)


@pytest.fixture
def reg(shared_registry: Any) -> Any:
    shared_registry.upload(DATA)
    return shared_registry


def assert_error(r: httpx.Response, status: int, kind: str | None = None) -> str:
    """``r`` is a JSON error with this status; its message, checked printable."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    if kind is not None:
        assert err["type"] == kind, err
    message = str(err["message"])
    assert message and message.isprintable(), message  # escaped, never raw control bytes
    return message


def manifest(contents: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": 1, "storagePolicy": "wandb-storage-policy-v1",
            "storagePolicyConfig": {"storageLayout": "V2"}, "contents": contents, **top}


def good(**entry: Any) -> dict[str, Any]:
    return {"a.txt": {"digest": DIGEST, "size": len(DATA), **entry}}


def commit(reg: Any, project: str, body: dict[str, Any] | bytes) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    # a client per request: a 500 would close the connection
    with reg.client(reg.rw_key) as own:
        return own.post(reg.collection(project, "data") + "/versions", content=content,
                        headers={"Content-Type": "application/json"})


GOOD = json.dumps({"digest": DIGEST, "size": len(DATA)})


def raw_commit(contents: str, metadata: str = "{}") -> bytes:
    """A commit body written as JSON text, so that escapes reach the server as sent."""
    return ('{"type": "dataset", "metadata": ' + metadata
            + ', "manifest": {"version": 1, "contents": {' + contents + "}}}").encode()


def assert_nothing_committed(reg: Any, project: str) -> None:
    r = reg.rw.get(reg.collection(project, "data") + "/versions")
    assert r.status_code == 200, r.text
    assert r.json() == []
    reg.alive()


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


# ---- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("contents", "says"),
    [
        ({"a": {"digest": "e1", "size": 2**63, "ref": "s3://b/a"}}, "largest size is 2**63-1"),
        ({"a": {"digest": DIGEST, "size": 10**40}}, "largest size is 2**63-1"),
        ({"a": {"digest": "e1", "size": 2**62, "ref": "s3://b/a"},
          "b": {"digest": "e2", "size": 2**62, "ref": "s3://b/b"}}, "at most 2**63-1 bytes"),
    ],
)
def test_sizes_past_sqlite_integer_answer_400(
    reg: Any, contents: dict[str, Any], says: str
) -> None:
    project = reg.unique("size")
    message = assert_error(commit(reg, project, {"type": "dataset",
                                                 "manifest": manifest(contents)}),
                           400, "InvalidManifest")
    assert says in message
    assert_nothing_committed(reg, project)


def test_the_largest_size_is_stored_and_read_back(reg: Any) -> None:
    project = reg.unique("size")
    contents = {"a": {"digest": "e1", "size": 2**63 - 2, "ref": "s3://b/a"},
                "b": {"digest": "e2", "size": 1, "ref": "s3://b/b"}}
    r = commit(reg, project, {"type": "dataset", "manifest": manifest(contents)})
    assert r.status_code == 201, r.text
    assert reg.rw.get(f"/versions/{r.json()['id']}").json()["size"] == 2**63 - 1


# ---- paths, names and text -------------------------------------------------------------------

# raw JSON text, so that the escapes reach the server as a client could send them
_PATHS = [
    ("\\ud800", "'\\ud800'"),
    ("dir/\\udcff.bin", "'dir/\\udcff.bin'"),
    ("a\\u001b[31mred", "'a\\x1b[31mred'"),
    ("new\\nline", "'new\\nline'"),
    ("del\\u007f", "'del\\x7f'"),
    ("tab\\tname", "'tab\\tname'"),
]


@pytest.mark.parametrize(("json_path", "shown"), _PATHS)
def test_paths_with_surrogates_or_control_characters_answer_400_escaped(
    reg: Any, json_path: str, shown: str
) -> None:
    project = reg.unique("path")
    message = assert_error(commit(reg, project, raw_commit('"' + json_path + '": ' + GOOD)),
                           400, "InvalidManifest")
    assert shown in message, message
    assert_nothing_committed(reg, project)


@pytest.mark.parametrize(
    ("field", "json_value"),
    [
        ("description", '"\\ud800"'),
        ("metadata", '{"\\ud800": 1}'),
        ("metadata", '{"k": ["\\udfff"]}'),
        ("aliases", '["\\ud800"]'),
        ("aliases", '["a\\u001bb"]'),
        ("type", '"\\ud800"'),
        ("type", '"data\\nset"'),
    ],
)
def test_surrogates_and_controls_in_fields_answer_400(
    reg: Any, field: str, json_value: str
) -> None:
    project = reg.unique("text")
    fields = {"type": '"dataset"', "manifest": json.dumps(manifest(good())), field: json_value}
    body = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"
    assert_error(commit(reg, project, body.encode()), 400)
    assert_nothing_committed(reg, project)


@pytest.mark.parametrize(
    "entry",
    ['{"birthArtifactID": "\\ud800"}', '{"future": "\\udc80"}', '{"future": {"x": "\\ud800"}}',
     '{"extra": {"\\ud800": 1}}'],
)
def test_surrogates_in_entry_fields_answer_400(reg: Any, entry: str) -> None:
    project = reg.unique("entry")
    body = raw_commit('"a.txt": ' + GOOD[:-1] + ", " + entry[1:])
    assert_error(commit(reg, project, body), 400, "InvalidManifest")
    assert_nothing_committed(reg, project)


# ---- references ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "digest"),
    [("ftp://host/x", "e"), ("javascript:alert(1)", "e"), ("s3:/bucket/x", "e"),
     ("relative/path", "e"), ("s3://b/x\n", "e"), ("s3://b/" + "k" * 5000, "e"),
     ("s3://b/x", "has space"), ("s3://b/x", "e" * 5000)],
)
def test_bad_references_answer_400(reg: Any, ref: str, digest: str) -> None:
    project = reg.unique("ref")
    contents = {"r.csv": {"digest": digest, "size": 1, "ref": ref}}
    assert_error(commit(reg, project, {"type": "dataset", "manifest": manifest(contents)}),
                 400, "InvalidManifest")
    assert_nothing_committed(reg, project)


def test_references_of_known_schemes_are_committed(reg: Any) -> None:
    project = reg.unique("ref")
    # (a wandb-artifact:// one must name a version the key reads: test_artifact_refs.py)
    refs = ["s3://bucket/k", "gs://b/o", "https://h/x", "http://h/x", "file:///d/x"]
    contents = {f"r{i}": {"digest": '"etag"', "size": 1, "ref": ref}
                for i, ref in enumerate(refs)}
    r = commit(reg, project, {"type": "dataset", "manifest": manifest(contents)})
    assert r.status_code == 201, r.text


# ---- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1" * 5000])
def test_numbers_past_a_double_or_the_int_limit_answer_400(reg: Any, number: str) -> None:
    project = reg.unique("num")
    body = raw_commit('"a.txt": ' + GOOD, metadata='{"x": ' + number + "}")
    assert_error(commit(reg, project, body), 400, "InvalidJSON")
    assert_nothing_committed(reg, project)


def test_big_integers_in_metadata_are_kept(reg: Any) -> None:
    project = reg.unique("num")
    r = commit(reg, project, {"type": "dataset", "manifest": manifest(good()),
                              "metadata": {"x": 10**4000, "y": 2**64}})
    assert r.status_code == 201, r.text
    got = reg.rw.get(f"/versions/{r.json()['id']}").json()["metadata"]
    assert got == {"x": 10**4000, "y": 2**64}


# ---- JSON bounds at commit and PATCH ---------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"metadata": nested(65)}, "metadata is nested deeper than 64 levels"),
        ({"metadata": nested(500)}, "metadata is nested deeper than 64 levels"),
        ({"metadata": {"x": "y" * (1 << 20)}}, "metadata is 1048584 bytes as JSON; the limit is "
                                                 "1048576"),
        ({"description": "d" * (64 << 10 | 1)}, "description is 65537 bytes; the limit is 65536"),
        ({"manifest": manifest(good(extra=nested(65)))}, "extra is nested deeper than 64 levels"),
        ({"manifest": manifest(good(extra={"x": "y" * (64 << 10)}))},
         "extra is 65544 bytes as JSON; the limit is 65536"),
        ({"manifest": manifest(good(), storagePolicyConfig=nested(65))},
         "storagePolicyConfig is nested deeper than 64 levels"),
    ],
)
def test_json_past_its_bounds_answers_400_naming_field_and_limit(
    reg: Any, change: dict[str, Any], says: str
) -> None:
    project = reg.unique("bound")
    body = {"type": "dataset", "manifest": manifest(good()), **change}
    message = assert_error(commit(reg, project, body), 400)
    assert says in message, message
    assert_nothing_committed(reg, project)


def test_json_at_its_bounds_is_committed(reg: Any) -> None:
    r = commit(reg, reg.unique("bound"), {
        "type": "dataset", "manifest": manifest(good(extra=nested(64))),
        "metadata": nested(64), "description": "d" * (64 << 10)})
    assert r.status_code == 201, r.text
    assert r.json()["metadata"] == nested(64)


@pytest.mark.parametrize(
    ("patch", "says"),
    [({"metadata": nested(65)}, "metadata is nested deeper than 64 levels"),
     ({"metadata": {"x": "y" * (1 << 20)}}, "the limit is 1048576"),
     ({"description": "d" * (64 << 10 | 1)}, "the limit is 65536"),
     ({"description": "\ud800"}, "unpaired surrogate")],
)
def test_patch_past_the_bounds_answers_400_and_changes_nothing(
    reg: Any, patch: dict[str, Any], says: str
) -> None:
    v = reg.commit(reg.unique("patch"), "data", {"a": DATA}, metadata={"keep": 1},
                   description="kept")
    with reg.client(reg.rw_key) as own:
        r = own.patch(f"/versions/{v['id']}", content=json.dumps(patch).encode(),
                      headers={"Content-Type": "application/json"})
    assert says in assert_error(r, 400, "InvalidRequest")
    after = reg.rw.get(f"/versions/{v['id']}")
    assert after.status_code == 200, after.text
    assert (after.json()["metadata"], after.json()["description"]) == ({"keep": 1}, "kept")


# ---- rows stored without bounds --------------------------------------------------------------


def _deep_text(depth: int) -> str:
    return '{"a":' * depth + "{}" + "}" * depth


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        (json.dumps(nested(500)), "nested deeper than 64 levels"),
        (_deep_text(100_000), "nested deeper than 64 levels"),
        ('{"loss": NaN}', "NaN"),
        ('{"loss": 1e999}', "too large for a double"),
        ('{"\\ud800": 1}', "unpaired surrogate"),
        ("[1, 2]", "not a JSON object"),
        ("{truncated", "unreadable"),
    ],
)
def test_a_row_stored_without_bounds_is_still_listed_and_read(
    registry: Any, stored: str, reason: str
) -> None:
    """As an older version could store it: written straight into the store's SQLite file.
    Every read of the version and of its collection answers 200, its metadata replaced by
    a marker saying why, and the server logs one line; a PATCH repairs it."""
    reg = registry
    project = reg.unique("old")
    bad = reg.commit(project, "data", {"a": DATA}, aliases=["prod"], metadata={"ok": 1})
    fine = reg.commit(project, "data", {"b": DATA}, metadata={"fine": True})
    with sqlite3.connect(reg.store / "registry.sqlite3") as db:
        db.execute("UPDATE versions SET metadata = ? WHERE id = ?", (stored, bad["id"]))

    got = reg.rw.get(f"/versions/{bad['id']}")
    assert got.status_code == 200, got.text
    marker = got.json()["metadata"]
    assert set(marker) == {UNREADABLE_KEY} and reason in marker[UNREADABLE_KEY], marker
    listing = reg.rw.get(reg.collection(project, "data") + "/versions")
    assert listing.status_code == 200, listing.text
    assert [v["metadata"] for v in listing.json()] == [marker, {"fine": True}]
    for alias in ("prod", "v0"):
        r = reg.rw.get(reg.collection(project, "data") + f"/resolve/{alias}")
        assert r.status_code == 200, r.text
        assert r.json()["metadata"] == marker
    assert reg.rw.get(reg.collection(project, "data") + "/resolve/latest").json()["id"] == \
        fine["id"]
    assert "stored metadata is unreadable" in reg.server.log_text() or "not an object" in \
        reg.server.log_text()

    r = reg.rw.patch(f"/versions/{bad['id']}", json={"metadata": {"repaired": 1}})
    assert r.status_code == 200, r.text
    assert reg.rw.get(f"/versions/{bad['id']}").json()["metadata"] == {"repaired": 1}


def test_a_row_whose_text_is_not_utf8_is_still_read(registry: Any) -> None:
    """Bytes that are not UTF-8 in a TEXT column (a damaged or hand-edited store): SQLite
    hands them back as they are, and decoding them once failed every read of the row."""
    reg = registry
    project = reg.unique("bytes")
    bad = reg.commit(project, "data", {"a": DATA}, description="fine")
    with sqlite3.connect(reg.store / "registry.sqlite3") as db:
        db.execute("UPDATE versions SET description = CAST(x'6f6bff21' AS TEXT) WHERE id = ?",
                   (bad["id"],))
    got = reg.rw.get(f"/versions/{bad['id']}")
    assert got.status_code == 200, got.text
    assert got.json()["description"] == "ok\ufffd!"
    listing = reg.rw.get(reg.collection(project, "data") + "/versions")
    assert listing.status_code == 200, listing.text


# ---- ranges ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("bytes=" + "9" * 5000 + "-", 416),
        ("bytes=0-" + "9" * 5000, 206),
        ("bytes=-" + "9" * 5000, 206),
        ("bytes=" + "0" * 5000 + "1-2", 206),
        ("bytes=" + "9" * 5000 + "-1", 200),  # last before first: ignored
        ("bytes=" + "9" * 60000 + "-", 416),  # within the 64 KiB header limit
        ("bytes=0-1," + "2-3," * 5000, 200),  # several ranges: ignored
    ],
)
def test_range_headers_of_thousands_of_digits(reg: Any, header: str, status: int) -> None:
    with reg.client(reg.rw_key) as own:
        r = own.get(f"/blobs/{blob_key(DIGEST)}", headers={"Range": header})
    assert r.status_code == status, (r.status_code, r.text[:200])
    if status == 416:
        assert_error(r, 416, "RangeNotSatisfiable")
        assert r.headers["content-range"] == f"bytes */{len(DATA)}"
    elif status == 206:
        first, last = r.headers["content-range"].split()[1].split("/")[0].split("-")
        assert r.content == DATA[int(first) : int(last) + 1]
    else:
        assert r.content == DATA
    reg.alive()


# ---- URLs and raw HTTP -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/entities/team/projects/%ff%fe/collections",
        "/entities/team/projects/%ed%a0%80/types",
        "/entities/team/projects/p%zz/collections",
        "/entities/team/projects/%/collections",
        "/entities/%00/projects",
        "/entities/team/projects/p/collections/n/resolve/v99999999999999999999999",
        "/entities/team/projects/p/collections/n/resolve/v" + "9" * 5000,
        "/entities/team/projects/p/collections/n/resolve/%ed%a0%80",
        "/entities/team/projects/p/collections/n/resolve/%1b%5b31m",
        "/entities/team/projects/p/collections?type=%ff%00",
        "/versions/" + "x" * 10_000,
        "/versions/%00%ff/manifest",
        "/blobs/%ff" + "0" * 30,
        "/blobs/" + "f" * 5000,
    ],
)
def test_hostile_urls_answer_below_500(reg: Any, path: str) -> None:
    with reg.client(reg.rw_key) as own:
        r = own.get(httpx.URL(reg.url + "/api/v1" + path))
    assert r.status_code < 500, (r.status_code, r.text[:200])
    if r.status_code >= 400:
        assert_error(r, r.status_code)
    reg.alive()


def test_aliases_with_odd_characters_in_urls(reg: Any) -> None:
    v = reg.commit(reg.unique("alias"), "data", {"a": DATA})
    for alias, status in [("%ed%a0%80", 200), ("%1b", 400), ("%7f", 400), ("a%00", 400),
                          ("v" + "9" * 30, 400), ("%ff%fe", 200)]:
        with reg.client(reg.rw_key) as own:
            r = own.put(httpx.URL(f"{reg.url}/api/v1/versions/{v['id']}/aliases/{alias}"))
        assert r.status_code == status, (alias, r.status_code, r.text)
        if status == 400:
            assert_error(r, 400, "InvalidName")
    reg.alive()


def raw_request(reg: Any, request: bytes) -> bytes:
    """Send ``request`` on a fresh socket; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", reg.server.port), timeout=30) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def json_answer(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer[:300]
    return int(head.split()[1]), json.loads(body)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /api/v1/entities/\xff\xfe/projects HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /api/v1/entities/team/projects HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET /api/v1/entities/team/projects HTTP/1.1\r\nHost: x\r\nX-A: \x00\r\n\r\n", 400),
        (b"POST /api/v1/blobs/missing HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000
         + b"\r\n\r\n", 400),
        (b"POST /api/v1/blobs/missing HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /api/v1/entities/team/projects HTTP/1.1\r\nHost: x\r\n"
         b"Authorization: Bearer \xff\xfe\xfd\r\nConnection: close\r\n\r\n", 401),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n", 400),
    ],
)
def test_malformed_http_answers_a_json_4xx(reg: Any, request_bytes: bytes, status: int) -> None:
    got, body = json_answer(raw_request(reg, request_bytes))
    assert got == status, body
    assert set(body["error"]) == {"type", "message"} and body["error"]["message"].isprintable()
    reg.alive()


def test_log_lines_escape_what_a_client_puts_in_the_path(registry: Any) -> None:
    """A path with an escape sequence or a newline must not colour the log or forge a line."""
    reg = registry
    path = "/entities/team/projects/%1b%5b31mred%0aFORGED%20line/types"
    r = reg.rw.get(httpx.URL(reg.url + "/api/v1" + path))
    assert r.status_code < 500
    reg.alive()
    # (an access line is written once its answer is out)
    assert wait_until(lambda: "FORGED line" in reg.server.log_text())
    text = reg.server.log_text()
    assert "\x1b" not in text
    assert not any(line.startswith("FORGED") for line in text.splitlines())
    assert "\\x1b[31mred\\nFORGED line" in text
