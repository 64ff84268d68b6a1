"""MQTT 5 features: property forwarding, message expiry, topic aliases (both directions),
flow control (receive maximum), maximum packet size toward the client."""
import time

import pytest

import mqtt_raw as r
from conftest import IS_MOSQUITTO, expect_server_disconnect, roundtrip_ok


def test_properties_forwarded(broker, client_factory, uid):
    s = client_factory()
    s.subscribe(f"{uid}/p", 1)
    client_factory().publish(f"{uid}/p", "héllo".encode(), 1, pub_props={
        "UserProperty": [("a", "1"), ("a", "2"), ("b", "x y")],
        "ContentType": "text/plain; charset=utf-8",
        "PayloadFormatIndicator": 1,
        "ResponseTopic": f"{uid}/reply",
        "CorrelationData": b"\x00\x01corr",
    })
    m = s.get()
    pr = m.properties
    assert pr.UserProperty == [("a", "1"), ("a", "2"), ("b", "x y")]  # order and duplicates kept
    assert pr.ContentType == "text/plain; charset=utf-8"
    assert pr.PayloadFormatIndicator == 1
    assert pr.ResponseTopic == f"{uid}/reply"
    assert pr.CorrelationData == b"\x00\x01corr"


def test_request_response_pattern(broker, client_factory, uid):
    responder = client_factory()
    requester = client_factory()
    responder.subscribe(f"{uid}/req", 1)
    requester.subscribe(f"{uid}/resp", 1)
    requester.publish(f"{uid}/req", b"q", 1, pub_props={"ResponseTopic": f"{uid}/resp", "CorrelationData": b"42"})
    req = responder.get()
    responder.publish(req.properties.ResponseTopic, b"a", 1, pub_props={"CorrelationData": req.properties.CorrelationData})
    resp = requester.get()
    assert resp.payload == b"a" and resp.properties.CorrelationData == b"42"


def test_properties_not_forwarded_to_v311(broker, client_factory, uid):
    s = client_factory(version=4)
    s.subscribe(f"{uid}/p", 1)
    client_factory().publish(f"{uid}/p", b"x", 1, pub_props={"UserProperty": [("a", "b")]})
    assert s.get().payload == b"x"  # plain 3.1.1 PUBLISH, decodes fine


def test_live_message_expiry_forwarded(broker, client_factory, uid):
    s = client_factory()
    s.subscribe(f"{uid}/e", 1)
    client_factory().publish(f"{uid}/e", b"x", 1, pub_props={"MessageExpiryInterval": 30})
    m = s.get()
    assert 28 <= m.properties.MessageExpiryInterval <= 30


def test_offline_message_expiry(broker, client_factory, uid):
    cid = f"{uid}-off"
    c = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 60})
    c.subscribe(f"{uid}/e", 1)
    c.disconnect()
    pub = client_factory()
    pub.publish(f"{uid}/e", b"short", 1, pub_props={"MessageExpiryInterval": 1})
    pub.publish(f"{uid}/e", b"long", 1, pub_props={"MessageExpiryInterval": 20})
    pub.publish(f"{uid}/e", b"forever", 1)
    time.sleep(2.2)
    c2 = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 60})
    assert c2.session_present
    msgs = c2.get_n(2)
    assert [m.payload for m in msgs] == [b"long", b"forever"]
    remaining = msgs[0].properties.MessageExpiryInterval
    assert 15 <= remaining <= 18, f"remaining expiry {remaining} should be reduced by the time spent queued"
    assert not hasattr(msgs[1].properties, "MessageExpiryInterval")
    c2.expect_none(0.3)


def test_retained_message_expiry(broker, client_factory, uid):
    client_factory().publish(f"{uid}/re", b"r", 1, retain=True, pub_props={"MessageExpiryInterval": 1})
    time.sleep(2.2)
    s = client_factory()
    s.subscribe(f"{uid}/re", 1)
    s.expect_none(0.7)


