//! The `shadows` scenario: N devices, each an MQTT connection updating its own classic
//! shadow (`$aws/things/bench-{i}/shadow/update`) in a closed loop with K requests
//! outstanding, each subscribed to its own `/update/accepted` and `/update/rejected`.
//!
//! Every request carries a clientToken (its sequence number, ten digits, also in the
//! reported state); an answer is matched to its request by that token, and the time from
//! the request's write to its answer's read goes into an HDR histogram. The figure is
//! accepted updates per second: with `[storage] durable = true` (iotcore's default) the
//! server sends `/update/accepted` only after the record is fsynced, so it is the rate of
//! durable updates. A 429 (more than `max_in_flight_per_thing` requests of one thing
//! waiting) or any other rejection is counted, not retried; the device sends its next
//! request at once.
//!
//! Requests are pre-encoded once per device with the project codec; the packet id and the
//! ten-digit sequence number are patched in place. Answers are framed by hand (fixed
//! header, topic, packet id) and the clientToken found by a byte search.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use hdrhistogram::Histogram;
use iotcore_core::mqtt::{
    encode, Decoder, Packet, Publish, PublishProperties, QoS, ReasonCode, Subscribe,
    SubscribeProperties, SubscriptionOptions,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout_at};

use crate::procstat::{self, CpuMeter};
use crate::proto::{self, Client, PUBLISH, READ_CHUNK};
use crate::scenario::Params;

/// Digits of the sequence number in a request (and of its clientToken).
const SEQ_DIGITS: usize = 10;
const TOKEN_KEY: &[u8] = b"\"clientToken\":\"";
const CODE_KEY: &[u8] = b"\"code\":";

/// The thing of device `i`.
pub fn thing(i: usize) -> String {
    format!("bench-{i}")
}

/// The reported-state JSON of a request of about `len` bytes, with `fields` first and a
/// padding string after them.
fn padded_update(fields: &str, len: usize, token: Option<&str>) -> String {
    let tail = match token {
        Some(t) => format!("}}}},\"clientToken\":\"{t}\"}}"),
        None => "}}}".to_string(),
    };
    let head = format!("{{\"state\":{{\"reported\":{{{fields},\"pad\":\"");
    let fixed = head.len() + 1 + tail.len();
    let pad = "x".repeat(len.saturating_sub(fixed).max(1));
    format!("{head}{pad}\"{tail}")
}

/// A shadow update request: one PUBLISH encoded by the codec, with its packet id and the
/// sequence number (twice: in the reported state and as the clientToken) patched per send.
pub struct UpdateTemplate {
    bytes: Vec<u8>,
    pid_offset: Option<usize>,
    seq_offsets: [usize; 2],
}

impl UpdateTemplate {
    pub fn new(topic: &str, qos: QoS, payload_len: usize) -> Result<UpdateTemplate> {
        let zeros = "0".repeat(SEQ_DIGITS);
        let payload = padded_update(&format!("\"seq\":\"{zeros}\""), payload_len, Some(&zeros));
        let seq_in_payload = payload
            .find("\"seq\":\"")
            .context("seq field")?
            .saturating_add(7);
        let token_in_payload = payload
            .rfind("\"clientToken\":\"")
            .context("token field")?
            .saturating_add(TOKEN_KEY.len());
        let out = encode_publish(topic, qos, 1, payload.into_bytes())?;
        let (pid_offset, payload_offset) = proto::publish_offsets(&out, qos)?;
        Ok(UpdateTemplate {
            bytes: out.to_vec(),
            pid_offset,
            seq_offsets: [
                payload_offset + seq_in_payload,
                payload_offset + token_in_payload,
            ],
        })
    }

    /// Appends the request with packet id `pid` and sequence number `seq`.
    #[inline]
    pub fn append(&self, out: &mut Vec<u8>, pid: u16, seq: u64) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if let Some(off) = self.pid_offset {
            out[start + off..start + off + 2].copy_from_slice(&pid.max(1).to_be_bytes());
        }
        let mut digits = [b'0'; SEQ_DIGITS];
        let mut v = seq;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        for off in self.seq_offsets {
            out[start + off..start + off + SEQ_DIGITS].copy_from_slice(&digits);
        }
    }
}

/// One PUBLISH through the project codec.
pub fn encode_publish(topic: &str, qos: QoS, pid: u16, payload: Vec<u8>) -> Result<BytesMut> {
    let publish = Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteString::from(topic),
        packet_id: (qos != QoS::AtMostOnce).then(|| proto::packet_id(pid)),
        properties: PublishProperties::default(),
        payload: Bytes::from(payload),
    });
    let mut out = BytesMut::new();
    encode(&publish, proto::VERSION, &mut out)?;
    Ok(out)
}

