"""Helpers for the device shadow end-to-end tests: an MQTT view of one shadow (request and
response topics, waiting for a given response while keeping the others) and a small HTTP
client for the shadow REST API (http.client, no extra dependency)."""
from __future__ import annotations

import http.client as httpclient
import json
import re
import socket
import time


OPS = ("get", "update", "delete")
RESPONSES = ("get/accepted", "get/rejected", "update/accepted", "update/rejected",
             "update/delta", "update/documents", "delete/accepted", "delete/rejected")


def thing_name(uid: str, suffix: str = "") -> str:
    """A valid, unique thing name ([a-zA-Z0-9:_-], at most 128 bytes) from the test's uid."""
    name = re.sub(r"[^A-Za-z0-9:_-]", "_", uid + suffix)
    return name[-128:]


def prefix(thing: str, shadow: str | None = None) -> str:
    if shadow is None:
        return f"$aws/things/{thing}/shadow"
    return f"$aws/things/{thing}/shadow/name/{shadow}"


def encode(payload) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return json.dumps(payload).encode()


class ShadowMqtt:
    """One shadow seen through one MQTT client. Subscribes (QoS 1) to all eight response
    topics; `wait(suffix)` returns the next message on `{prefix}/{suffix}` and keeps the
    others for later `wait`s, so a test can check accepted, delta and documents in any
    order."""

    def __init__(self, client, thing: str, shadow: str | None = None, subscribe=True,
                 responses=RESPONSES):
        self.client = client
        self.thing = thing
        self.shadow = shadow
        self.prefix = prefix(thing, shadow)
        self.stash: list = []
        if subscribe:
            rcs = client.subscribe([(f"{self.prefix}/{r}", 1) for r in responses])
            assert rcs == [1] * len(responses), f"subscribe to shadow responses: {rcs}"

    # -- requests
    def publish(self, op: str, payload=None, qos=1):
        assert op in OPS
        return self.client.publish(f"{self.prefix}/{op}", encode(payload), qos)

    def request(self, op: str, payload=None, timeout=5.0, match_token=False):
        """Publishes a request and returns ("accepted"|"rejected", body dict). With
        `match_token`, waits for the response carrying the request's clientToken (other
        clients may be using the same shadow)."""
        self.publish(op, payload)
        pred = None
        if match_token:
            token = payload["clientToken"]
            pred = lambda m: json.loads(m.payload).get("clientToken") == token  # noqa: E731
        m = self.wait_any([f"{op}/accepted", f"{op}/rejected"], timeout, pred)
        return m.topic.rsplit("/", 1)[1], json.loads(m.payload)

    def update(self, doc, timeout=5.0) -> dict:
        kind, body = self.request("update", doc, timeout)
        assert kind == "accepted", f"update refused: {body}"
        return body

    def update_rejected(self, payload, timeout=5.0) -> dict:
        kind, body = self.request("update", payload, timeout)
        assert kind == "rejected", f"update unexpectedly accepted: {body}"
        return body

    def get(self, payload=None, timeout=5.0) -> dict:
        kind, body = self.request("get", payload, timeout)
        assert kind == "accepted", f"get refused: {body}"
        return body

    def delete(self, payload=None, timeout=5.0) -> dict:
        kind, body = self.request("delete", payload, timeout)
        assert kind == "accepted", f"delete refused: {body}"
        return body

    # -- responses
    def _take_stashed(self, topics, pred):
        for i, m in enumerate(self.stash):
            if m.topic in topics and (pred is None or pred(m)):
                return self.stash.pop(i)
        return None

    def wait_any(self, suffixes, timeout=5.0, pred=None):
        topics = {f"{self.prefix}/{s}" for s in suffixes}
        m = self._take_stashed(topics, pred)
        if m is not None:
            return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no message on {sorted(topics)} within {timeout}s; "
                                     f"other messages: {[(x.topic, x.payload) for x in self.stash]}")
            try:
                m = self.client.get(left)
            except AssertionError:
                continue
            if m.topic in topics and (pred is None or pred(m)):
                return m
            self.stash.append(m)

    def wait(self, suffix: str, timeout=5.0) -> dict:
        return json.loads(self.wait_any([suffix], timeout).payload)

    def expect_none(self, suffix: str | None = None, wait=0.3):
        """No message (on `suffix`, or on any topic) arrives within `wait` seconds, and none
        is waiting in the stash."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self.stash.append(self.client.messages.get(timeout=left))
            except Exception:
                break
        unexpected = [m for m in self.stash
                      if suffix is None or m.topic == f"{self.prefix}/{suffix}"]
        assert not unexpected, f"unexpected: {[(m.topic, m.payload) for m in unexpected]}"


def assert_error(body: dict, code: int, message: str | None = None, client_token=None):
    """An error response document: {code, message, timestamp[, clientToken]}."""
    assert body["code"] == code, body
    if message is not None:
        assert body["message"] == message, body
    assert isinstance(body.get("timestamp"), int) and body["timestamp"] > 1_600_000_000, body
    if client_token is None:
        assert "clientToken" not in body, body
    else:
        assert body.get("clientToken") == client_token, body
    extra = set(body) - {"code", "message", "timestamp", "clientToken"}
    assert not extra, f"unexpected fields {extra} in {body}"


def now_ok(ts) -> bool:
    """A timestamp in epoch seconds, within a minute of the local clock."""
    return isinstance(ts, int) and abs(ts - time.time()) < 60


# ---------------------------------------------------------------- REST


class Response:
    def __init__(self, status: int, reason: str, headers, raw: bytes):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.raw = raw

    @property
    def json(self):
        return json.loads(self.raw)

    def __repr__(self):
        return f"<{self.status} {self.reason} {self.raw[:300]!r}>"


def rest(broker, method: str, path: str, body=None, headers: dict | None = None,
         timeout=5.0) -> Response:
    """One request on a fresh connection. `body` may be a dict (sent as JSON), str or
    bytes. Retries a refused connection briefly (the REST listener may open just after the
    MQTT one the fixture waits for)."""
    data = None if body is None else encode(body)
    deadline = time.monotonic() + 5
    while True:
        conn = httpclient.HTTPConnection(broker.host, broker.http_port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.reason, r.headers, r.read())
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
        finally:
            conn.close()


def shadow_path(thing: str, shadow: str | None = None) -> str:
    from urllib.parse import quote
    path = f"/things/{quote(thing, safe='')}/shadow"
    if shadow is not None:
        path += f"?name={quote(shadow, safe='')}"
    return path


def raw_http(broker, data: bytes, timeout=5.0) -> tuple[int, dict, bytes]:
    """Sends `data` as is on a fresh connection and reads one response (status, lower-case
    headers, body). For requests http.client will not send (chunked without a length, a
    Content-Length with no body)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            s = socket.create_connection((broker.host, broker.http_port), timeout=timeout)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    try:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before a response head: {buf!r}")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        length = int(hdrs.get("content-length", "0"))
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, hdrs, rest[:length]
    finally:
        s.close()


def stamps(meta, ts: int | None = None):
    """`meta` with every `{"timestamp": n}` leaf replaced by "T", after checking that n is
    epoch seconds close to now (and equal to `ts` when given), so metadata shapes can be
    compared exactly."""
    if isinstance(meta, dict):
        if set(meta) == {"timestamp"} and isinstance(meta["timestamp"], int):
            n = meta["timestamp"]
            assert now_ok(n), f"metadata timestamp {n} is not near now"
            if ts is not None:
                assert n == ts, f"metadata timestamp {n} != {ts}"
            return "T"
        return {k: stamps(v, ts) for k, v in meta.items()}
    if isinstance(meta, list):
        return [stamps(v, ts) for v in meta]
    raise AssertionError(f"metadata leaf is not {{'timestamp': n}}: {meta!r}")
