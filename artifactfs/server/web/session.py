"""The web view's signed, stateless session cookie and its CSRF tokens.

A session is a cookie the server signed (itsdangerous, HMAC-SHA1 over a key derived from
the server's web secret with a salt of its own): it names the API key's id, entity and
access, and the CSRF token of the session. Nothing is kept on the server, so any replica
given the same secret (``serve --web-secret-file`` or ``ARTIFACTFS_WEB_SECRET``) accepts
the cookie another made. The API key itself is never in the cookie: each page checks that
the key id still exists, so revoking the key ends its sessions at once.

CSRF: every form carries a token that must equal the one in a signed cookie of its own
(``afs_csrf``, set with the login form and kept through the session): a page of another
site can make a browser send the cookie but cannot read it to fill in the field. The
cookies are also ``SameSite=Strict``, a second line against the same attack.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

__all__ = ["CSRF_COOKIE", "SESSION_COOKIE", "SESSION_SECONDS", "Session", "SessionSigner"]

SESSION_COOKIE = "afs_session"
CSRF_COOKIE = "afs_csrf"
SESSION_SECONDS = 12 * 3600
"""How long a login lasts: a working day; the cookie's signature carries its time, so an
old cookie is refused even if a browser kept it."""
MIN_SECRET_LENGTH = 32
"""Shortest web secret accepted: 32 characters of ``secrets.token_urlsafe`` are 190 bits."""


@dataclass(frozen=True, slots=True)
class Session:
    """Who a session cookie says is logged in."""

    key_id: int
    entity: str
    read_only: bool


class SessionSigner:
    """Signs and checks the session and CSRF cookies with keys derived from one secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the web secret must have {MIN_SECRET_LENGTH} or more characters")
        # distinct salts derive distinct keys: a CSRF cookie is never a valid session
        self._sessions = URLSafeTimedSerializer(secret, salt="artifactfs-web-session-v1")
        self._csrf = URLSafeTimedSerializer(secret, salt="artifactfs-web-csrf-v1")

    def session_cookie(self, session: Session) -> str:
        return self._sessions.dumps([session.key_id, session.entity, session.read_only])

    def session(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None for none, a forged one or an expired one."""
        if not cookie:
            return None
        try:
            raw = self._sessions.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:  # SignatureExpired is one too
            return None
        if (not isinstance(raw, list) or len(raw) != 3 or not isinstance(raw[0], int)
                or not isinstance(raw[1], str) or not isinstance(raw[2], bool)):
            return None
        return Session(raw[0], raw[1], raw[2])

    def new_csrf_cookie(self) -> str:
        return self._csrf.dumps(secrets.token_urlsafe(24))

    def csrf_valid(self, cookie: str | None) -> bool:
        if not cookie:
            return False
        try:
            self._csrf.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return False
        return True

    def csrf_matches(self, cookie: str | None, field: str | None) -> bool:
        """A form's token is good: the signed cookie's own value, sent back in the form."""
        if not cookie or not field or not self.csrf_valid(cookie):
            return False
        return hmac.compare_digest(cookie.encode(), field.encode())
