"""``artifactfs serve`` and ``artifactfs key``: running a registry server and its API keys."""

from __future__ import annotations

import errno
import logging
import os
import re
import resource
import signal
import socket
import stat
import sys
from pathlib import Path

import click

from artifactfs.cli.output import fail
from artifactfs.cli.stores import StoreChoice, store_options
from artifactfs.core.errors import ArtifactFSError
from artifactfs.core.names import validate_name

__all__ = ["key", "serve"]

# what can stand unquoted and unescaped in an nginx string ("$" would start a variable)
_SECRET_RE = re.compile(r"[A-Za-z0-9_.~+/=-]{16,}")


def _blob_url_secret(path: Path | None, env: str = "ARTIFACTFS_BLOB_URL_SECRET",
                     what: str = "the blob URL secret") -> str | None:
    """The redirect secret, from its file (which only its owner may read) or, as the CLI
    builds its configuration, from ARTIFACTFS_BLOB_URL_SECRET; never echoed. The web
    view's session secret is read the same way (``env``: ARTIFACTFS_WEB_SECRET)."""
    if path is None:
        return os.environ.get(env) or None
    try:
        st = os.stat(path)
        if st.st_mode & 0o077:
            fail(f"{path} may be read by others (mode {stat.S_IMODE(st.st_mode):o}); "
                 f"chmod 600 {path}")
        return path.read_text().strip() or None
    except OSError as exc:
        fail(f"cannot read {what} from {path}: {exc.strerror}")
    raise AssertionError


