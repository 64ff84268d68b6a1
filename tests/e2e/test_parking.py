"""Parked connections (`[server] park_idle_ms`, default 500): a connection with no traffic
either way for that long gives up its tasks and armed poll and waits as a bare socket in
the shard's epoll instance. Each test parks a connection (seen through the
`parked_connections` gauge) and then brings it back by one of the ways that must work: bytes
from the client, a message for it, a kill (take-over, keep-alive, shutdown) or a hang-up.
iotcore only."""
from __future__ import annotations

import time

import pytest

import mqtt_raw as r
from conftest import poll
from test_storage_metrics import metric_sum, scrape

pytestmark = pytest.mark.iotcore

# Fast, so the tests do not wait long: a connection parks 0.2-0.45 s after its last byte.
PARK_MS = 200


def parked(broker) -> int:
    return metric_sum(scrape(broker), "parked_connections")


def wait_parked(broker, n: int) -> None:
    poll(lambda: parked(broker) == n, timeout=10, msg=f"expected {n} parked connections")


@pytest.fixture
def pbroker(broker_factory):
    return broker_factory(park_idle_ms=PARK_MS)


def test_an_idle_client_parks_and_still_answers(pbroker, uid):
    raw, ack = r.raw_connect(pbroker.host, pbroker.port, f"{uid}-c")
    assert ack.rc == 0
    wait_parked(pbroker, 1)
    raw.send(r.pingreq())
    raw.expect(r.PINGRESP)
    raw.sub([(f"{uid}/t", 1)])
    raw.pub(f"{uid}/t", b"to-self", qos=1, pid=7)
    got = {p.type: p for p in (raw.recv_packet(), raw.recv_packet())}
    assert got[r.PUBACK].pid == 7
    assert got[r.PUBLISH].payload == b"to-self"
    raw.send(r.puback(got[r.PUBLISH].pid))
    # It came back, and parks again once quiet.
    poll(lambda: metric_sum(scrape(pbroker), "connections_unparked_total") >= 1)
    poll(lambda: metric_sum(scrape(pbroker), "connections_parked_total") >= 2)
    wait_parked(pbroker, 1)
    raw.send(r.disconnect())
    raw.wait_closed()


@pytest.mark.parametrize("qos", [0, 1])
def test_a_parked_subscriber_gets_a_burst_in_order(pbroker, client_factory, uid, qos):
    sub = client_factory(client_id=f"{uid}-sub", broker_=pbroker)
    sub.subscribe(f"{uid}/t", qos)
    wait_parked(pbroker, 1)
    pub = client_factory(client_id=f"{uid}-pub", broker_=pbroker)
    for i in range(50):
        pub.publish(f"{uid}/t", str(i).encode(), qos)
    got = sub.get_n(50)
    assert [m.payload for m in got] == [str(i).encode() for i in range(50)]
    assert all(m.qos == qos for m in got)


def test_a_parked_client_is_told_it_was_taken_over(pbroker, uid):
    old, _ = r.raw_connect(pbroker.host, pbroker.port, f"{uid}-dup")
    wait_parked(pbroker, 1)
    new, ack = r.raw_connect(pbroker.host, pbroker.port, f"{uid}-dup")
    assert ack.rc == 0
    pkts = old.wait_closed(5)
    assert [p.rc for p in pkts if p.type == r.DISCONNECT] == [0x8E]
    new.send(r.pingreq())
    new.expect(r.PINGRESP)


def test_a_parked_client_is_dropped_at_its_keep_alive(pbroker, uid):
    raw, _ = r.raw_connect(pbroker.host, pbroker.port, f"{uid}-quiet", keepalive=2)
    t0 = time.monotonic()
    wait_parked(pbroker, 1)
    pkts = raw.wait_closed(8)
    elapsed = time.monotonic() - t0
    assert 2.9 < elapsed < 4.5, f"dropped after {elapsed:.2f}s, keep-alive 2 s"
    assert [p.rc for p in pkts if p.type == r.DISCONNECT] == [0x8D]
    wait_parked(pbroker, 0)


def test_a_parked_client_that_hangs_up_leaves_its_will(pbroker, client_factory, uid):
    watcher = client_factory(client_id=f"{uid}-w", broker_=pbroker)
    watcher.subscribe(f"{uid}/will", 1)
    raw, _ = r.raw_connect(
        pbroker.host, pbroker.port, f"{uid}-dev", will=dict(topic=f"{uid}/will", payload=b"gone", qos=1)
    )
    wait_parked(pbroker, 2)
    raw.close()
    assert watcher.get(5).payload == b"gone"
    poll(lambda: metric_sum(scrape(pbroker), "connections") == 1, msg="the dropped client still counted")


