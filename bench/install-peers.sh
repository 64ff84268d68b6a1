#!/usr/bin/env bash
# Installs the peer brokers that `iotcore-bench compare` runs beside iotcore.
# Each peer is optional: a failure is reported and the script goes on.
# Usage: bench/install-peers.sh [mosquitto] [nats] [rumqttd] [rmqttd] [inferno]   (default: all but inferno)
set -u

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(mosquitto nats rumqttd rmqttd)

ok=()
failed=()
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_updated=0

apt_install() {
    if [ $apt_updated -eq 0 ]; then
        $SUDO apt-get update -qq || true
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/$1" ]; }

# `cargo install --locked` first (the versions the crate was released with); if that fails
# (an old lock can pin a dependency that a newer rustc rejects, as rumqttd 0.20's metrics
# 0.22.1 is on rustc >= 1.89), once more letting cargo pick compatible newer versions.
cargo_install() {
    cargo install --locked "$1" && return 0
    echo "-- $1: --locked build failed; retrying with fresh dependency resolution" >&2
    cargo install "$1"
}

install_one() {
    case "$1" in
    mosquitto)
        have mosquitto || [ -x /usr/sbin/mosquitto ] && { echo "mosquitto: present"; return 0; }
        apt_install mosquitto
        # the Debian package starts a system service on 1883; the harness uses its own ports
        $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
        ;;
    nats)
        have nats-server && { echo "nats-server: present"; return 0; }
        apt_install nats-server
        ;;
    rumqttd)
        have rumqttd && { echo "rumqttd: present"; return 0; }
        cargo_install rumqttd
        ;;
    rmqttd)
        have rmqttd && { echo "rmqttd: present"; return 0; }
        # rmqtt builds gRPC stubs (protoc) and a C library (cmake)
        apt_install protobuf-compiler cmake
        cargo_install rmqttd
        ;;
    inferno)
        have inferno-flamegraph && { echo "inferno: present"; return 0; }
        cargo_install inferno
        ;;
    *)
        echo "unknown peer: $1" >&2
        return 1
        ;;
    esac
}

for p in "${want[@]}"; do
    echo "== $p"
    if install_one "$p"; then ok+=("$p"); else failed+=("$p"); echo "!! $p: install failed, continuing" >&2; fi
done

echo "installed or present: ${ok[*]:-none}"
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
exit 0
