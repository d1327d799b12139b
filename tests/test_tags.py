"""W&B's ``Artifact.tags``: free labels on a version, set on a draft or a saved version,
kept in order, checked as W&B checks them, on the embedded store and a server (the ``api``
fixture's transports), in SQLite and PostgreSQL (``open_store``), and from the CLI."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from artifactfs import Api, Artifact
from artifactfs.core.digests import md5_b64
from artifactfs.core.errors import InvalidRequest
from artifactfs.core.limits import MAX_TAG_CHARS, MAX_TAGS, check_tags
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.core.wire import API_PREFIX
from artifactfs.store.store import Store

PROJECT = "tagged"


@pytest.fixture(autouse=True)
def _environment(environ: dict[str, str]) -> None:
    """The SDK reads the environment, as a user's program does (conftest's ``environ``)."""


def stored_entries(store: Store, files: dict[str, bytes]) -> list[ManifestEntry]:
    entries = []
    for path, data in files.items():
        digest = md5_b64(data)
        store.blobs.put_stream(io.BytesIO(data), digest)
        entries.append(ManifestEntry(path, digest, len(data)))
    return entries


def draft(tmp_path: Path, data: bytes, name: str = "data") -> Artifact:
    src = tmp_path / "src" / f"{name}-{len(data)}-{data[:8].hex()}.bin"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    art = Artifact(name, "dataset")
    art.add_file(src, name="file.bin")
    return art


@pytest.mark.parametrize("bad", [
    b"resnet", {"resnet": 1}, 7,  # neither a string nor an iterable of them
    ["a,b"], [" lead"], ["trail "], [""], ["tab\there"], ["semi;colon"],
    ["x" * (MAX_TAG_CHARS + 1)], [f"t{i}" for i in range(MAX_TAGS + 1)], [3],
])
def test_a_tag_w_and_b_would_refuse_is_refused_saying_what_a_tag_may_hold(bad: object) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_tags(bad)
    assert "tag" in str(err.value)
    assert "\t" not in str(err.value)  # a message is one line, whatever a tag held
    with pytest.raises(ValueError):  # as the SDK raises it, before anything is saved
        Artifact("data", "dataset").tags = bad  # type: ignore[assignment]


def test_tags_keep_their_order_and_drop_repeats() -> None:
    assert check_tags(["b", "a-1", "needs review", "b", "ünïcode_ok"]) == [
        "b", "a-1", "needs review", "ünïcode_ok"]
    assert check_tags(("x" * MAX_TAG_CHARS,)) == ["x" * MAX_TAG_CHARS]
    assert check_tags("one tag") == ["one tag"]  # W&B takes a string as one tag
    assert check_tags(["two  spaces"]) == ["two  spaces"]  # W&B's TAG_REGEX allows them
    assert check_tags({"from-a-set"}) == ["from-a-set"]  # any iterable, as in W&B


def test_a_list_of_a_million_tags_is_refused_at_once() -> None:
    """Refused when the hundred-and-first is met: a hostile body may hold millions, and
    a repeat check of each against all the others would hold a worker for hours."""
    with pytest.raises(InvalidRequest, match=f"more than {MAX_TAGS} tags"):
        check_tags([f"t{i}" for i in range(1_000_000)])


def test_a_drafts_tags_are_saved_with_it_and_read_back(api: Api, tmp_path: Path) -> None:
    art = draft(tmp_path, b"one")
    art.tags = ["baseline", "needs review", "baseline"]
    art.save(project=PROJECT)
    assert art.tags == ["baseline", "needs review"]
    got = api.artifact(f"{PROJECT}/data:v0")
    assert got.tags == ["baseline", "needs review"]
    assert [v.tags for v in api.artifacts("dataset", f"{PROJECT}/data")] == [
        ["baseline", "needs review"]]


def test_tags_of_a_saved_version_are_replaced_by_save_and_leave_other_versions(
        api: Api, tmp_path: Path) -> None:
    first = draft(tmp_path, b"one")
    first.tags = ["shared"]
    first.save(project=PROJECT)
    second = draft(tmp_path, b"two")
    second.tags = ["shared", "candidate"]  # unlike an alias, many versions may carry a tag
    second.save(project=PROJECT)

    got = api.artifact(f"{PROJECT}/data:v1")
    got.tags = ["promoted", "shared"]
    got.save()
    assert api.artifact(f"{PROJECT}/data:v1").tags == ["promoted", "shared"]
    assert api.artifact(f"{PROJECT}/data:v0").tags == ["shared"]
    got.tags = []
    got.save()
    assert api.artifact(f"{PROJECT}/data:latest").tags == []
    assert api.artifact(f"{PROJECT}/data:v1").files()  # its files are as they were


def test_a_version_made_from_a_saved_one_starts_without_its_tags(
        api: Api, tmp_path: Path) -> None:
    """As W&B's new_draft, and as aliases: a tag labels the version it was put on. Tags set
    on the new draft are its own."""
    art = draft(tmp_path, b"one")
    art.tags = ["reviewed"]
    art.save(project=PROJECT)
    extra = tmp_path / "extra.txt"
    extra.write_bytes(b"more")

    fresh = api.artifact(f"{PROJECT}/data:v0").new_draft()
    assert fresh.tags == []
    fresh.add_file(extra)
    fresh.save()
    changed = api.artifact(f"{PROJECT}/data:v0")
    changed.add_file(extra, name="other.txt")  # a changed copy of v0
    assert changed.tags == []
    changed.tags = ["extended"]
    changed.save()
    assert [a.tags for a in api.artifacts("dataset", f"{PROJECT}/data")] == [
        ["reviewed"], [], ["extended"]]


def test_a_tag_made_bad_in_place_is_refused_before_any_upload(
        api: Api, tmp_path: Path) -> None:
    art = draft(tmp_path, b"never uploaded")
    art.tags = ["fine"]
    art.tags.append("bad!")  # past the setter's check
    with pytest.raises(InvalidRequest, match="bad!"):
        art.save(project=PROJECT)
    assert api.artifacts("dataset", f"{PROJECT}/data") == []
    assert api.registry.missing_blobs([md5_b64(b"never uploaded")])  # nothing sent


def test_log_artifact_takes_tags_as_wandb_does(api: Api, tmp_path: Path) -> None:
    import artifactfs

    with artifactfs.init(project=PROJECT, job_type="train", api=api) as run:
        art = run.log_artifact(draft(tmp_path, b"model"), aliases=["best"],
                               tags=["baseline"])
        with pytest.raises(ValueError, match="not allowed"):
            run.log_artifact(draft(tmp_path, b"other", name="other"), tags=["no,no"])
    assert api.artifact(f"{PROJECT}/data:best").tags == ["baseline"]
    assert art.tags == ["baseline"]
    assert api.artifacts("dataset", f"{PROJECT}/other") == []


def test_saving_content_a_version_holds_adds_the_tags_it_lacks(
        api: Api, tmp_path: Path) -> None:
    art = draft(tmp_path, b"same")
    art.tags = ["first"]
    art.save(project=PROJECT)
    again = draft(tmp_path, b"same")
    again.tags = ["second", "first"]
    again.save(project=PROJECT)
    assert again._unchanged and again.version == "v0"
    assert api.artifact(f"{PROJECT}/data:v0").tags == ["first", "second"]

    # joined with those held, still at most MAX_TAGS: refused whole, nothing changed
    many = draft(tmp_path, b"same")
    many.tags = [f"t{i}" for i in range(MAX_TAGS - 1)]
    with pytest.raises(InvalidRequest, match=f"would hold {MAX_TAGS + 1} tags"):
        many.save(project=PROJECT)
    assert api.artifact(f"{PROJECT}/data:v0").tags == ["first", "second"]


@pytest.mark.parametrize("transport", ["server"])
def test_a_bad_tag_sent_to_the_server_is_a_400_and_changes_nothing(
        api: Api, env: dict[str, str], tmp_path: Path) -> None:
    """A client that skips the SDK's check (any key holder may): the server checks again."""
    art = draft(tmp_path, b"one")
    art.tags = ["kept"]
    art.save(project=PROJECT)
    headers = {"Authorization": f"Bearer {env['ARTIFACTFS_API_KEY']}"}
    base = env["ARTIFACTFS_REGISTRY"] + API_PREFIX
    for body in ({"tags": ["no;way"]}, {"tags": "a string"}, {"tags": [1]},
                 {"tags": [f"t{i}" for i in range(MAX_TAGS + 1)]}):
        got = httpx.patch(f"{base}/versions/{art.id}", json=body, headers=headers)
        assert got.status_code == 400, got.text
        assert got.json()["error"]["type"] == "InvalidRequest"
    assert api.artifact(f"{PROJECT}/data:v0").tags == ["kept"]

    # a commit with a bad tag makes no version
    entity = art.entity
    manifest = api.artifact(f"{PROJECT}/data:v0").manifest.to_dict()
    got = httpx.post(f"{base}/entities/{entity}/projects/{PROJECT}/collections/other/versions",
                     json={"type": "dataset", "manifest": manifest, "tags": ["bad!"]},
                     headers=headers)
    assert got.status_code == 400, got.text
    assert "tag 'bad!' is not allowed" in got.json()["error"]["message"]
    assert api.artifacts("dataset", f"{PROJECT}/other") == []

    # a million tags: refused at the hundred-and-first, not after a quadratic pass
    body = {"tags": [f"t{i}" for i in range(1_000_000)]}
    got = httpx.patch(f"{base}/versions/{art.id}", json=body, headers=headers, timeout=60)
    assert got.status_code == 400 and "more than" in got.text, got.text


