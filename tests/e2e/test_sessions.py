"""Persistent sessions (3.1.1 clean_session=0, 5 clean_start=0 + session expiry): subscriptions
kept, QoS 1/2 queued while offline, session_present, clean start discards, expiry, redelivery of
unacknowledged QoS 1/2 messages on reconnect."""
import time

import pytest

import mqtt_raw as r
from conftest import TClient


def _persistent(client_factory, cid, version, **kw):
    if version == 5:
        return client_factory(client_id=cid, version=5, clean=False,
                              connect_props={"SessionExpiryInterval": 60}, **kw)
    return client_factory(client_id=cid, version=4, clean=False, **kw)


@pytest.mark.parametrize("version", [4, 5])
def test_offline_queue_delivered_on_reconnect(broker, client_factory, uid, version):
    cid = f"{uid}-p"
    c = _persistent(client_factory, cid, version)
    assert c.session_present is False
    c.subscribe(f"{uid}/q", 2)
    c.disconnect()
    pub = client_factory()
    for i in range(5):
        pub.publish(f"{uid}/q", f"m{i}".encode(), 1 + i % 2)
    c2 = _persistent(client_factory, cid, version)
    assert c2.session_present is True
    msgs = c2.get_n(5)
    # order is only guaranteed per QoS level (MQTT 4.6)
    assert [m.payload for m in msgs if m.qos == 1] == [b"m0", b"m2", b"m4"]
    assert [m.payload for m in msgs if m.qos == 2] == [b"m1", b"m3"]
    # subscription survives as well: live messages flow
    pub.publish(f"{uid}/q", b"live", 1)
    assert c2.get().payload == b"live"


@pytest.mark.parametrize("version", [4, 5])
def test_clean_start_discards_session(broker, client_factory, uid, version):
    cid = f"{uid}-c"
    c = _persistent(client_factory, cid, version)
    c.subscribe(f"{uid}/q", 1)
    c.disconnect()
    client_factory().publish(f"{uid}/q", b"queued", 1)
    c2 = client_factory(client_id=cid, version=version, clean=True)
    assert c2.session_present is False
    c2.expect_none(0.7)
    client_factory().publish(f"{uid}/q", b"after", 1)
    c2.expect_none(0.5)  # subscription is gone too


def test_v5_zero_session_expiry_is_not_persistent(broker, client_factory, uid):
    cid = f"{uid}-z"
    c = client_factory(client_id=cid, clean=False)  # no SessionExpiryInterval => 0
    c.subscribe(f"{uid}/q", 1)
    c.disconnect()
    c2 = client_factory(client_id=cid, clean=False)
    assert c2.session_present is False


def test_v5_session_expires(broker, client_factory, uid):
    cid = f"{uid}-e"
    c = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 1})
    c.subscribe(f"{uid}/q", 1)
    c.disconnect()
    time.sleep(2.5)
    c2 = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 1})
    assert c2.session_present is False


def test_v5_session_expiry_set_at_disconnect(broker, client_factory, uid):
    cid = f"{uid}-d"
    c = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 60})
    c.subscribe(f"{uid}/q", 1)
    c.disconnect(disc_props={"SessionExpiryInterval": 0})  # end the session now
    c2 = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 60})
    assert c2.session_present is False


def test_session_present_while_still_connected(broker, client_factory, uid):
    cid = f"{uid}-s"
    c = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 60})
    c.subscribe(f"{uid}/q", 1)
    c2 = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 60})
    assert c2.session_present is True


@pytest.mark.parametrize("version", [4, 5])
def test_unacked_qos1_redelivered_with_dup(broker, client_factory, uid, version):
    cid = f"{uid}-r"
    kw = {"props": {"SessionExpiryInterval": 60}} if version == 5 else {}
    raw, ack = r.raw_connect(broker.host, broker.port, cid, version=version, clean=False, **kw)
    assert raw.sub([(f"{uid}/q", 1)]).rcs == [1]
    client_factory().publish(f"{uid}/q", b"unacked", 1)
    p = raw.expect(r.PUBLISH)
    assert p.payload == b"unacked" and p.qos == 1 and not p.dup
    raw.close()  # no PUBACK
    time.sleep(0.2)
    raw2, ack2 = r.raw_connect(broker.host, broker.port, cid, version=version, clean=False, **kw)
    assert ack2.session_present is True
    p2 = raw2.expect(r.PUBLISH)
    assert p2.payload == b"unacked" and p2.dup and p2.pid == p.pid
    raw2.send(r.puback(p2.pid, version=version))
    # acknowledged: not redelivered again
    raw2.close()
    time.sleep(0.2)
    raw3, _ = r.raw_connect(broker.host, broker.port, cid, version=version, clean=False, **kw)
    with pytest.raises(TimeoutError):
        raw3.expect(r.PUBLISH, timeout=0.7)


def test_unacked_qos1_redelivered_via_paho_manual_ack(broker, client_factory, uid):
    cid = f"{uid}-m"
    c = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 60}, manual_ack=True)
    c.subscribe(f"{uid}/q", 1)
    client_factory().publish(f"{uid}/q", b"manual", 1)
    assert c.get().payload == b"manual"
    c.drop()
    c2 = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 60})
    m = c2.get()
    assert m.payload == b"manual" and m.dup


def test_qos2_pubrel_resent_after_pubrec(broker, client_factory, uid):
    cid = f"{uid}-q2"
    kw = {"props": {"SessionExpiryInterval": 60}}
    raw, _ = r.raw_connect(broker.host, broker.port, cid, version=5, clean=False, **kw)
    raw.sub([(f"{uid}/q", 2)])
    client_factory().publish(f"{uid}/q", b"two", 2)
    p = raw.expect(r.PUBLISH)
    raw.send(r.pubrec(p.pid))
    assert raw.expect(r.PUBREL).pid == p.pid
    raw.close()  # no PUBCOMP
    time.sleep(0.2)
    raw2, ack = r.raw_connect(broker.host, broker.port, cid, version=5, clean=False, **kw)
    assert ack.session_present
    rel = raw2.expect(r.PUBREL)  # not the PUBLISH again
    assert rel.pid == p.pid
    raw2.send(r.pubcomp(rel.pid))
    with pytest.raises(TimeoutError):
        raw2.expect(r.PUBLISH, timeout=0.7)


def test_inbound_qos2_state_survives_reconnect(broker, client_factory, uid):
    """Client sent PUBLISH QoS2 and got PUBREC, then reconnects and sends PUBREL: exactly one delivery."""
    sub = client_factory()
    sub.subscribe(f"{uid}/in", 2)
    cid = f"{uid}-i"
    kw = {"props": {"SessionExpiryInterval": 60}}
    raw, _ = r.raw_connect(broker.host, broker.port, cid, version=5, clean=False, **kw)
    raw.send(r.publish(f"{uid}/in", b"x", qos=2, pid=9))
    raw.expect(r.PUBREC)
    raw.close()
    time.sleep(0.2)
    raw2, ack = r.raw_connect(broker.host, broker.port, cid, version=5, clean=False, **kw)
    assert ack.session_present
    raw2.send(r.pubrel(9))
    assert raw2.expect(r.PUBCOMP).pid == 9
    msgs = sub.get_n(1)
    assert msgs[0].payload == b"x"
    sub.expect_none(0.5)
