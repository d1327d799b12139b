"""Names, types, aliases and refs: the rules of docs/architecture.md ("The data model"),
as pure functions.

A ref is ``[ENTITY/]PROJECT/NAME[:ALIAS_OR_VERSION]``; no alias means ``latest``. An alias of
the form ``v<digits>`` is a version index, never a label, so it can not be assigned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from artifactfs.core.errors import InvalidName

__all__ = [
    "LATEST",
    "MAX_NAME_LENGTH",
    "Ref",
    "parse_ref",
    "parse_version_label",
    "validate_alias",
    "validate_commit_key",
    "validate_name",
    "validate_type",
    "version_label",
]

MAX_NAME_LENGTH = 128
LATEST = "latest"

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_VERSION_RE = re.compile(r"v(0|[1-9][0-9]*)")
_VERSION_LIKE_RE = re.compile(r"v[0-9]+")  # v01 is no version, but too close to be a label
# control characters print as terminal commands; an unpaired surrogate can not be stored
_ALIAS_FORBIDDEN = re.compile("[/:\x00-\x1f\x7f\ud800-\udfff]")


def validate_name(name: str, what: str = "name") -> str:
    """Check an entity, project or collection name; return it unchanged.

    Raises InvalidName naming the rule: only letters, digits, ``_``, ``.`` and ``-``,
    1 to 128 characters, and not ``.`` or ``..`` (they would be folders in a mount).
    """
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{what} must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"{what} {name[:40]!r}... is longer than {MAX_NAME_LENGTH} characters")
    if not _NAME_RE.fullmatch(name):
        raise InvalidName(
            f"{what} {name!r} may only contain letters, digits, '_', '.' and '-'"
        )
    if name in (".", ".."):
        raise InvalidName(f"{what} may not be {name!r}")
    return name


def validate_type(type_: str) -> str:
    """Check an artifact type (``dataset``, ``model``...); same rules as names."""
    return validate_name(type_, "type")


def validate_alias(alias: str, *, allow_version: bool = False) -> str:
    """Check an alias; return it unchanged.

    Aliases are free-form labels without ``/``, ``:``, control characters (C0 and DEL) or
    unpaired surrogates, at most 128 characters. ``vN`` is a version index: it is accepted
    only where a version may be named (``allow_version``), never as a label to assign.
    """
    if not isinstance(alias, str) or not alias:
        raise InvalidName("alias must not be empty")
    if len(alias) > MAX_NAME_LENGTH:
        raise InvalidName(f"alias {alias[:40]!r}... is longer than {MAX_NAME_LENGTH} characters")
    if _ALIAS_FORBIDDEN.search(alias):
        raise InvalidName(
            f"alias {alias!r} may not contain '/', ':', control characters or surrogates"
        )
    if alias in (".", ".."):
        raise InvalidName(f"alias may not be {alias!r}")
    if not allow_version and _VERSION_LIKE_RE.fullmatch(alias):
        raise InvalidName(
            f"alias {alias!r} looks like a version index (v<digits>); choose another label"
        )
    return alias


def parse_version_label(label: str) -> int | None:
    """Return N for ``vN``, or None when the label is an alias."""
    m = _VERSION_RE.fullmatch(label)
    return int(m.group(1)) if m else None


def version_label(index: int) -> str:
    """``3`` -> ``v3``."""
    return f"v{index}"


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed ``[ENTITY/]PROJECT/NAME[:ALIAS_OR_VERSION]``; entity None means the default."""

    project: str
    name: str
    alias: str = LATEST
    entity: str | None = None

    @property
    def version_index(self) -> int | None:
        """N when the ref names ``vN``, else None."""
        return parse_version_label(self.alias)

    def with_entity(self, entity: str) -> Ref:
        return Ref(self.project, self.name, self.alias, self.entity or entity)

    def __str__(self) -> str:
        prefix = f"{self.entity}/" if self.entity else ""
        return f"{prefix}{self.project}/{self.name}:{self.alias}"


def parse_ref(text: str, *, default_project: str | None = None) -> Ref:
    """Parse a ref, checking every part.

    ``default_project`` lets a bare ``NAME[:ALIAS]`` through (the SDK's ``Api.artifact``
    accepts that form when a project is configured). Raises InvalidName saying which part is
    wrong and what the form is.
    """
    if not isinstance(text, str) or not text:
        raise InvalidName("ref must not be empty; the form is [ENTITY/]PROJECT/NAME[:ALIAS]")
    path, sep, alias = text.partition(":")
    if sep and not alias:
        raise InvalidName(f"ref {text!r} ends with ':'; give an alias or version after it")
    parts = path.split("/")
    if len(parts) == 1 and default_project is not None:
        parts = [default_project, parts[0]]
    if len(parts) not in (2, 3):
        raise InvalidName(
            f"ref {text!r} must have the form [ENTITY/]PROJECT/NAME[:ALIAS_OR_VERSION]"
        )
    entity = validate_name(parts[0], "entity") if len(parts) == 3 else None
    project = validate_name(parts[-2], "project")
    name = validate_name(parts[-1], "artifact name")
    alias = validate_alias(alias, allow_version=True) if sep else LATEST
    return Ref(project=project, name=name, alias=alias, entity=entity)


_COMMIT_KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")


def validate_commit_key(key: object) -> str:
    """A commit's idempotency key: 16 to 128 letters, digits, ``_`` or ``-`` (a random id
    the client makes once per change it commits). Raises InvalidName otherwise."""
    if not isinstance(key, str) or not _COMMIT_KEY_RE.fullmatch(key):
        raise InvalidName("a commit key is 16 to 128 letters, digits, '_' or '-'")
    return key
