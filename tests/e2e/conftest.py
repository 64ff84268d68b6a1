"""Fixtures for the iotcore end-to-end suite.

E2E_BROKER=iotcore (default) runs `$IOTCORE_BIN serve --config FILE`
(default <repo>/target/debug/iotcore). E2E_BROKER=mosquitto runs Mosquitto 2 with an
equivalent config so the standard-MQTT tests can be validated against a known-good
broker; tests marked @pytest.mark.iotcore are skipped there.
"""
from __future__ import annotations

import itertools
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

BROKER_KIND = os.environ.get("E2E_BROKER", "iotcore")
REPO = Path(__file__).resolve().parents[2]
IOTCORE_BIN = os.environ.get("IOTCORE_BIN", str(REPO / "target" / "debug" / "iotcore"))
MOSQUITTO_BIN = os.environ.get("MOSQUITTO_BIN", "mosquitto")
IS_MOSQUITTO = BROKER_KIND == "mosquitto"

# Defaults the fixture always applies on top of the broker's own defaults.
BASE_CONFIG = {
    "server": {"shards": 2},
    "mqtt": {},
    "auth": {},
    "limits": {"keep_alive_min_secs": 1, "connect_timeout_secs": 2},
}

# Which section each config key belongs to (so overrides can be given flat).
SECTION = {
    "shards": "server",
    "transparent_huge_pages": "server",
    "thing_affinity": "server",
    "park_idle_ms": "server",
    "bind": "mqtt",
    "allow_anonymous": "auth",
    "data_dir": "storage",
    "durable": "storage",
    "segment_bytes": "storage",
    "compact_after_bytes": "storage",
    "max_state_bytes": "shadows",
    "max_depth": "shadows",
    "max_client_token_bytes": "shadows",
    "max_in_flight_per_thing": "shadows",
    "max_page_size": "shadows",
    "max_body_bytes": "http",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "iotcore: iotcore-specific behaviour (skipped under E2E_BROKER=mosquitto)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(60))
        if IS_MOSQUITTO and item.get_closest_marker("iotcore") is not None:
            item.add_marker(pytest.mark.skip(reason="iotcore-specific (E2E_BROKER=mosquitto)"))


_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port, never the same one twice in this process (so the MQTT and admin
    listeners of one broker cannot collide)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port")


def wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited early with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"broker did not accept on {host}:{port} within {timeout}s")


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Broker:
    """A running broker process. `host`, `port`, `proc`, `limits` (effective values we set)."""

    def __init__(self, workdir: Path, overrides: dict):
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.kind = BROKER_KIND
        cfg = {k: dict(v) for k, v in BASE_CONFIG.items()}
        for key, value in overrides.items():
            cfg.setdefault(SECTION.get(key, "limits"), {})[key] = value
        cfg["mqtt"]["bind"] = f"{self.host}:{self.port}"
        # Not in the original contract: the broker also has an admin HTTP listener
        # ([admin] bind, default 127.0.0.1:9883). Give each instance its own port so several
        # brokers (and a developer's own) can run at once. E2E_NO_ADMIN_SECTION=1 leaves it out.
        if not os.environ.get("E2E_NO_ADMIN_SECTION"):
            cfg.setdefault("admin", {})["bind"] = f"{self.host}:{free_port()}"
        # The shadow REST API ([http] bind, default 127.0.0.1:8080) and the data directory
        # ([storage] data_dir, default ./iotcore-data): each instance gets its own.
        self.http_port = free_port()
        if not IS_MOSQUITTO:
            cfg.setdefault("http", {})["bind"] = f"{self.host}:{self.http_port}"
            self.data_dir = workdir / f"data-{self.port}"
            cfg.setdefault("storage", {}).setdefault("data_dir", str(self.data_dir))
        self.config = cfg
        self.overrides = overrides
        self.stderr_path = workdir / f"broker-{self.port}.stderr"
        self.stdout_path = workdir / f"broker-{self.port}.stdout"
        if IS_MOSQUITTO:
            conf = workdir / f"mosquitto-{self.port}.conf"
            conf.write_text(self._mosquitto_conf())
            cmd = [MOSQUITTO_BIN, "-c", str(conf)]
        else:
            conf = workdir / f"iotcore-{self.port}.toml"
            conf.write_text(self._toml())
            cmd = [IOTCORE_BIN, "serve", "--config", str(conf)]
            if not Path(IOTCORE_BIN).exists():
                pytest.fail(f"iotcore binary not found at {IOTCORE_BIN} (build it or set IOTCORE_BIN)")
        self.conf_path = conf
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err, env=env)
        try:
            wait_port(self.host, self.port, self.proc)
        except Exception:
            self.kill()
            raise RuntimeError(f"broker failed to start:\n{self.stderr()}")

    def _toml(self) -> str:
        lines = []
        for section, values in self.config.items():
            lines.append(f"[{section}]")
            for k, v in values.items():
                lines.append(f"{k} = {_toml_value(v)}")
            lines.append("")
        return "\n".join(lines)

    def _mosquitto_conf(self) -> str:
        o = self.overrides
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            f"max_topic_alias {o.get('topic_alias_maximum', 8)}",
        ]
        mapping = {
            "max_packet_bytes": "max_packet_size",
            "max_queued_messages": "max_queued_messages",
            "receive_maximum": "max_inflight_messages",
            "keep_alive_max_secs": "max_keepalive",
            "max_payload_bytes": "message_size_limit",
        }
        for k, v in o.items():
            if k in mapping:
                lines.append(f"{mapping[k]} {v}")
        return "\n".join(lines) + "\n"

    def stderr(self) -> str:
        try:
            if not self._err.closed:
                self._err.flush()
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._err.close()
        self._out.close()

    def stop(self) -> None:
        """SIGTERM, expect exit code 0 within 10 s and no panic in stderr."""
        try:
            assert self.proc.poll() is None, f"broker died during the test (rc={self.proc.returncode}):\n{self.stderr()[-4000:]}"
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise AssertionError("broker did not exit within 10 s of SIGTERM")
            assert rc == 0, f"broker exit code {rc} after SIGTERM:\n{self.stderr()[-4000:]}"
        finally:
            self.kill()
        assert "panicked" not in self.stderr(), f"broker panicked:\n{self.stderr()[-4000:]}"


