"""The run routes of a real server (server/runs.py) under the key rules: a key sees its own
entity's runs only, a read-only key changes nothing but may record a run's use of a version
its entity holds, and bad input answers 400 saying what is wrong, never 500."""

from __future__ import annotations

from typing import Any

import pytest

ENTITY = "team"
RUNS = f"/entities/{ENTITY}/runs"


@pytest.fixture
def reg(shared_registry: Any) -> Any:
    return shared_registry


def _error(r: Any, status: int, kind: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["error"]["type"] == kind, r.text
    return str(r.json()["error"]["message"])


def _run(reg: Any, **body: Any) -> dict[str, Any]:
    r = reg.rw.post(RUNS, json={"project": reg.unique("p"), **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_a_read_only_key_reads_runs_and_records_uses_only(reg: Any) -> None:
    version = reg.commit(reg.unique("proj"), "data", {"a.txt": b"runs"})
    run = _run(reg, job_type="train")
    one = f"{RUNS}/{run['id']}"
    assert reg.ro.get(one).json() == run
    made = reg.ro.put(f"{one}/used/{version['id']}")
    assert made.status_code == 201 and made.json()["new"] is True
    again = reg.ro.put(f"{one}/used/{version['id']}")
    assert again.status_code == 200 and again.json()["new"] is False
    assert [v["id"] for v in reg.ro.get(f"{one}/used").json()] == [version["id"]]
    used_by = reg.ro.get(f"/entities/{ENTITY}/versions/{version['id']}/runs/used").json()
    assert [r["id"] for r in used_by] == [run["id"]]
    # every other change is refused to it
    for refused in (reg.ro.post(RUNS, json={"project": "p"}),
                    reg.ro.patch(one, json={"state": "finished"}),
                    reg.ro.put(f"{one}/logged/{version['id']}")):
        assert "read-only" in _error(refused, 403, "PermissionDenied")
    assert reg.rw.get(f"{one}/logged").json() == []
    assert reg.rw.get(one).json()["state"] == "running"


def test_another_entitys_runs_and_versions_are_not_there(reg: Any) -> None:
    version = reg.commit(reg.unique("proj"), "data", {"a.txt": b"theirs"})
    run = _run(reg)
    one = f"{RUNS}/{run['id']}"
    # a path naming another entity: whose the key is, as on every route
    for r in (reg.other.get(one), reg.other.put(f"{one}/used/{version['id']}"),
              reg.other.patch(one, json={"state": "finished"}), reg.other.post(RUNS, json={})):
        assert "this API key is for entity 'other'" in _error(r, 403, "PermissionDenied")
    # under its own entity, this entity's run and version are not there
    _error(reg.other.get(f"/entities/other/runs/{run['id']}"), 404, "NotFound")
    theirs = reg.other.post("/entities/other/runs", json={"project": "p"})
    assert theirs.status_code == 201, theirs.text
    linked = reg.other.put(f"/entities/other/runs/{theirs.json()['id']}/used/{version['id']}")
    assert "not found" in _error(linked, 404, "NotFound")
    _error(reg.other.get(f"/entities/other/versions/{version['id']}/runs/used"), 404,
           "NotFound")
    assert reg.rw.get(f"{one}/used").json() == []


@pytest.mark.parametrize(("method", "path", "body", "kind", "said"), [
    ("POST", "", {"project": "p", "config": [1]}, "InvalidRequest", "wrong type"),
    ("POST", "", {"name": "no project"}, "InvalidRequest", "'project' is required"),
    ("POST", "", {"project": "p", "id": "Not An Id"}, "InvalidName", "is not a run id"),
    ("POST", "", {"project": "p", "job_type": "../x"}, "InvalidName", "job_type"),
    ("GET", "/BAD!", None, "InvalidName", "is not a run id"),
    ("PATCH", "/{run}", {"state": "crashed"}, "InvalidRequest", "run state must be one of"),
    ("PATCH", "/{run}", {"state": "running"}, "Conflict", "cannot be set running again"),
    ("PUT", "/{run}/made/x", None, "InvalidRequest", "one of logged, used"),
    ("GET", "/{run}/made", None, "InvalidRequest", "one of logged, used"),
    ("PUT", "/{run}/used/no-such-version", None, "NotFound", "not found"),
])
def test_bad_run_requests_answer_what_is_wrong(reg: Any, method: str, path: str,
                                               body: Any, kind: str, said: str) -> None:
    run = _run(reg)
    r = reg.rw.request(method, RUNS + path.format(run=run["id"]), json=body)
    status = {"NotFound": 404, "Conflict": 409}.get(kind, 400)
    assert said in _error(r, status, kind)
    reg.alive()