@pytest.mark.parametrize("transport", ["server"])
def test_the_server_sends_tags_only_when_a_version_has_some(
        env: dict[str, str], tmp_path: Path) -> None:
    """A client from before tags builds its version record from every field sent: an
    untagged version must read there as before."""
    plain = draft(tmp_path, b"plain").save(project=PROJECT)
    tagged = draft(tmp_path, b"tagged", name="t")
    tagged.tags = ["x"]
    tagged.save(project=PROJECT)
    headers = {"Authorization": f"Bearer {env['ARTIFACTFS_API_KEY']}"}
    base = env["ARTIFACTFS_REGISTRY"] + API_PREFIX
    assert "tags" not in httpx.get(f"{base}/versions/{plain.id}", headers=headers).json()
    assert httpx.get(f"{base}/versions/{tagged.id}", headers=headers).json()["tags"] == ["x"]


@pytest.mark.parametrize("transport", ["server"])
def test_a_read_only_key_can_not_change_tags(env: dict[str, str], tmp_path: Path) -> None:
    art = draft(tmp_path, b"one")
    art.save(project=PROJECT)
    reader = Store(Path(env["ARTIFACTFS_STORE"])).db.create_key("local", read_only=True)
    got = httpx.patch(f"{env['ARTIFACTFS_REGISTRY']}{API_PREFIX}/versions/{art.id}",
                      json={"tags": ["sneaky"]},
                      headers={"Authorization": f"Bearer {reader}"})
    assert got.status_code == 403, got.text
    assert Api().artifact(f"{PROJECT}/data:v0").tags == []


