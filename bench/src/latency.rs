//! The latency scenario: one publisher at a fixed rate, one subscriber, on plain threads with
//! blocking sockets (tokio's timer wheel has a 1 ms tick; a thread sleeping to a schedule
//! sends 10k msgs/s as ones and twos, not bursts of ten).
//!
//! Each payload carries its send time (ns since an `Instant` taken at the start, shared by
//! both threads); the subscriber records `arrival - sent` into an HDR histogram for every
//! message sent inside the measured window. The timestamp is the actual send time, so if the
//! publisher itself falls behind its schedule (or, at QoS 1, waits for its window) that delay
//! is not in the figures; `max_schedule_lag_us` says how far behind it fell.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Buf;
use hdrhistogram::Histogram;
use iotcore_core::mqtt::QoS;
use serde_json::{json, Value};

use crate::procstat::{self, CpuMeter};
use crate::proto::{self, Template, PUBACK, PUBLISH, READ_CHUNK};
use crate::scenario::Params;

const TOPIC: &str = "bench/latency";

pub fn run(p: &Params) -> Result<Value> {
    let ka = u16::try_from(p.warmup.as_secs() + p.duration.as_secs() + 120).unwrap_or(u16::MAX);
    let (mut sub, sub_buf) = proto::connect_blocking(
        p.addr,
        &format!("{}-s", p.id_prefix),
        ka,
        Some((TOPIC, p.qos)),
    )?;
    let (mut publ, _) = proto::connect_blocking(p.addr, &format!("{}-p", p.id_prefix), ka, None)?;

    let epoch = Instant::now();
    let warm_end = p.warmup;
    let end = p.warmup + p.duration;
    let (w0, w1) = (warm_end.as_nanos() as u64, end.as_nanos() as u64);
    let grace = Duration::from_secs(1);
    let qos1 = p.qos == QoS::AtLeastOnce;
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));

    // Subscriber: reads until the end of the window plus a grace period.
    sub.set_read_timeout(Some(Duration::from_millis(50)))?;
    let sub_thread = std::thread::spawn(move || -> Result<(Histogram<u64>, u64, u64)> {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
        let mut buf = sub_buf;
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut acks = Vec::new();
        let ack = proto::puback_bytes(1)?;
        let (mut received, mut total) = (0u64, 0u64);
        while epoch.elapsed() < end + grace {
            let n = match sub.read(&mut chunk) {
                Ok(0) => anyhow::bail!("broker closed the subscriber's connection"),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e).context("subscriber read"),
            };
            let now = epoch.elapsed().as_nanos() as u64;
            buf.extend_from_slice(&chunk[..n]);
            let used = proto::scan(&buf, |s| {
                if s.kind != PUBLISH {
                    return;
                }
                total += 1;
                if let Some(id) = s.id {
                    proto::push_puback(&mut acks, &ack, id);
                }
                if let Some(sent) = proto::stamp_of(s.payload) {
                    if (w0..w1).contains(&sent) {
                        received += 1;
                        let _ = hist.record(now.saturating_sub(sent).max(1));
                    }
                }
            })?;
            buf.advance(used);
            if !acks.is_empty() {
                sub.write_all(&acks).context("subscriber ack")?;
                acks.clear();
            }
        }
        Ok((hist, received, total))
    });

    // At QoS 1 a second thread reads the publisher's PUBACKs.
    let ack_thread = if qos1 {
        let mut rd = publ.try_clone()?;
        rd.set_read_timeout(Some(Duration::from_millis(50)))?;
        let (acked, failed) = (acked.clone(), failed.clone());
        Some(std::thread::spawn(move || -> Result<()> {
            let mut buf = bytes::BytesMut::new();
            let mut chunk = vec![0u8; 16 * 1024];
            while epoch.elapsed() < end + grace {
                let n = match rd.read(&mut chunk) {
                    Ok(0) => {
                        failed.store(true, Ordering::Relaxed);
                        anyhow::bail!("broker closed the publisher's connection");
                    }
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e).context("publisher read"),
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut k = 0;
                let used = proto::scan(&buf, |s| {
                    if s.kind == PUBACK {
                        k += 1;
                    }
                })?;
                buf.advance(used);
                acked.fetch_add(k, Ordering::Relaxed);
            }
            Ok(())
        }))
    } else {
        None
    };

    // Publisher: sends what its schedule says is due, stamped with the time of the write.
    let rate = p.rate.max(1) as f64;
    let window = p.inflight.max(1) as u64;
    let tpl = Template::new(TOPIC, p.qos, p.payload)?;
    let pub_failed = failed.clone();
    let acked_p = acked.clone();
    let pub_thread = std::thread::spawn(move || -> Result<(u64, u64, u64)> {
        let mut out = Vec::with_capacity(tpl.len() * 64);
        let (mut sent, mut in_window, mut max_lag_ns) = (0u64, 0u64, 0u64);
        let mut pid: u16 = 0;
        loop {
            let now = epoch.elapsed();
            if now >= end || pub_failed.load(Ordering::Relaxed) {
                break;
            }
            let due = (now.as_secs_f64() * rate) as u64;
            if due <= sent {
                let next = Duration::from_secs_f64((sent + 1) as f64 / rate);
                std::thread::sleep(next.saturating_sub(now).min(Duration::from_millis(10)));
                continue;
            }
            let mut k = (due - sent).min(1000);
            if qos1 {
                let room = window.saturating_sub(sent - acked_p.load(Ordering::Relaxed));
                k = k.min(room);
                if k == 0 {
                    std::thread::sleep(Duration::from_micros(20));
                    continue;
                }
            }
            // How late the oldest message of this write is against its schedule.
            let scheduled = Duration::from_secs_f64(sent as f64 / rate);
            max_lag_ns = max_lag_ns.max(now.saturating_sub(scheduled).as_nanos() as u64);
            let stamp = epoch.elapsed().as_nanos() as u64;
            for _ in 0..k {
                pid = if pid == u16::MAX { 1 } else { pid + 1 };
                tpl.append(&mut out, pid, Some(stamp));
            }
            publ.write_all(&out).context("publisher write")?;
            out.clear();
            sent += k;
            if (w0..w1).contains(&stamp) {
                in_window += k;
            }
        }
        Ok((sent, in_window, max_lag_ns))
    });

    fn join<T>(r: std::thread::Result<Result<T>>) -> Result<T> {
        r.map_err(|_| anyhow::anyhow!("a generator thread panicked"))?
    }

    // Main thread: CPU over the measured window.
    let ticks = procstat::clock_ticks();
    std::thread::sleep(warm_end.saturating_sub(epoch.elapsed()));
    let meter = CpuMeter::start(ticks, p.broker_pid)?;
    std::thread::sleep(end.saturating_sub(epoch.elapsed()));
    let cpu = meter.stop()?;
    let rss = p.broker_pid.and_then(|pid| procstat::rss_kib(pid).ok());

    let (sent, sent_in_window, max_lag_ns) = join(pub_thread.join())?;
    let sub_result = join(sub_thread.join());
    let ack_result = ack_thread.map(|t| join(t.join()));
    let mut errors = Vec::new();
    if let Some(Err(e)) = &ack_result {
        errors.push(format!("{e:#}"));
    }
    let (hist, received, total) = match sub_result {
        Ok(r) => r,
        Err(e) => {
            errors.push(format!("{e:#}"));
            return Ok(json!({"ok": false, "errors": errors, "sent": sent}));
        }
    };
    let us = |v: u64| v as f64 / 1000.0;
    Ok(json!({
        "ok": errors.is_empty() && received > 0,
        "sent": sent,
        "sent_in_window": sent_in_window,
        "received_in_window": received,
        "received_total": total,
        "lost_in_window": sent_in_window.saturating_sub(received),
        "achieved_rate": sent_in_window as f64 / p.duration.as_secs_f64(),
        "p50_us": us(hist.value_at_quantile(0.50)),
        "p90_us": us(hist.value_at_quantile(0.90)),
        "p99_us": us(hist.value_at_quantile(0.99)),
        "p999_us": us(hist.value_at_quantile(0.999)),
        "max_us": us(hist.max()),
        "mean_us": hist.mean() / 1000.0,
        "max_schedule_lag_us": us(max_lag_ns),
        "generator_cpu_pct": cpu.generator_pct,
        "broker_cpu_pct": cpu.broker_pct,
        "broker_rss_kib": rss,
        "errors": errors,
    }))
}
