"""The server's ``/metrics`` on the scale-out configuration too (PostgreSQL and S3): a save
through the SDK moves the commits and the routes it used, on ``server`` and ``pg-s3``.

The rest of /metrics is tested in tests/server/test_metrics.py; this one is what puts
``GET /metrics`` among the routes the pg-s3 runs reach (tests/scale_out.py).
"""

from __future__ import annotations

from pathlib import Path

import httpx
from helpers import make_tree
from prometheus_client.parser import text_string_to_metric_families
from scale_out import servers_and_scale_out

from artifactfs.sdk import Api, Artifact


def _scrape(env: dict[str, str]) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = httpx.get(env["ARTIFACTFS_REGISTRY"] + "/metrics", timeout=30,
                  headers={"Authorization": f"Bearer {env['ARTIFACTFS_API_KEY']}"})
    assert r.status_code == 200, r.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


@servers_and_scale_out
def test_a_save_moves_the_servers_commits_and_request_counts(
    api: Api, env: dict[str, str], tmp_path: Path
) -> None:
    before = _scrape(env)
    art = Artifact("metrics", "dataset")
    art._client = api
    art.add_dir(make_tree(tmp_path / "src", {"a.txt": b"alpha\n", "b/c.txt": b"gamma\n"}))
    art.save(project="proj")
    after = _scrape(env)
    created = ("artifactfs_commits_total", frozenset({("outcome", "created")}))
    assert after[created] - before.get(created, 0) == 1
    commits = ("artifactfs_http_requests_total", frozenset({
        ("method", "POST"), ("status", "201"),
        ("route", "/api/v1/entities/{entity}/projects/{project}/collections/{name}/versions"),
    }))
    assert after[commits] - before.get(commits, 0) == 1