def test_tags_in_the_store_on_both_engines(open_store: Callable[[], Store]) -> None:
    store = open_store()
    try:
        made = store.commit(entity="local", project=PROJECT, name="d", type_="dataset",
                            manifest=Manifest(stored_entries(store, {"a": b"a"})),
                            tags=["z", "a", "m"])
        assert made.tags == ("z", "a", "m")  # the order set, not sorted
        assert store.db.update_version(made.id, tags=["m", "q"]).tags == ("m", "q")
        assert store.db.update_version(made.id, description="d").tags == ("m", "q")
        with pytest.raises(InvalidRequest):
            store.db.update_version(made.id, tags=["bad,tag"])
        with pytest.raises(InvalidRequest):
            store.commit(entity="local", project=PROJECT, name="e", type_="dataset",
                         manifest=Manifest(stored_entries(store, {"b": b"b"})),
                         tags=["bad,tag"])
        assert store.db.list_versions("local", PROJECT, "e") == []
        listed = store.db.list_versions("local", PROJECT, "d")
        assert [v.tags for v in listed] == [("m", "q")]
    finally:
        store.db.close()


def test_push_tag_and_ls_show_them(run_cli, tmp_path: Path) -> None:
    src = tmp_path / "model.pt"
    src.write_bytes(b"weights")
    pushed = run_cli("push", str(src), f"{PROJECT}/model", "--type", "model",
                     "--tag", "baseline", "--tag", "needs review")
    assert pushed.returncode == 0, pushed.stderr
    listed = run_cli("ls", f"{PROJECT}/model")
    assert listed.returncode == 0, listed.stderr
    assert "TAGS" in listed.stdout and "baseline,needs review" in listed.stdout

    bad = run_cli("push", str(src), f"{PROJECT}/other", "--type", "model", "--tag", "a,b")
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr
    assert "tag 'a,b' is not allowed" in bad.stderr
    assert run_cli("ls", f"{PROJECT}/other").returncode != 0  # nothing was made
