"""The web view (server/web/, docs/web.md) on a real ``artifactfs serve``: a real browser
(Debian's chromium, driven by Playwright) logs in with a read-only key, browses to files and
checks their previews; plain HTTP checks the refusals (a bad key, a forged cookie, a form
without its CSRF token, the API without a bearer key) and the preview's digest check.

With ``AFS_WEB_SCREENSHOTS=docs/images`` the browser test writes the screenshots
docs/web.md shows there (otherwise into its temporary folder).
"""

from __future__ import annotations

import base64
import contextlib
import html
import os
import re
import shutil
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import RegistryServer, make_tree

import artifactfs
from artifactfs import Api, Artifact
from artifactfs.config import Config
from artifactfs.server.web.preview import image_type, make_preview
from artifactfs.server.web.session import Session, SessionSigner
from artifactfs.store import Store

CHROMIUM = "/usr/bin/chromium"
SECRET = "web-secret-for-tests-" + "x" * 24
PROJECT = "vision"
CSV = b"id,label,score\n1,cat,0.9\n2,dog,0.7\n3,<b>bird</b>,0.5\n"
HOSTILE_HTML = b"<html><script>window.pwned = 1</script><h1 id='evil'>evil</h1></html>\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n'


def _png(width: int = 96, height: int = 64) -> bytes:
    """A real PNG (an orange gradient), written with zlib: no image library needed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + bytes([255, 60 + 3 * x % 190, 10]) * width
                    for x in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8,
                                                              2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@dataclass
class WebRegistry:
    server: RegistryServer
    store: Path
    read_key: str
    write_key: str
    other_key: str  # another entity's

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebRegistry]:
    """A store with a dataset version (CSV, text, JSON, a PNG, hostile HTML and SVG in
    folders), logged by one run and used by another, served with a web secret."""
    root = tmp_path_factory.mktemp("web")
    store = root / "store"
    src = make_tree(root / "src", {
        "data/table.csv": CSV,
        "data/notes/readme.txt": b"first cut of the labels\n",
        "config.json": b'{"lr": 0.001, "layers": [64, 32]}',
        "img/logo.png": _png(),
        "page.html": HOSTILE_HTML,
        "pic.svg": SVG,
    })
    config = Config.from_env({"ARTIFACTFS_STORE": str(store), "HOME": str(root / "home"),
                              "ARTIFACTFS_CACHE_DIR": str(root / "cache")})
    api = Api(config=config)
    try:
        with artifactfs.init(project=PROJECT, job_type="prep", name="prep-1", api=api) as run:
            art = Artifact("labels", type="dataset", metadata={"rows": 3, "source": "demo"})
            art.add_dir(str(src))
            art.tags = ["demo-set", "needs review"]
            run.log_artifact(art, aliases=["best"])
        with artifactfs.init(project=PROJECT, job_type="train", name="train-1",
                             api=api) as run:
            run.use_artifact(f"{PROJECT}/labels:best")
    finally:
        api.close()
    db = Store(store).db
    keys = (db.create_key("local", read_only=True), db.create_key("local"),
            db.create_key("someone"))
    server = RegistryServer(store, root / "server.log",
                            env=_server_env(SECRET))
    try:
        yield WebRegistry(server, store, *keys)
    finally:
        server.stop()
    assert SECRET not in server.log_text()
    for key in keys:
        assert key not in server.log_text()


def _server_env(secret: str) -> dict[str, str]:
    """The environment of a server: this one's without its ARTIFACTFS_ settings (a
    developer's shell may have some), and the web secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
    return {**env, "ARTIFACTFS_WEB_SECRET": secret}


def _csrf(client: httpx.Client) -> str:
    page = client.get("/web/login")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return html.unescape(found.group(1))


@contextlib.contextmanager
def _login(url: str, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url) as client:
        answer = client.post("/web/login", data={"key": key, "csrf": _csrf(client)})
        assert answer.status_code == 303, answer.text
        yield client


# ---- in a real browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: make system-deps installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # Playwright's own browser download is never used: Debian's build, headless (as root
        # it needs --no-sandbox; a container's small /dev/shm is not used); its
        # process is ended by close() (and by Playwright's driver if the test dies)
        chromium = pw.chromium.launch(executable_path=CHROMIUM,
                                      args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("AFS_WEB_SCREENSHOTS") or tmp_path)