/// A shadow update of about `len` bytes for the restart fill: `{"i":I,"pad":"x.."}`.
pub fn fill_payload(i: usize, len: usize) -> Vec<u8> {
    padded_update(&format!("\"i\":{i}"), len, None).into_bytes()
}

/// Connects and subscribes to every filter in `filters` with one SUBSCRIBE (at most the
/// broker's filters-per-SUBSCRIBE limit: 8 for iotcore, as AWS).
pub async fn connect_subscribed(
    addr: SocketAddr,
    client_id: &str,
    keep_alive: u16,
    filters: &[String],
    qos: QoS,
) -> Result<Client> {
    let fut = async {
        let mut c = proto::connect(addr, client_id, keep_alive, None).await?;
        subscribe(&mut c, filters, qos).await?;
        Ok(c)
    };
    tokio::time::timeout(proto::HANDSHAKE_TIMEOUT, fut)
        .await
        .with_context(|| format!("handshake of {client_id} timed out"))?
}

/// Subscribes a connected client to `filters` with one SUBSCRIBE and waits for the SUBACK
/// (anything before it other than a PUBLISH is dropped; a PUBLISH is an error: the caller
/// subscribes before it asks for anything).
pub async fn subscribe(c: &mut Client, filters: &[String], qos: QoS) -> Result<()> {
    if filters.is_empty() {
        return Ok(());
    }
    let packet = Packet::Subscribe(Subscribe {
        packet_id: proto::packet_id(1),
        properties: SubscribeProperties::default(),
        filters: filters
            .iter()
            .map(|f| {
                (
                    ByteString::from(f.as_str()),
                    SubscriptionOptions::with_qos(qos),
                )
            })
            .collect(),
    });
    let mut out = BytesMut::new();
    encode(&packet, proto::VERSION, &mut out)?;
    c.stream.write_all(&out).await?;
    let mut dec = Decoder::with_version(proto::VERSION, proto::MAX_PACKET);
    loop {
        match dec.decode(&mut c.buf)? {
            Some(Packet::SubAck(s)) => {
                for r in &s.reasons {
                    if !matches!(
                        r,
                        ReasonCode::Success | ReasonCode::GrantedQoS1 | ReasonCode::GrantedQoS2
                    ) {
                        bail!("SUBSCRIBE refused: {r:?}");
                    }
                }
                return Ok(());
            }
            Some(Packet::Publish(_)) => bail!("PUBLISH before the SUBACK"),
            Some(_) => {}
            None => {
                c.buf.reserve(4096);
                if c.stream.read_buf(&mut c.buf).await? == 0 {
                    bail!("broker closed the connection during SUBSCRIBE");
                }
            }
        }
    }
}

/// One received PUBLISH, framed by hand.
pub struct Answer<'a> {
    pub topic: &'a [u8],
    pub id: Option<[u8; 2]>,
    pub payload: &'a [u8],
}

