"""Two shards: every MQTT 5 CONNACK names its shard; messages cross shards (iotcore only)."""
import time

import pytest

from conftest import TClient

pytestmark = pytest.mark.iotcore


def _shard(c):
    ups = dict(getattr(c.connack_props, "UserProperty", []))
    assert "shard" in ups, f"CONNACK has no shard user property: {c.connack_props}"
    return int(ups["shard"])


@pytest.fixture
def two_shards(broker, client_factory):
    """Returns {0: client, 1: client} — connections owned by shard 0 and shard 1."""
    found = {}
    for _ in range(64):
        c = client_factory()
        s = _shard(c)
        assert s in (0, 1), f"shard {s} out of range for shards=2"
        found.setdefault(s, c)
        if len(found) == 2:
            return found
    pytest.fail(f"64 connections all landed on shard(s) {sorted(found)}")


def test_every_connack_has_shard(broker, client_factory):
    for _ in range(8):
        assert _shard(client_factory()) in (0, 1)


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("direction", [(0, 1), (1, 0)])
def test_cross_shard_delivery(two_shards, uid, qos, direction):
    sub, pub = two_shards[direction[0]], two_shards[direction[1]]
    sub.subscribe(f"{uid}/x", 2)
    for i in range(20):
        pub.publish(f"{uid}/x", str(i).encode(), qos)
    msgs = sub.get_n(20)
    assert [m.payload for m in msgs] == [str(i).encode() for i in range(20)]
    assert {m.qos for m in msgs} == {qos}


def test_cross_shard_retained(two_shards, client_factory, uid, broker):
    two_shards[0].publish(f"{uid}/r0", b"from0", 1, retain=True)
    two_shards[1].publish(f"{uid}/r1", b"from1", 1, retain=True)
    # a subscriber on each shard sees both retained messages
    for s in (0, 1):
        c = two_shards[s]
        c.subscribe(f"{uid}/+", 1)
        got = sorted(m.payload for m in c.get_n(2))
        assert got == [b"from0", b"from1"]
    # delete from the other shard
    two_shards[1].publish(f"{uid}/r0", b"", 1, retain=True)
    two_shards[0].drain(), two_shards[1].drain()
    time.sleep(0.2)
    for _ in range(8):
        c = TClient(broker.host, broker.port)
        try:
            c.subscribe(f"{uid}/r0", 1)
            c.expect_none(0.3)
        finally:
            c.close()


def test_cross_shard_shared_subscription(two_shards, client_factory, uid):
    for c in two_shards.values():
        c.subscribe(f"$share/g/{uid}/s", 1)
    pub = client_factory()
    for i in range(20):
        pub.publish(f"{uid}/s", str(i).encode(), 1)
    deadline = time.monotonic() + 10
    got = []
    while len(got) < 20 and time.monotonic() < deadline:
        for c in two_shards.values():
            got += [m.payload for m in c.drain()]
        time.sleep(0.02)
    assert sorted(got, key=int) == [str(i).encode() for i in range(20)]


def test_cross_shard_takeover(broker, client_factory, uid):
    """Same client id reconnecting (possibly on the other shard) takes over the session."""
    cid = f"{uid}-t"
    first = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 60})
    first.subscribe(f"{uid}/t", 1)
    shards_seen = {_shard(first)}
    prev = first
    for _ in range(6):
        nxt = client_factory(client_id=cid, clean=False, connect_props={"SessionExpiryInterval": 60})
        assert nxt.session_present
        assert prev.wait_disconnected(5) == 0x8E
        shards_seen.add(_shard(nxt))
        prev = nxt
    client_factory().publish(f"{uid}/t", b"still", 1)
    assert prev.get().payload == b"still"


def test_cross_shard_disconnect_event(two_shards, uid):
    import json
    two_shards[0].subscribe("$aws/events/presence/+/+", 1)
    # drop the shard-1 client: its disconnected event must reach a subscriber on shard 0
    victim = two_shards[1]
    victim_id = victim.client_id
    victim.drop()
    deadline = time.monotonic() + 5
    seen = False
    while time.monotonic() < deadline and not seen:
        m = two_shards[0].get(max(0.01, deadline - time.monotonic()))
        if m.topic == f"$aws/events/presence/disconnected/{victim_id}":
            seen = json.loads(m.payload)["disconnectReason"] == "CONNECTION_LOST"
    assert seen


def test_connections_are_spread_over_the_shards(broker, client_factory, uid):
    """Whatever the kernel's SO_REUSEPORT hash does, a shard never serves more than 3
    connections above the other (placement.rs: a fuller shard hands new ones over), and a
    handed-over connection works like any other. (Client ids that cannot be thing names:
    those go to their thing's shard instead, test_thing_affinity.py.)"""
    clients = [client_factory(client_id=f"{uid}/spread {i}") for i in range(40)]
    per_shard = {0: 0, 1: 0}
    for c in clients:
        per_shard[_shard(c)] += 1
    assert abs(per_shard[0] - per_shard[1]) <= 3, per_shard
    sub = clients[-1]
    sub.subscribe(f"{uid}/spread/#", 1)
    for i, c in enumerate(clients[:-1]):
        c.publish(f"{uid}/spread/{i}", str(i).encode(), 1)
    got = sorted(int(m.payload) for m in sub.get_n(len(clients) - 1))
    assert got == list(range(len(clients) - 1))