def test_browser_logs_in_and_browses_to_previews(registry: WebRegistry, browser: Any,
                                                 shots: Path) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    problems: list[str] = []  # CSP violations and script errors land in the console
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    answer = page.goto(registry.url + "/")
    assert answer is not None and page.url.endswith("/web/login")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    page.screenshot(path=str(shots / "web-login.png"))
    page.fill("#key", registry.read_key)
    page.click("button[type=submit]")
    page.wait_for_url(registry.url + "/", timeout=5000)
    cookie = next(c for c in page.context.cookies() if c["name"] == "afs_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert registry.read_key not in cookie["value"]
    assert "read-only key" in page.inner_text("header")

    page.click(f"text={PROJECT}")
    row = page.locator("table.list tbody tr", has_text="labels")
    assert "dataset" in row.inner_text() and "1" in row.inner_text()
    page.click("text=labels")
    page.click("text=v0")
    assert sorted(page.inner_text("#aliases").split()) == ["best", "latest"]
    assert [t.strip() for t in page.locator("#tags .tag").all_inner_texts()] == [
        "demo-set", "needs review"]
    assert page.inner_text("#metadata").count("demo") == 1
    lineage = page.inner_text("#lineage")
    assert "prep-1" in lineage.split("Used by")[0] and "train-1" in lineage.split("Used by")[1]
    assert f"artifactfs download {PROJECT}/labels:v0" in page.inner_text("#snippet-shell")
    page.screenshot(path=str(shots / "web-version.png"), full_page=True)

    page.click("#files >> text=data/")
    page.click("#files >> text=table.csv")
    cells = page.locator("#preview table td").all_inner_texts()
    assert cells[:3] == ["1", "cat", "0.9"] and "<b>bird</b>" in cells  # as text
    assert page.locator("#preview th").all_inner_texts() == ["id", "label", "score"]
    page.screenshot(path=str(shots / "web-csv.png"))
    page.go_back()
    page.click("#files >> text=notes/")
    page.click("#files >> text=readme.txt")
    assert page.inner_text("#preview pre") == "first cut of the labels\n"

    base = registry.url + f"/web/p/{PROJECT}/labels/latest/file/"
    page.goto(base + "img/logo.png")
    page.wait_for_function("document.querySelector('#preview img').naturalWidth > 0")
    assert page.eval_on_selector("#preview img", "i => [i.naturalWidth, i.naturalHeight]") \
        == [96, 64]
    page.screenshot(path=str(shots / "web-image.png"))
    page.goto(base + "config.json")
    assert '"layers": [\n    64,' in page.inner_text("#preview pre")
    for hostile, marker in (("page.html", "window.pwned = 1"), ("pic.svg", "alert(1)")):
        page.goto(base + hostile)
        assert marker in page.inner_text("#preview pre")  # shown as text, never rendered
        assert page.locator("#evil").count() == 0 and page.locator("#preview svg").count() == 0
        assert page.evaluate("typeof window.pwned") == "undefined"

    page.goto(registry.url + f"/web/p/{PROJECT}/labels/v0")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("button[data-copy=snippet-python]")
    page.wait_for_function("document.querySelector('[data-copy=snippet-python]')"
                           ".textContent === 'Copied'")
    assert page.evaluate("navigator.clipboard.readText()").startswith("import artifactfs")
    assert problems == []

    page.click("text=Log out")
    page.wait_for_url("**/web/login")
    page.goto(registry.url + f"/web/p/{PROJECT}")
    assert page.url.endswith("/web/login")
    page.close()
    for name in ("web-login.png", "web-version.png", "web-csv.png", "web-image.png"):
        assert (shots / name).read_bytes().startswith(b"\x89PNG")


def test_browser_with_a_bad_key_stays_logged_out(registry: WebRegistry, browser: Any) -> None:
    page = browser.new_page()
    page.goto(registry.url + "/web/login")
    page.fill("#key", "afs_not-a-key-of-this-registry")
    with page.expect_response("**/web/login") as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 401
    assert page.inner_text("#login-error") == "unknown API key"
    assert [c for c in page.context.cookies() if c["name"] == "afs_session"] == []
    page.close()


# ---- refusals, over plain HTTP -------------------------------------------------------------


def test_forged_and_foreign_cookies_are_refused(registry: WebRegistry) -> None:
    with _login(registry.url, registry.read_key) as client:
        good = client.cookies["afs_session"]
        assert client.get(f"/web/p/{PROJECT}").status_code == 200
        key_id = Store(registry.store).db.key_info(key=registry.read_key).id  # type: ignore
    forged = [
        good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),  # signature changed
        # a well-formed cookie for the same key, signed with another secret
        SessionSigner("another-secret-" + "y" * 30).session_cookie(
            Session(key_id, "local", True)),
        # the payload changed to another entity, the signature kept
        base64.urlsafe_b64encode(b'[1,"someone",false]').decode().rstrip("=")
        + good[good.index("."):],
    ]
    for cookie in forged:
        answer = httpx.get(registry.url + f"/web/p/{PROJECT}",
                           cookies={"afs_session": cookie})
        assert answer.status_code == 303 and answer.headers["location"] == "/web/login"
        assert PROJECT not in answer.text


