"""Process-wide settings the broker applies to itself at start-up (iotcore only), and a burst
of connects."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

import mqtt_raw

pytestmark = pytest.mark.iotcore


def thp_enabled(pid: int) -> int:
    """The kernel's per-process THP switch, from /proc/PID/status (Linux 5.0 and later)."""
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"^THP_enabled:\s+(\d)$", status, re.MULTILINE)
    if m is None:
        pytest.skip("this kernel does not report THP_enabled")
    return int(m.group(1))


def test_transparent_huge_pages_off_by_default(broker):
    assert thp_enabled(broker.proc.pid) == 0


def test_transparent_huge_pages_on_when_configured(broker_factory):
    b = broker_factory(transparent_huge_pages=True)
    assert thp_enabled(b.proc.pid) == 1


def open_files_limits(pid: int) -> tuple[int, int]:
    """Soft and hard "Max open files" of a process, from /proc/PID/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no Max open files line")


def test_open_files_soft_limit_raised_to_the_hard_one(broker):
    # One descriptor per connection: the broker takes what the hard limit allows, and says so.
    soft, hard = open_files_limits(broker.proc.pid)
    assert soft == hard
    assert f"open_files_limit={soft}" in re.sub(r"\x1b\[[0-9;]*m", "", broker.stderr())


def test_many_clients_connecting_at_once_all_get_their_connack(broker):
    # 600 connects in flight cross the descriptor counts (256, 512) where the kernel used to
    # grow the table under the running shards, and the listener accepts them in batches.
    socks = []
    try:
        for i in range(600):
            s = socket.create_connection((broker.host, broker.port), timeout=10)
            socks.append(s)
        for i, s in enumerate(socks):
            s.sendall(mqtt_raw.connect(f"burst-{i}", version=mqtt_raw.V311))
        for s in socks:
            s.settimeout(10)
            connack = b""
            while len(connack) < 4:
                chunk = s.recv(4 - len(connack))
                assert chunk, "closed before its CONNACK"
                connack += chunk
            assert connack == b"\x20\x02\x00\x00", connack  # accepted, no session
    finally:
        for s in socks:
            s.close()
