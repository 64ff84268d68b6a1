"""Hostile input over raw sockets: truncated / oversized / malformed packets, protocol violations,
slowloris, and a flooding client that never reads. Each must end in a clean disconnect with no
panic, and a normal client keeps working."""
import os
import socket
import threading
import time

import pytest

import mqtt_raw as r
from conftest import IS_MOSQUITTO, TClient, expect_server_disconnect, roundtrip_ok


def _closes(raw, timeout=5.0):
    return raw.wait_closed(timeout)


@pytest.mark.parametrize("cut", [1, 2, 5, 10, 20])
def test_truncated_connect_then_close(broker, cut):
    for _ in range(3):
        raw = r.RawClient(broker.host, broker.port)
        raw.send(r.connect("trunc", will={"topic": "w", "payload": b"p"})[:cut])
        raw.close()
    roundtrip_ok(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_truncated_publish_then_close(broker, version):
    raw, _ = r.raw_connect(broker.host, broker.port, "truncpub", version=version)
    pkt = r.publish("a/b", b"x" * 100, qos=1, pid=1, version=version)
    raw.send(pkt[:30])
    raw.close()
    roundtrip_ok(broker)


def test_oversized_remaining_length_before_connect(broker_factory):
    broker = broker_factory(max_packet_bytes=149504)  # explicit, so Mosquitto gets the limit too
    raw = r.RawClient(broker.host, broker.port)
    raw.try_send(b"\x10\xff\xff\xff\x7f")
    pkts = _closes(raw)
    assert all(p.type != r.CONNACK or p.rc >= 0x80 for p in pkts)
    roundtrip_ok(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_oversized_remaining_length_after_connect(broker_factory, version):
    broker = broker_factory(max_packet_bytes=149504)
    raw, _ = r.raw_connect(broker.host, broker.port, "huge", version=version)
    raw.try_send(b"\x30\xff\xff\xff\x7f" + b"\x00" * 64)
    expect_server_disconnect(raw, (0x95,))
    roundtrip_ok(broker)


def test_five_byte_varint_is_malformed(broker):
    raw, _ = r.raw_connect(broker.host, broker.port, "varint5", version=5)
    raw.try_send(b"\x30\xff\xff\xff\xff\x01")
    expect_server_disconnect(raw, (0x81, 0x95))
    roundtrip_ok(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_invalid_utf8_topic(broker, client_factory, version):
    s = client_factory()
    s.subscribe("#", 0)
    raw, _ = r.raw_connect(broker.host, broker.port, "badutf8", version=version)
    raw.send(r.publish(b"bad/\xff\xfe/topic", b"x", qos=0, version=version))
    expect_server_disconnect(raw, (0x81,))
    s.expect_none(0.3)
    roundtrip_ok(broker)


def test_invalid_utf8_client_id(broker):
    raw = r.RawClient(broker.host, broker.port)
    raw.send(r.connect(b"id\xc3\x28"))
    pkts = _closes(raw)
    # either a CONNACK with an error code or a plain close
    assert all(p.type != r.CONNACK or p.rc >= 0x80 for p in pkts)
    roundtrip_ok(broker)


def test_null_character_in_topic(broker):
    raw, _ = r.raw_connect(broker.host, broker.port, "nul", version=5)
    raw.send(r.publish(b"a/\x00/b", b"x"))
    expect_server_disconnect(raw, (0x81,))
    roundtrip_ok(broker)


def test_wildcard_in_publish_topic(broker, client_factory):
    s = client_factory()
    s.subscribe("#", 0)
    raw, _ = r.raw_connect(broker.host, broker.port, "wildpub", version=5)
    raw.send(r.publish("a/+/b", b"x", qos=1, pid=1))
    expect_server_disconnect(raw, (0x90, 0x82, 0x81))
    s.expect_none(0.3)
    roundtrip_ok(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_second_connect(broker, version):
    raw, _ = r.raw_connect(broker.host, broker.port, "twice", version=version)
    raw.send(r.connect("twice", version=version))
    pkts = expect_server_disconnect(raw, (0x82,))
    assert all(p.type != r.CONNACK for p in pkts)
    roundtrip_ok(broker)


@pytest.mark.parametrize("first", ["publish", "subscribe", "pingreq", "disconnect"])
def test_packet_before_connect(broker, first):
    raw = r.RawClient(broker.host, broker.port)
    pkt = {"publish": r.publish("a", b"x", version=4), "subscribe": r.subscribe(1, ["a"], version=4),
           "pingreq": r.pingreq(), "disconnect": r.disconnect()}[first]
    raw.send(pkt)
    pkts = _closes(raw)
    assert all(p.type not in (r.CONNACK, r.PINGRESP, r.SUBACK) for p in pkts), pkts
    roundtrip_ok(broker)


def test_garbage_before_connect(broker):
    raw = r.RawClient(broker.host, broker.port)
    raw.try_send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    _closes(raw)
    roundtrip_ok(broker)


def test_bad_protocol_name(broker):
    raw = r.RawClient(broker.host, broker.port)
    pkt = r.connect("badname", version=4).replace(b"MQTT", b"MQXX")
    raw.send(pkt)
    pkts = _closes(raw)
    assert all(p.type != r.CONNACK or p.rc != 0 for p in pkts)
    roundtrip_ok(broker)


def test_connect_reserved_flag(broker):
    raw = r.RawClient(broker.host, broker.port)
    pkt = bytearray(r.connect("resflag", version=4))
    pkt[pkt.index(b"MQTT") + 5] |= 0x01  # reserved connect flag must be 0
    raw.send(bytes(pkt))
    pkts = _closes(raw)
    assert all(p.type != r.CONNACK or p.rc != 0 for p in pkts)
    roundtrip_ok(broker)


@pytest.mark.parametrize("version", [4, 5])
def test_wrong_fixed_header_flags(broker, version):
    raw, _ = r.raw_connect(broker.host, broker.port, "flags", version=version)
    pkt = bytearray(r.subscribe(1, ["a/b"], version=version))
    pkt[0] = 0x80  # SUBSCRIBE must have flags 0b0010
    raw.send(bytes(pkt))
    expect_server_disconnect(raw, (0x81,))
    roundtrip_ok(broker)


def test_publish_qos3(broker):
    raw, _ = r.raw_connect(broker.host, broker.port, "qos3", version=5)
    pkt = bytearray(r.publish("a/b", b"x", qos=2, pid=1))
    pkt[0] |= 0x06
    raw.send(bytes(pkt))
    expect_server_disconnect(raw, (0x81,))
    roundtrip_ok(broker)


def test_publish_qos1_packet_id_zero(broker):
    raw, _ = r.raw_connect(broker.host, broker.port, "pid0", version=5)
    raw.send(r.publish("a/b", b"x", qos=1, pid=0))
    expect_server_disconnect(raw, (0x81, 0x82))
    roundtrip_ok(broker)


def test_reserved_packet_type(broker):
    for first in (b"\x00\x00", b"\xf0\x00"):  # type 0, and AUTH without an auth method
        raw, _ = r.raw_connect(broker.host, broker.port, "reserved", version=5)
        raw.send(first)
        expect_server_disconnect(raw, (0x81, 0x82))
    roundtrip_ok(broker)


def test_bad_property(broker):
    raw, _ = r.raw_connect(broker.host, broker.port, "badprop", version=5)
    # PUBLISH with property id 0x11 (session expiry) which is not allowed in PUBLISH
    body = r.utf8("a/b") + r.varint(5) + b"\x11" + r.u32(10) + b"x"
    raw.send(r.fixed(r.PUBLISH, 0, body))
    expect_server_disconnect(raw, (0x81, 0x82))
    roundtrip_ok(broker)


def test_property_length_past_packet(broker):
    raw, _ = r.raw_connect(broker.host, broker.port, "proplen", version=5)
    body = r.utf8("a/b") + r.varint(100) + b"\x01\x01"
    raw.send(r.fixed(r.PUBLISH, 0, body))
    expect_server_disconnect(raw, (0x81,))
    roundtrip_ok(broker)


def test_string_length_past_packet(broker):
    raw, _ = r.raw_connect(broker.host, broker.port, "strlen", version=5)
    raw.send(r.fixed(r.PUBLISH, 0, r.u16(500) + b"abc"))
    expect_server_disconnect(raw, (0x81,))
    roundtrip_ok(broker)


def test_subscribe_without_filters(broker):
    raw, _ = r.raw_connect(broker.host, broker.port, "nofilters", version=5)
    raw.send(r.fixed(r.SUBSCRIBE, 2, r.u16(1) + r.varint(0)))
    expect_server_disconnect(raw, (0x81, 0x82))
    roundtrip_ok(broker)


def test_puback_for_unknown_packet_id(broker):
    """A PUBACK for an id the broker never used is tolerated or a protocol error, not a crash."""
    raw, _ = r.raw_connect(broker.host, broker.port, "strayack", version=5)
    raw.send(r.puback(4242))
    raw.send(r.pingreq())
    try:
        p = raw.recv_packet(3)
        assert p.type in (r.PINGRESP, r.DISCONNECT)
    except r.Closed:
        pass
    roundtrip_ok(broker)


@pytest.mark.iotcore  # Mosquitto has no connect timeout setting
@pytest.mark.parametrize("partial", [b"", b"\x10", b"\x10\x20\x00\x04MQ"])
def test_slowloris_connect_timeout(broker, partial):
    raw = r.RawClient(broker.host, broker.port)
    t0 = time.monotonic()
    if partial:
        raw.send(partial)
    _closes(raw, timeout=6)
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed <= 4.5, f"closed after {elapsed:.2f}s, connect_timeout_secs = 2"
    roundtrip_ok(broker)


@pytest.mark.iotcore
def test_slowloris_trickle_does_not_extend_timeout(broker):
    raw = r.RawClient(broker.host, broker.port)
    pkt = r.connect("trickle")
    t0 = time.monotonic()
    closed = False
    for b in pkt[:-1]:
        if not raw.try_send(bytes([b])):
            closed = True
            break
        time.sleep(0.25)
        if time.monotonic() - t0 > 6:
            break
    if not closed:
        _closes(raw, timeout=3)
    assert time.monotonic() - t0 <= 5.0


def test_many_idle_connections(broker):
    socks = [r.RawClient(broker.host, broker.port) for _ in range(100)]
    roundtrip_ok(broker)
    for s in socks:
        s.close()
    roundtrip_ok(broker)


def _rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


@pytest.mark.iotcore  # Mosquitto buffers without bound and never drops the reader-less client
@pytest.mark.timeout(90)
def test_flood_without_reading(broker_factory):
    b = broker_factory(max_outbound_bytes=262144)
    flooder = r.RawClient(b.host, b.port, rcvbuf=4096)
    flooder.handshake("flooder", keepalive=0)
    flooder.send(r.subscribe(1, [("flood/t", 0)]))
    flooder.sock.settimeout(0.5)
    pkt = r.publish("flood/t", b"F" * 1024, qos=0) * 64
    state = {"disconnected": False, "sent": 0, "stop": False, "err": None}

    def flood():
        while not state["stop"]:
            try:
                flooder.sock.sendall(pkt)
                state["sent"] += len(pkt)
            except socket.timeout:
                continue  # broker is applying back-pressure; keep pushing
            except OSError as e:
                state["disconnected"] = True
                state["err"] = e
                return

    th = threading.Thread(target=flood, daemon=True)
    th.start()
    rss0 = _rss_kb(b.proc.pid)
    peak = rss0
    rounds = 0
    deadline = time.monotonic() + 45
    try:
        while time.monotonic() < deadline and not state["disconnected"]:
            try:
                roundtrip_ok(b, timeout=5)
            except (AssertionError, TimeoutError) as e:
                raise AssertionError(f"round trip {rounds} failed during flood "
                                     f"(flooder sent {state['sent']} bytes so far): {e}") from None
            rounds += 1
            peak = max(peak, _rss_kb(b.proc.pid))
            time.sleep(0.2)
    finally:
        state["stop"] = True
        th.join(5)
    # a broker that stops reading from the flooder is also fine only if it eventually drops it
    assert state["disconnected"], f"flooder never disconnected (sent {state['sent']} bytes)"
    assert rounds >= 1
    assert peak - rss0 < 256 * 1024, f"RSS grew from {rss0} kB to {peak} kB"
    for _ in range(3):
        roundtrip_ok(b)


def test_reconnect_storm_same_id(broker):
    """Rapid takeovers of one client id must not wedge the broker."""
    conns = []
    for i in range(40):
        try:
            raw, ack = r.raw_connect(broker.host, broker.port, "storm", version=5 if i % 2 else 4)
            assert ack.rc == 0
            conns.append(raw)
        except r.Closed:
            pass
    for c in conns:
        c.close()
    roundtrip_ok(broker)
