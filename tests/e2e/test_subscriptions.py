"""SUBSCRIBE / UNSUBSCRIBE semantics: granted QoS, unsubscribe, re-subscribe replaces, overlapping
subscriptions, subscription identifiers, no local, invalid filters."""
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

import mqtt_raw as r
from conftest import IS_MOSQUITTO, expect_server_disconnect, roundtrip_ok


@pytest.mark.parametrize("version", [4, 5])
def test_suback_grants_requested_qos(broker, client_factory, uid, version):
    c = client_factory(version=version)
    assert c.subscribe([(f"{uid}/a", 0), (f"{uid}/b", 1), (f"{uid}/c/#", 2)]) == [0, 1, 2]


@pytest.mark.parametrize("version", [4, 5])
def test_unsubscribe_stops_delivery(broker, client_factory, uid, version):
    s = client_factory(version=version)
    p = client_factory()
    s.subscribe(f"{uid}/u", 1)
    p.publish(f"{uid}/u", b"1", 1)
    assert s.get().payload == b"1"
    rcs = s.unsubscribe(f"{uid}/u")
    if version == 5:
        assert rcs == [0]
    p.publish(f"{uid}/u", b"2", 1)
    s.expect_none(0.5)


def test_unsubscribe_unknown_filter_v5(broker):
    raw, _ = r.raw_connect(broker.host, broker.port, "unsub-unknown", version=5)
    raw.send(r.unsubscribe(4, ["never/subscribed"]))
    ack = raw.expect(r.UNSUBACK)
    assert ack.pid == 4 and ack.rcs in ([0x11], [0x00])  # 0x11 no subscription existed


def test_resubscribe_replaces_not_duplicates(broker, client_factory, uid):
    s = client_factory()
    p = client_factory()
    s.subscribe(f"{uid}/r", 2)
    s.subscribe(f"{uid}/r", 0)
    p.publish(f"{uid}/r", b"x", 2)
    m = s.get()
    assert m.qos == 0
    s.expect_none(0.5)


def test_overlapping_subscriptions_with_identifiers(broker, client_factory, uid):
    s = client_factory()
    s.subscribe(f"{uid}/a/+", 1, sub_props={"SubscriptionIdentifier": 1})
    s.subscribe(f"{uid}/#", 2, sub_props={"SubscriptionIdentifier": 2})
    s.subscribe(f"{uid}/nomatch", 2, sub_props={"SubscriptionIdentifier": 3})
    client_factory().publish(f"{uid}/a/b", b"ov", 2)
    first = s.get()
    msgs = [first]
    try:
        while True:
            msgs.append(s.get(0.7))
    except AssertionError:
        pass
    assert 1 <= len(msgs) <= 2 and all(m.payload == b"ov" for m in msgs)
    ids = set()
    for m in msgs:
        ids.update(getattr(m.properties, "SubscriptionIdentifier", []))
    assert ids == {1, 2}
    if len(msgs) == 1:
        assert msgs[0].qos == 2  # a single delivery must use the maximum QoS


def test_overlapping_v311_delivers(broker, client_factory, uid):
    s = client_factory(version=4)
    s.subscribe([(f"{uid}/+", 0), (f"{uid}/x", 1)])
    client_factory().publish(f"{uid}/x", b"v", 1)
    msgs = [s.get()]
    try:
        while True:
            msgs.append(s.get(0.5))
    except AssertionError:
        pass
    assert 1 <= len(msgs) <= 2
    assert max(m.qos for m in msgs) == 1


def test_subscription_identifier_on_delivery(broker, uid):
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-sid", version=5)
    raw.sub([(f"{uid}/s", 1)], props={"SubscriptionIdentifier": 268_435_455})
    raw.sub([(f"{uid}/plain", 1)], pid=2)
    pub, _ = r.raw_connect(broker.host, broker.port, f"{uid}-pub", version=5)
    pub.pub(f"{uid}/s", b"a", qos=1, pid=1)
    pub.pub(f"{uid}/plain", b"b", qos=1, pid=2)
    p = raw.expect(r.PUBLISH)
    assert p.topic == f"{uid}/s" and p.props.get("SubscriptionIdentifier") == [268_435_455]
    raw.send(r.puback(p.pid))
    p = raw.expect(r.PUBLISH)
    assert p.topic == f"{uid}/plain" and "SubscriptionIdentifier" not in p.props


def test_no_local(broker, client_factory, uid):
    c = client_factory()
    other = client_factory()
    c.subscribe(f"{uid}/nl", options=SubscribeOptions(qos=1, noLocal=True))
    other.subscribe(f"{uid}/nl", 1)
    c.publish(f"{uid}/nl", b"mine", 1)
    assert other.get().payload == b"mine"
    c.expect_none(0.5)
    other.publish(f"{uid}/nl", b"theirs", 1)
    assert c.get().payload == b"theirs"


def test_without_no_local_own_messages_arrive(broker, client_factory, uid):
    c = client_factory(version=4)
    c.subscribe(f"{uid}/own", 1)
    c.publish(f"{uid}/own", b"echo", 1)
    assert c.get().payload == b"echo"


@pytest.mark.parametrize("bad", ["a/#/b", "a/b#", "a+/b", ""])
def test_invalid_filter_rejected(broker, uid, bad):
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-bad", version=5)
    raw.send(r.subscribe(1, [(bad, 1)]))
    try:
        p = raw.recv_packet(5)
    except r.Closed:
        p = None
    if p is not None and p.type == r.SUBACK:
        assert p.rcs[0] >= 0x80, p  # 0x8F topic filter invalid
    elif p is not None:
        assert p.type == r.DISCONNECT and p.rc in (0x81, 0x82, 0x8F), p
    roundtrip_ok(broker)


def test_invalid_filter_v311(broker, uid):
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-bad4", version=4)
    raw.send(r.subscribe(1, [("a/#/b", 1)], version=4))
    try:
        p = raw.recv_packet(5)
        assert p.type == r.SUBACK and p.rcs == [0x80], p
    except r.Closed:
        pass  # closing the connection is also allowed
    roundtrip_ok(broker)


def test_subscribe_with_qos3_is_malformed(broker, uid):
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-q3", version=5)
    raw.send(r.subscribe(1, [(f"{uid}/x", 3)]))
    expect_server_disconnect(raw, (0x81, 0x82))
    roundtrip_ok(broker)


def test_many_filters_in_one_subscribe(broker, client_factory, uid):
    c = client_factory()
    filters = [(f"{uid}/f{i}", 1) for i in range(8)]
    assert c.subscribe(filters) == [1] * 8
    p = client_factory()
    for i in range(8):
        p.publish(f"{uid}/f{i}", str(i).encode(), 1)
    assert sorted(m.payload for m in c.get_n(8)) == [str(i).encode() for i in range(8)]
