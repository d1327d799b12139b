"""What the registry accepts and stores: bounds on sizes, JSON values and text, as pure checks.

A registry that stores a value must be able to give it back. SQLite's INTEGER is 64-bit
signed, so a size (or a manifest's total) past ``2**63 - 1`` can not be stored; ``json`` and
``dataclasses.asdict`` recurse, so a value nested a few hundred levels deep can be written
but not read back; UTF-8 can not encode an unpaired surrogate, which JSON's ``\\ud800``
escape makes easy to send. The checks here refuse such values where they come in (the
server at commit and PATCH, the embedded store, and the SDK before it sends), and the
server reads older rows through :func:`json_depth` so that none of them can break a read.

Every message shows the offending text escaped (``repr``-like), never raw control bytes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from artifactfs.core.errors import ArtifactFSError, InvalidRequest

__all__ = [
    "MAX_DESCRIPTION_BYTES",
    "MAX_EXTRA_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_METADATA_BYTES",
    "MAX_SIZE",
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "UNREADABLE_KEY",
    "check_description",
    "check_json",
    "check_metadata",
    "check_tags",
    "check_text",
    "escaped",
    "finite_float",
    "forbidden_char",
    "json_depth",
    "load_stored_json",
    "shown",
]

MAX_SIZE = 2**63 - 1
"""Largest size (of an entry, or of a whole version) a registry stores: SQLite's INTEGER."""
MAX_JSON_DEPTH = 64
"""Deepest nesting of a stored JSON value (``{"a": 1}`` is 1 deep, ``{"a": [1]}`` 2)."""
MAX_METADATA_BYTES = 1 << 20
"""Largest serialized metadata of a version (and of a manifest's own extra fields)."""
MAX_DESCRIPTION_BYTES = 64 << 10
"""Largest description of a version, in UTF-8 bytes."""
MAX_EXTRA_BYTES = 64 << 10
"""Largest serialized ``extra`` (plus unknown keys) of one manifest entry."""
MAX_TAGS = 100
"""Tags on one version; W&B sets no number, and a hundred is past any use seen."""
MAX_TAG_CHARS = 256
_TAG = re.compile(r"[-\w]+( +[-\w]+)*")  # W&B's TAG_REGEX: words, spaces between

UNREADABLE_KEY = "_artifactfs_unreadable"
"""The one key of the metadata a registry shows for a stored value it can not give back
(written by an older version without bounds); its value says why."""

# C0 controls, DEL and the surrogate range: none belongs in a path, a name or a URI, and a
# lone surrogate can not even be written to SQLite or sent as UTF-8
_FORBIDDEN = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def forbidden_char(text: str) -> str | None:
    """The first C0 control, DEL or unpaired surrogate in ``text``, or None."""
    m = _FORBIDDEN.search(text)
    return m.group() if m else None


def escaped(text: str) -> str:
    """``text`` with each non-printable character escaped as ``repr`` would, unquoted: what
    a log line may hold of a client's path without letting it forge lines or colours."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(text: str, limit: int = 80) -> str:
    """``text`` as a message may print it: quoted, non-printables escaped, cut at ``limit``."""
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} characters)"
    return repr(text)


def check_text(
    text: str, what: str, *, max_length: int, error: type[ArtifactFSError] = InvalidRequest
) -> str:
    """Refuse a text with control characters or surrogates, or longer than ``max_length``
    characters; return it unchanged."""
    bad = forbidden_char(text)
    if bad is not None:
        kind = "an unpaired surrogate" if "\ud800" <= bad <= "\udfff" else "a control character"
        raise error(f"{what} {shown(text)} contains {kind} ({bad!r})")
    if len(text) > max_length:
        raise error(f"{what} {shown(text)} is longer than {max_length} characters")
    return text


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply ``value`` nests, counting each list and dict as one level; stops counting
    (and returns ``limit + 1``) as soon as it passes ``limit``.

    Iterative, so a value too deep for ``json.dumps`` or ``asdict`` is measured safely.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return limit + 1
        stack.extend((c, depth) for c in children if isinstance(c, (dict, list, tuple)))
    return deepest


def check_json(
    value: Any,
    what: str,
    *,
    max_bytes: int,
    max_depth: int = MAX_JSON_DEPTH,
    error: type[ArtifactFSError] = InvalidRequest,
) -> int:
    """Refuse a JSON value nested deeper than ``max_depth``, larger than ``max_bytes`` when
    serialized, or not representable as strict JSON in UTF-8 (NaN, Infinity, an unpaired
    surrogate, a non-JSON type); return its serialized size.

    Raises ``error`` with a message naming ``what`` and the limit it breaks.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))
    except RecursionError:
        raise error(f"{what} is nested deeper than {max_depth} levels") from None
    except UnicodeEncodeError as exc:
        raise error(f"{what} holds a string with an unpaired surrogate "
                    f"({exc.object[exc.start:exc.end]!r})") from None
    except (TypeError, ValueError) as exc:
        raise error(f"{what} is not plain JSON: {exc}") from None
    if size > max_bytes:
        raise error(f"{what} is {size} bytes as JSON; the limit is {max_bytes}")
    # fewer brackets than levels allowed (brackets in strings count too, so this errs on the
    # safe side) proves the depth without walking the value: most metadata is flat
    if text.count("{") + text.count("[") > max_depth and json_depth(value, max_depth) > max_depth:
        raise error(f"{what} is nested deeper than {max_depth} levels")
    return size


