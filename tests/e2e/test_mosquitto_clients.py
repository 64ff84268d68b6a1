"""Interop with the mosquitto_pub / mosquitto_sub command-line clients."""
import shutil
import subprocess
import time

import pytest

pytestmark = pytest.mark.skipif(not shutil.which("mosquitto_sub"), reason="mosquitto-clients not installed")


def _sub(broker, *args):
    return subprocess.Popen(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _pub(broker, *args):
    subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), *args],
                   check=True, timeout=10, capture_output=True)


def _pub_until_received(broker, proc, pub_args, timeout=10.0):
    """mosquitto_sub may not be subscribed yet: publish repeatedly until it exits (-C 1)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        _pub(broker, *pub_args)
        try:
            proc.wait(0.3)
        except subprocess.TimeoutExpired:
            pass
    out, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err
    return out.decode()


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
@pytest.mark.parametrize("qos", ["0", "1", "2"])
def test_pub_sub(broker, uid, version, qos):
    t = f"{uid}/t"
    proc = _sub(broker, "-t", t, "-C", "1", "-W", "5", "-V", version, "-q", qos)
    out = _pub_until_received(broker, proc, ["-t", t, "-m", "hello", "-V", version, "-q", qos])
    assert out == "hello\n"


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_retained(broker, uid, version):
    t = f"{uid}/r"
    _pub(broker, "-t", t, "-m", "kept", "-r", "-q", "1", "-V", version)
    out = subprocess.run(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-t", t,
                          "-C", "1", "-W", "5", "-V", version, "-v"], capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode() == f"{t} kept\n"
    # --retained-only style check: delete, then nothing arrives within 1 s (-W 1 => exit code 27)
    _pub(broker, "-t", t, "-n", "-r", "-q", "1", "-V", version)
    out = subprocess.run(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-t", t,
                          "-C", "1", "-W", "1", "-V", version], capture_output=True, timeout=10)
    assert out.stdout == b""


def test_mqttv5_user_property(broker, uid):
    t = f"{uid}/up"
    proc = _sub(broker, "-t", t, "-C", "1", "-W", "5", "-V", "mqttv5", "-F", "%P %p")
    out = _pub_until_received(broker, proc, ["-t", t, "-m", "body", "-V", "mqttv5", "-D", "publish", "user-property", "k", "v"])
    assert out == "k:v body\n"


def test_many_messages_from_file(broker, uid, tmp_path):
    t = f"{uid}/lines"
    f = tmp_path / "lines.txt"
    f.write_text("".join(f"line{i}\n" for i in range(50)))
    proc = _sub(broker, "-t", t, "-C", "50", "-W", "10", "-q", "1")
    time.sleep(0.5)  # give mosquitto_sub time to subscribe (no way to observe it)
    subprocess.run(
        ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-t", t, "-l", "-q", "1"],
        input=f.read_bytes(), check=True, timeout=10, capture_output=True)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert out.decode().splitlines() == [f"line{i}" for i in range(50)]
