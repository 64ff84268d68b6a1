"""PUBLISH at QoS 0/1/2, QoS downgrade, ordering, wildcards, exactly-once on the wire."""
import pytest

import mqtt_raw as r
from conftest import TClient


@pytest.mark.parametrize("version", [4, 5])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_roundtrip(broker, client_factory, uid, version, qos):
    sub = client_factory(version=version)
    pub = client_factory(version=version)
    assert sub.subscribe(f"{uid}/t", 2) == [2]
    rc = pub.publish(f"{uid}/t", b"hello", qos)
    assert rc == 0
    m = sub.get()
    assert (m.topic, m.payload, m.qos, m.retain) == (f"{uid}/t", b"hello", qos, False)
    sub.expect_none(0.3)


@pytest.mark.parametrize("sub_qos,pub_qos", [(0, 2), (1, 2), (0, 1), (2, 1)])
def test_qos_is_min_of_publish_and_subscription(broker, client_factory, uid, sub_qos, pub_qos):
    sub = client_factory()
    pub = client_factory()
    assert sub.subscribe(f"{uid}/q", sub_qos) == [sub_qos]
    pub.publish(f"{uid}/q", b"x", pub_qos)
    assert sub.get().qos == min(sub_qos, pub_qos)


@pytest.mark.parametrize("qos", [1, 2])
def test_order_preserved(broker, client_factory, uid, qos):
    sub = client_factory()
    pub = client_factory()
    sub.subscribe(f"{uid}/o", qos)
    infos = [pub.publish(f"{uid}/o", str(i).encode(), qos, wait=False) for i in range(100)]
    for info in infos:
        info.wait_for_publish(10)
    msgs = sub.get_n(100, timeout=15)
    assert [int(m.payload) for m in msgs] == list(range(100))


def test_mixed_versions(broker, client_factory, uid):
    sub4 = client_factory(version=4)
    sub5 = client_factory(version=5)
    sub4.subscribe(f"{uid}/m", 1)
    sub5.subscribe(f"{uid}/m", 1)
    client_factory(version=5).publish(f"{uid}/m", b"from5", 1)
    client_factory(version=4).publish(f"{uid}/m", b"from4", 1)
    for s in (sub4, sub5):
        got = sorted(m.payload for m in s.get_n(2))
        assert got == [b"from4", b"from5"]


def test_binary_empty_and_large_payloads(broker, client_factory, uid):
    sub = client_factory()
    pub = client_factory()
    sub.subscribe(f"{uid}/#", 1)
    payloads = [bytes(range(256)) * 4, b"", b"\x00\xff\xfe", b"A" * 100_000]
    for i, p in enumerate(payloads):
        pub.publish(f"{uid}/{i}", p, 1)
    got = {m.topic: m.payload for m in sub.get_n(len(payloads))}
    for i, p in enumerate(payloads):
        assert got[f"{uid}/{i}"] == p


@pytest.mark.parametrize("flt,topic,match", [
    ("{u}/a/+/c", "{u}/a/b/c", True),
    ("{u}/a/+/c", "{u}/a/b/d", False),
    ("{u}/a/+/c", "{u}/a/b/x/c", False),
    ("{u}/a/#", "{u}/a", True),
    ("{u}/a/#", "{u}/a/b/c/d", True),
    ("{u}/+", "{u}/", True),
    ("{u}/+/+", "{u}/a", False),
    ("{u}/a", "{u}/A", False),
    ("{u}/a/b", "{u}/a/b/", False),
    ("+/{u}/x", "z/{u}/x", True),
])
def test_wildcard_matching(broker, client_factory, uid, flt, topic, match):
    sub = client_factory()
    pub = client_factory()
    sub.subscribe(flt.format(u=uid), 1)
    pub.publish(topic.format(u=uid), b"w", 1)
    if match:
        assert sub.get().topic == topic.format(u=uid)
    else:
        sub.expect_none(0.5)


def test_hash_does_not_match_dollar_topics(broker, client_factory, uid):
    sub = client_factory()
    sub.subscribe("#", 0)
    sub.subscribe("+/x", 0)
    pub = client_factory()
    pub.publish(f"{uid}/plain", b"p", 1)
    # a $-topic published by the broker itself ($aws events on iotcore / $SYS on mosquitto)
    # must never be matched by a leading wildcard; the connect of `pub` would trigger one.
    client_factory().disconnect()
    deadline_msgs = []
    try:
        while True:
            deadline_msgs.append(sub.get(1.0))
    except AssertionError:
        pass
    assert any(m.topic == f"{uid}/plain" for m in deadline_msgs)
    assert not [m.topic for m in deadline_msgs if m.topic.startswith("$")]


@pytest.mark.parametrize("version", [4, 5])
def test_qos2_exactly_once_with_duplicate_publish(broker, client_factory, uid, version):
    sub = client_factory()
    sub.subscribe(f"{uid}/eo", 2)
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-raw", version=version)
    pkt = r.publish(f"{uid}/eo", b"once", qos=2, pid=7, version=version)
    raw.send(pkt)
    rec = raw.expect(r.PUBREC)
    assert rec.pid == 7 and rec.rc == 0
    # resend the same PUBLISH with DUP before PUBREL: must not be delivered twice
    raw.send(r.publish(f"{uid}/eo", b"once", qos=2, pid=7, dup=True, version=version))
    assert raw.expect(r.PUBREC).pid == 7
    raw.send(r.pubrel(7, version=version))
    comp = raw.expect(r.PUBCOMP)
    assert comp.pid == 7
    assert sub.get().payload == b"once"
    sub.expect_none(0.7)


@pytest.mark.parametrize("version", [4, 5])
def test_qos1_raw_puback(broker, client_factory, uid, version):
    sub = client_factory()
    sub.subscribe(f"{uid}/q1", 1)
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-raw", version=version)
    raw.send(r.publish(f"{uid}/q1", b"one", qos=1, pid=65535, version=version))
    ack = raw.expect(r.PUBACK)
    assert ack.pid == 65535 and ack.rc == 0
    assert sub.get().payload == b"one"


def test_raw_subscriber_acks_and_pids(broker, client_factory, uid):
    raw, _ = r.raw_connect(broker.host, broker.port, f"{uid}-rs", version=5)
    sa = raw.sub([(f"{uid}/r", 2)])
    assert sa.rcs == [2]
    pub = client_factory()
    pub.publish(f"{uid}/r", b"q2", 2)
    p = raw.expect(r.PUBLISH)
    assert p.qos == 2 and p.pid and p.payload == b"q2"
    raw.send(r.pubrec(p.pid))
    rel = raw.expect(r.PUBREL)
    assert rel.pid == p.pid and rel.flags == 2
    raw.send(r.pubcomp(p.pid))
    pub.publish(f"{uid}/r", b"q1", 1)
    # the subscription is QoS 2; a QoS 1 publish arrives at QoS 1
    p = raw.expect(r.PUBLISH)
    assert p.qos == 1 and p.payload == b"q1"
    raw.send(r.puback(p.pid))
    raw.send(r.pingreq())
    assert raw.expect(r.PINGRESP)