def test_topic_alias_client_to_broker(broker, client_factory, uid):
    s = client_factory()
    s.subscribe(f"{uid}/#", 1)
    raw, ack = r.raw_connect(broker.host, broker.port, f"{uid}-ta", version=5)
    assert ack.props.get("TopicAliasMaximum", 0) >= 2
    raw.pub(f"{uid}/alias/one", b"1", qos=1, pid=1, props={"TopicAlias": 1})
    raw.expect(r.PUBACK)
    raw.pub("", b"2", qos=1, pid=2, props={"TopicAlias": 1})
    raw.expect(r.PUBACK)
    raw.pub(f"{uid}/alias/two", b"3", qos=1, pid=3, props={"TopicAlias": 1})  # re-map
    raw.expect(r.PUBACK)
    raw.pub("", b"4", qos=1, pid=4, props={"TopicAlias": 1})
    raw.expect(r.PUBACK)
    msgs = s.get_n(4)
    assert [(m.topic, m.payload) for m in msgs] == [
        (f"{uid}/alias/one", b"1"), (f"{uid}/alias/one", b"2"),
        (f"{uid}/alias/two", b"3"), (f"{uid}/alias/two", b"4")]
    # the alias property itself is not forwarded to subscribers
    assert all(not hasattr(m.properties, "TopicAlias") for m in msgs)


def test_topic_alias_paho(broker, client_factory, uid):
    s = client_factory()
    s.subscribe(f"{uid}/pa", 0)
    p = client_factory()
    p.publish(f"{uid}/pa", b"a", 1, pub_props={"TopicAlias": 3})
    p.publish("", b"b", 1, pub_props={"TopicAlias": 3})
    assert [(m.topic, m.payload) for m in s.get_n(2)] == [(f"{uid}/pa", b"a"), (f"{uid}/pa", b"b")]


def test_topic_alias_over_maximum(broker):
    raw, ack = r.raw_connect(broker.host, broker.port, "ta-over", version=5)
    limit = ack.props.get("TopicAliasMaximum", 0)
    raw.pub("x/y", b"1", qos=0, props={"TopicAlias": limit + 1})
    expect_server_disconnect(raw, (0x94,))
    roundtrip_ok(broker)


def test_topic_alias_unknown(broker):
    raw, _ = r.raw_connect(broker.host, broker.port, "ta-unknown", version=5)
    raw.pub("", b"1", qos=0, props={"TopicAlias": 2})
    expect_server_disconnect(raw, (0x82,))
    roundtrip_ok(broker)


def test_topic_alias_zero_is_error(broker):
    raw, _ = r.raw_connect(broker.host, broker.port, "ta-zero", version=5)
    raw.pub("x/y", b"1", qos=0, props={"TopicAlias": 0})
    expect_server_disconnect(raw, (0x94, 0x82, 0x81))  # Mosquitto says 0x81


def test_topic_alias_broker_to_client(broker, client_factory, uid):
    """A client with Topic Alias Maximum may receive aliases; every message must resolve to the right
    topic and aliases must be within the client's limit."""
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-rx", version=5, props={"TopicAliasMaximum": 2})
    raw.sub([(f"{uid}/#", 0)])
    pub = client_factory()
    topics = [f"{uid}/t{i % 3}" for i in range(12)]
    for i, t in enumerate(topics):
        pub.publish(t, str(i).encode(), 1)
    aliases = {}
    got = []
    for _ in topics:
        p = raw.expect(r.PUBLISH)
        alias = p.props.get("TopicAlias")
        if alias is not None:
            assert 1 <= alias <= 2
            if p.topic:
                aliases[alias] = p.topic
            else:
                assert alias in aliases, "alias used before being defined"
            topic = aliases[alias]
        else:
            assert p.topic
            topic = p.topic
        got.append((topic, p.payload))
    assert got == [(t, str(i).encode()) for i, t in enumerate(topics)]


def test_no_topic_alias_without_client_maximum(broker, client_factory, uid):
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-nx", version=5)
    raw.sub([(f"{uid}/n", 0)])
    pub = client_factory()
    for i in range(5):
        pub.publish(f"{uid}/n", b"x", 1)
    for _ in range(5):
        p = raw.expect(r.PUBLISH)
        assert p.topic == f"{uid}/n" and "TopicAlias" not in p.props


