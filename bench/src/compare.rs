//! `compare`: every scenario against every installed broker, side by side, in one run.
//!
//! For each scenario variant, runs are interleaved (run 1 of every broker, then run 2 of
//! every broker, ...), each broker started fresh for its run and killed after it, with a
//! pause between runs for the machine to settle; the median run of each broker is reported.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::brokers::{self, Kind, Settings};
use crate::procstat;
use crate::scenario::{self, Params, Scenario};

pub struct Options {
    pub scenarios: Vec<Scenario>,
    pub brokers: Vec<Kind>,
    pub runs: usize,
    pub iotcore_bin: Option<PathBuf>,
    pub settle: Duration,
    pub out_dir: PathBuf,
    pub qos: Vec<u8>,
    pub payloads: Vec<usize>,
    pub all_payloads: bool,
    pub fanout: Vec<usize>,
    pub fanin_publishers: usize,
    pub rates: Vec<u64>,
    pub latency_qos1_rate: u64,
    /// shadows: (devices, requests outstanding per device) shapes, each run durable and not.
    pub shadow_shapes: Vec<(usize, usize)>,
    /// shadows: request size in bytes.
    pub shadow_payload: usize,
    pub settings: Settings,
    /// Template for every run (duration, warm-up, threads, sizes).
    pub base: Params,
    pub command_line: String,
}

struct Variant {
    params: Params,
    runs: BTreeMap<&'static str, Vec<Value>>,
}

fn variants(o: &Options, s: Scenario) -> Vec<Params> {
    let mut v = Vec::new();
    let small = o.payloads.first().copied().unwrap_or(64);
    let payloads_for = |all: bool| -> Vec<usize> {
        if all {
            o.payloads.clone()
        } else {
            vec![small]
        }
    };
    let mk = |qos: u8, payload: usize| -> Params {
        let mut p = o.base.clone();
        p.scenario = s;
        p.qos = crate::proto::qos_from(qos).unwrap_or(iotcore_core::mqtt::QoS::AtMostOnce);
        p.payload = payload;
        p
    };
    match s {
        Scenario::Pairs => {
            for &q in &o.qos {
                for &pl in &o.payloads {
                    v.push(mk(q, pl));
                }
            }
        }
        Scenario::Fanout => {
            for &n in &o.fanout {
                for &q in &o.qos {
                    for pl in payloads_for(o.all_payloads) {
                        let mut p = mk(q, pl);
                        p.subscribers = n;
                        v.push(p);
                    }
                }
            }
        }
        Scenario::Fanin => {
            for &q in &o.qos {
                for pl in payloads_for(o.all_payloads) {
                    let mut p = mk(q, pl);
                    p.publishers = o.fanin_publishers;
                    v.push(p);
                }
            }
        }
        Scenario::Latency => {
            for &r in &o.rates {
                let mut p = mk(0, small);
                p.rate = r;
                v.push(p);
            }
            if o.qos.contains(&1) && o.latency_qos1_rate > 0 {
                let mut p = mk(1, small);
                p.rate = o.latency_qos1_rate;
                v.push(p);
            }
        }
        Scenario::Connections => v.push(mk(0, small)),
        Scenario::Shadows => {
            for durable in [true, false] {
                for &(devices, inflight) in &o.shadow_shapes {
                    let mut p = mk(1, o.shadow_payload);
                    p.devices = devices;
                    p.inflight = inflight;
                    p.durable = Some(durable);
                    v.push(p);
                }
            }
        }
    }
    v
}

/// The figure a run is ranked by, and whether higher is better.
fn key(s: Scenario) -> (&'static str, bool) {
    match s {
        Scenario::Pairs | Scenario::Fanout | Scenario::Fanin => ("delivered_per_s", true),
        Scenario::Latency => ("p99_us", false),
        Scenario::Connections => ("connects_per_s", true),
        Scenario::Shadows => ("accepted_per_s", true),
    }
}

