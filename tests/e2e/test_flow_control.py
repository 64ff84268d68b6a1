"""Publisher flow control (dataplane/src/flow.rs): a QoS 1 publisher's PUBACKs wait while a
subscriber its messages go to is backlogged, are sent as that subscriber catches up, and
never wait longer than limits.max_puback_delay_ms. A publisher subscribed to its own topic
must not block itself."""
import time
from contextlib import contextmanager

import pytest

import mqtt_raw as r
from conftest import TClient
from test_storage_metrics import metric_sum, scrape

pytestmark = pytest.mark.iotcore

# A window of 5 toward the subscriber, 10 queued behind it: backlogged from 5 queued.
SMALL = {"receive_maximum": 5, "max_queued_messages": 10}
N = 40


def pubacks_within(raw: r.RawClient, seconds: float) -> set[int]:
    """Packet ids of the PUBACKs that arrive within `seconds`."""
    got: set[int] = set()
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return got
        try:
            p = raw.recv_packet(left)
        except TimeoutError:
            return got
        if p.type == r.PUBACK:
            assert p.rc == 0, p
            got.add(p.pid)


def stalled_subscriber(broker, uid: str) -> r.RawClient:
    """A subscriber that takes its deliveries but acknowledges none until told."""
    sub, ack = r.raw_connect(broker.host, broker.port, f"{uid}-sub", version=5)
    assert ack.rc == 0
    assert sub.sub([(f"{uid}/t", 1)]).rcs == [1]
    return sub


def publisher(broker, uid: str) -> r.RawClient:
    pub, ack = r.raw_connect(broker.host, broker.port, f"{uid}-pub", version=5)
    assert ack.rc == 0
    return pub


def publish(pub: r.RawClient, uid: str, pids) -> None:
    for pid in pids:
        pub.pub(f"{uid}/t", str(pid).encode(), qos=1, pid=pid)


def backlog(pub: r.RawClient, uid: str) -> set[int]:
    """Fills the stalled subscriber's window and queue, so its session is backlogged.
    Another shard's publisher learns of the backlog only from the messages after that, so
    the ones held come in a second burst."""
    publish(pub, uid, FILL)
    return pubacks_within(pub, 0.5)


@contextmanager
def stalled_pair(broker_factory, uid: str, delay_ms: int):
    """A broker with small queues, a stalled subscriber and a raw publisher."""
    b = broker_factory(**SMALL, max_puback_delay_ms=delay_ms)
    sub = stalled_subscriber(b, uid)
    pub = publisher(b, uid)
    try:
        yield b, sub, pub
    finally:
        pub.close()
        sub.close()


FILL = range(1, 21)
BURST = range(21, 21 + N)


def test_pubacks_wait_for_the_subscriber_to_catch_up(broker_factory, uid):
    with stalled_pair(broker_factory, uid, 20000) as (b, sub, pub):
        before = backlog(pub, uid)
        publish(pub, uid, BURST)
        early = before | pubacks_within(pub, 0.7)
        assert not early >= set(BURST), "no PUBACK of the burst was held"
        assert metric_sum(scrape(b), "pubacks_held_total") > 0

        # The subscriber catches up: it acknowledges everything it gets, and the rest of the
        # PUBACKs follow, long before the 20 s bound.
        start = time.monotonic()
        late: set[int] = set()
        want = set(FILL) | set(BURST)
        while len(early | late) < len(want) and time.monotonic() - start < 10:
            try:
                p = sub.recv_packet(0.05)
                if p.type == r.PUBLISH:
                    sub.send(r.puback(p.pid))
            except TimeoutError:
                pass
            late |= pubacks_within(pub, 0.01)
        assert early | late == want, sorted(want - early - late)
        assert time.monotonic() - start < 10
        assert metric_sum(scrape(b), "pubacks_held_expired_total") == 0


def test_pubacks_are_held_no_longer_than_the_bound(broker_factory, uid):
    with stalled_pair(broker_factory, uid, 300) as (b, sub, pub):
        before = backlog(pub, uid)
        start = time.monotonic()
        publish(pub, uid, BURST)
        early = pubacks_within(pub, 0.15)
        assert not early >= set(BURST), "no PUBACK of the burst was held"
        rest = pubacks_within(pub, 3.0 - (time.monotonic() - start))
        assert before | early | rest == set(FILL) | set(BURST)
        assert metric_sum(scrape(b), "pubacks_held_expired_total") > 0


def test_flow_control_off(broker_factory, uid):
    with stalled_pair(broker_factory, uid, 0) as (b, sub, pub):
        publish(pub, uid, FILL)
        publish(pub, uid, BURST)
        assert pubacks_within(pub, 2.0) == set(FILL) | set(BURST)
        assert metric_sum(scrape(b), "pubacks_held_total") == 0


def test_a_publisher_subscribed_to_its_own_topic_does_not_block_itself(broker_factory, uid):
    # paho keeps 20 publishes in flight, more than the 15 the broker queues for it.
    b = broker_factory(**SMALL, max_puback_delay_ms=20000)
    c = TClient(b.host, b.port)
    try:
        c.subscribe(f"{uid}/self", 1)
        start = time.monotonic()
        infos = [c.c.publish(f"{uid}/self", str(i).encode(), qos=1) for i in range(300)]
        for info in infos:
            info.wait_for_publish(timeout=max(0.1, 15 - (time.monotonic() - start)))
            assert info.is_published()
        assert time.monotonic() - start < 15
        time.sleep(0.5)
        got = [int(m.payload) for m in c.drain()]
        assert got == sorted(got) and len(got) >= 15, got[:20]
    finally:
        c.close()
