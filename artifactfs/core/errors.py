"""The errors artifactfs raises, shared by every layer.

The tree::

    ArtifactFSError
    ├── InvalidName (also ValueError)      a name, type, alias, ref or path breaks a rule
    ├── InvalidManifest (also ValueError)  a manifest cannot be read or holds a bad entry
    ├── InvalidRequest (also ValueError)   a field is of the wrong form or past its bound
    ├── NotFound (also KeyError)           an entity, project, collection, version or blob is absent
    ├── Conflict                           the request clashes with the registry's state
    ├── DigestMismatch                     bytes do not match the digest they were promised to have
    │   └── ReferenceChanged               a reference's source no longer holds what was logged
    ├── ReferenceUnavailable               a reference's source cannot be read (gone, refused,
    │                                      unreachable, no credentials)
    ├── PermissionDenied                   the credentials may not do this
    ├── SchemaMismatch                     a database's schema is newer than this code, or older
    └── RegistryUnavailable                the registry or blob store cannot be reached now
        ├── RegistryFault                  it answered, with a fault of its own, this request
        └── DatabaseUnavailable            the store's database cannot be used now (down,
                                           restarting, a connection lost, locked too long)

User errors carry a message that says what was wrong and, where it helps, what to do next;
the CLI prints the message alone, never a traceback.
"""

from __future__ import annotations

__all__ = [
    "ArtifactFSError",
    "Conflict",
    "DatabaseUnavailable",
    "DigestMismatch",
    "InvalidManifest",
    "InvalidName",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "ReferenceChanged",
    "ReferenceUnavailable",
    "RegistryFault",
    "RegistryUnavailable",
    "SchemaMismatch",
]


class ArtifactFSError(Exception):
    """Base of every error artifactfs raises on purpose."""


class InvalidName(ArtifactFSError, ValueError):
    """A name, type, alias, ref or manifest path breaks one of the naming rules."""


class InvalidManifest(ArtifactFSError, ValueError):
    """A manifest is malformed or holds an entry that may not be used."""


class InvalidRequest(ArtifactFSError, ValueError):
    """A field of a request (metadata, description...) has the wrong form or is too large."""


class NotFound(ArtifactFSError, KeyError):
    """The thing looked for does not exist; the message names it."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "not found"


class Conflict(ArtifactFSError):
    """The request clashes with the registry's current state (an alias held, a moved alias)."""


class DigestMismatch(ArtifactFSError):
    """Bytes differ from the digest they should have."""


class ReferenceChanged(DigestMismatch):
    """A reference's source (a file, an HTTP object, an S3 object) no longer holds the bytes
    the entry was logged with: another digest, ETag or version. The message names the entry
    and the URI (which never carries credentials: they are stripped when it is logged)."""


class ReferenceUnavailable(ArtifactFSError):
    """A reference's source cannot be read now: the file or object is gone, the server
    refused or did not answer, or the reading client has no credentials for it. Not a
    ``RegistryUnavailable``: the registry itself is fine, and a mount must not take the
    registry for down because one referenced server is."""


class PermissionDenied(ArtifactFSError):
    """The credentials in use may not perform this operation."""


class SchemaMismatch(ArtifactFSError):
    """A store's database has a schema this code does not use: one a newer artifactfs wrote
    (refused: its rows may mean what this code cannot keep), or an older one that is only
    upgraded on request (``artifactfs db upgrade``)."""


class RegistryUnavailable(ArtifactFSError):
    """The registry or its blob store could not be reached within the allowed time."""


class RegistryFault(RegistryUnavailable):
    """The registry answered, but with a fault of its own (HTTP 5xx) for this request.

    Unlike an unreachable registry, this says nothing of other requests: one broken
    collection must not make a mount treat the whole registry as down.
    """


class DatabaseUnavailable(RegistryUnavailable):
    """A store's database cannot be used now: PostgreSQL down, restarting or unreachable, a
    connection lost, a SQLite file locked by another process past the busy timeout, or its
    disk failing. The message names the database (never its password) and says what to do;
    a server logs it and tells its clients less (``server/app.py``), since an address of
    the database is nothing a client needs. Constraint and integrity errors are not this:
    they stay what they are."""
