//! Starting the brokers under comparison: each fresh, on its own free loopback port, with a
//! configuration written into its own temporary directory, killed after its run.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Iotcore,
    Mosquitto,
    Rumqttd,
    Rmqtt,
    Nats,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Iotcore,
        Kind::Mosquitto,
        Kind::Rumqttd,
        Kind::Rmqtt,
        Kind::Nats,
    ];

    pub fn parse(s: &str) -> Result<Kind> {
        Ok(match s {
            "iotcore" => Kind::Iotcore,
            "mosquitto" => Kind::Mosquitto,
            "rumqttd" => Kind::Rumqttd,
            "rmqtt" | "rmqttd" => Kind::Rmqtt,
            "nats" | "nats-server" => Kind::Nats,
            other => bail!("unknown broker `{other}` (iotcore, mosquitto, rumqttd, rmqtt, nats)"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Iotcore => "iotcore",
            Kind::Mosquitto => "mosquitto",
            Kind::Rumqttd => "rumqttd",
            Kind::Rmqtt => "rmqtt",
            Kind::Nats => "nats",
        }
    }

    fn binary_name(self) -> &'static str {
        match self {
            Kind::Iotcore => "iotcore",
            Kind::Mosquitto => "mosquitto",
            Kind::Rumqttd => "rumqttd",
            Kind::Rmqtt => "rmqttd",
            Kind::Nats => "nats-server",
        }
    }
}

/// Finds a binary on PATH, in ~/.cargo/bin, or in the sbin directories (Debian installs
/// mosquitto in /usr/sbin, which is not on every PATH).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// The binary for `kind`; iotcore's is given (or sits next to this executable).
pub fn locate(kind: Kind, iotcore_bin: Option<&Path>) -> Option<PathBuf> {
    match kind {
        Kind::Iotcore => match iotcore_bin {
            Some(p) => p.is_file().then(|| p.to_path_buf()),
            None => std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|d| d.join("iotcore")))
                .filter(|p| p.is_file())
                .or_else(|| find_binary("iotcore")),
        },
        k => find_binary(k.binary_name()),
    }
}

