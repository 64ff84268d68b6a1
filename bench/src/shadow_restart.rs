//! `shadow-restart`: how long iotcore takes to come back with many shadows in its log.
//!
//! 1. Starts iotcore with a fresh data directory (by default `[storage] durable = false`
//!    for the fill: the log written is the same, only the answers stop waiting for fsync).
//! 2. Fills it with `--shadows` shadows of about `--payload` bytes THROUGH THE SERVER:
//!    `--fill-connections` MQTT connections each publish one QoS 1 update per thing
//!    (`$aws/things/bench-{i}/shadow/update`), `--fill-window` unacknowledged at a time.
//!    A PUBACK only says the broker took the request; so at the end every connection
//!    subscribes to `get/accepted` of its last four things and GETs them on the same
//!    connection: the answers come after every earlier request of that connection reached
//!    its owner shard (one FIFO per pair of shards), and must show version 1.
//! 3. Stops the server cleanly (SIGTERM, waits for it to exit) and measures the data
//!    directory's size on disk.
//! 4. Starts it again on the same data directory (`durable = true`, the default) and
//!    measures, from the spawn, the first accepted TCP connection, the CONNACK (with the
//!    SUBSCRIBE to the GET answers), and the answer to a GET of a random shadow, checked for
//!    version 1 and its own index in the reported state. The server's
//!    "shadows recovered shard=.. shadows=.. ms=.." lines are collected from its log.
//! 5. Checks `--gets` more random shadows, stops the server, removes the directory (unless
//!    `--keep`), prints one JSON document and writes it to the output directory.

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Buf;
use iotcore_core::mqtt::QoS;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::brokers::free_port;
use crate::procstat;
use crate::proto::{self, Client, PUBACK, READ_CHUNK};
use crate::shadows::{self, encode_publish, fill_payload, scan_answers, thing};

pub struct Options {
    pub shadows: usize,
    pub iotcore_bin: PathBuf,
    pub connections: usize,
    pub window: usize,
    pub payload: usize,
    pub fill_durable: bool,
    pub shards: usize,
    pub gets: usize,
    pub threads: usize,
    pub keep: bool,
    pub out_dir: PathBuf,
    pub command_line: String,
}

const KEEP_ALIVE: u16 = 600;

struct Server {
    child: Child,
    pid: u32,
}

fn spawn(bin: &Path, config: &Path, log: &Path, dir: &Path) -> Result<Server> {
    let out = fs::File::create(log)?;
    let child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let pid = child.id();
    Ok(Server { child, pid })
}

impl Server {
    /// Polls until the MQTT port accepts a TCP connection; returns when it did.
    fn wait_listening(&mut self, addr: SocketAddr, log: &Path, limit: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("iotcore exited at start ({status}):\n{}", tail(log));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            if t0.elapsed() > limit {
                bail!(
                    "iotcore did not listen on {addr} in {limit:?}:\n{}",
                    tail(log)
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGTERM, then waits for the exit; returns the time it took and the exit status.
    fn terminate(mut self, limit: Duration) -> Result<(f64, String)> {
        let t0 = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .context("run kill")?
            .success();
        if !ok {
            bail!("kill -TERM {} failed", self.pid);
        }
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((t0.elapsed().as_secs_f64(), status.to_string()));
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("iotcore did not exit within {limit:?} of SIGTERM (killed)");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tail(path: &Path) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Bytes of every file under `dir` (apparent size) and the blocks allocated (on disk).
fn dir_size(dir: &Path) -> (u64, u64, usize) {
    use std::os::unix::fs::MetadataExt;
    let (mut len, mut disk, mut files) = (0u64, 0u64, 0usize);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                len += m.len();
                disk += m.blocks() * 512;
                files += 1;
            }
        }
    }
    (len, disk, files)
}

/// The "shadows recovered" lines of a log: (shard, shadows, ms).
fn recovered_lines(log: &Path) -> Vec<(u64, u64, u64)> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let field = |line: &str, key: &str| -> Option<u64> {
        let at = line.find(key)? + key.len();
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    text.lines()
        .filter(|l| l.contains("shadows recovered"))
        .filter_map(|l| Some((field(l, "shard=")?, field(l, "shadows=")?, field(l, "ms=")?)))
        .collect()
}

fn config_text(
    port: u16,
    admin: u16,
    http: u16,
    data: &Path,
    durable: bool,
    shards: usize,
) -> String {
    format!(
        r#"[server]
shards = {shards}

[mqtt]
bind = "127.0.0.1:{port}"

[auth]
allow_anonymous = "loopback"

[admin]
bind = "127.0.0.1:{admin}"

[http]
bind = "127.0.0.1:{http}"

[storage]
data_dir = {data:?}
durable = {durable}
"#,
        data = data.display().to_string()
    )
}

/// A small xorshift generator: the shadows to check, different on every run.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Rng(seed | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

pub fn run(o: Options) -> Result<()> {
    let (date, started) = procstat::now_utc();
    let machine = procstat::machine();
    let load_before = procstat::loadavg();
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "iotcore-bench-restart-{}-{nonce}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let data = dir.join("data");
    let result = measure(&o, &dir, &data);
    if !o.keep {
        let _ = fs::remove_dir_all(&dir);
    } else {
        eprintln!("kept {}", dir.display());
    }
    let mut doc = result?;
    if let Some(m) = doc.as_object_mut() {
        m.insert("command".into(), json!(o.command_line));
        m.insert("started".into(), json!(started));
        m.insert("machine".into(), machine);
        m.insert("load_before".into(), json!(load_before));
    }
    fs::create_dir_all(&o.out_dir)?;
    let file = o.out_dir.join(format!("{date}-shadow-restart.json"));
    fs::write(&file, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("write {}", file.display()))?;
    println!("{}", serde_json::to_string(&doc)?);
    eprintln!("wrote {}", file.display());
    Ok(())
}

fn measure(o: &Options, dir: &Path, data: &Path) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.threads.max(1))
        .enable_all()
        .build()?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (admin, http) = (free_port()?, free_port()?);
    let fill_conf = dir.join("fill.toml");
    let serve_conf = dir.join("serve.toml");
    fs::write(
        &fill_conf,
        config_text(port, admin, http, data, o.fill_durable, o.shards),
    )?;
    fs::write(
        &serve_conf,
        config_text(port, admin, http, data, true, o.shards),
    )?;