/// Walks the whole packets at the front of `buf`; calls `f` for each PUBLISH and counts
/// the others (PUBACKs of our requests, a late SUBACK); returns the bytes consumed.
pub fn scan_answers(buf: &[u8], mut f: impl FnMut(Answer<'_>)) -> Result<usize> {
    let mut pos = 0;
    while let Some((b1, header_len, total)) = proto::frame(&buf[pos..])? {
        if b1 >> 4 == PUBLISH {
            let body = &buf[pos + header_len..pos + total];
            let qos = (b1 >> 1) & 3;
            if body.len() < 2 {
                bail!("PUBLISH too short");
            }
            let tl = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let topic = body.get(2..2 + tl).context("PUBLISH topic")?;
            let mut p = 2 + tl;
            let id = if qos > 0 {
                let id = body.get(p..p + 2).context("PUBLISH without packet id")?;
                p += 2;
                Some([id[0], id[1]])
            } else {
                None
            };
            let payload = body.get(p..).context("PUBLISH payload")?;
            f(Answer { topic, id, payload });
        }
        pos += total;
    }
    Ok(pos)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The ten-digit sequence number in an answer's clientToken.
fn token_seq(payload: &[u8]) -> Option<u64> {
    let at = find(payload, TOKEN_KEY)? + TOKEN_KEY.len();
    let digits = payload.get(at..at + SEQ_DIGITS)?;
    let mut v = 0u64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(d - b'0');
    }
    Some(v)
}

/// The `code` of a rejection document.
fn rejection_code(payload: &[u8]) -> Option<u16> {
    let at = find(payload, CODE_KEY)? + CODE_KEY.len();
    let rest = payload.get(at..)?;
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    rejected_429: AtomicU64,
    unmatched: AtomicU64,
}

struct Shared {
    ctr: Counters,
    stop: AtomicBool,
    /// Latencies are recorded while this is set (the measured window).
    measuring: AtomicBool,
    hist: Mutex<Histogram<u64>>,
    /// Rejection codes other than 429 and a sample message.
    other_rejections: Mutex<Vec<String>>,
}

/// Runs the scenario against `p.addr`.
pub async fn run(p: &Params) -> Result<Value> {
    let n = p.devices.max(1);
    let k = p.inflight.max(1);
    let ka = u16::try_from(p.warmup.as_secs() + p.duration.as_secs() + 120).unwrap_or(u16::MAX);
    let shared = Arc::new(Shared {
        ctr: Counters::default(),
        stop: AtomicBool::new(false),
        measuring: AtomicBool::new(false),
        hist: Mutex::new(Histogram::new_with_bounds(1_000, 60_000_000_000, 3)?),
        other_rejections: Mutex::new(Vec::new()),
    });
    let hard_deadline =
        tokio::time::Instant::now() + p.warmup + p.duration + Duration::from_secs(60);

    let setup = Instant::now();
    if p.existing_shadows {
        // A fleet in its steady state: each device's shadow exists before it connects (as
        // after its first connection), written through one other connection.
        let mut c = proto::connect(p.addr, &format!("{}-provision", p.id_prefix), ka, None)
            .await
            .context("provisioning connection")?;
        let things: Vec<usize> = (0..n).collect();
        let acked = AtomicU64::new(0);
        crate::shadow_restart::fill_one(&mut c, &things, 100, p.payload, &acked).await?;
    }
    // Every device connected and subscribed before any request goes out.
    let next = Arc::new(AtomicUsize::new(0));
    let slots: Arc<Mutex<Vec<Option<Client>>>> =
        Arc::new(Mutex::new((0..n).map(|_| None).collect()));
    let mut set = JoinSet::new();
    for _ in 0..p.connect_concurrency.clamp(1, n) {
        let (next, slots) = (next.clone(), slots.clone());
        let (addr, prefix, qos) = (p.addr, p.id_prefix.clone(), p.qos);
        let thing_ids = p.thing_client_ids;
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let base = format!("$aws/things/{}/shadow/update", thing(i));
                let filters = [format!("{base}/accepted"), format!("{base}/rejected")];
                let id = if thing_ids {
                    thing(i)
                } else {
                    format!("{prefix}-d{i}")
                };
                let c = connect_subscribed(addr, &id, ka, &filters, qos)
                    .await
                    .with_context(|| format!("device {} of {n}", i + 1))?;
                if let Ok(mut s) = slots.lock() {
                    s[i] = Some(c);
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let clients: Vec<Client> = {
        let mut s = slots.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        s.drain(..)
            .map(|c| c.context("device not connected"))
            .collect::<Result<_>>()?
    };
    let setup_s = setup.elapsed().as_secs_f64();

    let mut set = JoinSet::new();
    for (i, c) in clients.into_iter().enumerate() {
        let tpl = UpdateTemplate::new(
            &format!("$aws/things/{}/shadow/update", thing(i)),
            p.qos,
            p.payload,
        )?;
        // With --rate, each device sends at rate/N per second, the devices' schedules
        // spread evenly over one interval.
        let pace = (p.rate > 0).then(|| {
            let interval = Duration::from_secs_f64(n as f64 / p.rate as f64);
            let offset = interval.mul_f64(i as f64 / n as f64);
            (interval, offset)
        });
        set.spawn(device(c, tpl, k, pace, shared.clone(), hard_deadline));
    }

    sleep(p.warmup).await;
    let ticks = procstat::clock_ticks();
    let snap = |s: &Shared| {
        [
            s.ctr.sent.load(Ordering::Relaxed),
            s.ctr.accepted.load(Ordering::Relaxed),
            s.ctr.rejected.load(Ordering::Relaxed),
            s.ctr.rejected_429.load(Ordering::Relaxed),
            s.ctr.unmatched.load(Ordering::Relaxed),
        ]
    };
    let c0 = snap(&shared);
    shared.measuring.store(true, Ordering::Relaxed);
    let meter = CpuMeter::start(ticks, p.broker_pid)?;
    sleep(p.duration).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let c1 = snap(&shared);
    let cpu = meter.stop()?;
    let rss = p.broker_pid.and_then(|pid| procstat::rss_kib(pid).ok());
    shared.stop.store(true, Ordering::Relaxed);

    let mut errors: Vec<String> = Vec::new();
    let mut errored = 0usize;
    while let Some(r) = set.try_join_next() {
        if let Ok(Err(e)) = r {
            errored += 1;
            if errors.len() < 5 {
                errors.push(format!("{e:#}"));
            }
        }
    }
    // Give every device a moment to flush its last latencies, then end them.
    let grace = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::Instant::now() < grace && !set.is_empty() {
        match timeout_at(grace, set.join_next()).await {
            Ok(Some(Ok(Err(e)))) => {
                errored += 1;
                if errors.len() < 5 {
                    errors.push(format!("{e:#}"));
                }
            }
            Ok(None) | Err(_) => break,
            Ok(Some(_)) => {}
        }
    }
    set.abort_all();
    while set.join_next().await.is_some() {}

    let secs = cpu.secs;
    let d = |j: usize| c1[j] - c0[j];
    let (sent, accepted, rejected, r429, unmatched) = (d(0), d(1), d(2), d(3), d(4));
    let hist = shared
        .hist
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let others = shared
        .other_rejections
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    Ok(json!({
        "ok": errored == 0 && accepted > 0,
        "devices": n,
        "inflight_per_device": k,
        "accepted": accepted,
        "accepted_per_s": accepted as f64 / secs,
        "sent_per_s": sent as f64 / secs,
        "rejected": rejected,
        "rejected_429": r429,
        "rejected_other": others,
        "unmatched_answers": unmatched,
        "latency_samples": hist.len(),
        "p50_us": us(0.5),
        "p99_us": us(0.99),
        "p999_us": us(0.999),
        "max_us": hist.max() as f64 / 1000.0,
        "mean_us": hist.mean() / 1000.0,
        "measured_s": secs,
        "setup_s": setup_s,
        "generator_cpu_pct": cpu.generator_pct,
        "broker_cpu_pct": cpu.broker_pct,
        "broker_rss_kib": rss,
        "clients_failed": errored,
        "errors": errors,
    }))
}

/// One device: K requests outstanding on its own shadow, the next sent as soon as one is
/// answered.
async fn device(
    c: Client,
    tpl: UpdateTemplate,
    window: usize,
    pace: Option<(Duration, Duration)>,
    sh: Arc<Shared>,
    deadline: tokio::time::Instant,
) -> Result<()> {
    let mut next_send = tokio::time::Instant::now() + pace.map_or(Duration::ZERO, |p| p.1);
    let Client {
        mut stream,
        mut buf,
    } = c;
    let ack = proto::puback_bytes(1)?;
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    // (sequence number, write time) of the requests waiting for their answer.
    let mut outstanding: Vec<(u64, Instant)> = Vec::with_capacity(window);
    let mut samples: Vec<u64> = Vec::with_capacity(128);
    let mut seq = 0u64;
    let mut pid = 0u16;
    let flush = |samples: &mut Vec<u64>| {
        if let Ok(mut h) = sh.hist.lock() {
            for &s in samples.iter() {
                let _ = h.record(s.max(1_000));
            }
        }
        samples.clear();
    };
    let result = async {
        loop {
            let stopping = sh.stop.load(Ordering::Relaxed);
            let mut sent = 0u64;
            if !stopping {
                let now = Instant::now();
                while outstanding.len() < window
                    && pace.is_none_or(|_| tokio::time::Instant::now() >= next_send)
                {
                    if let Some((interval, _)) = pace {
                        next_send += interval;
                    }
                    seq += 1;
                    pid = if pid == u16::MAX { 1 } else { pid + 1 };
                    tpl.append(&mut out, pid, seq);
                    outstanding.push((seq, now));
                    sent += 1;
                }
            }
            if !out.is_empty() {
                match timeout_at(deadline, stream.write_all(&out)).await {
                    Ok(r) => r.context("device write")?,
                    Err(_) => return Ok(()),
                }
                out.clear();
            }
            if sent > 0 {
                sh.ctr.sent.fetch_add(sent, Ordering::Relaxed);
            }
            if stopping {
                return Ok(());
            }
            buf.reserve(READ_CHUNK);
            // Paced and below the window: wake for the next send if no answer comes first.
            let wake = match pace {
                Some(_) if outstanding.len() < window => next_send.min(deadline),
                _ => deadline,
            };
            match timeout_at(wake, stream.read_buf(&mut buf)).await {
                Err(_) if wake < deadline => continue,
                Err(_) => return Ok(()),
                Ok(r) => {
                    if r.context("device read")? == 0 {
                        bail!("broker closed a device's connection");
                    }
                }
            }
            let now = Instant::now();
            let measuring = sh.measuring.load(Ordering::Relaxed);
            let (mut acc, mut rej, mut r429, mut unmatched) = (0u64, 0u64, 0u64, 0u64);
            let used = scan_answers(&buf, |a| {
                if let Some(id) = a.id {
                    proto::push_puback(&mut out, &ack, id);
                }
                let accepted = a.topic.ends_with(b"/accepted");
                let pos = token_seq(a.payload)
                    .and_then(|s| outstanding.iter().position(|&(q, _)| q == s));
                let Some(pos) = pos else {
                    unmatched += 1;
                    return;
                };
                let (_, t) = outstanding.swap_remove(pos);
                if measuring {
                    samples.push(now.duration_since(t).as_nanos() as u64);
                }
                if accepted {
                    acc += 1;
                } else {
                    rej += 1;
                    match rejection_code(a.payload) {
                        Some(429) => r429 += 1,
                        code => {
                            if let Ok(mut o) = sh.other_rejections.lock() {
                                if o.len() < 5 {
                                    o.push(format!(
                                        "{code:?}: {}",
                                        String::from_utf8_lossy(a.payload)
                                    ));
                                }
                            }
                        }
                    }
                }
            })?;
            buf.advance(used);
            for (v, c) in [
                (acc, &sh.ctr.accepted),
                (rej, &sh.ctr.rejected),
                (r429, &sh.ctr.rejected_429),
                (unmatched, &sh.ctr.unmatched),
            ] {
                if v > 0 {
                    c.fetch_add(v, Ordering::Relaxed);
                }
            }
            if samples.len() >= 64 {
                flush(&mut samples);
            }
        }
    }
    .await;
    flush(&mut samples);
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn template_decodes_and_carries_the_token() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let t = UpdateTemplate::new("$aws/things/bench-7/shadow/update", qos, 200).unwrap();
            let mut out = Vec::new();
            t.append(&mut out, 513, 42);
            let mut buf = BytesMut::from(&out[..]);
            let mut dec = Decoder::with_version(proto::VERSION, proto::MAX_PACKET);
            let Some(Packet::Publish(p)) = dec.decode(&mut buf).unwrap() else {
                panic!("not a publish");
            };
            assert_eq!(p.topic, "$aws/things/bench-7/shadow/update");
            let v: Value = serde_json::from_slice(&p.payload).unwrap();
            assert_eq!(v["clientToken"], "0000000042");
            assert_eq!(v["state"]["reported"]["seq"], "0000000042");
            assert!(
                (195..=205).contains(&p.payload.len()),
                "{}",
                p.payload.len()
            );
            assert_eq!(token_seq(&p.payload), Some(42));
        }
        let v: Value = serde_json::from_slice(&fill_payload(12, 200)).unwrap();
        assert_eq!(v["state"]["reported"]["i"], 12);
    }

    #[test]
    fn answers_are_framed_and_parsed() {
        let doc = br#"{"state":{"reported":{"seq":"0000000003"}},"version":3,"clientToken":"0000000003"}"#;
        let mut bytes = encode_publish(
            "$aws/things/bench-1/shadow/update/accepted",
            QoS::AtLeastOnce,
            9,
            doc.to_vec(),
        )
        .unwrap()
        .to_vec();
        let rej = br#"{"code":429,"message":"Too Many Requests","timestamp":1,"clientToken":"0000000004"}"#;
        bytes.extend_from_slice(
            &encode_publish(
                "$aws/things/bench-1/shadow/update/rejected",
                QoS::AtMostOnce,
                1,
                rej.to_vec(),
            )
            .unwrap(),
        );
        let mut seen = Vec::new();
        let used = scan_answers(&bytes, |a| {
            seen.push((
                a.topic.ends_with(b"/accepted"),
                a.id,
                token_seq(a.payload),
                rejection_code(a.payload),
            ))
        })
        .unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            seen,
            vec![
                (true, Some([0, 9]), Some(3), None),
                (false, None, Some(4), Some(429))
            ]
        );
    }
}