def test_forms_without_their_csrf_token_are_refused(registry: WebRegistry) -> None:
    with httpx.Client(base_url=registry.url) as client:
        token = _csrf(client)
        for data in ({"key": registry.read_key},  # no token
                     {"key": registry.read_key, "csrf": token + "x"},
                     {"key": registry.read_key, "csrf": SessionSigner(
                         "another-secret-" + "y" * 30).new_csrf_cookie()}):
            answer = client.post("/web/login", data=data)
            assert answer.status_code == 403 and "afs_session" not in answer.cookies
        # the right token from a page of another origin
        answer = client.post("/web/login", data={"key": registry.read_key, "csrf": token},
                             headers={"Origin": "http://evil.example"})
        assert answer.status_code == 403 and "afs_session" not in answer.cookies
        # the token without its cookie (what a forged form of another site sends)
        answer = httpx.post(registry.url + "/web/login",
                            data={"key": registry.read_key, "csrf": token})
        assert answer.status_code == 403
    with _login(registry.url, registry.read_key) as client:
        answer = client.post("/web/logout", data={})
        assert answer.status_code == 403
        assert client.get(f"/web/p/{PROJECT}").status_code == 200  # still logged in


def test_the_api_takes_no_cookie_and_stays_keyed(registry: WebRegistry) -> None:
    with _login(registry.url, registry.write_key) as client:
        for method, path in (("GET", "/api/v1/whoami"),
                             ("GET", "/api/v1/entities/local/projects"),
                             ("DELETE", "/api/v1/versions/x"),
                             ("GET", "//api/v1/entities/local/projects"),
                             ("GET", "/web/../api/v1/whoami"),
                             ("GET", "/webx")):
            answer = client.request(method, path)
            assert answer.status_code == 401, (method, path)
        # the web view's 404 for what it does not have, without a key: nothing leaks
        assert client.get("/web/api/v1/whoami").status_code == 404
    assert httpx.get(registry.url + "/api/v1/whoami", headers={
        "Authorization": f"Bearer {registry.read_key}"}).json()["read_only"] is True


def test_pages_show_only_the_keys_entity(registry: WebRegistry) -> None:
    with _login(registry.url, registry.other_key) as client:
        assert PROJECT not in client.get("/").text
        answer = client.get(f"/web/p/{PROJECT}/labels/v0/file/data/table.csv")
        assert answer.status_code == 404 and "bird" not in answer.text


def test_revoking_the_key_ends_its_sessions(registry: WebRegistry) -> None:
    db = Store(registry.store).db
    key = db.create_key("local", read_only=True)
    with _login(registry.url, key) as client:
        assert client.get("/").status_code == 200
        info = db.key_info(key=key)
        assert info is not None and db.revoke_key(info.id)
        answer = client.get("/")
        assert answer.status_code == 303 and answer.headers["location"] == "/web/login"


def test_a_session_works_on_every_replica_with_the_secret(registry: WebRegistry,
                                                          tmp_path: Path) -> None:
    twin = RegistryServer(registry.store, tmp_path / "twin.log",
                          env=_server_env(SECRET))
    stranger = RegistryServer(registry.store, tmp_path / "stranger.log",
                              env=_server_env("z" * 40))
    try:
        with _login(registry.url, registry.read_key) as client:
            cookie = {"afs_session": client.cookies["afs_session"]}
        assert httpx.get(twin.url + f"/web/p/{PROJECT}", cookies=cookie).status_code == 200
        assert httpx.get(stranger.url + f"/web/p/{PROJECT}",
                         cookies=cookie).status_code == 303
    finally:
        twin.stop()
        stranger.stop()


