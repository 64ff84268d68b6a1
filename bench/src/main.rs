//! `iotcore-bench`: the load generator and side-by-side comparison of iotcore with other MQTT
//! brokers. See bench/README.md.
//!
//! - `run`: one scenario against one running broker; prints one JSON line.
//! - `compare`: starts each installed broker itself, runs every scenario against each,
//!   prints a table per scenario and writes JSON under bench/results/.
//! - `shadow-restart`: fills iotcore with shadows through MQTT, stops it, and times its
//!   restart until a GET of a random shadow answers.

mod brokers;
mod compare;
mod latency;
mod procstat;
mod proto;
mod scenario;
mod shadow_restart;
mod shadows;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::brokers::Kind;
use crate::scenario::{Params, Scenario};

const USAGE: &str = "usage:
  iotcore-bench run --scenario S [--host 127.0.0.1] [--port 1883] [options]
  iotcore-bench compare [--scenarios pairs,fanout,fanin,latency,connections,shadows]
                        [--brokers iotcore,mosquitto,rumqttd,rmqtt,nats] [--runs 3]
                        [--iotcore-bin PATH] [options]
  iotcore-bench shadow-restart [--shadows 1000000] [--iotcore-bin PATH]
                        [--fill-connections 64] [--fill-window 100] [--payload 200]
                        [--fill-durable] [--iotcore-shards 0] [--gets 5] [--keep]
                        [--threads N] [--out-dir DIR]

scenarios:
  pairs         P publishers each to its own topic, P subscribers one per topic
  fanout        1 publisher, S subscribers on one topic
  fanin         P publishers on fanin/<i>, 1 subscriber on fanin/+
  latency       1 publisher at a fixed rate, 1 subscriber; p50/p99/p99.9/max
  connections   N idle connections; connects/s, broker memory per connection
  shadows       N devices, each updating its own shadow with K requests outstanding
                (matched by clientToken); accepted updates/s, p50/p99/p99.9/max
                (compare: iotcore only, durable and non-durable)

options (both commands):
  --qos 0|1            (compare: a list, default 0,1; shadows: default 1)
  --payload BYTES      (compare: --payloads, default 64,1024; shadows: request size,
                       default 200)
  --duration SECS      measured time (default 10)
  --warmup SECS        before measuring (default 2)
  --publishers P       pairs (default 4) and fanin (default 100; compare: --fanin-publishers)
  --subscribers S      fanout (default 100; compare: --fanout 100,1000)
  --rate N             latency msgs/s (default 10000; compare: --rates 1000,10000,50000);
                       for pairs/fanout/fanin an optional cap on the total publish rate
  --connections N      connections (default 10000; capped by the fd limit)
  --inflight N         QoS 1 publishes in flight per publisher (default 100);
                       shadows: requests outstanding per device (default 1)
  --devices N          shadows: devices (default 1000)
  --client-ids thing|prefixed  shadows: a device's client id is its thing name (default,
                       as AWS recommends) or `<prefix>-d<i>`
  --fleet existing|new shadows: the devices' shadows exist before they connect (default:
                       written first through one other connection) or not
  --batch N            QoS 0 packets per write (default: about 32 KiB worth)
  --threads N          generator worker threads (default: number of cores)
  --concurrency N      concurrent CONNECTs during setup (default 64)
run only:
  --broker-pid PID     report this broker's CPU and memory
  --metrics-url URL    scrape this Prometheus endpoint at the end (iotcore_* lines kept)
compare only:
  --runs N             runs per broker, interleaved; the median is reported (default 3)
  --settle SECS        pause before each run (default 1)
  --iotcore-bin PATH   default: the iotcore next to this executable
  --iotcore-shards N   default 0 (one per core)
  --no-metrics         do not give iotcore an [admin] port to scrape
  --all-payloads       fanout and fanin also at every --payloads size (default: smallest)
  --latency-qos1-rate N  one QoS 1 latency run at this rate (default 10000; 0 = none)
  --shadow-shapes LIST shadows: devices x in-flight shapes (default 1000x1,100x10)
  --shadow-payload B   shadows: request size (default 200)
  --out-dir DIR        default: bench/results";