    // 1-2: fill.
    let fill_log = dir.join("fill.log");
    let mut server = spawn(&o.iotcore_bin, &fill_conf, &fill_log, dir)?;
    server.wait_listening(addr, &fill_log, Duration::from_secs(30))?;
    eprintln!(
        "filling {} shadows through {addr} ({} connections, window {}, durable = {})",
        o.shadows, o.connections, o.window, o.fill_durable
    );
    let ticks = procstat::clock_ticks();
    let meter = procstat::CpuMeter::start(ticks, Some(server.pid))?;
    let fill = rt.block_on(fill(o, addr))?;
    let fill_cpu = meter.stop()?;
    let fill_rss = procstat::rss_kib(server.pid).ok();
    eprintln!(
        "filled: {:.0} updates/s acknowledged, {:.1} s; checked {} shadows (version 1)",
        fill.acked as f64 / fill.fill_s,
        fill.fill_s,
        fill.checked
    );

    // 3: a clean stop.
    let (stop_s, stop_status) = server.terminate(Duration::from_secs(60))?;
    let (log_bytes, log_disk_bytes, log_files) = dir_size(data);
    let fill_recovered = recovered_lines(&fill_log);
    eprintln!(
        "stopped in {stop_s:.2} s ({stop_status}); data directory {:.1} MiB in {log_files} files",
        log_bytes as f64 / 1048576.0
    );

