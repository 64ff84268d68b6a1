"""CONNECT / CONNACK, client ids, takeover, keep-alive, ping, clean DISCONNECT."""
import time

import pytest

import mqtt_raw as r
from conftest import IS_MOSQUITTO, TClient, expect_server_disconnect, roundtrip_ok


@pytest.mark.parametrize("version", [4, 5])
def test_connect_accepts_anonymous_loopback(broker, client_factory, version):
    c = client_factory(version=version)
    assert c.connack[0] == 0
    assert c.session_present is False


@pytest.mark.parametrize("version", [4, 5])
def test_raw_connack_and_ping(broker, version):
    raw, ack = r.raw_connect(broker.host, broker.port, "raw-ping", version=version)
    assert ack.rc == 0 and ack.session_present is False
    raw.send(r.pingreq())
    assert raw.expect(r.PINGRESP).type == r.PINGRESP
    raw.send(r.disconnect(version=version))
    # after DISCONNECT the broker closes the network connection
    raw.wait_closed(3)


def test_v5_assigned_client_identifier(broker):
    raw, ack = r.raw_connect(broker.host, broker.port, "", version=5)
    assert ack.rc == 0
    assigned = ack.props.get("AssignedClientIdentifier")
    assert assigned, f"no AssignedClientIdentifier in {ack.props}"
    # the assigned id is usable: a second empty-id client gets a different one
    raw2, ack2 = r.raw_connect(broker.host, broker.port, "", version=5)
    assert ack2.props.get("AssignedClientIdentifier") not in (None, assigned)
    raw.close(), raw2.close()


def test_v311_empty_client_id(broker):
    raw, ack = r.raw_connect(broker.host, broker.port, "", version=4, clean=True)
    assert ack.rc == 0
    raw.close()
    # empty client id with clean_session=0 must be rejected with rc 2 (identifier rejected)
    raw = r.RawClient(broker.host, broker.port, version=4)
    raw.send(r.connect("", version=4, clean=False))
    p = raw.expect(r.CONNACK)
    assert p.rc == 2
    raw.wait_closed(3)


def test_v5_connack_properties(broker):
    raw, ack = r.raw_connect(broker.host, broker.port, "props", version=5)
    assert ack.rc == 0
    # Topic alias maximum is configured to 8 for both brokers.
    assert ack.props.get("TopicAliasMaximum") == 8
    raw.close()


@pytest.mark.iotcore
def test_v5_connack_receive_maximum_default(broker):
    raw, ack = r.raw_connect(broker.host, broker.port, "rm", version=5)
    assert ack.props.get("ReceiveMaximum", 65535) == 100


@pytest.mark.iotcore
def test_request_response_information(broker):
    raw, ack = r.raw_connect(broker.host, broker.port, "rri", version=5,
                             props={"RequestResponseInformation": 1})
    assert ack.rc == 0
    assert isinstance(ack.props.get("ResponseInformation"), str) and ack.props["ResponseInformation"]
    raw.close()
    # without the request no ResponseInformation is sent
    raw, ack = r.raw_connect(broker.host, broker.port, "rri2", version=5)
    assert "ResponseInformation" not in ack.props


@pytest.mark.iotcore
@pytest.mark.parametrize("asked,expected", [(0, 1200), (5000, 1200), (1, 1), (60, 60)])
def test_server_keep_alive_clamped(broker, asked, expected):
    # fixture config: keep_alive_min_secs = 1, keep_alive_max_secs = 1200 (default)
    raw, ack = r.raw_connect(broker.host, broker.port, f"ka{asked}", version=5, keepalive=asked)
    assert ack.rc == 0
    assert ack.props.get("ServerKeepAlive", asked) == expected


@pytest.mark.iotcore
def test_server_keep_alive_minimum(broker_factory):
    b = broker_factory(keep_alive_min_secs=5)
    raw, ack = r.raw_connect(b.host, b.port, "kamin", version=5, keepalive=2)
    assert ack.props.get("ServerKeepAlive") == 5


def test_session_takeover_v5(broker):
    first, ack = r.raw_connect(broker.host, broker.port, "dup-id", version=5)
    assert ack.rc == 0
    second, ack2 = r.raw_connect(broker.host, broker.port, "dup-id", version=5)
    assert ack2.rc == 0
    # Mosquitto 2.0.11 just closes the old connection without DISCONNECT 0x8E
    expect_server_disconnect(first, (0x8E,))
    # the second connection is fully functional
    second.send(r.pingreq())
    assert second.expect(r.PINGRESP)


