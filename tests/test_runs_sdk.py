"""Runs and lineage through the SDK and the CLI, as a user has them: ``artifactfs.init()``,
``Run.log_artifact``/``use_artifact``/``finish``, ``Artifact.logged_by()``/``used_by()``, and
``artifactfs lineage`` (tree, ``--json``, ``--dot``), on the embedded store and on a real
server (the ``transport`` fixture); the first test also on PostgreSQL and S3 (pg-s3), where
it answers every run route once (tests/scale_out.py's route check)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import make_tree
from scale_out import scale_out

import artifactfs
from artifactfs import Api, Artifact, Conflict, NotFound
from artifactfs.core.runs import FAILED, FINISHED, RUNNING

PROJECT = "vision"
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(autouse=True)
def _environment(environ: dict[str, str]) -> None:
    """The SDK reads the environment, as a user's program does (conftest's ``environ``)."""


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "src", {"raw.csv": b"a,b\n1,2\n", "model.pt": b"weights"})


def _pipeline(api: Api, src: Path) -> dict[str, str]:
    """raw -> prep (logs clean) -> train (uses clean and raw, logs model); ids by name."""
    raw = Artifact("raw", type="dataset")
    raw.add_file(str(src / "raw.csv"))
    raw.save(project=PROJECT)
    with artifactfs.init(project=PROJECT, job_type="prep", name="prep-1",
                         config={"split": 0.9}, api=api) as prep:
        prep.use_artifact("raw:latest")
        clean = Artifact("clean", type="dataset")
        clean.add_file(str(src / "raw.csv"), name="clean.csv")
        prep.log_artifact(clean, aliases=["v-good"])
    with artifactfs.init(project=PROJECT, job_type="train", api=api) as train:
        train.use_artifact(f"{PROJECT}/clean:v-good", type="dataset")
        train.use_artifact(raw)  # an Artifact object, saved
        model = train.log_artifact(str(src / "model.pt"), name="model", type="model")
    assert raw.id and clean.id and model.id
    return {"raw": raw.id, "clean": clean.id, "model": model.id, "prep": prep.id,
            "train": train.id}


@scale_out
def test_runs_record_what_they_log_and_use(api: Api, src: Path) -> None:
    ids = _pipeline(api, src)
    clean = api.artifact(f"{PROJECT}/clean:latest")
    assert sorted(clean.aliases) == ["latest", "v-good"]
    producer = clean.logged_by()
    assert producer is not None and producer.id == ids["prep"]
    assert (producer.name, producer.job_type, producer.state, producer.project,
            producer.entity, producer.config) == ("prep-1", "prep", FINISHED, PROJECT,
                                                  api.config.entity, {"split": 0.9})
    assert producer.created_at.endswith("Z")
    assert [r.id for r in clean.used_by()] == [ids["train"]]
    raw = api.artifact(f"{PROJECT}/raw:v0")
    assert raw.logged_by() is None  # saved by no run
    assert [r.id for r in raw.used_by()] == [ids["prep"], ids["train"]]
    model = api.artifact(f"{PROJECT}/model:latest", type="model")
    assert model.logged_by().id == ids["train"]  # type: ignore[union-attr]
    assert model.used_by() == []
    train = api.run(f"{api.config.entity}/{PROJECT}/{ids['train']}")
    assert [a.id for a in train.used_artifacts()] == [ids["clean"], ids["raw"]]
    assert [a.id for a in train.logged_artifacts()] == [ids["model"]]
    assert api.run(ids["prep"]).name == "prep-1"
    with pytest.raises(NotFound, match="not other"):
        api.run(f"other/{ids['prep']}")


def test_a_run_fails_when_its_block_raises_and_ends_once(api: Api) -> None:
    with pytest.raises(RuntimeError, match="diverged"), \
            artifactfs.init(project=PROJECT, job_type="train", api=api) as run:
        assert run.state == RUNNING
        raise RuntimeError("diverged")
    assert run.state == FAILED and api.run(run.id).state == FAILED
    run.finish()  # ended already: nothing changes
    assert api.run(run.id).state == FAILED
    late = Artifact("late", type="model")
    with pytest.raises(Conflict, match=f"run {run.id} is failed: it cannot log"):
        run.log_artifact(late)
    assert late.id is None  # refused before anything was saved
    other = artifactfs.init(project=PROJECT, api=api)
    other.finish(exit_code=0)
    assert other.state == FINISHED


def test_init_reads_the_environment_and_checks_its_arguments(api: Api) -> None:
    run = artifactfs.init(job_type="eval")  # ARTIFACTFS_PROJECT unset: uncategorized
    try:
        assert (run.project, run.entity) == ("uncategorized", api.config.entity)
        assert api.run(run.id).job_type == "eval"
    finally:
        run.finish()
    with pytest.raises(ValueError, match="run config is not plain JSON"):
        artifactfs.init(project=PROJECT, config={"f": object()}, api=api)
    with pytest.raises(ValueError, match="job_type 'a b' may only contain"):
        artifactfs.init(project=PROJECT, job_type="a b", api=api)
    with artifactfs.init(project=PROJECT, api=api) as run:
        with pytest.raises(NotFound, match="vision/nothing:latest not found"):
            run.use_artifact("nothing")
        with pytest.raises(ValueError, match="is a draft; save it"):
            run.use_artifact(Artifact("draft", type="dataset"))
        with pytest.raises(ValueError, match="needs type="):
            run.log_artifact(__file__)  # a path needs its type


def test_a_second_run_logging_the_same_version_keeps_the_first_as_producer(
        api: Api, src: Path) -> None:
    with artifactfs.init(project=PROJECT, api=api) as first:
        art = Artifact("model", type="model")
        art.add_file(str(src / "model.pt"))
        first.log_artifact(art)
        first.log_artifact(art)  # the same run again: recorded once, no error
    with artifactfs.init(project=PROJECT, api=api) as second:
        second.log_artifact(api.artifact(f"{PROJECT}/model:v0"))
    assert art.logged_by().id == first.id  # type: ignore[union-attr]
    assert [a.id for a in second.logged_artifacts()] == [art.id]
    assert [a.id for a in first.logged_artifacts()] == [art.id]


# ---- artifactfs lineage --------------------------------------------------------------------


def test_lineage_prints_the_tree_json_and_dot(api: Api, src: Path, run_cli: Cli) -> None:
    ids = _pipeline(api, src)
    entity = api.config.entity
    done = run_cli("lineage", f"{PROJECT}/clean:v-good", check=True)
    assert done.stdout.splitlines() == [
        f"{entity}/{PROJECT}/clean:v0 (dataset; latest, v-good)",
        f'├── logged by run {ids["prep"]} "prep-1" (job prep, finished)',
        f"│   └── used {entity}/{PROJECT}/raw:v0 (dataset; latest)",
        f"└── used by run {ids['train']} (job train, finished)",
        f"    └── logged {entity}/{PROJECT}/model:v0 (model; latest)",
    ]
    graph = json.loads(run_cli("lineage", f"{PROJECT}/model", "--json", check=True).stdout)
    assert graph["ref"] == f"{entity}/{PROJECT}/model:v0" and graph["used_by"] == []
    train = graph["logged_by"]
    assert (train["id"], train["job_type"], train["state"]) == (ids["train"], "train",
                                                               "finished")
    assert [v["id"] for v in train["used"]] == [ids["clean"], ids["raw"]]
    assert train["used"][0]["logged_by"]["id"] == ids["prep"]
    assert train["used"][1]["logged_by"] is None
    # depth 1: the producer, but not what it used
    shallow = json.loads(run_cli("lineage", f"{PROJECT}/model", "--json", "--depth", "1",
                                 check=True).stdout)
    assert shallow["logged_by"]["more"] is True and "used" not in shallow["logged_by"]
    dot = run_cli("lineage", f"{PROJECT}/raw:v0", "--dot", check=True).stdout
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    raw, prep, train_node = f'"v:{ids["raw"]}"', f'"r:{ids["prep"]}"', f'"r:{ids["train"]}"'
    for edge in (f"{raw} -> {prep}", f"{raw} -> {train_node}",
                 f'{prep} -> "v:{ids["clean"]}"', f'"v:{ids["clean"]}" -> {train_node}',
                 f'{train_node} -> "v:{ids["model"]}"'):
        assert f"  {edge};" in dot, (edge, dot)


def test_lineage_of_a_version_no_run_touched_and_its_errors(tmp_path: Path,
                                                            run_cli: Cli) -> None:
    (tmp_path / "f.txt").write_text("x")
    run_cli("push", str(tmp_path / "f.txt"), f"{PROJECT}/alone", "--type", "dataset",
            check=True)
    done = run_cli("lineage", f"{PROJECT}/alone", check=True)
    assert done.stdout.splitlines()[1] == "└── (no run logged or used it)"
    missing = run_cli("lineage", f"{PROJECT}/nothing:v3")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("error: artifact") and "nothing:v3 not found" in \
        missing.stderr
    both = run_cli("lineage", f"{PROJECT}/alone", "--json", "--dot")
    assert both.returncode == 1 and "pick one" in both.stderr
    bad = run_cli("lineage", "no/such/ref/here")
    assert bad.returncode == 1 and "must have the form" in bad.stderr
    helped = run_cli("lineage", "--help", check=True).stdout
    assert "--json" in helped and "--dot" in helped and "Examples:" in helped
    assert "artifactfs lineage vision/resnet:latest --dot" in helped


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_lineage_shows_a_node_met_again_once_and_stops_at_the_depth(
        api: Api, src: Path, run_cli: Cli) -> None:
    """A run that uses what it logged (a checkpoint it resumes from) makes a cycle: the
    walk shows the version again as seen, and ends."""
    with artifactfs.init(project=PROJECT, job_type="train", api=api) as run:
        ckpt = run.log_artifact(str(src / "model.pt"), name="ckpt", type="model")
        run.use_artifact("ckpt:v0")
    graph = json.loads(run_cli("lineage", f"{PROJECT}/ckpt", "--json", check=True).stdout)
    assert graph["id"] == ckpt.id
    producer = graph["logged_by"]
    assert producer["id"] == run.id and [v["id"] for v in producer["used"]] == [ckpt.id]
    assert producer["used"][0]["seen"] is True  # met again: not walked a second time
    consumer = graph["used_by"][0]
    assert consumer["id"] == run.id and consumer["logged"][0]["seen"] is True
    tree = run_cli("lineage", f"{PROJECT}/ckpt", check=True).stdout.splitlines()
    assert tree[2].endswith("(model; latest) (shown above)") and len(tree) == 5, tree
