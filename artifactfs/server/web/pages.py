"""The web view's pages: server-rendered (Jinja2), read-only, behind a session cookie.

Routes (see docs/web.md)::

    GET  /                                         projects
    GET  /web/login, POST /web/login               the login form (an API key)
    POST /web/logout
    GET  /web/p/PROJECT                            collections: type, version count
    GET  /web/p/PROJECT/NAME                       versions
    GET  /web/p/PROJECT/NAME/ALIAS                 a version, its root folder, lineage
    GET  /web/p/PROJECT/NAME/ALIAS/tree/PATH       a folder of it
    GET  /web/p/PROJECT/NAME/ALIAS/file/PATH       a file: size, digest, preview
    GET  /web/p/PROJECT/NAME/ALIAS/raw/PATH        an image's verified bytes
    GET  /web/static/NAME                          the style sheet and the copy script

The API's bearer check (server/app.py) does not cover these paths: each page checks the
session cookie here instead, and the API never takes the cookie. Every answer carries a
Content-Security-Policy that allows only this server's own style sheet, script and images:
no inline script, nothing from elsewhere.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import anyio
import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from artifactfs.core.errors import ArtifactFSError, RegistryUnavailable
from artifactfs.core.folders import FolderListing, check_folder_path, parse_stored
from artifactfs.core.limits import escaped
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.names import validate_alias
from artifactfs.core.records import VersionInfo
from artifactfs.core.runs import LOGGED, USED
from artifactfs.core.units import human_size
from artifactfs.core.wire import status_for
from artifactfs.server.web.preview import PREVIEW_BYTES, Preview, image_type, make_preview
from artifactfs.server.web.preview import verified as bytes_verified
from artifactfs.server.web.session import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    SessionSigner,
)
from artifactfs.store import Store

__all__ = ["WEB_PREFIX", "is_web_path", "web_routes"]

log = logging.getLogger("artifactfs.server.web")

WEB_PREFIX = "/web"
_MAX_FORM_BYTES = 16 << 10  # a login form: a key and a token
FOLDER_ROWS = 1000
"""Files of one folder listed on its page: a folder of a million files would make a page of
a hundred megabytes; the rest are counted, and a mount or the CLI lists them all."""
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # not no-referrer: with it a browser sends "Origin: null" on the pages' own forms,
    # and the forms' origin check (_csrf_checked) could not tell them from a foreign one
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_STATIC = {"web.css": "text/css; charset=utf-8", "copy.js": "text/javascript; charset=utf-8"}

Page = Callable[[Request], Awaitable[Response]]


def is_web_path(path: str) -> bool:
    """The paths the web view answers, which the API's bearer check leaves to it: ``/``,
    ``/web/...`` and the ``/favicon.ico`` a browser asks for; every other path, ``/api/v1``
    with all its routes, still needs a key."""
    return (path in ("/", "/favicon.ico", WEB_PREFIX)
            or path.startswith(WEB_PREFIX + "/"))


def _when(t: float | None) -> str:
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _q(text: str) -> str:
    """A name or path inside a URL path (a path's slashes kept)."""
    return urllib.parse.quote(text, safe="/")


class PageError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class WebView:
    """The page handlers, bound to one store and one session signer."""

    def __init__(self, store: Store, signer: SessionSigner) -> None:
        self.store = store
        self.db = store.db
        self.signer = signer
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("artifactfs.server.web", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(size=human_size, when=_when, q=_q)

    # ---- answers -------------------------------------------------------------------------

    def render(self, request: Request, template: str, status: int = 200,
               **context: Any) -> Response:
        session = getattr(request.state, "web_session", None)
        csrf = request.cookies.get(CSRF_COOKIE)
        new_csrf = None
        if not self.signer.csrf_valid(csrf):
            csrf = new_csrf = self.signer.new_csrf_cookie()
        html = self.env.get_template(template).render(
            session=session, csrf=csrf, **context)
        response = HTMLResponse(html, status_code=status, headers=_HEADERS)
        if new_csrf is not None:
            self._cookie(request, response, CSRF_COOKIE, new_csrf, samesite="strict")
        return response

    @staticmethod
    def _cookie(request: Request, response: Response, name: str, value: str, *,
                samesite: str) -> None:
        # Secure whenever the browser came over https (also behind a proxy that says so in
        # X-Forwarded-Proto, which uvicorn trusts from --forwarded-allow-ips)
        response.set_cookie(name, value, max_age=SESSION_SECONDS, path="/", httponly=True,
                            samesite=samesite,  # type: ignore[arg-type]
                            secure=request.url.scheme == "https")

    def page(self, func: Page) -> Page:
        """``func`` behind the session check and the error barrier of the web view."""

        async def endpoint(request: Request) -> Response:
            session = await self._session(request)
            if session is None:
                response: Response = RedirectResponse(WEB_PREFIX + "/login", status_code=303,
                                                      headers=_HEADERS)
                if SESSION_COOKIE in request.cookies:  # forged, expired or revoked
                    response.delete_cookie(SESSION_COOKIE, path="/")
                return response
            request.state.web_session = session
            try:
                return await func(request)
            except PageError as exc:
                return self.render(request, "error.html", exc.status, message=exc.message)
            except RegistryUnavailable as exc:
                log.warning("%s %s: %s", request.method, escaped(request.url.path), exc)
                return self.render(request, "error.html", 503,
                                   message="the registry cannot be reached now; try again "
                                           "in a few seconds")
            except ArtifactFSError as exc:
                return self.render(request, "error.html", status_for(exc), message=str(exc))

        return endpoint

    async def _session(self, request: Request) -> Session | None:
        session = self.signer.session(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        # the key must still be there: revoking it ends every session made with it
        info = await anyio.to_thread.run_sync(lambda: self.db.key_info(key_id=session.key_id))
        if info is None or info.entity != session.entity:
            return None
        return session

    # ---- login ---------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self.render(request, "login.html", message="")

    async def _form(self, request: Request) -> dict[str, str]:
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > _MAX_FORM_BYTES:
                raise PageError(413, "form too large")
        fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
        return {k: v[0] for k, v in fields.items()}

    def _csrf_checked(self, request: Request, form: dict[str, str]) -> Response | None:
        """A refusal for a form without the right token (or from another origin), or None."""
        origin = request.headers.get("origin")
        same = origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"
        if same and self.signer.csrf_matches(request.cookies.get(CSRF_COOKIE),
                                             form.get("csrf")):
            return None
        log.warning("web form %s refused: its CSRF token is missing or wrong",
                    escaped(request.url.path))
        return self.render(request, "error.html", 403,
                           message="this form has expired or did not come from this site; "
                                   "reload the page and try again")

    async def login(self, request: Request) -> Response:
        try:
            form = await self._form(request)
        except PageError as exc:
            return self.render(request, "error.html", exc.status, message=exc.message)
        refused = self._csrf_checked(request, form)
        if refused is not None:
            return refused
        key = form.get("key", "").strip()
        info = await anyio.to_thread.run_sync(lambda: self.db.key_info(key=key)) if key else None
        if info is None:
            log.info("web login refused: unknown API key")  # never the key itself
            return self.render(request, "login.html", 401, message="unknown API key")
        log.info("web login: entity %s, key %d", info.entity, info.id)
        response = RedirectResponse("/", status_code=303, headers=_HEADERS)
        self._cookie(request, response, SESSION_COOKIE, self.signer.session_cookie(
            Session(info.id, info.entity, info.read_only)), samesite="lax")
        return response

    async def logout(self, request: Request) -> Response:
        try:
            form = await self._form(request)
        except PageError as exc:
            return self.render(request, "error.html", exc.status, message=exc.message)
        refused = self._csrf_checked(request, form)
        if refused is not None:
            return refused
        response = RedirectResponse(WEB_PREFIX + "/login", status_code=303, headers=_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response("not found", status_code=404, headers=_HEADERS)
        data = resources.files("artifactfs.server.web").joinpath("static", name).read_bytes()
        return Response(data, media_type=_STATIC[name],
                        headers={**_HEADERS, "Cache-Control": "public, max-age=3600"})

    # ---- pages ---------------------------------------------------------------------------

    @staticmethod
    def _entity(request: Request) -> str:
        return str(request.state.web_session.entity)

    async def _run(self, func: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(func)

    async def projects(self, request: Request) -> Response:
        entity = self._entity(request)
        found = await self._run(lambda: self.db.list_projects(entity))
        return self.render(request, "projects.html", projects=found)

    async def collections(self, request: Request) -> Response:
        entity, project = self._entity(request), request.path_params["project"]
        found = await self._run(lambda: self.db.list_collections(entity, project))
        if not found:
            raise PageError(404, f"project {project!r} not found")
        return self.render(request, "collections.html", project=project, collections=found)

    async def versions(self, request: Request) -> Response:
        entity = self._entity(request)
        project, name = request.path_params["project"], request.path_params["name"]
        found = await self._run(lambda: self.db.list_versions(entity, project, name))
        if not found:
            raise PageError(404, f"artifact {project}/{name} not found")
        return self.render(request, "versions.html", project=project, name=name,
                           versions=found, type=found[0].type)

    async def _resolve(self, request: Request) -> VersionInfo:
        p = request.path_params
        validate_alias(p["alias"], allow_version=True)
        entity = self._entity(request)
        info: VersionInfo = await self._run(
            lambda: self.db.resolve(entity, p["project"], p["name"], p["alias"]))
        return info

    async def _folder(self, info: VersionInfo, path: str) -> FolderListing:
        if path:
            check_folder_path(path)
        texts = await self._run(lambda: self.db.folder_texts(info.id, [path]))
        return parse_stored(texts, [path])[0]

    def _folder_context(self, request: Request, info: VersionInfo,
                        listing: FolderListing) -> dict[str, Any]:
        alias = request.path_params["alias"]
        base = f"{WEB_PREFIX}/p/{_q(info.project)}/{_q(info.name)}/{_q(alias)}"
        crumbs = []
        parts = listing.path.split("/") if listing.path else []
        for i, part in enumerate(parts):
            crumbs.append((part, "/".join(parts[: i + 1])))
        entries: list[ManifestEntry] = []
        for entry in listing.files.values():
            if len(entries) == FOLDER_ROWS:
                break
            entries.append(entry)
        return {"info": info, "alias": alias, "base": base, "listing": listing,
                "crumbs": crumbs, "entries": entries,
                "more": len(listing.files) - len(entries)}

    async def version(self, request: Request) -> Response:
        info = await self._resolve(request)
        listing = await self._folder(info, "")
        entity = self._entity(request)
        producers = await self._run(lambda: self.store.runs.runs_of(entity, info.id, LOGGED))
        consumers = await self._run(lambda: self.store.runs.runs_of(entity, info.id, USED))
        alias = request.path_params["alias"]
        ref = f"{info.project}/{info.name}:{alias}"
        registry = str(request.base_url).rstrip("/")
        snippets = {
            "shell": (f"export ARTIFACTFS_REGISTRY={registry} ARTIFACTFS_API_KEY=afs_...\n"
                      f"artifactfs download {ref} --root ./{info.name}\n"
                      f"artifactfs verify {ref} --root ./{info.name}"),
            "mount": (f"mkdir -p /mnt/art && artifactfs mount --read-only /mnt/art\n"
                      f"ls /mnt/art/{info.project}/{info.type}/{info.name}:{alias}/"),
            "python": ("import artifactfs\n\n"
                       f'art = artifactfs.Api().artifact("{ref}")\n'
                       "path = art.download()  # every file verified"),
        }
        return self.render(request, "version.html", producers=producers,
                           consumers=consumers, snippets=snippets,
                           **self._folder_context(request, info, listing))

    async def tree(self, request: Request) -> Response:
        info = await self._resolve(request)
        listing = await self._folder(info, request.path_params["path"].strip("/"))
        return self.render(request, "folder.html",
                           **self._folder_context(request, info, listing))

    async def _entry(self, request: Request) -> tuple[VersionInfo, FolderListing,
                                                      ManifestEntry]:
        info = await self._resolve(request)
        path = request.path_params["path"]
        listing = await self._folder(info, path.rpartition("/")[0])
        entry = listing.files.get(path)
        if entry is None:
            raise PageError(404, f"{info.project}/{info.name}:{info.version} has no file "
                                 f"{path!r}")
        return info, listing, entry

    def _read_verified(self, entity: str, entry: ManifestEntry) -> bytes | str:
        """The entry's bytes, checked against its digest; or why they are not shown."""
        if entry.ref is not None:
            return f"a reference to {entry.ref}: its bytes are not kept here"
        digest = entry.stored_digest
        if digest is None:
            return "no stored blob for this entry"
        if entry.size > PREVIEW_BYTES:
            return (f"{human_size(entry.size)}: too large to preview here (up to "
                    f"{human_size(PREVIEW_BYTES)}); download it")
        data = self.store.access.read(entity, digest, 0, entry.size)
        if not bytes_verified(entry, data):
            log.warning("web preview of %s (%s) refused: its stored bytes failed their "
                        "digest check", escaped(entry.path), digest)
            return "its stored bytes failed their digest check: not shown"
        return data

    async def file(self, request: Request) -> Response:
        info, listing, entry = await self._entry(request)
        entity = self._entity(request)
        data = await self._run(lambda: self._read_verified(entity, entry))
        if isinstance(data, str):
            preview = Preview("none", note=data)
        else:
            preview = await self._run(lambda: make_preview(entry.path, data))
        context = self._folder_context(request, info, listing)
        return self.render(request, "file.html", entry=entry, preview=preview,
                           file_name=entry.path.rpartition("/")[2], **context)

    async def raw(self, request: Request) -> Response:
        """An image's bytes, for the ``<img>`` of its preview: verified, with the type its
        bytes show and ``nosniff``; anything that is not a raster image is not served."""
        _, _, entry = await self._entry(request)
        entity = self._entity(request)
        data = await self._run(lambda: self._read_verified(entity, entry))
        kind = image_type(data) if isinstance(data, bytes) else None
        if kind is None or not isinstance(data, bytes):
            raise PageError(404, "no image to show here")
        return Response(data, media_type=kind, headers={
            **_HEADERS, "Content-Security-Policy": "default-src 'none'; sandbox",
            "Content-Disposition": "inline", "Cache-Control": "private, max-age=3600"})

    def routes(self) -> list[BaseRoute]:
        v = "/p/{project}/{name}/{alias}"
        return [
            Route("/", self.page(self.projects), methods=["GET"]),
            # no icon: an empty answer, not the API's 401 that a browser's console shows
            Route("/favicon.ico", lambda _: Response(status_code=204, headers=_HEADERS)),
            Mount(WEB_PREFIX, routes=[
                Route("/", self.page(self.projects), methods=["GET"]),
                Route("/login", self.login_form, methods=["GET"]),
                Route("/login", self.login, methods=["POST"]),
                Route("/logout", self.logout, methods=["POST"]),
                Route("/static/{name}", self.static, methods=["GET"]),
                Route("/p/{project}", self.page(self.collections), methods=["GET"]),
                Route("/p/{project}/{name}", self.page(self.versions), methods=["GET"]),
                Route(v, self.page(self.version), methods=["GET"]),
                Route(v + "/tree/{path:path}", self.page(self.tree), methods=["GET"]),
                Route(v + "/file/{path:path}", self.page(self.file), methods=["GET"]),
                Route(v + "/raw/{path:path}", self.page(self.raw), methods=["GET"]),
            ]),
        ]


def web_routes(store: Store, secret: str) -> list[BaseRoute]:
    """The web view's routes over ``store``, its sessions signed with keys from ``secret``."""
    return WebView(store, SessionSigner(secret)).routes()
