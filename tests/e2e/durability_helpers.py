"""Helpers for the crash tests (test_durability.py): starting brokers on one data directory
and killing them with SIGKILL, streaming workers that record what the broker acknowledged,
and a reader for the on-disk log format (core/src/log/mod.rs) so tests can damage it."""
from __future__ import annotations

import json
import signal
import struct
import threading
import time
import zlib
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import conftest

HEADER_LEN = 32
RECORD_HEADER_LEN = 8
SEG_MAGIC = b"iotclog\0"


# ---------------------------------------------------------------- brokers


class Brokers:
    """Starts brokers on one data directory. Unlike conftest's broker_factory, a broker
    killed on purpose (`crash`) is not reported at teardown; a live one is still stopped
    with SIGTERM and checked (exit code 0, no panic)."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.data_dir = tmp_path / "data"
        self.started: list[conftest.Broker] = []

    def start(self, **overrides) -> conftest.Broker:
        overrides.setdefault("shards", 2)
        overrides.setdefault("data_dir", str(self.data_dir))
        b = conftest.Broker(self.tmp_path, overrides)
        b.data_dir = Path(overrides["data_dir"])
        self.started.append(b)
        return b

    def crash(self, b: conftest.Broker) -> None:
        """kill -9, after checking the broker was still healthy."""
        assert b.alive(), f"broker died before the kill (rc={b.proc.returncode}):\n{b.stderr()[-4000:]}"
        b.proc.send_signal(signal.SIGKILL)
        rc = b.proc.wait(5)
        assert rc == -signal.SIGKILL, f"broker exit code {rc}, expected SIGKILL"
        b.kill()  # closes the log files
        assert "panicked" not in b.stderr(), f"broker panicked before the kill:\n{b.stderr()[-4000:]}"

    def stop(self, b: conftest.Broker) -> None:
        """Clean SIGTERM stop, checked."""
        b.stop()

    def teardown(self) -> list[str]:
        errors = []
        for b in self.started:
            if b.alive():
                try:
                    b.stop()
                except AssertionError as e:
                    errors.append(str(e))
            else:
                b.kill()
        return errors


@pytest.fixture
def brokers(tmp_path):
    bs = Brokers(tmp_path)
    yield bs
    errors = bs.teardown()
    if errors:
        pytest.fail("\n".join(errors))


# ---------------------------------------------------------------- paho clients


def paho_client(broker, client_id: str, version=5, clean=True, session_expiry=0,
                window=20) -> mqtt.Client:
    """A connected paho client with no network thread (the caller runs `loop`)."""
    proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
    kw = {} if version == 5 else {"clean_session": clean}
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=proto, **kw)
    connack = {}

    def on_connect(client, userdata, flags, rc, properties):
        connack["rc"] = rc.value if hasattr(rc, "value") else int(rc)
        connack["present"] = bool(flags.session_present)

    c.on_connect = on_connect

    def on_disconnect(client, userdata, flags, rc, properties):
        client.disconnect_reason = (rc.value if hasattr(rc, "value") else int(rc), str(rc),
                                    getattr(properties, "ReasonString", None))

    c.on_disconnect = on_disconnect
    c.disconnect_reason = None
    c.max_inflight_messages_set(window)
    ckw = {}
    if version == 5:
        ckw["clean_start"] = clean
        if session_expiry:
            p = Properties(PacketTypes.CONNECT)
            p.SessionExpiryInterval = session_expiry
            ckw["properties"] = p
    c.connect(broker.host, broker.port, 30, **ckw)
    deadline = time.monotonic() + 5
    while "rc" not in connack:
        assert time.monotonic() < deadline, f"{client_id}: no CONNACK"
        assert c.loop(0.05) == mqtt.MQTT_ERR_SUCCESS, f"{client_id}: connection lost before CONNACK"
    assert connack["rc"] == 0, f"{client_id}: connect refused {connack}"
    c.connack = connack
    return c


def loop_until(c: mqtt.Client, pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        assert c.loop(0.05) == mqtt.MQTT_ERR_SUCCESS, f"connection lost waiting for {what}"


def subscribe(c: mqtt.Client, topics: list[tuple[str, int]]) -> None:
    got = {}

    def on_subscribe(client, userdata, mid, rcs, properties):
        got[mid] = [r.value if hasattr(r, "value") else int(r) for r in rcs]

    c.on_subscribe = on_subscribe
    rc, mid = c.subscribe(topics)
    assert rc == mqtt.MQTT_ERR_SUCCESS
    loop_until(c, lambda: mid in got, 5, "SUBACK")
    assert got[mid] == [q for _, q in topics], f"SUBACK {got[mid]}"


class Worker(threading.Thread):
    """A streaming client on its own thread. It runs until its connection is lost (the
    broker was killed: `lost` is set) or `halt` is set; any other exception is kept in
    `error`."""

    def __init__(self, name: str):
        super().__init__(daemon=True, name=name)
        self.halt = threading.Event()
        self.ready = threading.Event()
        self.lost = False
        self.lost_reason = None
        self.error: BaseException | None = None

    def run(self):
        try:
            self.stream()
        except ConnectionLost as e:
            self.lost = True
            self.lost_reason = e.args
        except BaseException as e:  # noqa: BLE001 (reported by the test)
            self.error = e
        finally:
            self.ready.set()

    def stream(self):
        raise NotImplementedError

    def pump(self, c: mqtt.Client, timeout=0.01):
        rc = c.loop(timeout)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionLost(rc, c.disconnect_reason)


class ConnectionLost(Exception):
    pass


class ShadowWriter(Worker):
    """The only writer of `key` in one thing's classic shadow: sends
    `{"state":{"reported":{key:n}}}`
    for n = start, start+1, ... one at a time (`limit` of them, or until the connection is
    lost), recording each one sent (`sent`) and each
    answered on /update/accepted with its version (`accepted`, in order)."""

    def __init__(self, broker, thing: str, start: int, limit: int | None = None, key="n"):
        super().__init__(f"shadow-{thing}-{key}")
        self.broker = broker
        self.thing = thing
        self.key = key
        self.next_n = start
        self.limit = limit
        self.sent: list[int] = []
        self.accepted: list[tuple[int, int]] = []
        self.rejected: list[dict] = []

    def stream(self):
        pre = f"$aws/things/{self.thing}/shadow"
        c = paho_client(self.broker, f"w-{self.thing}-{self.key}-{self.next_n}")
        inbox: list = []
        c.on_message = lambda client, userdata, m: inbox.append(m)
        subscribe(c, [(f"{pre}/update/accepted", 1), (f"{pre}/update/rejected", 1)])
        self.ready.set()
        while not self.halt.is_set():
            if self.limit is not None and len(self.sent) >= self.limit:
                break
            n = self.next_n
            self.next_n += 1
            token = f"{self.key}-{n}"
            self.sent.append(n)
            c.publish(f"{pre}/update", json.dumps(
                {"state": {"reported": {self.key: n}}, "clientToken": token}), qos=1)
            answer = None
            deadline = time.monotonic() + 10
            while answer is None:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.thing}: no answer to update {n} within 10 s")
                self.pump(c)
                for m in inbox:
                    body = json.loads(m.payload)
                    if body.get("clientToken") == token:
                        answer = (m.topic, body)
                inbox.clear()
            topic, body = answer
            if topic.endswith("/accepted"):
                assert body["state"]["reported"][self.key] == n, body
                self.accepted.append((n, body["version"]))
            else:
                self.rejected.append(body)
        c.disconnect()


class Publisher(Worker):
    """Streams QoS 1 publishes with up to `window` in flight. `make(seq)` gives (topic,
    payload); `sent` holds every seq handed to the client, `acked` every seq whose PUBACK
    (with a success reason code) arrived, `failed` seqs whose PUBACK carried an error."""

    def __init__(self, broker, name: str, make, retain=False, window=20, limit=None):
        super().__init__(name)
        self.broker = broker
        self.client_id = name
        self.make = make
        self.retain = retain
        self.window = window
        self.limit = limit
        self.sent: list[int] = []
        self.acked: list[int] = []
        self.failed: list[tuple[int, int]] = []

    def stream(self):
        c = paho_client(self.broker, self.client_id, window=self.window)
        by_mid: dict[int, int] = {}
        lock = threading.Lock()

        def on_publish(client, userdata, mid, rc, properties):
            code = rc.value if hasattr(rc, "value") else int(rc)
            with lock:
                seq = by_mid.pop(mid)
            if code < 0x80:
                self.acked.append(seq)
            else:
                self.failed.append((seq, code))

        c.on_publish = on_publish
        self.ready.set()
        seq = 0
        while not self.halt.is_set():
            while len(by_mid) < self.window and (self.limit is None or seq < self.limit):
                topic, payload = self.make(seq)
                with lock:
                    info = c.publish(topic, payload, qos=1, retain=self.retain)
                    by_mid[info.mid] = seq
                self.sent.append(seq)
                seq += 1
            self.pump(c, 0.005)
            if self.limit is not None and seq >= self.limit and not by_mid:
                break
        c.disconnect()


def run_until_killed(brokers: Brokers, broker, workers: list[Worker], progress, threshold: int,
                     timeout=15.0) -> None:
    """Starts the workers, waits until `progress()` (acknowledged items so far) reaches
    `threshold`, kills the broker with SIGKILL while they are still streaming, then checks
    every worker was cut off by the kill (not finished, not failed)."""
    for w in workers:
        w.start()
    for w in workers:
        assert w.ready.wait(10), f"{w.name} did not start"
        assert w.error is None, f"{w.name}: {w.error!r}"
    deadline = time.monotonic() + timeout
    while progress() < threshold:
        for w in workers:
            if w.error is not None:
                raise AssertionError(f"{w.name} failed before the kill: {w.error!r}")
            assert w.is_alive(), (f"{w.name} stopped before the kill (connection lost: {w.lost_reason}); "
                                  f"broker stderr:\n{broker.stderr()[-3000:]}")
        assert time.monotonic() < deadline, f"only {progress()} of {threshold} acknowledged within {timeout}s"
        time.sleep(0.01)
    brokers.crash(broker)
    for w in workers:
        w.join(10)
        w.halt.set()
    for w in workers:
        assert not w.is_alive(), f"{w.name} still running 10 s after the kill"
        assert w.error is None, f"{w.name}: {w.error!r}"
        assert w.lost, f"{w.name} was not streaming when the broker was killed"


# ---------------------------------------------------------------- on-disk log


def segments(log_dir: Path) -> list[Path]:
    """The segment files of one log directory, oldest first."""
    return sorted(log_dir.glob("*.seg"))


def read_records(seg: Path) -> list[tuple[int, bytes]]:
    """(offset, payload) of each valid record in a segment, up to the first bad one."""
    data = seg.read_bytes()
    assert data[:8] == SEG_MAGIC, f"{seg}: not a segment"
    out = []
    off = HEADER_LEN
    while off + RECORD_HEADER_LEN <= len(data):
        length, crc = struct.unpack_from("<II", data, off)
        end = off + RECORD_HEADER_LEN + length
        if end > len(data):
            break
        payload = data[off + RECORD_HEADER_LEN:end]
        if zlib.crc32(data[off:off + 4] + payload) != crc:
            break
        out.append((off, payload))
        off = end
    return out


def shadow_records(seg: Path) -> list[tuple[int, str, dict]]:
    """(offset, thing, slot) for each record of a shadows segment."""
    out = []
    for off, payload in read_records(seg):
        rec = json.loads(payload)
        out.append((off, rec["k"]["thing"], rec["s"]))
    return out


def run_to_end(workers: list[Worker], timeout=15.0, broker=None) -> None:
    """Runs workers that stop by themselves (a `limit`) and checks they all finished."""
    for w in workers:
        w.start()
    deadline = time.monotonic() + timeout
    for w in workers:
        w.join(max(0.1, deadline - time.monotonic()))
    for w in workers:
        assert not w.is_alive(), f"{w.name} did not finish within {timeout}s"
        assert w.error is None, f"{w.name}: {w.error!r}"
        assert not w.lost, (f"{w.name}: connection lost: {w.lost_reason}; broker stderr:\n"
                            f"{broker.stderr()[-3000:] if broker else ''}")


ANSI = __import__("re").compile(r"\x1b\[[0-9;]*m")


def plain_stderr(b) -> str:
    """The broker's stderr without colour codes."""
    return ANSI.sub("", b.stderr())
