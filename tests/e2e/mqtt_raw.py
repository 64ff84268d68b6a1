"""Minimal raw MQTT 3.1.1 / 5.0 packet codec for hostile-input and wire-level tests.

Only what the tests need: builders for every client->server packet, a parser for
server->client packets, and a blocking `RawClient` over a plain TCP socket.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# Packet types
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15)

V311, V5 = 4, 5

# ---------------------------------------------------------------- primitives


def varint(n: int) -> bytes:
    if n < 0 or n > 268_435_455:
        raise ValueError(n)
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_varint(buf: bytes, pos: int = 0) -> tuple[int, int]:
    mult, value = 1, 0
    for i in range(4):
        b = buf[pos]
        pos += 1
        value += (b & 0x7F) * mult
        if not b & 0x80:
            return value, pos
        mult *= 128
    raise ValueError("malformed varint")


def u16(n: int) -> bytes:
    return struct.pack(">H", n)


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def binary(b: bytes) -> bytes:
    return u16(len(b)) + b


def utf8(s: str | bytes) -> bytes:
    if isinstance(s, str):
        s = s.encode("utf-8")
    return binary(s)


def fixed(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


# ---------------------------------------------------------------- properties

# id -> (name, kind)
PROPS = {
    0x01: ("PayloadFormatIndicator", "byte"),
    0x02: ("MessageExpiryInterval", "u32"),
    0x03: ("ContentType", "str"),
    0x08: ("ResponseTopic", "str"),
    0x09: ("CorrelationData", "bin"),
    0x0B: ("SubscriptionIdentifier", "varint"),
    0x11: ("SessionExpiryInterval", "u32"),
    0x12: ("AssignedClientIdentifier", "str"),
    0x13: ("ServerKeepAlive", "u16"),
    0x15: ("AuthenticationMethod", "str"),
    0x16: ("AuthenticationData", "bin"),
    0x17: ("RequestProblemInformation", "byte"),
    0x18: ("WillDelayInterval", "u32"),
    0x19: ("RequestResponseInformation", "byte"),
    0x1A: ("ResponseInformation", "str"),
    0x1C: ("ServerReference", "str"),
    0x1F: ("ReasonString", "str"),
    0x21: ("ReceiveMaximum", "u16"),
    0x22: ("TopicAliasMaximum", "u16"),
    0x23: ("TopicAlias", "u16"),
    0x24: ("MaximumQoS", "byte"),
    0x25: ("RetainAvailable", "byte"),
    0x26: ("UserProperty", "pair"),
    0x27: ("MaximumPacketSize", "u32"),
    0x28: ("WildcardSubscriptionAvailable", "byte"),
    0x29: ("SubscriptionIdentifierAvailable", "byte"),
    0x2A: ("SharedSubscriptionAvailable", "byte"),
}
PROP_IDS = {name: pid for pid, (name, _) in PROPS.items()}


def encode_props(props: dict | list | None) -> bytes:
    """props: dict name->value (UserProperty: list of pairs) or list of (name, value)."""
    if not props:
        return varint(0)
    items = props.items() if isinstance(props, dict) else props
    out = bytearray()
    for name, value in items:
        pid = PROP_IDS[name]
        kind = PROPS[pid][1]
        values = value if (kind == "pair" and value and isinstance(value[0], (tuple, list))) else [value]
        if kind == "varint" and isinstance(value, list):
            values = value
        for v in values:
            out.append(pid)
            if kind == "byte":
                out.append(v)
            elif kind == "u16":
                out += u16(v)
            elif kind == "u32":
                out += u32(v)
            elif kind == "varint":
                out += varint(v)
            elif kind == "str":
                out += utf8(v)
            elif kind == "bin":
                out += binary(v)
            elif kind == "pair":
                out += utf8(v[0]) + utf8(v[1])
    return varint(len(out)) + bytes(out)


def decode_props(buf: bytes, pos: int) -> tuple[dict, int]:
    """Returns (props, new_pos). UserProperty -> list of pairs, SubscriptionIdentifier -> list."""
    length, pos = decode_varint(buf, pos)
    end = pos + length
    props: dict = {}
    while pos < end:
        pid = buf[pos]
        pos += 1
        name, kind = PROPS[pid]
        if kind == "byte":
            v = buf[pos]
            pos += 1
        elif kind == "u16":
            v = struct.unpack_from(">H", buf, pos)[0]
            pos += 2
        elif kind == "u32":
            v = struct.unpack_from(">I", buf, pos)[0]
            pos += 4
        elif kind == "varint":
            v, pos = decode_varint(buf, pos)
        elif kind in ("str", "bin"):
            n = struct.unpack_from(">H", buf, pos)[0]
            v = bytes(buf[pos + 2:pos + 2 + n])
            pos += 2 + n
            if kind == "str":
                v = v.decode("utf-8")
        else:  # pair
            n = struct.unpack_from(">H", buf, pos)[0]
            k = bytes(buf[pos + 2:pos + 2 + n]).decode()
            pos += 2 + n
            n = struct.unpack_from(">H", buf, pos)[0]
            val = bytes(buf[pos + 2:pos + 2 + n]).decode()
            pos += 2 + n
            v = (k, val)
        if name == "UserProperty":
            props.setdefault(name, []).append(v)
        elif name == "SubscriptionIdentifier":
            props.setdefault(name, []).append(v)
        else:
            props[name] = v
    return props, end


# ---------------------------------------------------------------- builders


def connect(client_id: str | bytes = "raw", version: int = V5, clean: bool = True,
            keepalive: int = 60, props=None, will: dict | None = None,
            username: str | None = None, password: bytes | None = None) -> bytes:
    """will: dict(topic=, payload=, qos=0, retain=False, props=None)."""
    flags = 0
    if clean:
        flags |= 0x02
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    vh = utf8("MQTT") + bytes([version, flags]) + u16(keepalive)
    if version == V5:
        vh += encode_props(props)
    pl = utf8(client_id)
    if will:
        if version == V5:
            pl += encode_props(will.get("props"))
        pl += utf8(will["topic"]) + binary(will.get("payload", b""))
    if username is not None:
        pl += utf8(username)
    if password is not None:
        pl += binary(password)
    return fixed(CONNECT, 0, vh + pl)


def publish(topic: str | bytes, payload: bytes = b"", qos: int = 0, retain: bool = False,
            dup: bool = False, pid: int = 1, props=None, version: int = V5) -> bytes:
    flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = utf8(topic)
    if qos:
        body += u16(pid)
    if version == V5:
        body += encode_props(props)
    return fixed(PUBLISH, flags, body + payload)


def _ack(ptype: int, flags: int, pid: int, rc: int, version: int) -> bytes:
    body = u16(pid)
    if version == V5 and rc:
        body += bytes([rc])
    return fixed(ptype, flags, body)


def puback(pid, rc=0, version=V5):
    return _ack(PUBACK, 0, pid, rc, version)


def pubrec(pid, rc=0, version=V5):
    return _ack(PUBREC, 0, pid, rc, version)


def pubrel(pid, rc=0, version=V5):
    return _ack(PUBREL, 2, pid, rc, version)


def pubcomp(pid, rc=0, version=V5):
    return _ack(PUBCOMP, 0, pid, rc, version)


def subscribe(pid: int, filters, props=None, version: int = V5) -> bytes:
    """filters: list of (filter, options_byte) or plain filter strings (QoS 0)."""
    body = u16(pid)
    if version == V5:
        body += encode_props(props)
    for f in filters:
        if isinstance(f, (str, bytes)):
            f = (f, 0)
        body += utf8(f[0]) + bytes([f[1]])
    return fixed(SUBSCRIBE, 2, body)


def unsubscribe(pid: int, filters, props=None, version: int = V5) -> bytes:
    body = u16(pid)
    if version == V5:
        body += encode_props(props)
    for f in filters:
        body += utf8(f)
    return fixed(UNSUBSCRIBE, 2, body)


def pingreq() -> bytes:
    return b"\xc0\x00"


def disconnect(rc: int = 0, props=None, version: int = V5) -> bytes:
    if version != V5 or (rc == 0 and not props):
        return b"\xe0\x00"
    return fixed(DISCONNECT, 0, bytes([rc]) + encode_props(props))


# ---------------------------------------------------------------- parsing


@dataclass
class Packet:
    type: int
    flags: int
    body: bytes
    version: int = V5
    # parsed fields (depending on type)
    rc: int | None = None
    session_present: bool | None = None
    props: dict = field(default_factory=dict)
    pid: int | None = None
    topic: str | None = None
    payload: bytes | None = None
    qos: int = 0
    retain: bool = False
    dup: bool = False
    rcs: list = field(default_factory=list)

    def __repr__(self):
        names = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC",
                 6: "PUBREL", 7: "PUBCOMP", 9: "SUBACK", 11: "UNSUBACK", 13: "PINGRESP",
                 14: "DISCONNECT", 15: "AUTH"}
        return (f"<{names.get(self.type, self.type)} rc={self.rc} pid={self.pid} topic={self.topic!r} "
                f"qos={self.qos} retain={self.retain} props={self.props} rcs={self.rcs} "
                f"len={len(self.body)}>")


def parse(ptype: int, flags: int, body: bytes, version: int) -> Packet:
    p = Packet(ptype, flags, body, version)
    v5 = version == V5
    if ptype == CONNACK:
        p.session_present = bool(body[0] & 1)
        p.rc = body[1]
        if v5 and len(body) > 2:
            p.props, _ = decode_props(body, 2)
    elif ptype == PUBLISH:
        p.qos = (flags >> 1) & 3
        p.retain = bool(flags & 1)
        p.dup = bool(flags & 8)
        n = struct.unpack_from(">H", body, 0)[0]
        p.topic = body[2:2 + n].decode("utf-8")
        pos = 2 + n
        if p.qos:
            p.pid = struct.unpack_from(">H", body, pos)[0]
            pos += 2
        if v5:
            p.props, pos = decode_props(body, pos)
        p.payload = bytes(body[pos:])
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        p.pid = struct.unpack_from(">H", body, 0)[0]
        p.rc = body[2] if len(body) > 2 else 0
        if v5 and len(body) > 3:
            p.props, _ = decode_props(body, 3)
    elif ptype in (SUBACK, UNSUBACK):
        p.pid = struct.unpack_from(">H", body, 0)[0]
        pos = 2
        if v5:
            p.props, pos = decode_props(body, pos)
        p.rcs = list(body[pos:])
    elif ptype == DISCONNECT:
        p.rc = body[0] if body else 0
        if v5 and len(body) > 1:
            p.props, _ = decode_props(body, 1)
    return p


class Closed(Exception):
    """The peer closed the connection."""


class RawClient:
    def __init__(self, host: str, port: int, version: int = V5, timeout: float = 5.0,
                 rcvbuf: int | None = None):
        self.version = version
        if rcvbuf:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.settimeout(timeout)
            s.connect((host, port))
            self.sock = s
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    # -- io
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no packet before deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no packet before deadline") from None
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as e:
            raise Closed(str(e)) from None
        if not chunk:
            raise Closed("eof")
        self.buf += chunk

    def recv_packet(self, timeout: float = 5.0) -> Packet:
        """Next packet; raises Closed on EOF, TimeoutError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                try:
                    length, pos = decode_varint(self.buf, 1)
                except IndexError:
                    length = None
                if length is not None and len(self.buf) >= pos + length:
                    first = self.buf[0]
                    body = bytes(self.buf[pos:pos + length])
                    del self.buf[:pos + length]
                    return parse(first >> 4, first & 0x0F, body, self.version)
            self._fill(deadline)

    def expect(self, ptype: int, timeout: float = 5.0, skip_publish: bool = False) -> Packet:
        deadline = time.monotonic() + timeout
        while True:
            p = self.recv_packet(max(0.01, deadline - time.monotonic()))
            if skip_publish and p.type == PUBLISH and ptype != PUBLISH:
                continue
            assert p.type == ptype, f"expected packet type {ptype}, got {p!r}"
            return p

    def wait_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Read until the server closes the connection. Returns packets read meanwhile.
        Raises AssertionError if still open after `timeout`."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            try:
                got.append(self.recv_packet(max(0.01, deadline - time.monotonic())))
            except Closed:
                return got
            except TimeoutError:
                raise AssertionError(f"connection still open after {timeout}s; got {got}") from None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- conveniences
    def handshake(self, client_id: str = "raw", timeout: float = 5.0, **kw) -> Packet:
        self.send(connect(client_id, version=self.version, **kw))
        return self.expect(CONNACK, timeout)

    def sub(self, filters, pid: int = 1, props=None, timeout: float = 5.0) -> Packet:
        self.send(subscribe(pid, filters, props, self.version))
        return self.expect(SUBACK, timeout, skip_publish=True)

    def pub(self, topic, payload=b"", qos=0, retain=False, pid=1, props=None):
        self.send(publish(topic, payload, qos, retain, pid=pid, props=props, version=self.version))


def raw_connect(host: str, port: int, client_id: str, version: int = V5, **kw) -> tuple[RawClient, Packet]:
    c = RawClient(host, port, version)
    ack = c.handshake(client_id, **kw)
    return c, ack