    // 4: the restart, timed from the spawn.
    std::thread::sleep(Duration::from_millis(500));
    let serve_log = dir.join("restart.log");
    let mut rng = Rng::new();
    let probe = rng.below(o.shadows);
    let t0 = Instant::now();
    let mut server = spawn(&o.iotcore_bin, &serve_conf, &serve_log, dir)?;
    let accept_s = loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "iotcore exited at restart ({status}):\n{}",
                tail(&serve_log)
            );
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            break t0.elapsed().as_secs_f64();
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("iotcore did not listen within 300 s:\n{}", tail(&serve_log));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let (connack_s, get_s, first) = rt.block_on(async {
        let mut c = shadows::connect_subscribed(
            addr,
            "restart-probe",
            KEEP_ALIVE,
            &get_filters(probe),
            QoS::AtLeastOnce,
        )
        .await?;
        let connack_s = t0.elapsed().as_secs_f64();
        let doc = get(&mut c, probe, 1).await?;
        Ok::<_, anyhow::Error>((connack_s, t0.elapsed().as_secs_f64(), doc))
    })?;
    check_doc(&first, probe)?;
    let restart_rss = procstat::rss_kib(server.pid).ok();
    eprintln!(
        "restart: accepting after {accept_s:.3} s, CONNACK+SUBACK {connack_s:.3} s, GET of bench-{probe} answered (version {}) after {get_s:.3} s",
        first["version"]
    );

    // 5: more random shadows.
    let more: Vec<usize> = (0..o.gets).map(|_| rng.below(o.shadows)).collect();
    rt.block_on(async {
        for (j, &i) in more.iter().enumerate() {
            let mut c = shadows::connect_subscribed(
                addr,
                &format!("restart-check-{j}"),
                KEEP_ALIVE,
                &get_filters(i),
                QoS::AtLeastOnce,
            )
            .await?;
            let doc = get(&mut c, i, 1).await?;
            check_doc(&doc, i)?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let recovered = recovered_lines(&serve_log);
    let (restart_stop_s, _) = server.terminate(Duration::from_secs(60))?;
    rt.shutdown_timeout(Duration::from_secs(2));

    let total_recovered: u64 = recovered.iter().map(|r| r.1).sum();
    let mut note = String::new();
    if total_recovered != o.shadows as u64 {
        let _ = write!(
            note,
            "recovered {total_recovered} shadows, expected {}",
            o.shadows
        );
    }
    Ok(json!({
        "ok": note.is_empty(),
        "note": note,
        "shadows": o.shadows,
        "payload_bytes": o.payload,
        "fill": {
            "connections": o.connections,
            "window": o.window,
            "durable": o.fill_durable,
            "acked": fill.acked,
            "seconds": fill.fill_s,
            "acked_per_s": fill.acked as f64 / fill.fill_s,
            "barrier_s": fill.barrier_s,
            "checked_version_1": fill.checked,
            "broker_cpu_pct": fill_cpu.broker_pct,
            "generator_cpu_pct": fill_cpu.generator_pct,
            "broker_rss_kib": fill_rss,
            "recovered_at_start": fill_recovered,
        },
        "stop": {"seconds": stop_s, "status": stop_status},
        "log": {
            "bytes": log_bytes,
            "disk_bytes": log_disk_bytes,
            "files": log_files,
            "bytes_per_shadow": log_bytes as f64 / o.shadows.max(1) as f64,
        },
        "restart": {
            "accepting_s": accept_s,
            "connack_s": connack_s,
            "first_get_s": get_s,
            "probe": thing(probe),
            "probe_version": first["version"],
            "recovered": recovered.iter().map(|&(shard, n, ms)| json!({"shard": shard, "shadows": n, "ms": ms})).collect::<Vec<_>>(),
            "recovered_total": total_recovered,
            "more_gets_checked": more.len(),
            "broker_rss_kib": restart_rss,
            "stop_s": restart_stop_s,
        },
        "target": "restart with 1,000,000 shadows of about 200 bytes in under 5 s",
    }))
}

fn get_filters(i: usize) -> Vec<String> {
    let base = format!("$aws/things/{}/shadow/get", thing(i));
    vec![format!("{base}/accepted"), format!("{base}/rejected")]
}

fn check_doc(doc: &Value, i: usize) -> Result<()> {
    if doc["version"].as_u64() != Some(1) {
        bail!("{}: expected version 1, got {doc}", thing(i));
    }
    if doc["state"]["reported"]["i"].as_u64() != Some(i as u64) {
        bail!("{}: reported state is not its own: {doc}", thing(i));
    }
    Ok(())
}

/// Publishes a GET of `bench-{i}` (the client is subscribed to its answers) and returns the
/// document of `get/accepted`; `get/rejected` is an error.
async fn get(c: &mut Client, i: usize, pid: u16) -> Result<Value> {
    let topic = format!("$aws/things/{}/shadow/get", thing(i));
    let req = encode_publish(
        &topic,
        QoS::AtLeastOnce,
        pid,
        br#"{"clientToken":"restart"}"#.to_vec(),
    )?;
    c.stream.write_all(&req).await?;
    let ack = proto::puback_bytes(1)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut found: Option<Result<Value>> = None;
        let mut acks = Vec::new();
        let used = scan_answers(&c.buf, |a| {
            if let Some(id) = a.id {
                proto::push_puback(&mut acks, &ack, id);
            }
            if found.is_none() {
                found = Some(if a.topic.ends_with(b"/get/accepted") {
                    serde_json::from_slice(a.payload).map_err(Into::into)
                } else {
                    Err(anyhow::anyhow!(
                        "{} answered on {}: {}",
                        thing(i),
                        String::from_utf8_lossy(a.topic),
                        String::from_utf8_lossy(a.payload)
                    ))
                });
            }
        })?;
        c.buf.advance(used);
        if !acks.is_empty() {
            c.stream.write_all(&acks).await?;
        }
        if let Some(r) = found {
            return r;
        }
        c.buf.reserve(4096);
        match tokio::time::timeout_at(deadline, c.stream.read_buf(&mut c.buf)).await {
            Err(_) => bail!("no answer to the GET of {} in 120 s", thing(i)),
            Ok(r) => {
                if r? == 0 {
                    bail!("broker closed the connection before answering a GET");
                }
            }
        }
    }
}

struct Fill {
    acked: u64,
    fill_s: f64,
    barrier_s: f64,
    checked: usize,
}

async fn fill(o: &Options, addr: SocketAddr) -> Result<Fill> {
    let acked = Arc::new(AtomicU64::new(0));
    let conns = o.connections.clamp(1, o.shadows.max(1));
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for c in 0..conns {
        let things: Vec<usize> = (c..o.shadows).step_by(conns).collect();
        let (acked, window, payload) = (acked.clone(), o.window.max(1), o.payload);
        set.spawn(async move {
            let mut client = proto::connect(addr, &format!("fill-{c}"), KEEP_ALIVE, None).await?;
            fill_one(&mut client, &things, window, payload, &acked).await?;
            Ok::<_, anyhow::Error>((client, things))
        });
    }
    let progress = {
        let acked = acked.clone();
        let total = o.shadows as u64;
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let now = acked.load(Ordering::Relaxed);
                eprintln!(
                    "  {now} / {total} acknowledged ({:.0}/s)",
                    (now - last) as f64 / 2.0
                );
                last = now;
            }
        })
    };
    let mut done = Vec::new();
    while let Some(r) = set.join_next().await {
        done.push(r??);
    }
    progress.abort();
    let fill_s = t0.elapsed().as_secs_f64();
    // The barrier: on each connection, GETs of its last things.
    let t1 = Instant::now();
    let mut set = JoinSet::new();
    for (mut client, things) in done {
        set.spawn(async move {
            let last: Vec<usize> = things.iter().rev().take(4).copied().collect();
            let filters: Vec<String> = last.iter().flat_map(|&i| get_filters(i)).collect();
            shadows::subscribe(&mut client, &filters, QoS::AtLeastOnce).await?;
            for (j, &i) in last.iter().enumerate() {
                let doc = get(&mut client, i, 60_000 + j as u16).await?;
                check_doc(&doc, i)?;
            }
            Ok::<_, anyhow::Error>(last.len())
        });
    }
    let mut checked = 0;
    while let Some(r) = set.join_next().await {
        checked += r??;
    }
    Ok(Fill {
        acked: acked.load(Ordering::Relaxed),
        fill_s,
        barrier_s: t1.elapsed().as_secs_f64(),
        checked,
    })
}