def test_images_are_served_verified_typed_and_nosniff(registry: WebRegistry) -> None:
    base = f"/web/p/{PROJECT}/labels/v0/raw/"
    with _login(registry.url, registry.read_key) as client:
        image = client.get(base + "img/logo.png")
        assert image.status_code == 200 and image.content == _png()
        assert image.headers["content-type"] == "image/png"
        assert image.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in image.headers["content-security-policy"]
        for not_an_image in ("pic.svg", "page.html", "data/table.csv", "nothing.png"):
            assert client.get(base + not_an_image).status_code == 404, not_an_image


def test_a_preview_never_shows_bytes_that_fail_their_digest(registry: WebRegistry,
                                                            tmp_path: Path) -> None:
    from artifactfs.core.digests import md5_b64
    from artifactfs.store.blobs import BlobDir

    secret_text = b"the real contents of a file about to rot\n"
    config = Config.from_env({"ARTIFACTFS_STORE": str(registry.store),
                              "HOME": str(tmp_path / "home"),
                              "ARTIFACTFS_CACHE_DIR": str(tmp_path / "cache")})
    api = Api(config=config)
    try:
        art = Artifact("rotting", type="notes", api=api)
        with art.new_file("note.txt", mode="wb") as f:
            f.write(secret_text)
        art.save(project=PROJECT)
    finally:
        api.close()
    blob = BlobDir(registry.store).path(md5_b64(secret_text))
    assert blob.read_bytes() == secret_text
    blob.chmod(0o644)
    blob.write_bytes(b"ROTTEN" + secret_text[6:])  # same size, other bytes
    with _login(registry.url, registry.read_key) as client:
        answer = client.get(f"/web/p/{PROJECT}/rotting/v0/file/note.txt")
    assert answer.status_code == 200
    assert "failed their digest check" in answer.text
    assert "ROTTEN" not in answer.text and "real contents" not in answer.text
    assert "failed their digest check" in registry.server.log_text()


# ---- previews, without a server ------------------------------------------------------------


def test_previews_by_content() -> None:
    assert image_type(_png()) == "image/png" and image_type(SVG) is None
    assert make_preview("a.csv", CSV).rows[3] == ["3", "<b>bird</b>", "0.5"]
    many = make_preview("b.csv", b"".join(b"%d\n" % i for i in range(500)))
    assert len(many.rows) == 50 and many.truncated
    assert make_preview("x.json", b"[1, 2").kind == "text"  # not JSON: its text
    assert make_preview("x.svg", SVG).text == SVG.decode()
    assert make_preview("logo.txt", _png()).kind == "image"  # by its bytes, not its name
    assert make_preview("w.bin", b"\x00\x01\x02").kind == "none"
    assert make_preview("big.txt", b"a" * 300_000).truncated


def test_hostile_paths_answer_as_client_errors(registry: WebRegistry) -> None:
    with _login(registry.url, registry.read_key) as client:
        version = "/web/p/vision/labels/v0"
        for path in ("/web/p/vision/labels/%00", "/web/p/vision/labels/v99999999999999999999",
                     version + "/tree/a//b", version + "/tree/%2e%2e", version + "/tree/%00",
                     version + "/file/" + "a/" * 3000, "/web/p/" + "x" * 5000,
                     version + "/file/data"):
            answer = client.get(path)
            assert 400 <= answer.status_code < 500, (path, answer.status_code)
            assert "Traceback" not in answer.text
        answer = client.post("/web/login", content=b"k=" + b"a" * 40_000)
        assert answer.status_code == 413
    assert "Traceback" not in registry.server.log_text()


