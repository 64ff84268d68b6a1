"""The storage side of `/metrics`: shadow requests, group commits and the records they
covered, and the shadows each shard owns, as Prometheus counters per shard."""

from __future__ import annotations

import re
import urllib.request

import pytest

from conftest import poll
from shadow_helpers import rest, shadow_path, thing_name

pytestmark = pytest.mark.iotcore


def metric_sum(text: str, name: str) -> int:
    """The sum over shards of one metric in Prometheus text."""
    values = re.findall(rf"^iotcore_{name}{{shard=\"\d+\"}} (\d+)$", text, re.MULTILINE)
    assert values, f"iotcore_{name} missing from /metrics"
    return sum(int(v) for v in values)


def scrape(broker) -> str:
    url = f"http://{broker.config['admin']['bind']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def test_shadow_updates_show_as_requests_commits_and_records(broker, uid):
    things = [thing_name(uid, f"-{i}") for i in range(3)]
    for n, thing in enumerate(things):
        for v in range(n + 1):
            r = rest(broker, "POST", shadow_path(thing), {"state": {"reported": {"v": v}}})
            assert r.status == 200, r.raw
    assert rest(broker, "GET", shadow_path(things[0])).status == 200
    updates = 1 + 2 + 3

    def counted():
        text = scrape(broker)
        return (
            metric_sum(text, "shadow_requests_total") >= updates + 1
            and metric_sum(text, "log_committed_records_total") >= updates
            and metric_sum(text, "shadows") == len(things)
            and text
        )

    text = poll(counted, timeout=5.0, msg="storage metrics did not count the updates")
    assert metric_sum(text, "shadow_requests_total") == updates + 1
    # Every update is one shadow record, made durable by some commit before its answer.
    assert metric_sum(text, "log_committed_records_total") >= updates
    commits = metric_sum(text, "log_commits_total")
    assert 1 <= commits <= updates
