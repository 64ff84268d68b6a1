"""AWS IoT Core lifecycle events on $aws/events/... (iotcore only)."""
import json
import time

import pytest

import mqtt_raw as r

pytestmark = pytest.mark.iotcore


def _events(watcher, kind, cid, timeout=5.0):
    """Wait for the first not-yet-consumed event of `kind` for client `cid` (events of other
    kinds/clients stay buffered on the watcher); returns (message, decoded JSON)."""
    buf = watcher.__dict__.setdefault("event_buffer", [])
    deadline = time.monotonic() + timeout
    while True:
        for i, m in enumerate(buf):
            if m.topic.endswith(f"/{cid}") and f"/{kind}/" in m.topic:
                del buf[i]
                return m, json.loads(m.payload)
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind} event for {cid}; other events: {[m.topic for m in buf]}"
        try:
            buf.append(watcher.get(left))
        except AssertionError:
            pass


@pytest.fixture
def watcher(client_factory):
    w = client_factory()
    w.subscribe("$aws/events/#", 1)
    return w


def _check_common(ev, cid, kind):
    assert ev["clientId"] == cid
    assert ev["eventType"] == kind
    assert isinstance(ev["timestamp"], int) and abs(ev["timestamp"] - time.time() * 1000) < 60_000
    assert "sessionIdentifier" in ev and ev["sessionIdentifier"]
    assert "principalIdentifier" in ev


@pytest.mark.parametrize("version", [4, 5])
def test_connected_and_client_disconnect(watcher, client_factory, uid, version):
    cid = f"{uid}-c"
    c = client_factory(client_id=cid, version=version)
    m, ev = _events(watcher, "connected", cid)
    assert m.topic == f"$aws/events/presence/connected/{cid}"
    assert not m.retain
    _check_common(ev, cid, "connected")
    assert ev["ipAddress"] in ("127.0.0.1", "::ffff:127.0.0.1")
    assert isinstance(ev["versionNumber"], int)
    c.disconnect()
    m, dev = _events(watcher, "disconnected", cid)
    assert m.topic == f"$aws/events/presence/disconnected/{cid}"
    _check_common(dev, cid, "disconnected")
    assert dev["clientInitiatedDisconnect"] is True
    assert dev["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert dev["sessionIdentifier"] == ev["sessionIdentifier"]


def test_connection_lost(watcher, client_factory, uid):
    cid = f"{uid}-l"
    c = client_factory(client_id=cid)
    _events(watcher, "connected", cid)
    c.drop()
    _, ev = _events(watcher, "disconnected", cid)
    assert ev["clientInitiatedDisconnect"] is False
    assert ev["disconnectReason"] == "CONNECTION_LOST"


def test_duplicate_client_id(watcher, client_factory, uid):
    cid = f"{uid}-d"
    client_factory(client_id=cid)
    _, first = _events(watcher, "connected", cid)
    client_factory(client_id=cid)
    _, ev = _events(watcher, "disconnected", cid)
    assert ev["disconnectReason"] == "DUPLICATE_CLIENTID"
    assert ev["clientInitiatedDisconnect"] is False
    assert ev["sessionIdentifier"] == first["sessionIdentifier"]
    _, second = _events(watcher, "connected", cid)
    assert second["sessionIdentifier"] != first["sessionIdentifier"]


def test_keepalive_timeout_event(watcher, broker, uid):
    cid = f"{uid}-k"
    raw, _ = r.raw_connect(broker.host, broker.port, cid, version=5, keepalive=1)
    _events(watcher, "connected", cid)
    _, ev = _events(watcher, "disconnected", cid, timeout=8)
    assert ev["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"
    assert ev["clientInitiatedDisconnect"] is False


def test_subscribed_unsubscribed_events(watcher, client_factory, uid):
    cid = f"{uid}-s"
    c = client_factory(client_id=cid)
    _, conn = _events(watcher, "connected", cid)
    c.subscribe([(f"{uid}/a", 1), (f"{uid}/b/#", 0)])
    m, ev = _events(watcher, "subscribed", cid)
    assert m.topic == f"$aws/events/subscriptions/subscribed/{cid}"
    _check_common(ev, cid, "subscribed")
    assert sorted(ev["topics"]) == sorted([f"{uid}/a", f"{uid}/b/#"])
    assert ev["sessionIdentifier"] == conn["sessionIdentifier"]
    c.unsubscribe(f"{uid}/a")
    m, ev = _events(watcher, "unsubscribed", cid)
    assert m.topic == f"$aws/events/subscriptions/unsubscribed/{cid}"
    _check_common(ev, cid, "unsubscribed")
    assert ev["topics"] == [f"{uid}/a"]


def test_specific_event_filter(client_factory, uid):
    cid = f"{uid}-f"
    w = client_factory()
    w.subscribe(f"$aws/events/presence/+/{cid}", 1)
    c = client_factory(client_id=cid)
    client_factory()  # someone else's events must not match
    assert json.loads(w.get().payload)["eventType"] == "connected"
    c.disconnect()
    assert json.loads(w.get().payload)["eventType"] == "disconnected"
    w.expect_none(0.3)


def test_wildcard_subscriber_gets_no_events(client_factory, uid):
    everything = client_factory()
    everything.subscribe("#", 1)
    plus = client_factory()
    plus.subscribe("+/events/#", 1)
    w = client_factory()
    w.subscribe("$aws/events/#", 1)
    c = client_factory(client_id=f"{uid}-w")
    c.subscribe(f"{uid}/x", 1)
    c.disconnect()
    assert w.get_n(3)  # connected, subscribed, disconnected reached the $aws subscriber
    time.sleep(0.3)
    leaked = [m.topic for m in everything.drain() + plus.drain() if m.topic.startswith("$")]
    assert leaked == []
