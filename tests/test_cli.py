"""The installed ``artifactfs`` command, run as a user would run it (both transports)."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import make_tree
from scale_out import scale_out

from artifactfs import Api, Artifact
from artifactfs.core.digests import md5_b64
from artifactfs.store import Store

embedded_only = pytest.mark.parametrize("transport", ["embedded"], indirect=True)

FILES = {
    "train/0001.txt": b"first sample\n",
    "train/0002.txt": b"second sample\n",
    "labels.csv": b"id,label\n1,cat\n2,dog\n",
}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "src", FILES)


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def refused(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert a clean refusal; return stderr."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout
    assert re.search(r"^error: \S", proc.stderr, re.MULTILINE), proc.stderr
    return proc.stderr


def seed(api: Api, tmp_path: Path, target: str, files: dict[str, bytes], type_: str = "dataset",
         aliases: tuple[str, ...] = ()) -> Artifact:
    """Make a version in-process (quicker than the command) for the commands to find."""
    project, name = target.split("/")
    (tmp_path / "seed").mkdir(exist_ok=True)
    folder = make_tree(Path(tempfile.mkdtemp(dir=tmp_path / "seed")), files)
    art = Artifact(name, type_)
    art._client = api
    art.add_dir(folder)
    art.aliases = list(aliases)
    return art.save(project=project)


def nothing_stored(env: dict[str, str]) -> bool:
    store = Path(env["ARTIFACTFS_STORE"])
    return not (store / "registry.sqlite3").exists() or Store(store).db.list_projects("local") == []


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---- push -------------------------------------------------------------------------------


@scale_out
def test_push_prints_the_new_version(run_cli, api: Api, src: Path, tmp_path: Path) -> None:
    proc = ok(run_cli("push", str(src), "vision/mnist", "--type", "dataset"))
    assert proc.stdout.strip() == "vision/mnist:v0"
    extra = make_tree(tmp_path / "more", {"extra.bin": b"\x00\x01"}) / "extra.bin"
    proc = ok(run_cli("push", str(src), str(extra), "vision/mnist", "--type", "dataset",
                      "--alias", "best", "--alias", "latest", "-d", "second",
                      "--metadata", '{"rows": 2}'))
    assert proc.stdout.strip() == "vision/mnist:v1"
    proc = ok(run_cli("push", str(extra), "local/vision/mnist", "--type", "dataset"))
    assert proc.stdout.strip() == "vision/mnist:v2"
    versions = api.artifacts(None, "vision/mnist")
    assert [v.version for v in versions] == ["v0", "v1", "v2"]
    v1 = versions[1]
    assert v1.aliases == ["best"]
    assert v1.description == "second"
    assert v1.metadata == {"rows": 2}
    assert sorted(v1.manifest.entries) == sorted([*FILES, "extra.bin"])
    assert versions[2].aliases == ["latest"]
    assert list(versions[2].manifest.entries) == ["extra.bin"]


@embedded_only
def test_push_of_an_empty_folder_is_refused(run_cli, env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    err = refused(run_cli("push", str(empty), "vision/mnist", "--type", "dataset"))
    assert "nothing to push" in err
    assert nothing_stored(env)


# ---- ls ---------------------------------------------------------------------------------


@pytest.fixture
def listed(api: Api, tmp_path: Path) -> Api:
    seed(api, tmp_path, "vision/mnist", FILES, aliases=("best",))
    seed(api, tmp_path, "vision/mnist", {"labels.csv": FILES["labels.csv"]})
    seed(api, tmp_path, "vision/resnet", {"w.bin": b"w"}, type_="model")
    seed(api, tmp_path, "audio/clips", {"c.wav": b"c"})
    return api


@scale_out
def test_ls_json_at_every_level(run_cli, listed: Api) -> None:
    assert json.loads(ok(run_cli("ls", "--json")).stdout) == [
        {"entity": "local", "project": "audio"},
        {"entity": "local", "project": "vision"},
    ]
    collections = json.loads(ok(run_cli("ls", "vision", "--json")).stdout)
    assert [(c["name"], c["type"], c["version_count"]) for c in collections] == [
        ("mnist", "dataset", 2), ("resnet", "model", 1),
    ]
    versions = json.loads(ok(run_cli("ls", "vision/mnist", "--json")).stdout)
    assert [(v["index"], v["aliases"]) for v in versions] == [(0, ["best"]), (1, ["latest"])]
    listing = json.loads(ok(run_cli("ls", "vision/mnist:best", "--json")).stdout)
    assert listing["version"]["name"] == "mnist:v0"
    assert listing["version"]["digest"] == versions[0]["digest"]
    assert listing["manifest"]["version"] == 1
    assert listing["manifest"]["storagePolicy"] == "wandb-storage-policy-v1"
    assert {p: e["digest"] for p, e in listing["manifest"]["contents"].items()} == {
        p: md5_b64(d) for p, d in FILES.items()
    }


@embedded_only
def test_ls_tables_at_every_level(run_cli, listed: Api) -> None:
    assert ok(run_cli("ls")).stdout.split() == ["audio", "vision"]
    out = ok(run_cli("ls", "vision")).stdout
    assert re.search(r"^mnist\s+dataset\s+2$", out, re.MULTILINE), out
    assert re.search(r"^resnet\s+model\s+1$", out, re.MULTILINE), out
    out = ok(run_cli("ls", "vision/mnist")).stdout
    assert re.search(r"^v0\s+best\s", out, re.MULTILINE), out
    assert re.search(r"^v1\s+latest\s", out, re.MULTILINE), out
    out = ok(run_cli("ls", "vision/mnist:latest")).stdout
    assert re.search(rf"^labels\.csv\s.*{re.escape(md5_b64(FILES['labels.csv']))}$", out,
                     re.MULTILINE), out
    assert "train/0001.txt" not in out


# ---- download and verify ----------------------------------------------------------------


@scale_out
def test_download_and_verify(run_cli, api: Api, tmp_path: Path) -> None:
    seed(api, tmp_path, "vision/mnist", FILES)
    dest = tmp_path / "dl"
    proc = ok(run_cli("download", "vision/mnist:latest", "--root", str(dest)))
    assert proc.stdout.strip() == str(dest)
    assert files_under(dest) == FILES
    proc = ok(run_cli("verify", "vision/mnist:v0", "--root", str(dest)))
    assert proc.stdout.startswith("ok:")
    (dest / "train" / "0002.txt").write_bytes(b"second sample!")
    proc = run_cli("verify", "vision/mnist", "--root", str(dest))
    assert proc.returncode == 1
    assert "train/0002.txt" in refused(proc)


@embedded_only
def test_verify_names_missing_and_extra_files(run_cli, api: Api, tmp_path: Path) -> None:
    seed(api, tmp_path, "vision/mnist", FILES)
    dest = tmp_path / "dl"
    api.artifact("vision/mnist").download(dest)
    (dest / "train" / "0002.txt").unlink()
    proc = run_cli("verify", "vision/mnist", "--root", str(dest))
    assert proc.returncode == 1
    assert "missing file 'train/0002.txt'" in refused(proc)
    ok(run_cli("download", "vision/mnist", "--root", str(dest)))  # repairs it
    assert files_under(dest) == FILES
    (dest / "stray.txt").write_bytes(b"?")
    proc = run_cli("verify", "vision/mnist", "--root", str(dest))
    assert proc.returncode == 1
    assert "extra file 'stray.txt'" in refused(proc)


@embedded_only
def test_download_to_the_default_root(run_cli, api: Api, tmp_path: Path) -> None:
    seed(api, tmp_path, "vision/mnist", FILES)
    work = tmp_path / "work"
    work.mkdir()
    proc = ok(run_cli("download", "vision/mnist", cwd=work))
    assert Path(proc.stdout.strip()) == Path("artifacts") / "mnist:v0"
    assert files_under(work / "artifacts" / "mnist:v0") == FILES
    ok(run_cli("verify", "vision/mnist:v0", cwd=work))


# ---- delete -----------------------------------------------------------------------------


@embedded_only
def test_delete(run_cli, api: Api, tmp_path: Path) -> None:
    seed(api, tmp_path, "vision/mnist", FILES)
    seed(api, tmp_path, "vision/mnist", {"labels.csv": FILES["labels.csv"]})
    err = refused(run_cli("delete", "vision/mnist:latest"))
    assert "latest" in err
    proc = ok(run_cli("delete", "vision/mnist:latest", "--delete-aliases", "--yes"))
    assert proc.stdout.strip() == "deleted vision/mnist:v1"  # as push prints it
    assert [(a.version, a.aliases) for a in api.artifacts(None, "vision/mnist")] == [
        ("v0", ["latest"])
    ]


# ---- help -------------------------------------------------------------------------------


def _commands(help_text: str) -> list[str]:
    section = help_text.split("Commands:", 1)[1] if "Commands:" in help_text else ""
    section = section.split("\n\n", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\s{2}(\S+)", section, re.MULTILINE)]


@embedded_only
def test_help_on_every_command(run_cli) -> None:
    top = ok(run_cli("--help"))
    assert "Usage:" in top.stdout
    commands = _commands(top.stdout)
    for required in ("push", "ls", "download", "verify"):
        assert required in commands
    todo = [[c] for c in commands]
    seen = 0
    while todo:
        words = todo.pop()
        proc = ok(run_cli(*words, "--help"))
        assert proc.stdout.startswith(f"Usage: artifactfs {' '.join(words)} "), proc.stdout
        todo.extend([*words, sub] for sub in _commands(proc.stdout))
        seen += 1
    assert seen >= len(commands)


@embedded_only
def test_version(run_cli) -> None:
    proc = ok(run_cli("--version"))
    assert re.search(r"\d+\.\d+\.\d+", proc.stdout)


# ---- refusals ---------------------------------------------------------------------------

BAD_INPUT = [
    pytest.param(["push", "{src}", "vision/bad name", "--type", "dataset"], "artifact name",
                 id="push-bad-name"),
    pytest.param(["push", "{src}", "bad@project/mnist", "--type", "dataset"], "project",
                 id="push-bad-project"),
    pytest.param(["push", "{src}", "vision/mnist", "--type", "data set"], "type",
                 id="push-bad-type"),
    pytest.param(["push", "{src}", "vision/mnist:best", "--type", "dataset"], "alias",
                 id="push-target-with-alias"),
    pytest.param(["push", "{src}", "vision/mnist", "--type", "dataset", "--alias", "v3"],
                 "version index", id="push-alias-vN"),
    pytest.param(["push", "{src}", "vision/mnist", "--type", "dataset", "--alias", "a/b"],
                 "'/'", id="push-alias-slash"),
    pytest.param(["push", "{src}", "vision/mnist", "--type", "dataset", "--metadata", "[1"],
                 "metadata", id="push-bad-metadata"),
    pytest.param(["download", "a/b/c/d"], "form", id="download-too-many-parts"),
    pytest.param(["download", "vision/mnist:"], "':'", id="download-empty-alias"),
    pytest.param(["download", "vision/mn ist"], "artifact name", id="download-bad-name"),
    pytest.param(["verify", "vision/mnist:a:b"], "alias", id="verify-bad-alias"),
    pytest.param(["ls", "bad name"], "may only contain", id="ls-bad-project"),
    pytest.param(["delete", "vision/mnist:"], "':'", id="delete-bad-ref"),
]


@embedded_only
@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_is_refused_cleanly(
    run_cli, env: dict[str, str], src: Path, args: list[str], message: str
) -> None:
    err = refused(run_cli(*(a.replace("{src}", str(src)) for a in args)))
    assert message in err
    assert nothing_stored(env)


@embedded_only
@pytest.mark.parametrize(
    ("variable", "value"),
    # (ARTIFACTFS_CACHE_SIZE is read only by what uses the cache: test_cli_settings.py)
    [("ARTIFACTFS_ENTITY", "bad entity"), ("ARTIFACTFS_PROJECT", "bad/project")],
)
def test_bad_environment_is_refused_cleanly(run_cli, variable: str, value: str) -> None:
    err = refused(run_cli("download", "vision/mnist", extra_env={variable: value}))
    assert variable in err or value in err


@scale_out
def test_not_found_names_what_was_looked_for(run_cli, api: Api, tmp_path: Path) -> None:
    err = refused(run_cli("download", "vision/mnist"))
    assert "local/vision/mnist:latest" in err
    assert "not found" in err
    seed(api, tmp_path, "vision/mnist", FILES)
    assert "local/vision/mnist:v7" in refused(run_cli("download", "vision/mnist:v7"))


@embedded_only
def test_not_found_in_ls_and_verify(run_cli, api: Api, tmp_path: Path) -> None:
    seed(api, tmp_path, "vision/mnist", FILES)
    assert "local/vision/mnist:nope" in refused(
        run_cli("verify", "vision/mnist:nope", "--root", str(tmp_path))
    )
    assert "local/vision/other" in refused(run_cli("ls", "vision/other"))
    assert "local/vision/other:v0" in refused(run_cli("ls", "vision/other:v0"))
    assert "local/audio" in refused(run_cli("ls", "audio"))
