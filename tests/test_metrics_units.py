"""The pure parts of the metrics: the read latency histogram as the stats attribute gives
it, and the percentiles ``artifactfs stats`` reads from it (no mount needed)."""

from __future__ import annotations

import json

from artifactfs.cli.stats import quantile
from artifactfs.fs.metrics import READ_BUCKETS, ReadTimes


def test_read_times_as_json_are_cumulative_buckets_ending_in_null() -> None:
    times = ReadTimes()
    for seconds in (0.0002, 0.0002, 0.003, 0.2, 45.0):
        times.observe(seconds)
    shown = json.loads(json.dumps(times.as_dict()))  # what the attribute carries
    assert shown["count"] == 5
    assert abs(shown["sum"] - 45.2034) < 1e-9
    bounds = [b for b, _ in shown["buckets"]]
    assert bounds == [*READ_BUCKETS, None]  # +Inf has no JSON form
    counts = {b: n for b, n in shown["buckets"]}
    assert counts[0.00025] == 2 and counts[0.005] == 3 and counts[0.25] == 4
    assert counts[30.0] == 4 and counts[None] == 5


def test_quantiles_are_the_upper_bound_of_the_bucket_holding_them() -> None:
    times = ReadTimes()
    for _ in range(98):
        times.observe(0.0004)
    times.observe(0.02)
    times.observe(0.02)
    shown = times.as_dict()
    assert quantile(shown, 0.5) == 0.0005
    assert quantile(shown, 0.99) == 0.025
    times.observe(60.0)  # past the last finite bound: no bound to give
    assert quantile(times.as_dict(), 1.0) is None
    assert quantile(ReadTimes().as_dict(), 0.5) is None  # no reads
