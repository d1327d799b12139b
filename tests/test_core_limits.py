"""Bounds on what the registry stores (artifactfs.core.limits): pure checks, no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest

from artifactfs.core.errors import InvalidManifest, InvalidRequest
from artifactfs.core.limits import (
    MAX_DESCRIPTION_BYTES,
    MAX_JSON_DEPTH,
    MAX_METADATA_BYTES,
    check_description,
    check_json,
    check_metadata,
    check_text,
    escaped,
    finite_float,
    forbidden_char,
    json_depth,
    load_stored_json,
    shown,
)


def nested(depth: int) -> dict[str, Any]:
    """``{"a": {"a": ... {}}}`` with ``depth`` objects."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("x", 0), ({}, 1), ([], 1), ({"a": 1}, 1), ({"a": [1]}, 2),
     ([[1], [[2]]], 3), ({"a": {"b": {}}, "c": []}, 3), ((1, (2,)), 2)],
)
def test_json_depth(value: Any, depth: int) -> None:
    assert json_depth(value) == depth


def test_json_depth_measures_values_too_deep_for_recursion() -> None:
    deep = nested(100_000)  # json.dumps and dataclasses.asdict raise RecursionError here
    assert json_depth(deep, limit=64) == 65
    assert json_depth(nested(64)) == 64


def test_metadata_at_the_bounds_is_accepted() -> None:
    assert check_metadata(nested(MAX_JSON_DEPTH)) == nested(MAX_JSON_DEPTH)
    big = {"text": "x" * (MAX_METADATA_BYTES - 20)}
    assert len(json.dumps(big, separators=(",", ":"))) <= MAX_METADATA_BYTES
    check_metadata(big)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (nested(MAX_JSON_DEPTH + 1), "metadata is nested deeper than 64 levels"),
        (nested(5000), "metadata is nested deeper than 64 levels"),
        ({"x": "y" * MAX_METADATA_BYTES}, r"metadata is \d+ bytes as JSON; the limit is 1048576"),
        ({"\ud800": 1}, r"metadata holds a string with an unpaired surrogate \('\\ud800'\)"),
        ({"a": "\udfff"}, "unpaired surrogate"),
        ({"loss": float("nan")}, "metadata is not plain JSON"),
        ({"loss": float("inf")}, "metadata is not plain JSON"),
        ({"when": object()}, "metadata is not plain JSON"),
        ([1, 2], "metadata must be a JSON object"),
    ],
)
def test_metadata_past_its_bounds_is_refused_naming_field_and_limit(
    value: Any, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check_metadata(value)


def test_check_json_raises_the_error_asked_for() -> None:
    with pytest.raises(InvalidManifest, match=r"^entry 'a' extra is nested deeper than 3"):
        check_json(nested(4), "entry 'a' extra", max_bytes=100, max_depth=3,
                   error=InvalidManifest)
    assert check_json({"a": 1}, "x", max_bytes=7) == 7


def test_description_bounds() -> None:
    assert check_description(None) is None
    assert check_description("two\nlines") == "two\nlines"  # free text: newlines are fine
    check_description("é" * (MAX_DESCRIPTION_BYTES // 2))  # counted in UTF-8 bytes
    with pytest.raises(InvalidRequest, match="description is 65538 bytes; the limit is 65536"):
        check_description("é" * (MAX_DESCRIPTION_BYTES // 2 + 1))
    with pytest.raises(InvalidRequest, match="unpaired surrogate"):
        check_description("a\udc80")
    with pytest.raises(InvalidRequest, match="must be a string"):
        check_description(5)  # type: ignore[arg-type]
    # PostgreSQL's text cannot hold NUL: refused on every engine alike
    with pytest.raises(InvalidRequest, match="NUL"):
        check_description("a\x00b")


@pytest.mark.parametrize(
    ("text", "bad"),
    [("plain", None), ("é ü 日本", None), ("a\x00", "\x00"), ("a\x1b[31m", "\x1b"),
     ("a\x7f", "\x7f"), ("\n", "\n"), ("a\ud800", "\ud800"), ("\udcff", "\udcff"),
     ("😀", None)],
)
def test_forbidden_char(text: str, bad: str | None) -> None:
    assert forbidden_char(text) == bad


def test_messages_show_text_escaped_never_raw() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_text("red\x1b[31m", "name", max_length=100)
    message = str(info.value)
    assert "\x1b" not in message and "\\x1b" in message
    assert message == "name 'red\\x1b[31m' contains a control character ('\\x1b')"
    with pytest.raises(InvalidRequest, match="longer than 3 characters"):
        check_text("abcd", "name", max_length=3)
    assert shown("a" * 100, limit=5) == "'aaaaa'... (100 characters)"
    assert escaped("plain/path") == "plain/path"
    assert escaped("a\nb\x1b\ud800é") == "a\\nb\\x1b\\ud800é"


def test_finite_float() -> None:
    assert finite_float("1.5e3") == 1500.0
    with pytest.raises(ValueError, match="too large for a double"):
        finite_float("1e999")
    with pytest.raises(ValueError):
        json.loads('{"a": -1e999}', parse_float=finite_float)


def test_load_stored_json_reads_good_rows() -> None:
    assert load_stored_json('{"a": [1, 2.5, "😀", {"b": null}]}') == {
        "a": [1, 2.5, "😀", {"b": None}]
    }
    # brackets inside strings do not make a value deep
    assert load_stored_json(json.dumps({"s": "[" * 500})) == {"s": "[" * 500}
    # a paired surrogate escape is an ordinary character
    assert load_stored_json('{"e": "\\ud83d\\ude00"}') == {"e": "😀"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (json.dumps(nested(500)), "nested deeper than 64 levels"),
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 64 levels"),
        ('{"loss": NaN}', "NaN"),
        ('{"loss": 1e999}', "too large for a double"),
        ('{"\\ud800": 1}', "unpaired surrogate"),
        ("{not json", "Expecting"),
    ],
)
def test_load_stored_json_refuses_what_it_could_not_give_back(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_stored_json(text)