struct Args {
    map: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args> {
        let mut map = HashMap::new();
        let mut flags = Vec::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                bail!("unexpected argument `{a}`");
            };
            if let Some((k, v)) = key.split_once('=') {
                map.insert(k.to_string(), v.to_string());
                continue;
            }
            match it.peek() {
                Some(v) if !v.starts_with("--") => {
                    map.insert(key.to_string(), (*v).clone());
                    it.next();
                }
                _ => flags.push(key.to_string()),
            }
        }
        Ok(Args { map, flags })
    }

    fn get<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.map.get(k) {
            Some(v) => v.parse().map_err(|e| anyhow::anyhow!("--{k} {v}: {e}")),
            None => Ok(default),
        }
    }

    fn list<T>(&self, k: &str, default: &[T]) -> Result<Vec<T>>
    where
        T: std::str::FromStr + Clone,
        T::Err: std::fmt::Display,
    {
        match self.map.get(k) {
            Some(v) => v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.trim()
                        .parse()
                        .map_err(|e| anyhow::anyhow!("--{k} {s}: {e}"))
                })
                .collect(),
            None => Ok(default.to_vec()),
        }
    }

    fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|f| f == k)
    }

    fn check_known(&self, known: &[&str]) -> Result<()> {
        for k in self.map.keys().chain(self.flags.iter()) {
            if !known.contains(&k.as_str()) {
                bail!("unknown option --{k}\n\n{USAGE}");
            }
        }
        Ok(())
    }
}

const COMMON: &[&str] = &[
    "qos",
    "payload",
    "duration",
    "warmup",
    "publishers",
    "pairs",
    "subscribers",
    "rate",
    "connections",
    "inflight",
    "batch",
    "threads",
    "concurrency",
    "devices",
    "client-ids",
    "fleet",
];

