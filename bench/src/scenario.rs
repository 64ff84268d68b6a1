//! The scenarios, each run once against one already-running broker.
//!
//! Throughput scenarios (`pairs`, `fanout`, `fanin`) run on a tokio multi-thread runtime:
//! every client is one task; publishers write batches of pre-encoded packets (QoS 0: one
//! block of `batch` packets per syscall; QoS 1: everything the in-flight window allows per
//! syscall, then one read of PUBACKs), subscribers read 64 KiB at a time and answer QoS 1
//! deliveries with one write of all their PUBACKs per read. `latency` runs on two plain
//! threads (a publisher that sleeps to a schedule, a subscriber), `connections` opens many
//! idle clients from a few tasks.
//!
//! Everything is bounded in time: each task has a hard deadline, and the runtime is shut
//! down at the end of the run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Buf;
use iotcore_core::mqtt::QoS;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout_at};

use crate::procstat::{self, CpuMeter};
use crate::proto::{self, Client, Template, PUBACK, PUBLISH, READ_CHUNK};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Pairs,
    Fanout,
    Fanin,
    Latency,
    Connections,
    Shadows,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Pairs,
        Scenario::Fanout,
        Scenario::Fanin,
        Scenario::Latency,
        Scenario::Connections,
        Scenario::Shadows,
    ];

    pub fn parse(s: &str) -> Result<Scenario> {
        Ok(match s {
            "pairs" => Scenario::Pairs,
            "fanout" | "fan-out" => Scenario::Fanout,
            "fanin" | "fan-in" => Scenario::Fanin,
            "latency" => Scenario::Latency,
            "connections" => Scenario::Connections,
            "shadows" => Scenario::Shadows,
            other => {
                bail!(
                    "unknown scenario `{other}` (pairs, fanout, fanin, latency, connections, shadows)"
                )
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pairs => "pairs",
            Scenario::Fanout => "fanout",
            Scenario::Fanin => "fanin",
            Scenario::Latency => "latency",
            Scenario::Connections => "connections",
            Scenario::Shadows => "shadows",
        }
    }
}

/// One run's parameters.
#[derive(Debug, Clone)]
pub struct Params {
    pub scenario: Scenario,
    pub addr: SocketAddr,
    pub qos: QoS,
    pub payload: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// pairs: P; fanin: P publishers.
    pub publishers: usize,
    /// fanout: S.
    pub subscribers: usize,
    /// latency: msgs/s. Throughput scenarios: a cap on the total publish rate (0 = none).
    pub rate: u64,
    /// connections: N.
    pub connections: usize,
    /// QoS 1 publishes in flight per publisher.
    pub inflight: usize,
    /// QoS 0 packets per write (0 = about 32 KiB worth).
    pub batch: usize,
    /// Worker threads of the generator's runtime.
    pub threads: usize,
    /// Concurrent CONNECTs while setting up.
    pub connect_concurrency: usize,
    /// The broker's pid, for its CPU and memory.
    pub broker_pid: Option<u32>,
    /// Client id prefix (unique per run, so runs never take over each other's sessions).
    pub id_prefix: String,
    /// shadows: N devices (each updates its own shadow, `inflight` requests outstanding).
    pub devices: usize,
    /// shadows: each device's client id is its thing name (AWS's recommendation, and what
    /// iotcore's thing affinity serves best); false: `<id_prefix>-d<i>`.
    pub thing_client_ids: bool,
    /// shadows: every device's shadow exists before the devices connect (a fleet in its
    /// steady state, written once through a separate connection); false: a new fleet, whose
    /// shadows the measured updates create.
    pub existing_shadows: bool,
    /// shadows: the broker's `[storage] durable`, when the harness set it (compare).
    pub durable: Option<bool>,
}

impl Params {
    pub fn describe(&self) -> Value {
        let mut v = json!({
            "scenario": self.scenario.name(),
            "addr": self.addr.to_string(),
            "warmup_s": self.warmup.as_secs_f64(),
            "duration_s": self.duration.as_secs_f64(),
        });
        let qos = self.qos as u8;
        let extra = match self.scenario {
            Scenario::Pairs => {
                json!({"qos": qos, "payload": self.payload, "pairs": self.publishers, "rate_cap": self.rate})
            }
            Scenario::Fanout => {
                json!({"qos": qos, "payload": self.payload, "subscribers": self.subscribers, "rate_cap": self.rate})
            }
            Scenario::Fanin => {
                json!({"qos": qos, "payload": self.payload, "publishers": self.publishers, "rate_cap": self.rate})
            }
            Scenario::Latency => json!({"qos": qos, "payload": self.payload, "rate": self.rate}),
            Scenario::Connections => json!({"connections": self.connections}),
            Scenario::Shadows => json!({
                "qos": qos,
                "payload": self.payload,
                "devices": self.devices,
                "inflight_per_device": self.inflight,
                "client_ids": if self.thing_client_ids { "thing" } else { "prefixed" },
                "fleet": if self.existing_shadows { "existing" } else { "new" },
                "durable": self.durable,
            }),
        };
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    }

    /// Keep-alive asked for: longer than the whole run, so idle clients never need PINGREQ.
    fn keep_alive(&self) -> u16 {
        let secs = self.warmup.as_secs() + self.duration.as_secs() + 120;
        u16::try_from(secs).unwrap_or(u16::MAX)
    }

    /// The key figure's label, for tables.
    pub fn label(&self) -> String {
        let q = self.qos as u8;
        let p = if self.payload >= 1024 && self.payload.is_multiple_of(1024) {
            format!("{}KiB", self.payload / 1024)
        } else {
            format!("{}B", self.payload)
        };
        match self.scenario {
            Scenario::Pairs => format!("P={} qos{q} {p}", self.publishers),
            Scenario::Fanout => format!("S={} qos{q} {p}", self.subscribers),
            Scenario::Fanin => format!("P={} qos{q} {p}", self.publishers),
            Scenario::Latency => format!("{}/s qos{q} {p}", self.rate),
            Scenario::Connections => format!("N={}", self.connections),
            Scenario::Shadows => {
                let d = match self.durable {
                    Some(true) => " durable",
                    Some(false) => " non-durable",
                    None => "",
                };
                format!("N={} K={} qos{q} {p}{d}", self.devices, self.inflight)
            }
        }
    }
}

/// Runs one scenario and returns its result object.
pub fn run(p: &Params) -> Result<Value> {
    let mut out = match p.scenario {
        Scenario::Latency => crate::latency::run(p)?,
        _ => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(p.threads.max(1))
                .enable_all()
                .build()?;
            let r = rt.block_on(async {
                match p.scenario {
                    Scenario::Connections => connections(p).await,
                    Scenario::Shadows => crate::shadows::run(p).await,
                    _ => throughput(p).await,
                }
            });
            rt.shutdown_timeout(Duration::from_secs(2));
            r?
        }
    };
    if let Some(o) = out.as_object_mut() {
        o.insert("params".into(), p.describe());
    }
    Ok(out)
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    published: AtomicU64,
    acked: AtomicU64,
}