def test_session_takeover_v311(broker):
    first, _ = r.raw_connect(broker.host, broker.port, "dup311", version=4)
    second, ack2 = r.raw_connect(broker.host, broker.port, "dup311", version=4)
    assert ack2.rc == 0
    pkts = first.wait_closed(5)
    assert all(p.type != r.DISCONNECT for p in pkts)  # 3.1.1 has no server DISCONNECT
    second.send(r.pingreq())
    assert second.expect(r.PINGRESP)


def test_takeover_keeps_subscriptions_for_persistent_session(broker, client_factory, uid):
    c1 = client_factory(client_id=uid, clean=False, connect_props={"SessionExpiryInterval": 60})
    c1.subscribe(f"{uid}/t", 1)
    c2 = client_factory(client_id=uid, clean=False, connect_props={"SessionExpiryInterval": 60})
    assert c2.session_present is True
    rc = c1.wait_disconnected(5)
    if not IS_MOSQUITTO:  # Mosquitto 2.0.11 closes without DISCONNECT 0x8E
        assert rc == 0x8E
    pub = client_factory()
    pub.publish(f"{uid}/t", b"after-takeover", 1)
    assert c2.get().payload == b"after-takeover"


@pytest.mark.parametrize("version", [4, 5])
def test_keepalive_timeout_drops_silent_client(broker, version):
    raw, ack = r.raw_connect(broker.host, broker.port, f"silent{version}", version=version, keepalive=1)
    assert ack.rc == 0
    t0 = time.monotonic()
    pkts = raw.wait_closed(8)
    elapsed = time.monotonic() - t0
    # 1.5 x keep-alive, plus slack for timer granularity. Mosquitto only checks
    # keep-alives every ~5 s, so it gets a looser bound.
    assert elapsed < (7.0 if IS_MOSQUITTO else 2.5), f"dropped only after {elapsed:.2f}s"
    assert elapsed > (0.9 if IS_MOSQUITTO else 1.4), f"dropped too early ({elapsed:.2f}s)"
    if version == 5:
        discs = [p for p in pkts if p.type == r.DISCONNECT]
        if IS_MOSQUITTO:
            assert not discs or discs[-1].rc == 0x8D
        else:
            # iotcore says why before closing: Keep Alive timeout.
            assert discs and discs[-1].rc == 0x8D, pkts
    roundtrip_ok(broker)


@pytest.mark.iotcore
def test_keepalive_counts_from_connect_not_from_accept(broker):
    """A client slow to send CONNECT (here 1.2 s, within connect_timeout) still gets its
    whole first keep-alive period (1.5 x 1 s) counted from the CONNECT."""
    raw = r.RawClient(broker.host, broker.port, version=5)
    time.sleep(1.2)
    ack = raw.handshake("slowstart", keepalive=1)
    assert ack.rc == 0
    time.sleep(0.8)
    raw.send(r.pingreq())
    assert raw.expect(r.PINGRESP, 2)
    raw.send(r.disconnect())
    raw.wait_closed(3)


def test_keepalive_respected_with_pings(broker):
    raw, ack = r.raw_connect(broker.host, broker.port, "pinger", version=5, keepalive=1)
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        raw.send(r.pingreq())
        assert raw.expect(r.PINGRESP, 2)
        time.sleep(0.4)
    raw.send(r.disconnect())
    raw.wait_closed(3)


@pytest.mark.parametrize("level", [3, 6])
def test_unsupported_protocol_level(broker, level):
    raw = r.RawClient(broker.host, broker.port, version=4)
    pkt = bytearray(r.connect("badlvl", version=4))
    # protocol level byte follows "\x00\x04MQTT" in the variable header
    idx = pkt.index(b"MQTT") + 4
    pkt[idx] = level
    raw.send(bytes(pkt))
    pkts = raw.wait_closed(5)
    acks = [p for p in pkts if p.type == r.CONNACK]
    if acks:
        assert acks[0].rc in (0x01, 0x84)
    roundtrip_ok(broker)


def test_many_sequential_connections(broker):
    for i in range(30):
        raw, ack = r.raw_connect(broker.host, broker.port, f"seq{i % 3}", version=5 if i % 2 else 4)
        assert ack.rc == 0
        if i % 3 == 0:
            raw.send(r.disconnect(version=raw.version))
        raw.close()
    roundtrip_ok(broker)
