"""Configured limits: payload size, packet size, client id length, subscriptions per connection,
topic length / levels, offline queue length."""
import time

import pytest

import mqtt_raw as r
from conftest import IS_MOSQUITTO, TClient, expect_server_disconnect, roundtrip_ok


def test_payload_over_limit_not_delivered(broker_factory):
    b = broker_factory(max_payload_bytes=1024, max_packet_bytes=8192)
    sub = TClient(b.host, b.port)
    try:
        sub.subscribe("lim/p", 1)
        raw, _ = r.raw_connect(b.host, b.port, "bigpub", version=5)
        raw.pub("lim/p", b"X" * 2000, qos=1, pid=1)
        try:
            p = raw.recv_packet(3)
            if p.type == r.PUBACK:
                assert p.rc in (0x95, 0x97), p  # Mosquitto: 0x95; contract: 0x97
            else:
                assert p.type == r.DISCONNECT and p.rc in (0x95, 0x97), p
        except r.Closed:
            pass
        sub.expect_none(0.7)
        # at the limit is fine
        raw2, _ = r.raw_connect(b.host, b.port, "okpub", version=5)
        raw2.pub("lim/p", b"Y" * 1024, qos=1, pid=1)
        assert raw2.expect(r.PUBACK).rc == 0
        assert sub.get().payload == b"Y" * 1024
    finally:
        sub.close()
    roundtrip_ok(b)


@pytest.mark.parametrize("version", [4, 5])
def test_packet_over_max_packet_bytes(broker_factory, version):
    b = broker_factory(max_packet_bytes=2048)
    raw, ack = r.raw_connect(b.host, b.port, f"bigpkt{version}", version=version)
    if version == 5:
        assert ack.props.get("MaximumPacketSize") == 2048
    raw.try_send(r.publish("lim/big", b"Z" * 4000, qos=0, version=version))
    expect_server_disconnect(raw, (0x95,))
    roundtrip_ok(b)


@pytest.mark.iotcore
@pytest.mark.parametrize("version", [4, 5])
def test_client_id_too_long(broker, version):
    raw = r.RawClient(broker.host, broker.port, version=version)
    raw.send(r.connect("x" * 129, version=version))
    ack = raw.expect(r.CONNACK)
    assert ack.rc == (0x85 if version == 5 else 2)
    raw.wait_closed(3)
    raw2, ok = r.raw_connect(broker.host, broker.port, "y" * 128, version=version)
    assert ok.rc == 0


@pytest.mark.iotcore
def test_max_subscriptions_per_connection(broker_factory):
    b = broker_factory(max_subscriptions_per_connection=3)
    c = TClient(b.host, b.port)
    try:
        assert c.subscribe([("s/1", 1), ("s/2", 1), ("s/3", 1)]) == [1, 1, 1]
        assert c.subscribe("s/4", 1) == [0x97]
        assert c.subscribe("s/1", 0) == [0]  # replacing an existing one is fine
        c.unsubscribe("s/2")
        assert c.subscribe("s/5", 1) == [1]
        # the rejected filter really is not subscribed
        p = TClient(b.host, b.port)
        p.publish("s/4", b"no", 1)
        p.publish("s/5", b"yes", 1)
        assert c.get().payload == b"yes"
        p.close()
    finally:
        c.close()


@pytest.mark.iotcore
def test_max_filters_per_subscribe(broker_factory):
    b = broker_factory(max_filters_per_subscribe=2)
    raw, _ = r.raw_connect(b.host, b.port, "manyfilters", version=5)
    raw.send(r.subscribe(1, [("f/1", 1), ("f/2", 1), ("f/3", 1)]))
    try:
        p = raw.recv_packet(3)
        if p.type == r.SUBACK:
            assert any(rc >= 0x80 for rc in p.rcs), p
        else:
            assert p.type == r.DISCONNECT, p
    except r.Closed:
        pass
    roundtrip_ok(b)


@pytest.mark.iotcore
def test_too_many_topic_levels(broker, client_factory, uid):
    s = client_factory()
    s.subscribe("#", 1)
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-lv", version=5)
    deep = "/".join(["l"] * 9)
    raw.pub(deep, b"deep", qos=1, pid=1)
    try:
        p = raw.recv_packet(3)
        assert (p.type == r.PUBACK and p.rc == 0x90) or (p.type == r.DISCONNECT and p.rc == 0x90), p
    except r.Closed:
        pass
    ok = "/".join(["l"] * 8)
    client_factory().publish(ok, b"eight", 1)
    m = s.get()
    assert (m.topic, m.payload) == (ok, b"eight")
    s.expect_none(0.3)


@pytest.mark.iotcore
def test_too_many_levels_in_filter(broker, uid):
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-fl", version=5)
    raw.send(r.subscribe(1, [("/".join(["a"] * 9), 1)]))
    try:
        p = raw.recv_packet(3)
        assert (p.type == r.SUBACK and p.rcs[0] >= 0x80) or p.type == r.DISCONNECT, p
    except r.Closed:
        pass
    roundtrip_ok(broker)


@pytest.mark.iotcore
def test_topic_too_long(broker, client_factory, uid):
    s = client_factory()
    s.subscribe("#", 1)
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-tl", version=5)
    raw.pub("t" * 257, b"long", qos=1, pid=1)
    try:
        p = raw.recv_packet(3)
        assert p.type in (r.PUBACK, r.DISCONNECT) and p.rc >= 0x80, p
    except r.Closed:
        pass
    s.expect_none(0.7)
    roundtrip_ok(broker)


def test_offline_queue_bounded(broker_factory):
    # The queue bound excludes the in-flight window, so with receive_maximum 5 at most 10 survive.
    b = broker_factory(max_queued_messages=5, receive_maximum=5)
    c = TClient(b.host, b.port, client_id="queued", clean=False, connect_props={"SessionExpiryInterval": 60})
    c.subscribe("q/t", 1)
    c.disconnect()
    p = TClient(b.host, b.port)
    for i in range(30):
        p.publish("q/t", str(i).encode(), 1)
    p.close()
    c2 = TClient(b.host, b.port, client_id="queued", clean=False, connect_props={"SessionExpiryInterval": 60})
    try:
        assert c2.session_present
        got = c2.get_n(1)
        try:
            while True:
                got.append(c2.get(0.7))
        except AssertionError:
            pass
        payloads = [int(m.payload) for m in got]
        assert 1 <= len(payloads) <= 10, payloads
        assert payloads == sorted(payloads)
    finally:
        c2.close()
