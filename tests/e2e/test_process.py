"""Process-wide settings the broker applies to itself at start-up (iotcore only)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