/// One fill connection: a QoS 1 update per thing, `window` unacknowledged at a time.
pub(crate) async fn fill_one(
    c: &mut Client,
    things: &[usize],
    window: usize,
    payload: usize,
    acked: &AtomicU64,
) -> Result<()> {
    let mut out: Vec<u8> = Vec::with_capacity(window * (payload + 64));
    let mut next = 0usize;
    let mut inflight = 0usize;
    let mut pid: u16 = 0;
    while next < things.len() || inflight > 0 {
        while inflight < window && next < things.len() {
            let i = things[next];
            pid = if pid >= 50_000 { 1 } else { pid + 1 };
            let topic = format!("$aws/things/{}/shadow/update", thing(i));
            out.extend_from_slice(&encode_publish(
                &topic,
                QoS::AtLeastOnce,
                pid,
                fill_payload(i, payload),
            )?);
            next += 1;
            inflight += 1;
        }
        if !out.is_empty() {
            c.stream.write_all(&out).await.context("fill write")?;
            out.clear();
        }
        c.buf.reserve(READ_CHUNK);
        let n = tokio::time::timeout(Duration::from_secs(60), c.stream.read_buf(&mut c.buf))
            .await
            .context("no PUBACK in 60 s")??;
        if n == 0 {
            bail!("broker closed a fill connection");
        }
        let mut acks = 0usize;
        let used = proto::scan(&c.buf, |s| {
            if s.kind == PUBACK {
                acks += 1;
            }
        })?;
        c.buf.advance(used);
        inflight = inflight.saturating_sub(acks);
        acked.fetch_add(acks as u64, Ordering::Relaxed);
    }
    Ok(())
}
