"""The commands a daily user reaches for (issue 19): ``alias add``/``rm``, ``delete``'s
confirmation, ``key list``/``revoke`` and ``cache info``/``prune``/``clear``, each run as
the installed command, on the embedded store and against a real server.

What happens while a mount reads during ``cache clear`` is in
tests/fs/test_mount_cache_clear.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
from pathlib import Path

import pytest
from helpers import ARTIFACTFS, RegistryServer
from test_cli import FILES, ok, refused, seed

from artifactfs import Api
from artifactfs.cache import ContentCache

embedded_only = pytest.mark.parametrize("transport", ["embedded"], indirect=True)


def aliases_of(api: Api) -> dict[str, list[str]]:
    return {a.version: sorted(a.aliases) for a in api.artifacts(None, "vision/mnist")}


# ---- alias ------------------------------------------------------------------------------


def test_alias_add_moves_and_rm_removes(run_cli, api: Api, tmp_path: Path) -> None:
    seed(api, tmp_path, "vision/mnist", FILES)
    seed(api, tmp_path, "vision/mnist", {"labels.csv": b"x\n"})
    proc = ok(run_cli("alias", "add", "vision/mnist:v0", "best", "prod"))
    assert proc.stdout.splitlines() == ["best -> vision/mnist:v0", "prod -> vision/mnist:v0"]
    assert aliases_of(api) == {"v0": ["best", "prod"], "v1": ["latest"]}

    proc = ok(run_cli("alias", "add", "vision/mnist", "best"))  # latest: v1
    assert proc.stdout.strip() == "best -> vision/mnist:v1 (moved from v0)"
    ok(run_cli("alias", "add", "vision/mnist:prod", "staging"))  # an alias names the version
    assert aliases_of(api) == {"v0": ["prod", "staging"], "v1": ["best", "latest"]}

    proc = ok(run_cli("alias", "rm", "vision/mnist", "prod", "best"))
    assert proc.stdout.splitlines() == ["removed prod from vision/mnist:v0",
                                        "removed best from vision/mnist:v1"]
    assert aliases_of(api) == {"v0": ["staging"], "v1": ["latest"]}


def test_alias_refusals_change_nothing(run_cli, api: Api, tmp_path: Path) -> None:
    seed(api, tmp_path, "vision/mnist", FILES, aliases=("best",))
    before = aliases_of(api)
    for args, said in [
        (["add", "vision/mnist:v0", "latest"], "'latest' always names the newest"),
        (["rm", "vision/mnist", "latest"], "'latest' always names the newest"),
        (["add", "vision/mnist:v0", "good", "v3"], "looks like a version index"),
        (["add", "vision/mnist:v0", "a/b"], "'/'"),
        (["add", "vision/mnist:v9", "good"], "local/vision/mnist:v9"),
        (["add", "vision/other", "good"], "local/vision/other"),
        (["rm", "vision/mnist", "best", "nope"], "holds alias 'nope'"),
        (["rm", "vision/mnist:v0", "best"], "takes PROJECT/NAME"),
        (["rm", "vision/other", "best"], "artifact local/vision/other not found"),
    ]:
        assert said in refused(run_cli("alias", *args)), args
    assert aliases_of(api) == before  # 'good' was not added before 'v3' was refused


# ---- delete -----------------------------------------------------------------------------


def run_on_a_terminal(env: dict[str, str], cwd: Path, answer: bytes, *args: str
                      ) -> tuple[int, str]:
    """Run the command with its stdin and stderr on a pseudo-terminal, type ``answer``, and
    return its exit code and what the terminal showed."""
    main, side = pty.openpty()
    try:
        proc = subprocess.Popen([ARTIFACTFS, *args], env=env, cwd=cwd, stdin=side,
                                stdout=subprocess.PIPE, stderr=side)
        os.close(side)
        side = -1
        os.write(main, answer)
        shown = b""
        try:
            while chunk := os.read(main, 4096):
                shown += chunk
        except OSError:  # EIO: the command exited and the terminal closed
            pass
        code = proc.wait(timeout=60)
        assert proc.stdout is not None
        shown += proc.stdout.read()
        proc.stdout.close()
        return code, shown.decode(errors="replace")
    finally:
        os.close(main)
        if side != -1:
            os.close(side)


def test_delete_asks_on_a_terminal(env: dict[str, str], api: Api, tmp_path: Path) -> None:
    seed(api, tmp_path, "vision/mnist", FILES)
    seed(api, tmp_path, "vision/mnist", {"labels.csv": b"x\n"})
    code, shown = run_on_a_terminal(env, tmp_path, b"n\n", "delete", "vision/mnist:v0")
    assert code == 1, shown
    size = sum(len(b) for b in FILES.values())
    assert f"delete vision/mnist:v0 (3 files, {size} B)? [y/N]" in shown
    assert "nothing done" in shown and "Traceback" not in shown
    assert list(aliases_of(api)) == ["v0", "v1"]

    code, shown = run_on_a_terminal(env, tmp_path, b"y\n", "delete", "vision/mnist:v0")
    assert code == 0, shown
    assert "deleted vision/mnist:v0" in shown
    assert list(aliases_of(api)) == ["v1"]


def test_delete_off_a_terminal_needs_yes(run_cli, api: Api, tmp_path: Path) -> None:
    seed(api, tmp_path, "vision/mnist", FILES)
    seed(api, tmp_path, "vision/mnist", {"labels.csv": b"x\n"})
    assert "pass --yes" in refused(run_cli("delete", "vision/mnist:v0"))
    assert list(aliases_of(api)) == ["v0", "v1"]
    # refused for its aliases before anything is asked: no answer could change that
    err = refused(run_cli("delete", "vision/mnist:v1"))
    assert "holds aliases latest" in err and "--delete-aliases" in err
    ok(run_cli("delete", "vision/mnist:v0", "--yes"))
    ok(run_cli("delete", "vision/mnist:v1", "-y", "--delete-aliases"))
    assert list(aliases_of(api)) == []


# ---- key --------------------------------------------------------------------------------


@embedded_only
def test_key_list_shows_ids_and_fingerprints_never_keys(run_cli, env: dict[str, str],
                                                        tmp_path: Path) -> None:
    store = str(tmp_path / "keys")
    made = [ok(run_cli("key", "create", entity, *extra, "--store", store))
            for entity, extra in (("team", ()), ("team", ("--read-only",)), ("other", ()))]
    keys = [m.stdout.strip() for m in made]
    assert [m.stderr.split()[:2] for m in made] == [["key", "1"], ["key", "2"], ["key", "3"]]

    listed = ok(run_cli("key", "list", "--store", store))
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "ENTITY", "ACCESS", "CREATED", "FINGERPRINT"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["1", "team", "read-write"], ["2", "team", "read-only"], ["3", "other", "read-write"]]
    as_json = json.loads(ok(run_cli("key", "list", "--json", "--entity", "team",
                                    "--store", store)).stdout)
    assert [k["id"] for k in as_json] == [1, 2]
    for shown, key in zip(as_json, keys, strict=False):
        assert shown["fingerprint"] == hashlib.sha256(key.encode()).hexdigest()[:12]
    for key in keys:
        assert key not in listed.stdout and key.removeprefix("afs_")[:12] not in listed.stdout

    assert "pass --yes" in refused(run_cli("key", "revoke", "1", "--store", store))
    for args, said in [(["x"], "not a number"), (["9"], "no key with id 9"),
                       (["1", "9", "--yes"], "no key with id 9")]:
        assert said in refused(run_cli("key", "revoke", *args, "--store", store))
    assert len(json.loads(ok(run_cli("key", "list", "--json", "--store", store)).stdout)) == 3
    code, shown = run_on_a_terminal(env, tmp_path, b"y\n", "key", "revoke", "1", "3",
                                    "--store", store)
    assert code == 0 and "revoke keys 1 (team), 3 (other)? [y/N]" in shown, shown
    assert [k["id"] for k in json.loads(ok(run_cli("key", "list", "--json", "--store", store)
                                           ).stdout)] == [2]


@embedded_only
def test_a_revoked_key_is_refused_by_the_running_server(
    run_cli, env: dict[str, str], api: Api, tmp_path: Path
) -> None:
    seed(api, tmp_path, "vision/mnist", FILES)
    store = env["ARTIFACTFS_STORE"]
    first = ok(run_cli("key", "create", "local", "--store", store)).stdout.strip()
    # checked on every request: a server that trusts a key for a minute (the default, and
    # the transport fixture's) would keep serving a revoked one that long
    server = RegistryServer(Path(store), tmp_path / "server.log", "--key-cache-seconds", "0",
                            env=env)
    try:
        check_revocations(run_cli, {"ARTIFACTFS_REGISTRY": server.url,
                                    "ARTIFACTFS_API_KEY": first}, store, env)
    finally:
        server.stop()
    assert first not in server.log_text()


def check_revocations(run_cli, client: dict[str, str], store: str,
                      env: dict[str, str]) -> None:
    def as_client(key: str | None = None) -> dict[str, str]:
        return {**client, **({"ARTIFACTFS_API_KEY": key} if key else {})}

    server_env = {**env, **client}
    second = ok(run_cli("key", "create", "local", "--store", store)).stdout.strip()
    third = ok(run_cli("key", "create", "local", "--store", store)).stdout.strip()
    for key in (second, third):
        assert "mnist" in ok(run_cli("ls", "vision", extra_env=as_client(key))).stdout
    ids = [k["id"] for k in json.loads(ok(run_cli("key", "list", "--json", "--store", store)
                                          ).stdout)]
    assert len(ids) == 3  # the client's own, and these two

    assert ok(run_cli("key", "revoke", str(ids[1]), "--yes", "--store", store)
              ).stdout.strip() == f"revoked key {ids[1]} (local)"
    err = refused(run_cli("ls", "vision", extra_env=as_client(second)))
    assert "unknown API key" in err and second not in err

    # the key's holder revokes it by the key itself, kept off the command line
    done = subprocess.run([ARTIFACTFS, "key", "revoke", "-", "--store", store], env=env,
                          input=third, capture_output=True, text=True, timeout=60)
    assert ok(done).stdout.strip() == f"revoked key {ids[2]} (local)"
    assert "unknown API key" in refused(run_cli("ls", "vision", extra_env=as_client(third)))
    assert "mnist" in ok(run_cli("ls", "vision", extra_env=as_client())).stdout  # the rest
    assert "the key on stdin is not a key of this store" in refused(subprocess.run(
        [ARTIFACTFS, "key", "revoke", "-", "--store", store], env=server_env, input=third,
        capture_output=True, text=True, timeout=60))


# ---- cache ------------------------------------------------------------------------------


def test_cache_info_prune_and_clear(run_cli, env: dict[str, str], api: Api,
                                    tmp_path: Path) -> None:
    cache_dir = Path(env["ARTIFACTFS_CACHE_DIR"])
    info = json.loads(ok(run_cli("cache", "info", "--json")).stdout)
    assert (info["files"], info["used"], info["bound"]) == (0, 0, 10 << 30)
    assert not cache_dir.exists()  # asking does not make it
    assert "nothing to remove" in ok(run_cli("cache", "clear")).stdout

    files = {f"f{i}.bin": os.urandom(10_000 + i) for i in range(6)}
    art = seed(api, tmp_path, "vision/mnist", files)
    art.download(str(tmp_path / "out"))
    cache = ContentCache(cache_dir, 1 << 30)
    paths = sorted(p for p in cache.objects.rglob("*") if p.is_file())
    assert len(paths) == len(files)
    for i, path in enumerate(paths):  # paths[0] used last, paths[-1] longest ago
        os.utime(path, (1_000_000 + 1000 * (len(paths) - i), path.stat().st_mtime))
    per_file = cache.summary().used // len(paths)

    env64 = {"ARTIFACTFS_CACHE_SIZE": "64M"}
    info = json.loads(ok(run_cli("cache", "info", "--json", extra_env=env64)).stdout)
    assert (info["files"], info["whole_blobs"], info["chunks"]) == (6, 6, 0)
    assert info["used"] == 6 * per_file and info["bound"] == 64 << 20
    assert info["mounts"] == [] and info["hit_rate"] is None
    text = ok(run_cli("cache", "info", extra_env=env64)).stdout
    assert f"cache:    {cache_dir}" in text and "of 64.0 MiB" in text
    assert "ARTIFACTFS_CACHE_SIZE=64M" in text and "hit rate: unknown" in text

    assert ok(run_cli("cache", "prune")).stdout.startswith("removed 0 files")  # under bound
    done = ok(run_cli("cache", "prune", "--to", str(4 * per_file)))
    assert done.stdout.startswith("removed 2 files")
    kept = sorted(p for p in cache.objects.rglob("*") if p.is_file())
    assert kept == paths[:4]  # the least recently used went first

    assert "'10GB' is ambiguous" in refused(run_cli("cache", "prune", "--to", "10GB"))
    assert "ARTIFACTFS_CACHE_SIZE" in refused(
        run_cli("cache", "info", extra_env={"ARTIFACTFS_CACHE_SIZE": "0"}))

    # what a killed process left in tmp/ goes too, once no writer can be left
    old, new = cache.tmp / "left-by-a-kill", cache.tmp / "being-written"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    os.utime(old, (1_000_000, 1_000_000))
    assert ok(run_cli("cache", "clear")).stdout.startswith("removed 5 files")
    assert not old.exists() and new.exists()
    assert not [p for p in cache.objects.rglob("*") if p.is_file()]
    assert cache.objects.is_dir()  # folders stay: a mount's put still finds its own
    # and what was cleared is fetched and verified again
    api.artifact("vision/mnist:v0").download(str(tmp_path / "again"))
    assert {p.name: p.read_bytes() for p in (tmp_path / "again").iterdir()} == files


@embedded_only
def test_key_list_and_revoke_on_postgresql(run_cli, pg_url: str) -> None:
    made = ok(run_cli("key", "create", "team", "--db", pg_url)).stdout.strip()
    ok(run_cli("key", "create", "team", "--read-only", "--db", pg_url))
    listed = json.loads(ok(run_cli("key", "list", "--json", "--db", pg_url)).stdout)
    assert [(k["entity"], k["read_only"]) for k in listed] == [("team", False), ("team", True)]
    assert listed[0]["fingerprint"] == hashlib.sha256(made.encode()).hexdigest()[:12]
    ok(run_cli("key", "revoke", str(listed[0]["id"]), "--yes", "--db", pg_url))
    assert [k["id"] for k in json.loads(ok(run_cli("key", "list", "--json", "--db", pg_url)
                                           ).stdout)] == [listed[1]["id"]]