@pytest.fixture
def broker_factory(tmp_path):
    """broker_factory(**limit_overrides) -> Broker. Stopped (and checked) at teardown."""
    started: list[Broker] = []

    def make(**overrides) -> Broker:
        b = Broker(tmp_path, overrides)
        started.append(b)
        return b

    yield make
    errors = []
    for b in started:
        try:
            b.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()


# ---------------------------------------------------------------- paho wrapper

_ids = itertools.count()


def props(packet_type, **kw) -> Properties:
    """props(PacketTypes.PUBLISH, MessageExpiryInterval=5, UserProperty=[("a","b")])"""
    p = Properties(packet_type)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def rc_value(rc) -> int:
    if rc is None:
        return -1
    return rc.value if hasattr(rc, "value") else int(rc)


class TClient:
    """Synchronous-ish wrapper around a paho 2.x client with its own network thread
    (no automatic reconnect)."""

    def __init__(self, host, port, client_id=None, version=5, clean=True, keepalive=30,
                 connect_props: dict | None = None, will: dict | None = None,
                 manual_ack=False, do_connect=True, expect_ok=True, timeout=5.0):
        self.host, self.port = host, port
        self.version = version
        self.client_id = client_id if client_id is not None else f"c{next(_ids)}-{os.getpid()}"
        proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        kw = {}
        if version != 5:
            kw["clean_session"] = clean
        self.c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                             client_id=self.client_id, protocol=proto, manual_ack=manual_ack, **kw)
        self.clean = clean
        self.keepalive = keepalive
        self.connect_props = connect_props
        self.messages: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack = None  # (rc:int, session_present:bool, properties)
        self.disconnect_rc = None
        self.disconnect_props = None
        self._acks: dict[int, tuple] = {}
        self._ack_cv = threading.Condition()
        self._thread = None
        self._stop = False
        c = self.c
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_publish = self._on_publish
        if will:
            wp = None
            if will.get("props"):
                wp = props(PacketTypes.WILLMESSAGE, **will["props"])
            c.will_set(will["topic"], will.get("payload", b""), will.get("qos", 0), will.get("retain", False), properties=wp)
        if do_connect:
            self.connect(expect_ok=expect_ok, timeout=timeout)

    # -- callbacks
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = (rc_value(reason_code), bool(flags.session_present), properties)
        # paho does not honour the server's Receive Maximum by itself
        try:
            rm = properties.ReceiveMaximum
        except Exception:
            rm = None
        if rm:
            client._max_inflight_messages = min(20, rm)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_rc = rc_value(reason_code)
        self.disconnect_props = properties
        self.disconnected.set()
        self.connected.set()  # unblock connect() waiters on refusal

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def _ack(self, mid, value):
        with self._ack_cv:
            self._acks[mid] = value
            self._ack_cv.notify_all()

    def _on_subscribe(self, client, userdata, mid, rcs, properties):
        self._ack(mid, [rc_value(r) for r in rcs])

    def _on_unsubscribe(self, client, userdata, mid, rcs, properties):
        self._ack(mid, [rc_value(r) for r in rcs] if rcs else [])

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._ack(mid, rc_value(reason_code))

    def _wait_ack(self, mid, timeout):
        deadline = time.monotonic() + timeout
        with self._ack_cv:
            while mid not in self._acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no ack for mid {mid} within {timeout}s")
                self._ack_cv.wait(left)
            return self._acks.pop(mid)

    # -- network thread
    def _loop(self):
        while not self._stop:
            try:
                rc = self.c.loop(timeout=0.05)
            except Exception as e:  # surface callback bugs instead of hanging
                self.loop_error = e
                self.disconnected.set()
                self.connected.set()
                raise
            if rc != mqtt.MQTT_ERR_SUCCESS:
                break

    # -- API
    def connect(self, expect_ok=True, timeout=5.0, clean=None, connect_props=None):
        self.connected.clear()
        self.disconnected.clear()
        self.connack = None
        kw = {}
        if self.version == 5:
            kw["clean_start"] = self.clean if clean is None else clean
            cp = connect_props if connect_props is not None else self.connect_props
            if cp:
                kw["properties"] = props(PacketTypes.CONNECT, **cp)
        self.c.connect(self.host, self.port, self.keepalive, **kw)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        assert self.connected.wait(timeout), "no CONNACK"
        if expect_ok:
            assert self.connack is not None and self.connack[0] == 0, f"connect refused: {self.connack} / disconnect {self.disconnect_rc}"
        return self.connack

    @property
    def session_present(self):
        return self.connack[1]

    @property
    def connack_props(self):
        return self.connack[2]

    def subscribe(self, topic, qos=0, options: SubscribeOptions | None = None, sub_props: dict | None = None,
                  timeout=5.0):
        """topic: filter string, or list of (filter, qos|SubscribeOptions). Returns reason codes."""
        p = props(PacketTypes.SUBSCRIBE, **sub_props) if sub_props else None
        if isinstance(topic, list):
            rc, mid = self.c.subscribe(topic, properties=p)
        elif options is not None:
            rc, mid = self.c.subscribe(topic, options=options, properties=p)
        else:
            rc, mid = self.c.subscribe(topic, qos, properties=p)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        return self._wait_ack(mid, timeout)

    def unsubscribe(self, topic, timeout=5.0):
        rc, mid = self.c.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        return self._wait_ack(mid, timeout)

    def publish(self, topic, payload=b"", qos=0, retain=False, pub_props: dict | None = None,
                wait=True, timeout=5.0):
        """Returns the PUBACK/PUBREC reason code (v5) or 0."""
        p = props(PacketTypes.PUBLISH, **pub_props) if pub_props else None
        info = self.c.publish(topic, payload, qos, retain, properties=p)
        if not wait:
            return info
        return self._wait_ack(info.mid, timeout)

    def get(self, timeout=5.0) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.client_id}: no message within {timeout}s") from None

    def get_n(self, n, timeout=10.0) -> list:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.client_id}: got {len(out)} of {n} messages within {timeout}s")
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                pass
        return out

    def expect_none(self, wait=0.5):
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"{self.client_id}: unexpected message {m.topic} {m.payload!r}")

    def drain(self) -> list:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def wait_disconnected(self, timeout=5.0) -> int:
        assert self.disconnected.wait(timeout), f"{self.client_id}: still connected after {timeout}s"
        return self.disconnect_rc

    def disconnect(self, rc=0, disc_props: dict | None = None):
        """Clean DISCONNECT with reason code `rc` (v5)."""
        if self.disconnected.is_set():
            self.stop()
            return
        kw = {}
        if self.version == 5:
            from paho.mqtt.reasoncodes import ReasonCode
            kw["reasoncode"] = ReasonCode(PacketTypes.DISCONNECT, identifier=rc)
            if disc_props:
                kw["properties"] = props(PacketTypes.DISCONNECT, **disc_props)
        self.c.disconnect(**kw)
        self.disconnected.wait(3)
        self.stop()

    def drop(self):
        """Abrupt network close without DISCONNECT (triggers will / CONNECTION_LOST)."""
        self._stop = True
        if self._thread:
            self._thread.join(2)
        s = self.c.socket()
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def stop(self):
        self._stop = True
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(2)

    def close(self):
        if not self.disconnected.is_set() and self.connack and self.connack[0] == 0:
            try:
                self.disconnect()
            except Exception:
                pass
        self.stop()
        try:
            s = self.c.socket()
            if s is not None:
                s.close()
        except Exception:
            pass


