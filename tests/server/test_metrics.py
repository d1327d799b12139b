"""The server's ``/metrics``, scraped over real HTTP from a real ``artifactfs serve``.

Each test reads the counters before and after some work and checks that they moved by
what was done: requests by route template (never by the path asked for) and status, their
latency and bytes, commits, and the key check's refusals. ``/metrics`` needs a key unless
the server runs with ``--metrics-public``.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from artifactfs.core.digests import blob_key, md5_b64

ENTITY = "team"
VERSION_ROUTE = "/api/v1/versions/{vid}"
BLOB_ROUTE = "/api/v1/blobs/{key}"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def reg(shared_registry: Any) -> Any:
    return shared_registry


def scrape(reg: Any, client: httpx.Client | None = None) -> Samples:
    """Every sample of one scrape, by name and labels."""
    r = (client or reg.ro).get(reg.url + "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_need_a_key_and_count_refused_keys(reg: Any) -> None:
    before = scrape(reg)
    assert reg.anon.get(reg.url + "/metrics").status_code == 401
    bad = reg.client("afs_not-a-key-of-this-store")
    assert bad.get(reg.url + "/metrics").status_code == 401
    assert bad.get(f"/entities/{ENTITY}/projects").status_code == 401
    # a read-only key asking for a change
    assert reg.ro.post(reg.collection("p", "n") + "/versions", json={}).status_code == 403
    after = scrape(reg)
    name = "artifactfs_auth_failures_total"
    assert value(after, name, reason="missing_key") - value(before, name,
                                                            reason="missing_key") == 1
    assert value(after, name, reason="unknown_key") - value(before, name,
                                                            reason="unknown_key") == 2
    assert value(after, name, reason="read_only_key") - value(before, name,
                                                              reason="read_only_key") == 1
    # the refused requests are counted under their routes' templates, with their status
    requests = "artifactfs_http_requests_total"
    assert value(after, requests, method="GET", route="/metrics", status="401") - value(
        before, requests, method="GET", route="/metrics", status="401") == 2
    route = "/api/v1/entities/{entity}/projects/{project}/collections/{name}/versions"
    assert value(after, requests, method="POST", route=route, status="403") - value(
        before, requests, method="POST", route=route, status="403") == 1


def test_requests_are_counted_by_route_template_with_latency_and_bytes(reg: Any) -> None:
    project = reg.unique("metrics")
    version = reg.commit(project, "data", {"a.txt": b"alpha"})
    data = os.urandom(300_000)
    digest = md5_b64(data)
    before = scrape(reg)
    assert reg.rw.put(f"/blobs/{blob_key(digest)}", content=data).status_code == 201
    got = reg.rw.get(f"/blobs/{blob_key(digest)}")
    assert got.status_code == 200 and got.content == data
    for _ in range(3):
        assert reg.rw.get(f"/versions/{version['id']}").status_code == 200
    assert reg.rw.get("/versions/0123456789abcdef01234567").status_code == 404
    assert reg.rw.get("/no/such/route/here").status_code == 404
    after = scrape(reg)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "artifactfs_http_requests_total"
    assert moved(requests, method="GET", route=VERSION_ROUTE, status="200") == 3
    assert moved(requests, method="GET", route=VERSION_ROUTE, status="404") == 1
    assert moved(requests, method="PUT", route=BLOB_ROUTE, status="201") == 1
    assert moved(requests, method="GET", route="unmatched", status="404") == 1
    # no series is named after what a path held: a version id, a blob key, a project
    labels = " ".join(v for (_, ls) in after for _, v in ls)
    for held in (version["id"], blob_key(digest), project, "/no/such/route/here"):
        assert held not in labels
    hist = "artifactfs_http_request_duration_seconds"
    assert moved(hist + "_count", method="GET", route=VERSION_ROUTE) == 4
    assert moved(hist + "_sum", method="GET", route=VERSION_ROUTE) > 0
    assert moved(hist + "_bucket", method="GET", route=VERSION_ROUTE, le="+Inf") == 4
    assert moved("artifactfs_http_request_bytes_total", method="PUT",
                 route=BLOB_ROUTE) == len(data)
    assert moved("artifactfs_http_response_bytes_total", method="GET",
                 route=BLOB_ROUTE) == len(data)


def test_a_commit_moves_commits_and_identical_content_counts_unchanged(reg: Any) -> None:
    project = reg.unique("commits")
    files = {"x.bin": b"x" * 1000}
    before = scrape(reg)
    reg.commit(project, "model", files)
    body = {"type": "dataset", "manifest": reg.manifest_for(files)}
    again = reg.rw.post(reg.collection(project, "model") + "/versions", json=body)
    assert again.status_code == 200, again.text  # content held already: no version made
    after = scrape(reg)
    name = "artifactfs_commits_total"
    assert value(after, name, outcome="created") - value(before, name, outcome="created") == 1
    assert value(after, name, outcome="unchanged") - value(
        before, name, outcome="unchanged") == 1
    # the process's own metrics come along
    assert value(after, "process_resident_memory_bytes") > 0


def test_metrics_public_needs_no_key_and_the_api_still_does(start_registry: Any) -> None:
    reg = start_registry("--metrics-public")
    samples = scrape(reg, reg.anon)
    assert ("artifactfs_commits_total", frozenset({("outcome", "created")})) in samples
    assert reg.anon.get(f"/entities/{ENTITY}/projects").status_code == 401
    # an OpenMetrics scraper is answered in its format
    r = reg.anon.get(reg.url + "/metrics",
                     headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")