def _size_option(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """A size such as ``64M`` (units of 1024), for the limits of ``serve``."""
    from artifactfs.config import parse_size

    try:
        size = parse_size(value)
    except ArtifactFSError as exc:
        raise click.BadParameter(str(exc)) from None
    if size < 1024:
        raise click.BadParameter(f"{value!r} is less than 1K")
    return size


@click.command()
@store_options()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; loopback unless you mean to share it.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option("--header-timeout", default=10.0, show_default=True,
              type=click.FloatRange(min=0.1),
              help="Seconds a client has to send a request line and headers; then the "
                   "connection is closed (408).")
@click.option("--body-timeout", default=60.0, show_default=True,
              type=click.FloatRange(min=0.1),
              help="Seconds a request body (an upload) may go without a byte; then the "
                   "connection is closed.")
@click.option("--max-connections", default=1024, show_default=True,
              type=click.IntRange(min=1),
              help="Connections open at once; beyond, the longest idle one is closed, or the "
                   "request answered 503 when none is idle.")
@click.option("--blob-url-base", default=None,
              help="Redirect blob reads to URL/blobs/xx/HEX, a server holding the same files, "
                   "by addresses signed for nginx's secure_link (needs the secret: "
                   "--blob-url-secret-file or ARTIFACTFS_BLOB_URL_SECRET).")
@click.option("--blob-url-secret-file", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A file (mode 0600) holding the secret the --blob-url-base addresses are "
                   "signed with, as nginx's secure_link_md5 names it: 16 or more of A-Z a-z "
                   "0-9 _ - . ~ + / =. Or set ARTIFACTFS_BLOB_URL_SECRET; never on the "
                   "command line, which every local user can read.")
@click.option("--blob-url-lifetime", default=600, show_default=True,
              type=click.IntRange(min=1, max=7 * 86400),
              help="Seconds a blob address handed to a client works (presigned by a bucket, "
                   "or signed for --blob-url-base).")
@click.option("--max-json-bytes", default="64M", show_default=True, callback=_size_option,
              help="Largest JSON body accepted (K, M, G); a commit's manifest larger than "
                   "that is sent by reference to an uploaded blob.")
@click.option("--max-manifest-bytes", default="256M", show_default=True,
              callback=_size_option,
              help="Largest manifest a commit may name by reference (K, M, G).")
@click.option("--key-cache-seconds", default=60.0, show_default=True,
              type=click.FloatRange(min=0),
              help="Seconds a key found good is trusted without asking the database again: "
                   "a key revoked meanwhile works that long. 0 checks every request.")
@click.option("--metrics-public", is_flag=True,
              help="Answer GET /metrics (Prometheus) without an API key, for a scraper in "
                   "a network you trust; by default it needs a key, as every route does "
                   "(docs/metrics.md).")
@click.option("--web-secret-file", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A file (mode 0600) holding the secret (32 or more characters) the web "
                   "view's session cookies are signed with: the same on every replica, so "
                   "that a login works on all. Or set ARTIFACTFS_WEB_SECRET. Without one, a "
                   "random secret: logins end when the server stops.")
def serve(store_dir: Path | None, db_url: str | None, blobs_url: str | None, host: str,
          port: int, header_timeout: float, body_timeout: float, max_connections: int,
          blob_url_base: str | None, blob_url_secret_file: Path | None,
          blob_url_lifetime: int, max_json_bytes: int,
          max_manifest_bytes: int, key_cache_seconds: float, metrics_public: bool,
          web_secret_file: Path | None) -> None:
    """Serve a store over HTTP for a team (uvicorn; every request needs an API key).

    \b
    Example:
      artifactfs key create myteam            # prints a key, once
      artifactfs serve --store /srv/artifacts --port 8080
      # or on PostgreSQL (after: artifactfs db upgrade --db URL)
      artifactfs serve --db postgresql://afs@db:5432/afs --blobs file:///srv/blobs
      # or the blobs in a bucket too (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID... as for any
      # S3 client); clients then read and upload by presigned URL (docs/storage.md)
      artifactfs serve --db postgresql://afs@db:5432/afs --blobs s3://artifacts/registry
      # clients:
      export ARTIFACTFS_REGISTRY=http://127.0.0.1:8080 ARTIFACTFS_API_KEY=afs_...
      export ARTIFACTFS_ENTITY=myteam
    """
    import uvicorn

    from artifactfs.server import create_app
    from artifactfs.server.connections import ConnectionLimits, limited_protocol

    # the server's own log, with times, in place of the CLI's "warning:" lines
    logging.basicConfig(level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    blob_url_secret = _blob_url_secret(blob_url_secret_file)
    if blob_url_base and not blob_url_secret:
        fail("--blob-url-base needs a secret (--blob-url-secret-file, or "
             "ARTIFACTFS_BLOB_URL_SECRET): its addresses are signed, so that a digest alone "
             "does not make one")
    if blob_url_secret and not blob_url_base:
        fail("the blob URL secret (--blob-url-secret-file or ARTIFACTFS_BLOB_URL_SECRET) is "
             "only used with --blob-url-base")
    if blob_url_secret and not _SECRET_RE.fullmatch(blob_url_secret):
        # the secret itself is never printed, here or in any log
        fail("the blob URL secret must be 16 or more of A-Z a-z 0-9 _ - . ~ + / = "
             "(it is written literally into nginx's secure_link_md5)")
    web_secret = _blob_url_secret(web_secret_file, "ARTIFACTFS_WEB_SECRET", "the web secret")
    if web_secret is not None and len(web_secret) < 32:
        fail("the web secret must have 32 or more characters (make one with: python3 -c "
             "'import secrets; print(secrets.token_urlsafe(32))')")
    try:
        choice = StoreChoice.of(store_dir, db_url, blobs_url)
        if blob_url_base and choice.blobs_in_bucket:  # before storage is asked anything
            fail("--blob-url-base is for a blob folder; blobs in a bucket are read by "
                 "presigned URL")
        store = choice.open()
    except ArtifactFSError as exc:
        fail(str(exc))
    # bound before anything says it serves: a port in use is one line saying which option
    # to change, not a banner followed by uvicorn's traceback
    listener = _listen(host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: serving on {host}, reachable beyond this machine", err=True)
        if metrics_public:
            click.echo("warning: --metrics-public: anyone who reaches this port reads "
                       "/metrics without a key", err=True)
    port = listener.getsockname()[1]  # --port 0: the one the kernel chose
    shown_host = f"[{host}]" if ":" in host else host
    click.echo(f"serving {store.location} on http://{shown_host}:{port}/api/v1 (web view: "
               f"http://{shown_host}:{port}/)", err=True)
    app = create_app(store, blob_url_base=blob_url_base, blob_url_secret=blob_url_secret,
                     max_json_bytes=max_json_bytes, max_manifest_bytes=max_manifest_bytes,
                     blob_url_lifetime=blob_url_lifetime, key_cache_seconds=key_cache_seconds,
                     metrics_public=metrics_public, web_secret=web_secret)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal; exit 0 instead
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    limits = ConnectionLimits(header_timeout=header_timeout, body_timeout=body_timeout,
                              max_connections=_fit_descriptors(max_connections))
    # the event loop shares the GIL with worker threads (a 400,000-entry commit keeps one
    # busy for seconds): handing it over every 1 ms instead of 5 halved the p99 of small
    # requests during such a commit (94 -> 53 ms, benchmarks/server_load.py)
    sys.setswitchinterval(0.001)
    # h11, not httptools: h11 bounds the request head it buffers (see server/connections.py)
    config = uvicorn.Config(app, access_log=False, log_config=None,
                            timeout_graceful_shutdown=10, server_header=False,
                            http=limited_protocol(limits))
    uvicorn.Server(config).run(sockets=[listener])


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``, or one line saying why not and what to do."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        fail(f"cannot serve on --host {host}: {exc.strerror}; give an address or name of "
             "this machine (127.0.0.1 to serve it alone)")
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is already in use; stop what listens there, or "
                 "choose another port with --port")
        if exc.errno == errno.EACCES:
            fail(f"no permission to listen on port {port} (ports below 1024 need root); "
                 "choose another with --port")
        if exc.errno == errno.EADDRNOTAVAIL:
            fail(f"{host} is not an address of this machine; choose another with --host")
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    return listener


# descriptors kept beside the connections: SQLite's files in each worker thread (three per
# thread, 40 threads), blob files being streamed, the log, the listening socket
_SPARE_DESCRIPTORS = 256


def _fit_descriptors(max_connections: int) -> int:
    """``max_connections``, after raising the soft limit of open files to hold them; fewer
    (with a warning) when the hard limit is lower. A server that runs out of descriptors
    stops accepting anyone, the connection limit must come first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _SPARE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(1, soft - _SPARE_DESCRIPTORS)
        click.echo(f"warning: only {soft} open files allowed; serving at most {fitted} "
                   "connections at once", err=True)
        return fitted
    return max_connections


@click.group()
def key() -> None:
    """Manage API keys of a store (run where its database is reachable)."""


@key.command("create")
@click.argument("entity")
@click.option("--read-only", is_flag=True, help="The key may read but not change anything.")
@store_options(blobs=False)
def key_create(entity: str, read_only: bool, store_dir: Path | None,
               db_url: str | None) -> None:
    """Create an API key for ENTITY and print it. It is shown once; only a hash is kept."""
    try:
        validate_name(entity, "entity")
        db = StoreChoice.of(store_dir, db_url).metadata()
        key_text = db.create_key(entity, read_only=read_only)
        made = db.key_info(key=key_text)
    except ArtifactFSError as exc:
        fail(str(exc))
    click.echo(key_text)
    if made is not None:  # the id 'key list' and 'key revoke' name it by; never the key
        access = "read-only" if read_only else "read-write"
        click.echo(f"key {made.id} for entity {entity} ({access}): shown once, keep it",
                   err=True)