fn num(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

/// The median run by the scenario's key (the lower middle for an even count); runs
/// without the figure are left out unless there is nothing else.
fn median(s: Scenario, runs: &[Value]) -> Option<Value> {
    let (k, _) = key(s);
    let mut with: Vec<&Value> = runs.iter().filter(|r| num(r, k).is_some()).collect();
    if with.is_empty() {
        return runs.first().cloned();
    }
    with.sort_by(|a, b| {
        num(a, k)
            .unwrap_or(0.0)
            .total_cmp(&num(b, k).unwrap_or(0.0))
    });
    let mut m = with[(with.len() - 1) / 2].clone();
    if let Some(o) = m.as_object_mut() {
        let all: Vec<f64> = with.iter().filter_map(|r| num(r, k)).collect();
        o.insert(format!("{k}_all_runs"), json!(all));
        o.insert(
            "runs_failed".into(),
            json!(runs
                .iter()
                .filter(|r| r.get("ok") != Some(&Value::Bool(true)))
                .count()),
        );
    }
    Some(m)
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 {
        let s = format!("{:.0}", x);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn opt(v: &Value, k: &str) -> String {
    num(v, k).map(fmt_num).unwrap_or_else(|| "-".into())
}

/// One markdown table per scenario: broker, figure, ratio to iotcore, CPU.
fn table(s: Scenario, variants: &[Variant], runs: usize) -> String {
    if s == Scenario::Shadows {
        return shadow_table(variants, runs);
    }
    let mut t = String::new();
    let (k, higher) = key(s);
    let what = match s {
        Scenario::Pairs | Scenario::Fanin => "delivered msgs/s",
        Scenario::Fanout => "deliveries/s",
        Scenario::Latency => "latency in µs (ratio on p99)",
        Scenario::Connections => "connects/s and broker KiB per idle connection",
        Scenario::Shadows => "accepted shadow updates/s",
    };
    let _ = writeln!(
        t,
        "### {} — {what}; median of {runs} run(s); ratio = broker / iotcore ({} is better)\n",
        s.name(),
        if higher { "higher" } else { "lower" }
    );
    let header = match s {
        Scenario::Latency => "| variant | broker | p50 | p99 | p99.9 | max | ratio | lost | gen CPU % | broker CPU % | notes |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        Scenario::Connections => "| variant | broker | connects/s | ratio | KiB/conn | ratio | alive | gen CPU % | broker CPU % | notes |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        _ => "| variant | broker | msgs/s | ratio | published/s | gen CPU % | broker CPU % | broker RSS MiB | notes |\n|---|---|---:|---:|---:|---:|---:|---:|---|",
    };
    let _ = writeln!(t, "{header}");
    for v in variants {
        let label = v.params.label();
        let medians: Vec<(&str, Value)> = v
            .runs
            .iter()
            .filter_map(|(b, r)| median(s, r).map(|m| (*b, m)))
            .collect();
        let base = medians
            .iter()
            .find(|(b, _)| *b == "iotcore")
            .and_then(|(_, m)| num(m, k));
        let base_mem = medians
            .iter()
            .find(|(b, _)| *b == "iotcore")
            .and_then(|(_, m)| num(m, "broker_rss_per_conn_kib"));
        // iotcore first, the others in the order given.
        let mut ordered = medians.clone();
        ordered.sort_by_key(|(b, _)| *b != "iotcore");
        for (i, (b, m)) in ordered.iter().enumerate() {
            let ratio = |x: Option<f64>, base: Option<f64>| match (x, base) {
                (Some(x), Some(b)) if b > 0.0 => format!("{:.2}", x / b),
                _ => "-".into(),
            };
            let gen = num(m, "generator_cpu_pct");
            let brk = num(m, "broker_cpu_pct");
            let mut notes = Vec::new();
            if m.get("ok") != Some(&Value::Bool(true)) {
                notes.push("errors".to_string());
            }
            if let Some(f) = num(m, "runs_failed").filter(|&f| f > 0.0) {
                notes.push(format!("{f} run(s) with errors"));
            }
            // On a 2-core machine a generator using a core or more leaves the broker at most
            // the other one: the figure is then partly the generator's limit.
            if gen.is_some_and(|g| g >= 90.0) {
                notes.push("generator ≥ 90% of a core".into());
            }
            if let Some(r) = num(m, "delivery_ratio").filter(|&r| r < 0.98) {
                notes.push(format!("delivered {:.0}% of published", r * 100.0));
            }
            // iotcore's latency depends on whether the kernel put the publisher and the
            // subscriber on one shard or two; the median hides the other run's case.
            if s == Scenario::Latency && *b == "iotcore" {
                let per_run: Vec<String> = v
                    .runs
                    .get(b)
                    .into_iter()
                    .flatten()
                    .filter_map(|r| {
                        let p99 = num(r, "p99_us")?;
                        let where_ = match crossed_shards(r)? {
                            true => "two shards",
                            false => "one shard",
                        };
                        Some(format!("{where_} p99 {p99:.0}"))
                    })
                    .collect();
                if !per_run.is_empty() {
                    notes.push(format!("runs: {}", per_run.join(", ")));
                }
            }
            let variant = if i == 0 { label.as_str() } else { "" };
            let row = match s {
                Scenario::Latency => format!(
                    "| {variant} | {b} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    opt(m, "p50_us"),
                    opt(m, "p99_us"),
                    opt(m, "p999_us"),
                    opt(m, "max_us"),
                    ratio(num(m, k), base),
                    opt(m, "lost_in_window"),
                    gen.map(fmt_num).unwrap_or_default(),
                    brk.map(fmt_num).unwrap_or_default(),
                    notes.join("; ")
                ),
                Scenario::Connections => format!(
                    "| {variant} | {b} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    opt(m, "connects_per_s"),
                    ratio(num(m, k), base),
                    opt(m, "broker_rss_per_conn_kib"),
                    ratio(num(m, "broker_rss_per_conn_kib"), base_mem),
                    opt(m, "alive_after_hold"),
                    gen.map(fmt_num).unwrap_or_default(),
                    brk.map(fmt_num).unwrap_or_default(),
                    notes.join("; ")
                ),
                _ => format!(
                    "| {variant} | {b} | {} | {} | {} | {} | {} | {} | {} |",
                    opt(m, k),
                    ratio(num(m, k), base),
                    opt(m, "published_per_s"),
                    gen.map(fmt_num).unwrap_or_default(),
                    brk.map(fmt_num).unwrap_or_default(),
                    num(m, "broker_rss_kib")
                        .map(|r| format!("{:.1}", r / 1024.0))
                        .unwrap_or_default(),
                    notes.join("; ")
                ),
            };
            let _ = writeln!(t, "{row}");
        }
    }
    t
}

pub fn run(mut o: Options) -> Result<()> {
    let (date, started) = procstat::now_utc();
    let machine = procstat::machine();
    let load_before = procstat::loadavg();
    std::fs::create_dir_all(&o.out_dir)
        .with_context(|| format!("create {}", o.out_dir.display()))?;

    // Which brokers are here.
    let mut present: Vec<(Kind, PathBuf)> = Vec::new();
    let mut peers = serde_json::Map::new();
    for &k in &o.brokers {
        match brokers::locate(k, o.iotcore_bin.as_deref()) {
            Some(bin) => {
                let mut v = brokers::version(k, &bin);
                if k == Kind::Iotcore {
                    if let Some(c) = workspace_commit() {
                        v = format!("{v} ({c})");
                    }
                }
                eprintln!("broker {:<10} {} ({})", k.name(), v, bin.display());
                peers.insert(
                    k.name().into(),
                    json!({"version": v, "binary": bin.display().to_string()}),
                );
                present.push((k, bin));
            }
            None => {
                eprintln!(
                    "broker {:<10} SKIPPED: not installed (bench/install-peers.sh)",
                    k.name()
                );
                peers.insert(k.name().into(), json!({"skipped": "not installed"}));
            }
        }
    }
    if present.is_empty() {
        anyhow::bail!("no broker to run");
    }

    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "# iotcore-bench compare, {started}\n\n`{}`\n\nmachine: {} cores, {}, kernel {}; load before: {load_before}\n\nbrokers: {}\n",
        o.command_line,
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or(""),
        machine["kernel"].as_str().unwrap_or(""),
        peers
            .iter()
            .map(|(k, v)| format!(
                "{k} = {}",
                v.get("version").or(v.get("skipped")).and_then(Value::as_str).unwrap_or("")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let nonce = std::process::id();
    for &s in &o.scenarios.clone() {
        let scenario_started = procstat::now_utc().1;
        let load = procstat::loadavg();
        let mut vs: Vec<Variant> = variants(&o, s)
            .into_iter()
            .map(|params| Variant {
                params,
                runs: BTreeMap::new(),
            })
            .collect();
        for v in vs.iter_mut() {
            for r in 0..o.runs {
                for (k, bin) in &present {
                    // The peers have no AWS device shadows: iotcore only.
                    if s == Scenario::Shadows && *k != Kind::Iotcore {
                        continue;
                    }
                    std::thread::sleep(o.settle);
                    let label = v.params.label();
                    eprint!(
                        "{} {label} {} run {}/{} ... ",
                        s.name(),
                        k.name(),
                        r + 1,
                        o.runs
                    );
                    let result = run_one(
                        *k,
                        bin,
                        &mut o.settings,
                        &v.params,
                        format!("b{nonce}-{}-{r}", k.name()),
                    );
                    eprintln!("{}", brief(s, &result));
                    v.runs.entry(k.name()).or_default().push(result);
                }
            }
        }
        let t = table(s, &vs, o.runs);
        println!("\n{t}");
        let _ = writeln!(summary, "{t}");
        let file = o.out_dir.join(format!("{date}-{}.json", s.name()));
        let doc = json!({
            "scenario": s.name(),
            "command": o.command_line,
            "started": scenario_started,
            "machine": machine,
            "load_before": load,
            "runs_per_broker": o.runs,
            "settle_s": o.settle.as_secs_f64(),
            "peers": peers,
            "variants": vs.iter().map(|v| {
                let mut results = serde_json::Map::new();
                for (b, runs) in &v.runs {
                    results.insert((*b).into(), json!({"median": median(s, runs), "runs": runs}));
                }
                json!({"label": v.params.label(), "params": v.params.describe(), "results": results})
            }).collect::<Vec<_>>(),
        });
        std::fs::write(&file, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("write {}", file.display()))?;
        eprintln!("wrote {}", file.display());
    }
    let md = o.out_dir.join(format!("{date}-summary.md"));
    std::fs::write(&md, &summary).with_context(|| format!("write {}", md.display()))?;
    eprintln!("wrote {}", md.display());
    Ok(())
}

/// The shadows table: iotcore alone (the peers have no AWS device shadows), durable
/// against non-durable for each shape.
fn shadow_table(variants: &[Variant], runs: usize) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### shadows — accepted shadow updates/s, iotcore only (the peers have no AWS device shadows): \
         durable (`/update/accepted` after fsync) vs non-durable (`[storage] durable = false`); \
         median of {runs} run(s); ratio = updates/s / durable updates/s of the same shape\n"
    );
    let _ = writeln!(
        t,
        "| devices × in flight | storage | updates/s | ratio | p50 µs | p99 µs | p99.9 µs | max µs | rejected (429) | gen CPU % | broker CPU % | broker RSS MiB | notes |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    let median_of = |v: &Variant| {
        v.runs
            .get("iotcore")
            .and_then(|r| median(Scenario::Shadows, r))
    };
    for v in variants {
        let Some(m) = median_of(v) else { continue };
        let base = variants
            .iter()
            .find(|d| {
                d.params.durable == Some(true)
                    && d.params.devices == v.params.devices
                    && d.params.inflight == v.params.inflight
            })
            .and_then(median_of)
            .and_then(|d| num(&d, "accepted_per_s"));
        let ratio = match (num(&m, "accepted_per_s"), base) {
            (Some(x), Some(b)) if b > 0.0 => format!("{:.2}", x / b),
            _ => "-".into(),
        };
        let mut notes = Vec::new();
        if m.get("ok") != Some(&Value::Bool(true)) {
            notes.push("errors".to_string());
        }
        if let Some(f) = num(&m, "runs_failed").filter(|&f| f > 0.0) {
            notes.push(format!("{f} run(s) with errors"));
        }
        if num(&m, "generator_cpu_pct").is_some_and(|g| g >= 90.0) {
            notes.push("generator ≥ 90% of a core".into());
        }
        let _ = writeln!(
            t,
            "| {} × {} | {} | {} | {ratio} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} |",
            v.params.devices,
            v.params.inflight,
            match v.params.durable {
                Some(false) => "non-durable",
                _ => "durable",
            },
            opt(&m, "accepted_per_s"),
            opt(&m, "p50_us"),
            opt(&m, "p99_us"),
            opt(&m, "p999_us"),
            opt(&m, "max_us"),
            count(&m, "rejected"),
            count(&m, "rejected_429"),
            opt(&m, "generator_cpu_pct"),
            opt(&m, "broker_cpu_pct"),
            num(&m, "broker_rss_kib")
                .map(|r| format!("{:.1}", r / 1024.0))
                .unwrap_or_default(),
            notes.join("; ")
        );
    }
    t
}

/// Whether a run's messages crossed between iotcore's shards, from its `/metrics` sample:
/// most of them arrived at some shard over the mesh. `None` without a sample.
fn crossed_shards(run: &Value) -> Option<bool> {
    let samples = run.get("metrics")?.as_array()?;
    let sum = |name: &str| -> f64 {
        samples
            .iter()
            .filter_map(Value::as_str)
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let published = sum("iotcore_messages_in_total");
    if published <= 0.0 {
        return None;
    }
    Some(sum("iotcore_mesh_messages_in_total") >= published / 2.0)
}

fn count(v: &Value, k: &str) -> String {
    num(v, k)
        .map(|x| format!("{x:.0}"))
        .unwrap_or_else(|| "-".into())
}

fn brief(s: Scenario, v: &Value) -> String {
    let (k, _) = key(s);
    let mut b = match num(v, k) {
        Some(x) => format!("{k}={}", fmt_num(x)),
        None => "no figure".into(),
    };
    if let Some(g) = num(v, "generator_cpu_pct") {
        let _ = write!(b, " gen={g:.0}%");
    }
    if let Some(g) = num(v, "broker_cpu_pct") {
        let _ = write!(b, " broker={g:.0}%");
    }
    if let Some(e) = v
        .get("errors")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    {
        let _ = write!(b, " errors: {}", e[0]);
    }
    b
}

fn run_one(k: Kind, bin: &Path, settings: &mut Settings, base: &Params, prefix: String) -> Value {
    // shadows: the durability under test goes into iotcore's generated configuration.
    settings.iotcore_durable = if base.scenario == Scenario::Shadows {
        base.durable
    } else {
        None
    };
    let started = brokers::start(k, bin, settings);
    settings.iotcore_durable = None;
    let running = match started {
        Ok(r) => r,
        Err(e) => return json!({"ok": false, "errors": [format!("start: {e:#}")]}),
    };
    let mut p = base.clone();
    p.addr = running.addr;
    p.broker_pid = Some(running.pid);
    p.id_prefix = prefix;
    let mut result = match scenario::run(&p) {
        Ok(v) => v,
        Err(e) => json!({"ok": false, "errors": [format!("{e:#}")]}),
    };
    if let Some(url) = &running.metrics_url {
        let m = match procstat::http_get(url) {
            Ok(body) => json!(procstat::iotcore_samples(&body)),
            Err(e) => json!(format!("scrape failed: {e:#}")),
        };
        if let Some(o) = result.as_object_mut() {
            o.insert("metrics".into(), m);
        }
    }
    running.stop();
    result
}

/// The workspace's commit, with "+dirty" when what iotcore is built from (core/, dataplane/,
/// vendor/, the root Cargo.toml and Cargo.lock) has uncommitted changes: the binary measured
/// may then include them.
fn workspace_commit() -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&[
        "status",
        "--porcelain",
        "--",
        "core",
        "dataplane",
        "vendor",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}+dirty") } else { head })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> Value {
        json!({ "metrics": lines })
    }

    #[test]
    fn a_run_crossed_shards_when_most_messages_came_over_the_mesh() {
        // Run 14, latency at 10k/s QoS 0: the publisher on shard 1, the subscriber on 0.
        let across = run(&[
            r#"iotcore_messages_in_total{shard="0"} 0"#,
            r#"iotcore_messages_in_total{shard="1"} 69999"#,
            r#"iotcore_mesh_messages_in_total{shard="0"} 70000"#,
            r#"iotcore_mesh_messages_in_total{shard="1"} 1"#,
            r#"iotcore_mesh_messages_in_total_other{shard="1"} 99999"#,
        ]);
        assert_eq!(crossed_shards(&across), Some(true));
        let together = run(&[
            r#"iotcore_messages_in_total{shard="0"} 69999"#,
            r#"iotcore_mesh_messages_in_total{shard="1"} 2"#,
        ]);
        assert_eq!(crossed_shards(&together), Some(false));
        assert_eq!(crossed_shards(&json!({})), None);
        assert_eq!(crossed_shards(&run(&[])), None);
    }
}