@pytest.fixture
def client_factory(broker):
    """client_factory(client_id=None, version=5, **kw) -> connected TClient on `broker`."""
    made: list[TClient] = []

    def make(client_id=None, version=5, broker_=None, **kw) -> TClient:
        b = broker_ or broker
        c = TClient(b.host, b.port, client_id=client_id, version=version, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def uid(request):
    """A unique, readable prefix for topics/client ids in this test."""
    import re
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:40]
    return f"{name}-{next(_ids)}"


def roundtrip_ok(broker: Broker, timeout=5.0, version=5) -> None:
    """Assert that a fresh subscriber receives a fresh publisher's message (broker still healthy)."""
    tag = f"health/{next(_ids)}"
    sub = TClient(broker.host, broker.port, version=version)
    pub = TClient(broker.host, broker.port, version=version)
    try:
        sub.subscribe(tag, 1)
        pub.publish(tag, b"ping", 1)
        m = sub.get(timeout)
        assert m.payload == b"ping"
    finally:
        sub.close()
        pub.close()


def poll(predicate, timeout=5.0, interval=0.02, msg="condition not met"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"{msg} within {timeout}s")


def expect_server_disconnect(raw, codes=(), timeout=5.0):
    """Read until the broker closes `raw`. For MQTT 5 with `codes` given, iotcore must send a
    DISCONNECT whose reason code is in `codes` first; Mosquitto may also just close.
    Returns the packets read before the close."""
    from mqtt_raw import DISCONNECT
    pkts = raw.wait_closed(timeout)
    discs = [p for p in pkts if p.type == DISCONNECT]
    if raw.version == 5 and codes:
        if discs:
            assert discs[-1].rc in codes, f"DISCONNECT reason 0x{discs[-1].rc:02x}, expected one of {[hex(c) for c in codes]}"
        else:
            assert IS_MOSQUITTO, f"connection closed without DISCONNECT (expected one of {[hex(c) for c in codes]}); got {pkts}"
    return pkts