def test_client_receive_maximum_one(broker, client_factory, uid):
    """With Receive Maximum 1 the broker has at most one unacknowledged QoS 1 PUBLISH in flight,
    and still delivers everything in order."""
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-rm", version=5, props={"ReceiveMaximum": 1})
    raw.sub([(f"{uid}/f", 1)])
    pub = client_factory()
    n = 10
    for i in range(n):
        pub.publish(f"{uid}/f", str(i).encode(), 1)
    got = []
    for i in range(n):
        p = raw.expect(r.PUBLISH)
        got.append(p.payload)
        if i < 3:
            # nothing else may arrive while this one is unacknowledged
            with pytest.raises(TimeoutError):
                raw.recv_packet(0.4)
        raw.send(r.puback(p.pid))
    assert got == [str(i).encode() for i in range(n)]


def test_client_receive_maximum_paho(broker, client_factory, uid):
    s = client_factory(connect_props={"ReceiveMaximum": 1})
    s.subscribe(f"{uid}/f", 2)
    pub = client_factory()
    for i in range(30):
        pub.publish(f"{uid}/f", str(i).encode(), 1 + i % 2, wait=False)
    msgs = s.get_n(30, timeout=20)
    assert [m.payload for m in msgs if m.qos == 1] == [str(i).encode() for i in range(0, 30, 2)]
    assert [m.payload for m in msgs if m.qos == 2] == [str(i).encode() for i in range(1, 30, 2)]


@pytest.mark.iotcore  # Mosquitto answers the extra PUBLISH with PUBREC 0x97 instead of DISCONNECT 0x93
def test_exceeding_broker_receive_maximum(broker_factory):
    b = broker_factory(receive_maximum=5)
    raw, ack = r.raw_connect(b.host, b.port, "greedy", version=5)
    rm = ack.props.get("ReceiveMaximum", 65535)
    assert rm == 5
    # QoS 2 PUBLISHes stay in flight until PUBREL/PUBCOMP: never release them
    for pid in range(1, rm + 2):
        if not raw.try_send(r.publish("greedy/t", b"x", qos=2, pid=pid)):
            break
    pkts = expect_server_disconnect(raw, (0x93,))
    assert sum(1 for p in pkts if p.type == r.PUBREC) <= rm
    roundtrip_ok(b)


def test_client_maximum_packet_size(broker, client_factory, uid):
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-mp", version=5, props={"MaximumPacketSize": 256})
    raw.sub([(f"{uid}/m", 1)])
    pub = client_factory()
    pub.publish(f"{uid}/m", b"B" * 1000, 1)
    pub.publish(f"{uid}/m", b"small", 1)
    p = raw.expect(r.PUBLISH)
    assert p.payload == b"small"
    assert len(p.body) + 2 <= 256
    with pytest.raises(TimeoutError):
        raw.recv_packet(0.5)


def test_client_maximum_packet_size_paho_still_connected(broker, client_factory, uid):
    s = client_factory(connect_props={"MaximumPacketSize": 512})
    s.subscribe(f"{uid}/m", 1)
    pub = client_factory()
    pub.publish(f"{uid}/m", b"B" * 4000, 1)
    pub.publish(f"{uid}/m", b"ok", 1)
    assert s.get().payload == b"ok"
    assert not s.disconnected.is_set()


def test_payload_format_invalid_utf8(broker, client_factory, uid):
    """PayloadFormatIndicator=1 with non-UTF-8 payload: the broker may reject (0x99) or forward;
    it must not crash and must keep serving."""
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-pf", version=5)
    raw.pub(f"{uid}/pf", b"\xff\xfe", qos=1, pid=1, props={"PayloadFormatIndicator": 1})
    try:
        p = raw.recv_packet(3)
        assert p.type in (r.PUBACK, r.DISCONNECT)
        if p.type == r.PUBACK:
            assert p.rc in (0x00, 0x10, 0x99)
        else:
            assert p.rc == 0x99
    except r.Closed:
        pass
    roundtrip_ok(broker)


def test_server_disconnect_on_shutdown(broker_factory):
    """SIGTERM: MQTT 5 clients get DISCONNECT 0x8B before the broker exits."""
    b = broker_factory()
    raw, _ = r.raw_connect(b.host, b.port, "shutdown", version=5)
    b.proc.terminate()
    pkts = raw.wait_closed(10)
    if not IS_MOSQUITTO:  # Mosquitto just closes
        assert [p.rc for p in pkts if p.type == r.DISCONNECT] == [0x8B]
    assert b.proc.wait(10) == 0
    b.stop = lambda: None  # already stopped and checked
    assert "panicked" not in b.stderr()