fn secs(a: &Args, k: &str, default: f64) -> Result<Duration> {
    let s: f64 = a.get(k, default)?;
    if !(0.0..=3600.0).contains(&s) {
        bail!("--{k} must be between 0 and 3600 seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

/// Parameters shared by `run` and `compare`.
fn base_params(a: &Args, scenario: Scenario, fd_limit: u64) -> Result<Params> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let default_pubs = if scenario == Scenario::Fanin { 100 } else { 4 };
    let shadows = scenario == Scenario::Shadows;
    let publishers = a.get("publishers", a.get("pairs", default_pubs)?)?;
    let connections: usize = a.get("connections", 10_000)?;
    // Each connection costs the generator one descriptor; keep some for everything else.
    let max_conns = usize::try_from(fd_limit.saturating_sub(200)).unwrap_or(usize::MAX);
    if connections > max_conns {
        eprintln!(
            "note: --connections {connections} capped to {max_conns} by the file-descriptor limit"
        );
    }
    Ok(Params {
        scenario,
        addr: SocketAddr::from(([127, 0, 0, 1], 1883)),
        qos: proto::qos_from(a.get("qos", u8::from(shadows))?)?,
        payload: a.get("payload", if shadows { 200 } else { 64usize })?,
        warmup: secs(a, "warmup", 2.0)?,
        duration: secs(a, "duration", 10.0)?,
        publishers,
        subscribers: a.get("subscribers", 100usize)?,
        rate: a.get(
            "rate",
            if scenario == Scenario::Latency {
                10_000
            } else {
                0
            },
        )?,
        connections: connections.min(max_conns),
        inflight: a.get("inflight", if shadows { 1 } else { 100usize })?,
        batch: a.get("batch", 0usize)?,
        threads: a.get("threads", threads)?,
        connect_concurrency: a.get("concurrency", 64usize)?,
        broker_pid: None,
        id_prefix: format!("bench{}", std::process::id()),
        devices: a.get("devices", 1000usize)?,
        thing_client_ids: match a.map.get("client-ids").map(String::as_str) {
            None | Some("thing") => true,
            Some("prefixed") => false,
            Some(other) => bail!("--client-ids {other}: expected thing or prefixed"),
        },
        existing_shadows: match a.map.get("fleet").map(String::as_str) {
            None | Some("existing") => true,
            Some("new") => false,
            Some(other) => bail!("--fleet {other}: expected existing or new"),
        },
        durable: None,
    })
}

fn cmd_run(a: &Args, fd_limit: u64) -> Result<()> {
    let mut known = COMMON.to_vec();
    known.extend(["scenario", "host", "port", "broker-pid", "metrics-url"]);
    a.check_known(&known)?;
    let scenario = Scenario::parse(a.map.get("scenario").context("--scenario is required")?)?;
    let host: IpAddr = a.get("host", IpAddr::from([127, 0, 0, 1]))?;
    if !host.is_loopback() {
        bail!(
            "--host must be a loopback address: the generator only loads brokers on this machine"
        );
    }
    let port: u16 = a.get("port", 1883)?;
    let mut p = base_params(a, scenario, fd_limit)?;
    p.addr = SocketAddr::new(host, port);
    p.broker_pid = a.map.get("broker-pid").map(|s| s.parse()).transpose()?;
    let mut v = scenario::run(&p)?;
    if let Some(url) = a.map.get("metrics-url") {
        let m = match procstat::http_get(url) {
            Ok(body) => serde_json::json!(procstat::iotcore_samples(&body)),
            Err(e) => serde_json::json!(format!("scrape failed: {e:#}")),
        };
        if let Some(o) = v.as_object_mut() {
            o.insert("metrics".into(), m);
        }
    }
    println!("{}", serde_json::to_string(&v)?);
    Ok(())
}

fn cmd_compare(a: &Args, fd_limit: u64, command_line: String) -> Result<()> {
    let mut known = COMMON.to_vec();
    known.extend([
        "scenarios",
        "brokers",
        "runs",
        "iotcore-bin",
        "iotcore-shards",
        "settle",
        "no-metrics",
        "payloads",
        "all-payloads",
        "fanout",
        "rates",
        "latency-qos1-rate",
        "out-dir",
        "fanin-publishers",
        "shadow-shapes",
        "shadow-payload",
    ]);
    a.check_known(&known)?;
    let scenarios = a
        .list::<String>("scenarios", &Scenario::ALL.map(|s| s.name().to_string()))?
        .iter()
        .map(|s| Scenario::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let brokers = a
        .list::<String>("brokers", &Kind::ALL.map(|k| k.name().to_string()))?
        .iter()
        .map(|s| Kind::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let qos = a.list::<u8>("qos", &[0, 1])?;
    for &q in &qos {
        proto::qos_from(q)?;
    }
    // `base_params` reads --qos as one value: parse it from the list here instead.
    let mut b = Args {
        map: a.map.clone(),
        flags: a.flags.clone(),
    };
    b.map.remove("qos");
    b.map.remove("rate");
    let base = base_params(&b, Scenario::Pairs, fd_limit)?;
    let out_dir: PathBuf = match a.map.get("out-dir") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"),
    };
    let opts = compare::Options {
        scenarios,
        brokers,
        runs: a.get("runs", 3usize)?.max(1),
        iotcore_bin: a.map.get("iotcore-bin").map(PathBuf::from),
        settle: secs(a, "settle", 1.0)?,
        out_dir,
        qos,
        payloads: a.list::<usize>("payloads", &[64, 1024])?,
        all_payloads: a.flag("all-payloads"),
        fanout: a.list::<usize>("fanout", &[100, 1000])?,
        fanin_publishers: a.get("fanin-publishers", 100usize)?,
        rates: a.list::<u64>("rates", &[1000, 10_000, 50_000])?,
        latency_qos1_rate: a.get("latency-qos1-rate", 10_000u64)?,
        shadow_shapes: a
            .list::<String>("shadow-shapes", &["1000x1".into(), "100x10".into()])?
            .iter()
            .map(|s| parse_shape(s))
            .collect::<Result<Vec<_>>>()?,
        shadow_payload: a.get("shadow-payload", 200usize)?,
        settings: brokers::Settings {
            iotcore_admin: !a.flag("no-metrics"),
            iotcore_shards: a.get("iotcore-shards", 0usize)?,
            iotcore_durable: None,
        },
        base,
        command_line,
    };
    compare::run(opts)
}

/// `DEVICESxINFLIGHT`, e.g. `1000x1`.
fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let (d, k) = s
        .split_once('x')
        .with_context(|| format!("--shadow-shapes: `{s}` is not DEVICESxINFLIGHT"))?;
    Ok((d.trim().parse()?, k.trim().parse()?))
}

fn cmd_shadow_restart(a: &Args, command_line: String) -> Result<()> {
    a.check_known(&[
        "shadows",
        "iotcore-bin",
        "fill-connections",
        "fill-window",
        "payload",
        "fill-durable",
        "iotcore-shards",
        "gets",
        "keep",
        "threads",
        "out-dir",
    ])?;
    let iotcore_bin = brokers::locate(Kind::Iotcore, a.map.get("iotcore-bin").map(Path::new))
        .context("no iotcore binary (--iotcore-bin PATH)")?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    shadow_restart::run(shadow_restart::Options {
        shadows: a.get("shadows", 1_000_000usize)?.max(1),
        iotcore_bin,
        connections: a.get("fill-connections", 64usize)?,
        // iotcore's Receive Maximum is 100 by default: more would be refused.
        window: a.get("fill-window", 100usize)?,
        payload: a.get("payload", 200usize)?,
        fill_durable: a.flag("fill-durable"),
        shards: a.get("iotcore-shards", 0usize)?,
        gets: a.get("gets", 5usize)?,
        threads: a.get("threads", threads)?,
        keep: a.flag("keep"),
        out_dir: match a.map.get("out-dir") {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"),
        },
        command_line,
    })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let command_line = argv.join(" ");
    let Some(cmd) = argv.get(1) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if cmd == "--help" || cmd == "-h" || cmd == "help" {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match Args::parse(&argv[2..]) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fd_limit = procstat::raise_limits();
    let r = match cmd.as_str() {
        "run" => cmd_run(&args, fd_limit),
        "compare" => cmd_compare(&args, fd_limit, command_line),
        "shadow-restart" => cmd_shadow_restart(&args, command_line),
        other => {
            eprintln!("error: unknown command `{other}`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