def test_half_a_packet_keeps_a_connection_awake(pbroker, client_factory, uid):
    sub = client_factory(client_id=f"{uid}-sub", broker_=pbroker)
    sub.subscribe(f"{uid}/t", 1)
    raw, _ = r.raw_connect(pbroker.host, pbroker.port, f"{uid}-slow")
    wait_parked(pbroker, 2)
    packet = r.publish(f"{uid}/t", b"split across the idle time", qos=1, pid=3)
    raw.send(packet[:9])
    # Several looks of the idle sweep: the reader holds a partial packet, so it stays awake.
    time.sleep(4 * PARK_MS / 1000)
    assert parked(pbroker) == 1, "a half-read packet must keep its connection awake"
    raw.send(packet[9:])
    assert raw.expect(r.PUBACK).pid == 3
    assert sub.get().payload == b"split across the idle time"


def test_shutdown_says_goodbye_to_parked_clients(pbroker):
    clients = [r.raw_connect(pbroker.host, pbroker.port, f"bye{i}")[0] for i in range(3)]
    wait_parked(pbroker, 3)
    pbroker.proc.terminate()
    for raw in clients:
        pkts = raw.wait_closed(10)
        assert [p.rc for p in pkts if p.type == r.DISCONNECT] == [0x8B]
    assert pbroker.proc.wait(10) == 0
    pbroker.stop = lambda: None  # already stopped and checked
    assert "panicked" not in pbroker.stderr()


def test_parking_off_parks_nothing(broker_factory, uid):
    b = broker_factory(park_idle_ms=0)
    raw, _ = r.raw_connect(b.host, b.port, f"{uid}-c")
    time.sleep(1.2)
    assert parked(b) == 0
    raw.send(r.pingreq())
    raw.expect(r.PINGRESP)


def test_a_message_wakes_every_parked_subscriber(pbroker, client_factory, uid):
    subs = []
    for i in range(100):
        raw, _ = r.raw_connect(pbroker.host, pbroker.port, f"{uid}-s{i}")
        raw.sub([(f"{uid}/all", 1)])
        subs.append(raw)
    wait_parked(pbroker, 100)
    pub = client_factory(client_id=f"{uid}-pub", broker_=pbroker)
    pub.publish(f"{uid}/all", b"wake up", 1)
    for raw in subs:
        p = raw.expect(r.PUBLISH)
        assert p.payload == b"wake up"
        raw.send(r.puback(p.pid))
    # Acknowledged, quiet again: all park once more (the publisher may park too).
    poll(lambda: parked(pbroker) >= 100, timeout=10, msg="the subscribers parked again")


def test_clients_that_park_and_wake_all_the_time_lose_nothing(broker_factory, client_factory, uid):
    """Forty clients, parking after 50 ms of quiet, send each other QoS 1 messages at
    random intervals around that time for four seconds: every message arrives once the
    traffic stops, whatever state its sender or receiver was in."""
    import random

    b = broker_factory(park_idle_ms=50)
    rng = random.Random(7)
    clients = [client_factory(client_id=f"{uid}-{i}", broker_=b) for i in range(40)]
    for i, c in enumerate(clients):
        c.subscribe(f"{uid}/to/{i}", 1)
    sent = {i: [] for i in range(len(clients))}
    deadline = time.monotonic() + 4
    n = 0
    while time.monotonic() < deadline:
        src, dst = rng.randrange(len(clients)), rng.randrange(len(clients))
        payload = f"{n}".encode()
        clients[src].publish(f"{uid}/to/{dst}", payload, 1)
        sent[dst].append(payload)
        n += 1
        time.sleep(rng.uniform(0, 0.12))
    woke = metric_sum(scrape(b), "connections_unparked_total")
    assert woke > len(clients), f"only {woke} wake-ups: the test did not exercise parking"
    for i, c in enumerate(clients):
        got = [m.payload for m in c.get_n(len(sent[i]))] if sent[i] else []
        assert sorted(got) == sorted(sent[i]), f"client {i}"


def test_a_client_that_talks_every_few_hundred_ms_stops_parking(broker_factory, uid):
    """Parking and waking cost system calls and task spawns: a connection woken soon after
    it parked needs twice the quiet time to park next time, so a chatty device settles
    awake instead of paying them per message."""
    b = broker_factory(park_idle_ms=100)
    raw, _ = r.raw_connect(b.host, b.port, f"{uid}-chatty")

    def parks() -> int:
        return metric_sum(scrape(b), "connections_parked_total")

    def talk(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            raw.send(r.pingreq())
            raw.expect(r.PINGRESP)
            time.sleep(0.25)

    talk(1.5)
    assert parks() >= 1, "it parked at first"
    time.sleep(0.3)  # the counters are published every 250 ms
    before = parks()
    talk(3)
    time.sleep(0.3)
    assert parks() - before <= 1, f"{parks() - before} parks in 3 s of talk every 250 ms"
    # Quiet for long, it parks again.
    wait_parked(b, 1)