def test_web_secret_must_be_long_and_private(tmp_path: Path) -> None:
    import subprocess

    from helpers import ARTIFACTFS

    def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ARTIFACTFS, "serve", "--store", str(tmp_path / "s"),
                               "--port", "0", *args], env={**_server_env("unused"), **env},
                              capture_output=True, text=True, timeout=60)

    short = serve({"ARTIFACTFS_WEB_SECRET": "short"})
    assert serve({}, "--web-secret-file", str(tmp_path / "none")).returncode != 0
    assert short.returncode != 0 and "32 or more characters" in short.stderr
    assert "Traceback" not in short.stderr
    secret = tmp_path / "web-secret"
    secret.write_text("q" * 40)
    secret.chmod(0o644)
    shared = serve({}, "--web-secret-file", str(secret))
    assert shared.returncode != 0 and "chmod 600" in shared.stderr
    assert "q" * 40 not in shared.stderr
    shutil.rmtree(tmp_path / "s", ignore_errors=True)


def test_a_folder_page_lists_its_first_thousand_files(registry: WebRegistry,
                                                      tmp_path: Path) -> None:
    one = make_tree(tmp_path / "src", {"x.txt": b"x\n"}) / "x.txt"
    config = Config.from_env({"ARTIFACTFS_STORE": str(registry.store),
                              "HOME": str(tmp_path / "home"),
                              "ARTIFACTFS_CACHE_DIR": str(tmp_path / "cache")})
    api = Api(config=config)
    try:
        art = Artifact("wide", type="dataset", api=api)
        for i in range(1005):
            art.add_file(str(one), name=f"many/{i:04d}.txt")
        art.save(project=PROJECT)
    finally:
        api.close()
    with _login(registry.url, registry.read_key) as client:
        page = client.get(f"/web/p/{PROJECT}/wide/v0/tree/many").text
    assert page.count("/file/many/") == 1000 and "0999.txt" in page and "1000.txt" not in page
    assert "and 5 more files" in page


def test_the_session_cookie_is_secure_behind_https(registry: WebRegistry) -> None:
    """Over http the cookie cannot be Secure (the browser would drop it); behind a proxy on
    this machine that says the browser came over https, it is."""
    for proto, secure in (("http", False), ("https", True)):
        with httpx.Client(base_url=registry.url,
                          headers={"X-Forwarded-Proto": proto}) as client:
            form = client.get("/web/login")
            assert ("; secure" in form.headers["set-cookie"].lower()) is secure
            token = _csrf(client)
            # by hand: httpx sends no Secure cookie to a plain http address
            answer = httpx.post(registry.url + "/web/login",
                                data={"key": registry.read_key, "csrf": token},
                                headers={"X-Forwarded-Proto": proto,
                                         "Cookie": f"afs_csrf={token}"})
            assert answer.status_code == 303
            cookie = answer.headers["set-cookie"].lower()
            assert cookie.startswith("afs_session=") and "httponly" in cookie
            assert "samesite=lax" in cookie and ("; secure" in cookie) is secure


def test_previews_of_blobs_in_a_bucket(tmp_path: Path, seaweed: Any, s3_url: str) -> None:
    """Blobs in S3 (SeaweedFS): the preview reads them through the store, verified, as on
    a folder (the browser never gets a presigned address)."""
    store = tmp_path / "store"
    key = Store(store).db.create_key("local", read_only=True)
    writer = Store(store).db.create_key("local")
    server = RegistryServer(store, tmp_path / "server.log", blobs_url=s3_url,
                            env={**_server_env(SECRET), **seaweed.env})
    try:
        config = Config.from_env({"ARTIFACTFS_REGISTRY": server.url,
                                  "ARTIFACTFS_API_KEY": writer, "HOME": str(tmp_path / "h"),
                                  "ARTIFACTFS_CACHE_DIR": str(tmp_path / "cache")})
        api = Api(config=config)
        try:
            art = Artifact("labels", type="dataset", api=api)
            with art.new_file("table.csv", mode="wb") as f:
                f.write(CSV)
            art.add_file(str(make_tree(tmp_path / "src", {"l.png": _png()}) / "l.png"))
            art.save(project=PROJECT)
        finally:
            api.close()
        with _login(server.url, key) as client:
            page = client.get(f"/web/p/{PROJECT}/labels/v0/file/table.csv")
            assert "<td>dog</td>" in page.text and "X-Amz-Signature" not in page.text
            image = client.get(f"/web/p/{PROJECT}/labels/v0/raw/l.png")
            assert image.status_code == 200 and image.content == _png()
    finally:
        server.stop()
