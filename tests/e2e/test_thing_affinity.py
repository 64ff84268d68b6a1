"""Thing affinity (`[server] thing_affinity`, on by default): a client whose id names a thing
that has a shadow is served by the shard that owns that thing's shadows (CRC-32 of the name
modulo the shard count), handed over right after its CONNECT with whatever it sent after it
(iotcore only, two shards). Clients without a shadow are placed as any other. Placement may
refuse an owner that is already far fuller; the names here keep the shards balanced."""
from __future__ import annotations

import zlib

import pytest

import mqtt_raw as r
from conftest import TClient, poll
from shadow_helpers import rest, shadow_path
from test_storage_metrics import metric_sum, scrape

pytestmark = pytest.mark.iotcore


def owner(name: str, shards: int = 2) -> int:
    return zlib.crc32(name.encode()) % shards


def shard_of(connack_props) -> int:
    ups = dict(getattr(connack_props, "UserProperty", []))
    return int(ups["shard"])


def raw_shard(ack: r.Packet) -> int:
    return int(dict(ack.props.get("UserProperty", []))["shard"])


def alternating_names(prefix: str, n: int) -> list[str]:
    """`n` names whose owners alternate 0, 1, 0, ...: connected in order, they keep the shards
    balanced, so placement never refuses one its owner (`Placement::claim_for_owner`)."""
    names, i = [], 0
    while len(names) < n:
        name = f"{prefix}{i}"
        if owner(name) == len(names) % 2:
            names.append(name)
        i += 1
    return names


def with_shadows(broker, names: list[str]) -> list[str]:
    """Gives each thing a classic shadow (over REST), so its device gets affinity."""
    for name in names:
        res = rest(broker, "POST", shadow_path(name), {"state": {"reported": {"on": True}}})
        assert res.status == 200, res.raw
    return names


def test_a_thing_named_client_lands_on_its_things_shard(broker, client_factory, uid):
    for name in with_shadows(broker, alternating_names(f"{uid}-t", 16)):
        c = client_factory(client_id=name)
        assert shard_of(c.connack_props) == owner(name), name
    # Some of 16 were accepted by the other shard (all on their owner by chance: 2^-16).
    # Shards publish their counters every few hundred milliseconds.
    poll(
        lambda: metric_sum(scrape(broker), "connections_to_thing_owner_total") >= 1,
        msg="no connection was handed to its thing's shard",
    )


def test_packets_sent_with_the_connect_survive_the_handover(broker, uid):
    """CONNECT, SUBSCRIBE and a QoS 1 PUBLISH in one write: the owner shard must see all
    three, in order, though another shard read them from the socket."""
    for i, name in enumerate(with_shadows(broker, alternating_names(f"{uid}-p", 8))):
        topic = f"{uid}/p{i}"
        raw = r.RawClient(broker.host, broker.port, version=r.V5)
        try:
            raw.send(
                r.connect(name, version=r.V5)
                + r.subscribe(1, [(topic, 1)])
                + r.publish(topic, b"hello", qos=1, pid=2)
            )
            ack = raw.expect(r.CONNACK)
            assert ack.rc == 0
            assert raw_shard(ack) == owner(name)
            got = [raw.recv_packet() for _ in range(3)]
            kinds = sorted(p.type for p in got)
            assert kinds == sorted([r.SUBACK, r.PUBACK, r.PUBLISH]), got
            delivered = next(p for p in got if p.type == r.PUBLISH)
            assert (delivered.topic, delivered.payload) == (topic, b"hello")
            raw.send(r.disconnect())
            raw.wait_closed(3)
        finally:
            raw.close()


def test_a_persistent_session_comes_back_to_its_shard(broker, client_factory, uid):
    [name] = with_shadows(broker, [f"{uid}-s"])
    topic = f"{uid}/queued"
    keep = {"SessionExpiryInterval": 60}
    c = client_factory(client_id=name, clean=False, connect_props=keep)
    assert shard_of(c.connack_props) == owner(name)
    c.subscribe(topic, 1)
    c.disconnect()
    client_factory().publish(topic, b"while away", 1)
    back = client_factory(client_id=name, clean=False, connect_props=keep)
    assert back.session_present
    assert shard_of(back.connack_props) == owner(name)
    assert back.get().payload == b"while away"


def handed_to_owner_once_published(broker, connections: int) -> int:
    """The hand-over counter, read once the shards' published gauges show `connections`
    (so the counter is not an older, not yet published value)."""
    text = poll(
        lambda: (t := scrape(broker)) and metric_sum(t, "connections") >= connections and t,
        msg="the connections never showed in /metrics",
    )
    return metric_sum(text, "connections_to_thing_owner_total")


def test_names_that_cannot_be_things_stay_where_placed(broker, client_factory, uid):
    for i in range(8):
        c = client_factory(client_id=f"{uid}/dev {i}")
        assert c.connack[0] == 0
    assert handed_to_owner_once_published(broker, 8) == 0


def test_things_without_shadows_stay_where_placed(broker, client_factory, uid):
    for name in alternating_names(f"{uid}-n", 16):
        assert client_factory(client_id=name).connack[0] == 0
    assert handed_to_owner_once_published(broker, 16) == 0


def test_a_device_gets_its_shard_once_its_shadow_exists(broker, client_factory, uid):
    """The usual life of a device: its first connection creates its shadow; every later one
    is served by the shadow's shard."""
    for name in alternating_names(f"{uid}-d", 6):
        first = client_factory(client_id=name)
        first.subscribe(f"$aws/things/{name}/shadow/update/accepted", 1)
        first.publish(f"$aws/things/{name}/shadow/update", b'{"state":{"reported":{"v":1}}}', 1)
        assert first.get().topic == f"$aws/things/{name}/shadow/update/accepted"
        first.disconnect()
        again = client_factory(client_id=name)
        assert shard_of(again.connack_props) == owner(name), name


def test_affinity_off(broker_factory, uid):
    b = broker_factory(thing_affinity=False)
    names = with_shadows(b, alternating_names(f"{uid}-t", 16))
    clients = [TClient(b.host, b.port, client_id=n) for n in names]
    try:
        assert all(c.connack[0] == 0 for c in clients)
        assert handed_to_owner_once_published(b, 16) == 0
    finally:
        for c in clients:
            c.close()


def test_names_that_all_hash_alike_do_not_crowd_one_shard(broker, client_factory, uid):
    """Twelve devices named for shard 0: placement lets the owner take them only while it
    stays near the other shard or within half over its fair share."""
    names = []
    i = 0
    while len(names) < 12:
        if owner(f"{uid}-x{i}") == 0:
            names.append(f"{uid}-x{i}")
        i += 1
    on = [shard_of(client_factory(client_id=n).connack_props) for n in with_shadows(broker, names)]
    assert on.count(0) <= 9, on  # three quarters of 12
    assert on.count(0) >= 7, on  # more than placement alone would put there