fn first_line(cmd: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// The version `cargo install --list` records for a crate.
fn cargo_installed_version(krate: &str) -> Option<String> {
    let out = Command::new("cargo")
        .args(["install", "--list"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with(&format!("{krate} v")))
        .map(|l| l.trim_end_matches(':').to_string())
}

pub fn version(kind: Kind, bin: &Path) -> String {
    let v = match kind {
        Kind::Iotcore => first_line(bin, &["--version"]),
        // `mosquitto -h` prints "mosquitto version 2.0.11" first.
        Kind::Mosquitto => first_line(bin, &["-h"]),
        Kind::Nats => first_line(bin, &["--version"]),
        Kind::Rumqttd => {
            cargo_installed_version("rumqttd").or_else(|| first_line(bin, &["--version"]))
        }
        Kind::Rmqtt => cargo_installed_version("rmqttd").or_else(|| first_line(bin, &["-V"])),
    };
    v.unwrap_or_else(|| "unknown".into())
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running broker; killed (and its directory removed) on drop.
pub struct Running {
    pub addr: SocketAddr,
    pub pid: u32,
    /// iotcore's Prometheus endpoint, when it has one.
    pub metrics_url: Option<String>,
    child: Child,
    dir: PathBuf,
}

impl Running {
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Options of `compare` that shape the brokers' configurations.
#[derive(Debug, Clone)]
pub struct Settings {
    pub iotcore_admin: bool,
    /// iotcore shards (0 = one per core).
    pub iotcore_shards: usize,
    /// shadows: iotcore's `[storage] durable`, with a fresh `data_dir` in the run's
    /// temporary directory and the shadow REST API on a free port. `None`: neither section
    /// is written (the other scenarios).
    pub iotcore_durable: Option<bool>,
}

fn make_dir(kind: Kind) -> Result<PathBuf> {
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "iotcore-bench-{}-{}-{nonce}",
        kind.name(),
        std::process::id()
    ));
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// Writes the configuration and returns the command line arguments.
fn configure(
    kind: Kind,
    dir: &Path,
    port: u16,
    admin_port: Option<u16>,
    s: &Settings,
) -> Result<Vec<String>> {
    let conf = |name: &str, text: String| -> Result<String> {
        let p = dir.join(name);
        fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
        Ok(p.display().to_string())
    };
    Ok(match kind {
        Kind::Iotcore => {
            let mut text = format!(
                r#"[server]
shards = {shards}

[mqtt]
bind = "127.0.0.1:{port}"

[auth]
allow_anonymous = "loopback"

[limits]
keep_alive_min_secs = 1
max_queued_messages = 10000
max_outbound_bytes = 8388608
"#,
                shards = s.iotcore_shards
            );
            if let Some(a) = admin_port {
                text.push_str(&format!("\n[admin]\nbind = \"127.0.0.1:{a}\"\n"));
            }
            if let Some(durable) = s.iotcore_durable {
                text.push_str(&format!(
                    "\n[http]\nbind = \"127.0.0.1:{http}\"\n\n[storage]\ndata_dir = {data:?}\ndurable = {durable}\n",
                    http = free_port()?,
                    data = dir.join("data").display().to_string(),
                ));
            }
            vec![
                "serve".into(),
                "--config".into(),
                conf("iotcore.toml", text)?,
            ]
        }
        Kind::Mosquitto => {
            let text = format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 10000\n\
                 max_inflight_messages 100\nset_tcp_nodelay true\npersistence false\n\
                 max_connections -1\nlog_dest stderr\nlog_type error\nlog_type warning\n"
            );
            vec!["-c".into(), conf("mosquitto.conf", text)?]
        }
        Kind::Nats => {
            let client = free_port()?;
            let text = format!(
                "server_name: iotcore_bench\nlisten: 127.0.0.1:{client}\n\
                 jetstream {{\n  store_dir: \"{}\"\n}}\n\
                 mqtt {{\n  listen: 127.0.0.1:{port}\n}}\n",
                dir.join("js").display()
            );
            vec!["-c".into(), conf("nats.conf", text)?]
        }
        Kind::Rmqtt => {
            let grpc = free_port()?;
            let text = format!(
                r#"[log]
to = "console"
level = "warn"

[rpc]
server_addr = "127.0.0.1:{grpc}"

[plugins]
dir = "{plugins}"
# no HTTP API (it would take port 6060) and no ACL (the other brokers run without one)
disabled_default_startups = ["rmqtt-http-api", "rmqtt-acl"]

[listener.tcp.bench]
addr = "127.0.0.1:{port}"
allow_anonymous = true
nodelay = true
max_inflight = 100
max_mqueue_len = 10000
max_connections = 1024000
max_handshaking_limit = 1000
"#,
                plugins = dir.join("plugins").display()
            );
            fs::create_dir_all(dir.join("plugins"))?;
            vec!["-f".into(), conf("rmqtt.toml", text)?]
        }
        Kind::Rumqttd => {
            // rumqttd's own example, with the listener on our port, no console and no
            // delay between accepts (its example has 1 ms, which caps connects at 1k/s).
            let text = format!(
                r#"id = 0

[router]
id = 0
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
"#
            );
            vec!["--config".into(), conf("rumqttd.toml", text)?]
        }
    })
}

fn log_tail(path: &Path) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Starts `kind` and waits until its MQTT port accepts connections.
pub fn start(kind: Kind, bin: &Path, s: &mut Settings) -> Result<Running> {
    let try_admin = kind == Kind::Iotcore && s.iotcore_admin;
    match start_once(kind, bin, s, try_admin) {
        Ok(r) => Ok(r),
        Err(e) if try_admin && format!("{e:#}").contains("admin") => {
            // An iotcore without the `[admin]` section yet: run it without metrics.
            eprintln!("note: this iotcore does not accept [admin] yet; running it without metrics");
            s.iotcore_admin = false;
            start_once(kind, bin, s, false)
        }
        Err(e) => Err(e),
    }
}

fn start_once(kind: Kind, bin: &Path, s: &Settings, admin: bool) -> Result<Running> {
    let dir = make_dir(kind)?;
    let port = free_port()?;
    let admin_port = if admin { Some(free_port()?) } else { None };
    let args = configure(kind, &dir, port, admin_port, s)?;
    let log = dir.join("broker.log");
    let out = fs::File::create(&log)?;
    let child = Command::new(bin)
        .args(&args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut running = Running {
        addr,
        pid: child.id(),
        metrics_url: admin_port.map(|a| format!("http://127.0.0.1:{a}/metrics")),
        child,
        dir,
    };
    let t0 = Instant::now();
    loop {
        if let Some(status) = running.child.try_wait()? {
            let tail = log_tail(&log);
            bail!("{} exited at start ({status}):\n{tail}", kind.name());
        }
        let mqtt_up = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
        let admin_up = admin_port.is_none_or(|a| {
            TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], a)),
                Duration::from_millis(200),
            )
            .is_ok()
        });
        if mqtt_up && admin_up {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let tail = log_tail(&log);
            bail!(
                "{} did not listen on {addr} within 30 s:\n{tail}",
                kind.name()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Whatever the broker does right after binding (JetStream recovery, plugins) settles.
    std::thread::sleep(Duration::from_millis(300));
    if let Some(status) = running.child.try_wait()? {
        bail!(
            "{} exited at start ({status}):\n{}",
            kind.name(),
            log_tail(&log)
        );
    }
    Ok(running)
}