struct Spec {
    id: String,
    sub: Option<String>,
}

/// Connects every spec'd client, `concurrency` at a time.
async fn connect_many(
    addr: SocketAddr,
    specs: Vec<Spec>,
    qos: QoS,
    keep_alive: u16,
    concurrency: usize,
) -> Result<Vec<Client>> {
    connect_many_timed(addr, specs, qos, keep_alive, concurrency, None).await
}

/// `connect_many`, noting each client's time from the TCP connect to its CONNACK (and
/// SUBACK, if it subscribes) in `times` (µs).
async fn connect_many_timed(
    addr: SocketAddr,
    specs: Vec<Spec>,
    qos: QoS,
    keep_alive: u16,
    concurrency: usize,
    times: Option<Arc<Mutex<hdrhistogram::Histogram<u64>>>>,
) -> Result<Vec<Client>> {
    let n = specs.len();
    let specs = Arc::new(specs);
    let next = Arc::new(AtomicUsize::new(0));
    let slots: Arc<Mutex<Vec<Option<Client>>>> =
        Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    let mut set = JoinSet::new();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (specs, next, slots) = (specs.clone(), next.clone(), slots.clone());
        let times = times.clone();
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(spec) = specs.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let started = Instant::now();
                let c = proto::connect(
                    addr,
                    &spec.id,
                    keep_alive,
                    spec.sub.as_deref().map(|f| (f, qos)),
                )
                .await
                .with_context(|| format!("client {} of {n}", i + 1))?;
                if let Some(Ok(mut h)) = times.as_ref().map(|t| t.lock()) {
                    let _ = h.record(started.elapsed().as_micros().max(1) as u64);
                }
                if let Ok(mut s) = slots.lock() {
                    s[i] = Some(c);
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let mut slots = slots.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    slots
        .drain(..)
        .map(|c| c.context("client not connected"))
        .collect()
}

/// pairs, fanout, fanin.
async fn throughput(p: &Params) -> Result<Value> {
    let ka = p.keep_alive();
    let (pub_topics, sub_filters): (Vec<String>, Vec<String>) = match p.scenario {
        Scenario::Pairs => {
            let t: Vec<String> = (0..p.publishers.max(1))
                .map(|i| format!("bench/pairs/{i}"))
                .collect();
            (t.clone(), t)
        }
        Scenario::Fanout => (
            vec!["bench/fanout".into()],
            vec!["bench/fanout".into(); p.subscribers.max(1)],
        ),
        Scenario::Fanin => (
            (0..p.publishers.max(1))
                .map(|i| format!("fanin/{i}"))
                .collect(),
            vec!["fanin/+".into()],
        ),
        _ => bail!("not a throughput scenario"),
    };
    let expected_per_publish = match p.scenario {
        Scenario::Fanout => sub_filters.len() as f64,
        _ => 1.0,
    };
    let ctr = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let hard_deadline =
        tokio::time::Instant::now() + p.warmup + p.duration + Duration::from_secs(60);

    // Subscribers first, every one subscribed before anything is published.
    let setup = Instant::now();
    let specs = sub_filters
        .iter()
        .enumerate()
        .map(|(i, f)| Spec {
            id: format!("{}-s{i}", p.id_prefix),
            sub: Some(f.clone()),
        })
        .collect();
    let subs = connect_many(p.addr, specs, p.qos, ka, p.connect_concurrency).await?;
    let specs = pub_topics
        .iter()
        .enumerate()
        .map(|(i, _)| Spec {
            id: format!("{}-p{i}", p.id_prefix),
            sub: None,
        })
        .collect();
    let pubs = connect_many(p.addr, specs, p.qos, ka, p.connect_concurrency).await?;
    let setup_s = setup.elapsed().as_secs_f64();

    let mut set = JoinSet::new();
    for c in subs {
        set.spawn(subscriber(c, ctr.clone(), stop.clone(), hard_deadline));
    }
    let per_pub_rate = if p.rate > 0 {
        Some(p.rate as f64 / pub_topics.len() as f64)
    } else {
        None
    };
    for (c, topic) in pubs.into_iter().zip(&pub_topics) {
        let tpl = Template::new(topic, p.qos, p.payload)?;
        let batch = if p.batch > 0 {
            p.batch
        } else {
            (32 * 1024 / tpl.len()).clamp(1, 256)
        };
        if p.qos == QoS::AtMostOnce {
            set.spawn(publisher_qos0(
                c,
                tpl,
                batch,
                per_pub_rate,
                ctr.clone(),
                stop.clone(),
                hard_deadline,
            ));
        } else {
            set.spawn(publisher_qos1(
                c,
                tpl,
                p.inflight.max(1),
                per_pub_rate,
                ctr.clone(),
                stop.clone(),
                hard_deadline,
            ));
        }
    }

    sleep(p.warmup).await;
    let ticks = procstat::clock_ticks();
    let d0 = ctr.delivered.load(Ordering::Relaxed);
    let p0 = ctr.published.load(Ordering::Relaxed);
    let a0 = ctr.acked.load(Ordering::Relaxed);
    let meter = CpuMeter::start(ticks, p.broker_pid)?;
    sleep(p.duration).await;
    let d1 = ctr.delivered.load(Ordering::Relaxed);
    let p1 = ctr.published.load(Ordering::Relaxed);
    let a1 = ctr.acked.load(Ordering::Relaxed);
    let cpu = meter.stop()?;
    let rss = p.broker_pid.and_then(|pid| procstat::rss_kib(pid).ok());
    stop.store(true, Ordering::Relaxed);

    // Errors seen before the end (a broker that dropped a client) are part of the result.
    let mut errors: Vec<String> = Vec::new();
    let mut errored_clients = 0usize;
    while let Some(r) = set.try_join_next() {
        if let Ok(Err(e)) = r {
            errored_clients += 1;
            if errors.len() < 5 {
                errors.push(format!("{e:#}"));
            }
        }
    }
    set.abort_all();
    while set.join_next().await.is_some() {}

    let secs = cpu.secs;
    let delivered = d1 - d0;
    let published = p1 - p0;
    Ok(json!({
        "ok": errored_clients == 0,
        "delivered": delivered,
        "delivered_per_s": delivered as f64 / secs,
        "published": published,
        "published_per_s": published as f64 / secs,
        "acked_per_s": (a1 - a0) as f64 / secs,
        // Null when nothing was counted as published in the window: a publisher blocked on
        // a full socket buffer is woken only when a third of it is free, so at low rates
        // its count is lumpy.
        "delivery_ratio": (published > 0).then(|| delivered as f64 / (published as f64 * expected_per_publish)),
        "measured_s": secs,
        "setup_s": setup_s,
        "generator_cpu_pct": cpu.generator_pct,
        "broker_cpu_pct": cpu.broker_pct,
        "broker_rss_kib": rss,
        "clients_failed": errored_clients,
        "errors": errors,
    }))
}

async fn subscriber(
    c: Client,
    ctr: Arc<Counters>,
    stop: Arc<AtomicBool>,
    deadline: tokio::time::Instant,
) -> Result<()> {
    let Client {
        mut stream,
        mut buf,
    } = c;
    let mut acks: Vec<u8> = Vec::with_capacity(4096);
    let ack = proto::puback_bytes(1)?;
    loop {
        let mut n = 0u64;
        let used = proto::scan(&buf, |s| {
            if s.kind == PUBLISH {
                n += 1;
                if let Some(id) = s.id {
                    proto::push_puback(&mut acks, &ack, id);
                }
            }
        })?;
        buf.advance(used);
        if n > 0 {
            ctr.delivered.fetch_add(n, Ordering::Relaxed);
        }
        if !acks.is_empty() {
            match timeout_at(deadline, stream.write_all(&acks)).await {
                Ok(r) => r.context("subscriber write")?,
                Err(_) => return Ok(()),
            }
            acks.clear();
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        buf.reserve(READ_CHUNK);
        match timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Err(_) => return Ok(()),
            Ok(r) => {
                if r.context("subscriber read")? == 0 {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    bail!("broker closed a subscriber's connection");
                }
            }
        }
    }
}

/// Sleeps until `sent + want` messages are due at `rate`; returns how many may go now.
async fn pace(start: Instant, sent: u64, want: u64, rate: Option<f64>) -> u64 {
    let Some(rate) = rate else {
        return want;
    };
    loop {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        if due > sent {
            return (due - sent).min(want);
        }
        let wait = ((sent + 1) as f64 / rate) - start.elapsed().as_secs_f64();
        sleep(Duration::from_secs_f64(wait.clamp(0.0005, 0.1))).await;
    }
}

async fn publisher_qos0(
    c: Client,
    tpl: Template,
    batch: usize,
    rate: Option<f64>,
    ctr: Arc<Counters>,
    stop: Arc<AtomicBool>,
    deadline: tokio::time::Instant,
) -> Result<()> {
    let (mut rd, mut wr) = c.stream.into_split();
    // Whatever the broker sends a publisher (nothing, normally) is read and dropped, so its
    // writes can never block.
    let drain = tokio::spawn(async move {
        let mut sink = vec![0u8; 4096];
        while let Ok(Ok(n)) = timeout_at(deadline, rd.read(&mut sink)).await {
            if n == 0 {
                break;
            }
        }
    });
    let batch = match rate {
        // Under a rate cap, a block at most every millisecond.
        Some(r) => batch.min(((r / 1000.0) as usize).max(1)),
        None => batch,
    };
    let mut block = Vec::with_capacity(tpl.len() * batch);
    for _ in 0..batch {
        tpl.append(&mut block, 0, None);
    }
    let start = Instant::now();
    let mut sent = 0u64;
    let result = async {
        while !stop.load(Ordering::Relaxed) {
            let k = pace(start, sent, batch as u64, rate).await as usize;
            let bytes = &block[..k * tpl.len()];
            match timeout_at(deadline, wr.write_all(bytes)).await {
                Ok(r) => r.context("publisher write")?,
                Err(_) => break,
            }
            sent += k as u64;
            ctr.published.fetch_add(k as u64, Ordering::Relaxed);
        }
        Ok(())
    }
    .await;
    drain.abort();
    result
}

async fn publisher_qos1(
    c: Client,
    tpl: Template,
    window: usize,
    rate: Option<f64>,
    ctr: Arc<Counters>,
    stop: Arc<AtomicBool>,
    deadline: tokio::time::Instant,
) -> Result<()> {
    let Client {
        mut stream,
        mut buf,
    } = c;
    let mut out: Vec<u8> = Vec::with_capacity(tpl.len() * window);
    let mut inflight = 0usize;
    let mut pid: u16 = 0;
    let start = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let room = (window - inflight) as u64;
        let k = if room == 0 {
            0
        } else if rate.is_some() {
            // Never sleep here with acks to read: take what is due now.
            let due = (start.elapsed().as_secs_f64() * rate.unwrap_or(0.0)) as u64;
            due.saturating_sub(sent).min(room)
        } else {
            room
        };
        for _ in 0..k {
            pid = if pid == u16::MAX { 1 } else { pid + 1 };
            tpl.append(&mut out, pid, None);
        }
        if k > 0 {
            match timeout_at(deadline, stream.write_all(&out)).await {
                Ok(r) => r.context("publisher write")?,
                Err(_) => return Ok(()),
            }
            out.clear();
            inflight += k as usize;
            sent += k;
            ctr.published.fetch_add(k, Ordering::Relaxed);
        }
        // Read acks; under a rate cap, wake up for the next send even without any.
        let wake = match rate {
            Some(r) if inflight < window => {
                let next = start + Duration::from_secs_f64((sent + 1) as f64 / r);
                tokio::time::Instant::from_std(next).min(deadline)
            }
            _ => deadline,
        };
        if inflight == 0 && rate.is_none() {
            continue;
        }
        buf.reserve(READ_CHUNK);
        match timeout_at(wake, stream.read_buf(&mut buf)).await {
            Err(_) => {
                if wake == deadline {
                    return Ok(());
                }
                continue;
            }
            Ok(r) => {
                if r.context("publisher read")? == 0 {
                    bail!("broker closed a publisher's connection");
                }
            }
        }
        let mut acks = 0usize;
        let used = proto::scan(&buf, |s| {
            if s.kind == PUBACK {
                acks += 1;
            }
        })?;
        buf.advance(used);
        inflight = inflight.saturating_sub(acks);
        ctr.acked.fetch_add(acks as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// N idle connections: how fast they are accepted, and what each costs the broker.
async fn connections(p: &Params) -> Result<Value> {
    let ticks = procstat::clock_ticks();
    let n = p.connections.max(1);
    let rss_before = p.broker_pid.and_then(|pid| procstat::rss_kib(pid).ok());
    let specs = (0..n)
        .map(|i| Spec {
            id: format!("{}-c{i}", p.id_prefix),
            sub: None,
        })
        .collect();
    let meter = CpuMeter::start(ticks, p.broker_pid)?;
    let times = Arc::new(Mutex::new(hdrhistogram::Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let t0 = Instant::now();
    let result = connect_many_timed(
        p.addr,
        specs,
        QoS::AtMostOnce,
        p.keep_alive(),
        p.connect_concurrency,
        Some(times.clone()),
    )
    .await;
    let connect_s = t0.elapsed().as_secs_f64();
    let cpu = meter.stop()?;
    let clients = match result {
        Ok(c) => c,
        Err(e) => {
            return Ok(json!({
                "ok": false,
                "errors": [format!("{e:#}")],
                "connect_s": connect_s,
            }))
        }
    };
    // Let the broker finish whatever follows a CONNACK before measuring its memory.
    sleep(Duration::from_secs(1)).await;
    let rss_connected = p.broker_pid.and_then(|pid| procstat::rss_kib(pid).ok());
    // Hold them idle, then measure again and count those the broker kept open. The figure
    // reported is the one after the hold: the scenario is about idle connections, and a
    // broker may treat a connection that has been idle for a while differently (iotcore
    // parks it after `[server] park_idle_ms`; Mosquitto's figure is the same either way).
    let hold = p.duration.min(Duration::from_secs(5));
    sleep(hold).await;
    let rss_after = p.broker_pid.and_then(|pid| procstat::rss_kib(pid).ok());
    let mut alive = 0usize;
    let mut probe = [0u8; 64];
    for c in &clients {
        match c.stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => alive += 1,
            Ok(n) if n > 0 => alive += 1,
            _ => {}
        }
    }
    drop(clients);
    let per_conn = |after: Option<u64>| match (rss_before, after) {
        (Some(b), Some(a)) => Some((a as f64 - b as f64) / n as f64),
        _ => None,
    };
    Ok(json!({
        "ok": alive == n,
        "connections": n,
        "connect_s": connect_s,
        "connects_per_s": n as f64 / connect_s,
        "concurrency": p.connect_concurrency,
        // Each client's time from its TCP connect to its CONNACK, in µs.
        "connect_p50_us": times.lock().map(|h| h.value_at_quantile(0.5)).ok(),
        "connect_p99_us": times.lock().map(|h| h.value_at_quantile(0.99)).ok(),
        "connect_max_us": times.lock().map(|h| h.max()).ok(),
        "alive_after_hold": alive,
        "hold_s": hold.as_secs_f64(),
        "broker_rss_before_kib": rss_before,
        "broker_rss_connected_kib": rss_connected,
        "broker_rss_connected_per_conn_kib": per_conn(rss_connected),
        "broker_rss_after_kib": rss_after,
        "broker_rss_per_conn_kib": per_conn(rss_after),
        "broker_rss_kib": rss_after,
        "generator_cpu_pct": cpu.generator_pct,
        "broker_cpu_pct": cpu.broker_pct,
        "errors": [],
    }))
}