def check_metadata(metadata: Any, what: str = "metadata") -> dict[str, Any]:
    """Refuse metadata that is not a JSON object within the depth and size bounds."""
    if not isinstance(metadata, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    check_json(metadata, what, max_bytes=MAX_METADATA_BYTES)
    return metadata


def check_description(description: str | None) -> str | None:
    """Refuse a description over the size bound or that UTF-8 can not encode.

    Control characters such as newlines are allowed: a description is free text. NUL is
    not: PostgreSQL's text cannot hold it, and a store must take on one engine what it
    takes on the other.
    """
    if description is None:
        return None
    if not isinstance(description, str):
        raise InvalidRequest("description must be a string")
    if "\x00" in description:
        raise InvalidRequest("description holds a NUL character (U+0000)")
    try:
        size = len(description.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidRequest("description holds an unpaired surrogate "
                             f"({exc.object[exc.start:exc.end]!r})") from None
    if size > MAX_DESCRIPTION_BYTES:
        raise InvalidRequest(
            f"description is {size} bytes; the limit is {MAX_DESCRIPTION_BYTES}"
        )
    return description


def load_stored_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode a JSON value a registry stored, refusing what it could not give back.

    Raises ValueError (never RecursionError) when ``text`` is not strict JSON, nests deeper
    than ``max_depth``, or holds an unpaired surrogate: a value an older version stored
    without bounds must make one field unreadable, not every read of its row.
    """
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=finite_float)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    # a bracket count within the limit proves the depth without walking the value
    if (text.count("{") + text.count("[") > max_depth
            and json_depth(value, max_depth) > max_depth):
        raise ValueError(f"nested deeper than {max_depth} levels")
    # only a \ud800-\udfff escape can make a surrogate in text that sqlite gave back
    if "\\u" in text and "\\ud" in text.lower():
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("holds an unpaired surrogate") from None
    return value


def finite_float(text: str) -> float:
    """``json.loads``' ``parse_float`` that refuses numbers past a double (``1e999``):
    Python reads them as infinity, which strict JSON can not write back."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {shown(text, 40)} is too large for a double")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"holds {name}, which is not JSON")


def check_tags(tags: Any) -> list[str]:
    """Tags as W&B takes them: one string, or any other iterable of strings (a list, as
    JSON sends them), each words of letters, digits, ``_`` and ``-`` with spaces between,
    duplicates dropped (the first kept, in order). Raises InvalidRequest saying which tag
    is refused and what a tag may hold, or that there are more than MAX_TAGS."""
    if isinstance(tags, str):
        tags = [tags]
    elif isinstance(tags, bytes | bytearray | dict) or not hasattr(tags, "__iter__"):
        raise InvalidRequest("tags must be a list of strings")
    out: list[str] = []
    seen: set[str] = set()
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidRequest(f"a tag is a string, not {type(tag).__name__}")
        if tag in seen:
            continue
        if len(tag) > MAX_TAG_CHARS or not _TAG.fullmatch(tag):
            raise InvalidRequest(
                f"tag {shown(tag)} is not allowed: a tag is at most "
                f"{MAX_TAG_CHARS} letters, digits, '_' and '-', with spaces between words")
        seen.add(tag)
        out.append(tag)
        if len(out) > MAX_TAGS:  # before the rest: a hostile list may be millions long
            raise InvalidRequest(f"more than {MAX_TAGS} tags; a version holds at most "
                                 f"{MAX_TAGS}")
    return out
