"""Will messages: on network loss / keep-alive timeout, not on normal DISCONNECT, v5 reason 0x04,
will retain, will QoS, will properties, will delay interval."""
import time

import pytest

import mqtt_raw as r


@pytest.mark.parametrize("version", [4, 5])
def test_will_on_connection_loss(broker, client_factory, uid, version):
    watcher = client_factory()
    watcher.subscribe(f"{uid}/will", 1)
    c = client_factory(version=version, will={"topic": f"{uid}/will", "payload": b"gone", "qos": 1})
    c.drop()
    m = watcher.get()
    assert (m.payload, m.qos, m.retain) == (b"gone", 1, False)


@pytest.mark.parametrize("version", [4, 5])
def test_no_will_on_normal_disconnect(broker, client_factory, uid, version):
    watcher = client_factory()
    watcher.subscribe(f"{uid}/will", 1)
    c = client_factory(version=version, will={"topic": f"{uid}/will", "payload": b"gone", "qos": 1})
    c.disconnect()
    watcher.expect_none(1.0)


def test_will_on_disconnect_with_will_message_reason(broker, client_factory, uid):
    watcher = client_factory()
    watcher.subscribe(f"{uid}/will", 1)
    c = client_factory(will={"topic": f"{uid}/will", "payload": b"asked", "qos": 1})
    c.disconnect(rc=0x04)
    assert watcher.get().payload == b"asked"


@pytest.mark.parametrize("version", [4, 5])
def test_will_on_keepalive_timeout(broker, client_factory, uid, version):
    watcher = client_factory()
    watcher.subscribe(f"{uid}/will", 1)
    raw, ack = r.raw_connect(broker.host, broker.port, f"{uid}-silent", version=version, keepalive=1,
                             will={"topic": f"{uid}/will", "payload": b"timeout", "qos": 1})
    assert ack.rc == 0
    assert watcher.get(timeout=8).payload == b"timeout"


def test_will_retained(broker, client_factory, uid):
    c = client_factory(will={"topic": f"{uid}/wr", "payload": b"last", "qos": 1, "retain": True})
    c.drop()
    late = client_factory()
    # poll: the will is published asynchronously after the drop
    deadline = time.monotonic() + 5
    while True:
        late.subscribe(f"{uid}/wr", 1)
        try:
            m = late.get(0.5)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "retained will never appeared"
            late.unsubscribe(f"{uid}/wr")
    assert m.payload == b"last" and m.retain


def test_will_properties_forwarded(broker, client_factory, uid):
    watcher = client_factory()
    watcher.subscribe(f"{uid}/wp", 1)
    c = client_factory(will={"topic": f"{uid}/wp", "payload": b"p", "qos": 1,
                             "props": {"ContentType": "text/plain", "UserProperty": [("why", "test")],
                                       "ResponseTopic": f"{uid}/resp"}})
    c.drop()
    m = watcher.get()
    assert m.properties.ContentType == "text/plain"
    assert ("why", "test") in m.properties.UserProperty
    assert m.properties.ResponseTopic == f"{uid}/resp"


def test_will_delay_published_after_delay(broker, client_factory, uid):
    watcher = client_factory()
    watcher.subscribe(f"{uid}/wd", 1)
    c = client_factory(client_id=f"{uid}-wd", connect_props={"SessionExpiryInterval": 30},
                       will={"topic": f"{uid}/wd", "payload": b"late", "qos": 1,
                             "props": {"WillDelayInterval": 2}})
    t0 = time.monotonic()
    c.drop()
    watcher.expect_none(1.3)
    m = watcher.get(timeout=5)
    elapsed = time.monotonic() - t0
    assert m.payload == b"late"
    assert 1.5 < elapsed < 6.5, elapsed


def test_will_delay_cancelled_by_reconnect(broker, client_factory, uid):
    watcher = client_factory()
    watcher.subscribe(f"{uid}/wd", 1)
    cid = f"{uid}-wdc"
    c = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 30},
                       will={"topic": f"{uid}/wd", "payload": b"late", "qos": 1,
                             "props": {"WillDelayInterval": 2}})
    c.drop()
    time.sleep(0.3)
    client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 30})
    watcher.expect_none(3.5)


def test_will_delay_capped_by_session_expiry(broker, client_factory, uid):
    # will delay 30 s but session expiry 1 s: the will is sent when the session ends
    watcher = client_factory()
    watcher.subscribe(f"{uid}/wse", 1)
    c = client_factory(client_id=f"{uid}-wse", connect_props={"SessionExpiryInterval": 1},
                       will={"topic": f"{uid}/wse", "payload": b"expired", "qos": 1,
                             "props": {"WillDelayInterval": 30}})
    c.drop()
    assert watcher.get(timeout=8).payload == b"expired"


def test_will_sent_on_takeover_v311(broker, client_factory, uid):
    watcher = client_factory()
    watcher.subscribe(f"{uid}/wt", 1)
    cid = f"{uid}-wt"
    client_factory(client_id=cid, version=4, will={"topic": f"{uid}/wt", "payload": b"taken", "qos": 1})
    client_factory(client_id=cid, version=4)
    assert watcher.get().payload == b"taken"
