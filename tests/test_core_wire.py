"""The HTTP protocol's pure functions (artifactfs.core.wire): Range parsing at the extremes."""

from __future__ import annotations

import pytest

from artifactfs.core.errors import InvalidRequest
from artifactfs.core.wire import RangeNotSatisfiable, error_from_response, parse_range

MANY = "9" * 5000  # past Python's int() limit of 4,300 digits


@pytest.mark.parametrize(
    ("header", "size", "wanted"),
    [
        ("bytes=0-" + MANY, 10, (0, 10)),  # a last position past the end is the end
        ("bytes=-" + MANY, 10, (0, 10)),  # a suffix longer than the blob is all of it
        ("bytes=" + "0" * 5000 + "3-4", 10, (3, 5)),  # leading zeros are only zeros
        ("bytes=2-" + "0" * 4999 + "5", 10, (2, 6)),
        ("bytes=5-" + "1" * 25, 2**63 - 1, (5, 2**63 - 1)),
        ("bytes=" + MANY + "-3", 10, None),  # last before first: invalid, so ignored
        ("bytes=٣-", 10, None),  # not ASCII digits: not a range
        ("bytes=0-1,3-4", 10, None),  # several ranges: ignored, as RFC 9110 allows
    ],
)
def test_range_positions_of_any_length(header: str, size: int,
                                       wanted: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == wanted


@pytest.mark.parametrize("header", ["bytes=" + MANY + "-", "bytes=" + MANY + "-" + MANY + "9"])
def test_range_starting_past_every_resource_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 10)


def test_invalid_request_crosses_the_wire_as_itself() -> None:
    body = {"error": {"type": "InvalidRequest", "message": "metadata is nested deeper than 64"}}
    err = error_from_response(400, body)
    assert isinstance(err, InvalidRequest)
    assert str(err) == "metadata is nested deeper than 64"
