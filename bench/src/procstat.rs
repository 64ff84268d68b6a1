//! CPU time and resident memory of a process, from /proc; machine facts; limits.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// utime + stime of `pid` (or of this process when `None`), in clock ticks, all threads.
pub fn cpu_ticks(pid: Option<u32>) -> Result<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let s = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = s
        .rfind(')')
        .map(|i| &s[i + 1..])
        .with_context(|| format!("parse {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")" come state (field 3) ... utime is field 14, stime field 15 (1-based).
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

/// Resident memory of `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            return Ok(v.trim().trim_end_matches("kB").trim().parse()?);
        }
    }
    bail!("no VmRSS in {path}")
}

/// A CPU meter over a window: this process and, optionally, the broker.
pub struct CpuMeter {
    ticks_per_s: u64,
    broker: Option<u32>,
    start: Instant,
    own: u64,
    theirs: Option<u64>,
}

pub struct CpuUse {
    /// % of one core.
    pub generator_pct: f64,
    pub broker_pct: Option<f64>,
    pub secs: f64,
}

impl CpuMeter {
    pub fn start(ticks_per_s: u64, broker: Option<u32>) -> Result<CpuMeter> {
        Ok(CpuMeter {
            ticks_per_s,
            broker,
            start: Instant::now(),
            own: cpu_ticks(None)?,
            theirs: broker.and_then(|p| cpu_ticks(Some(p)).ok()),
        })
    }

    pub fn stop(&self) -> Result<CpuUse> {
        let secs = self.start.elapsed().as_secs_f64();
        let own = cpu_ticks(None)?.saturating_sub(self.own);
        let pct = |ticks: u64| 100.0 * ticks as f64 / self.ticks_per_s as f64 / secs;
        let broker_pct = match (self.broker, self.theirs) {
            (Some(p), Some(before)) => cpu_ticks(Some(p))
                .ok()
                .map(|now| pct(now.saturating_sub(before))),
            _ => None,
        };
        Ok(CpuUse {
            generator_pct: pct(own),
            broker_pct,
            secs,
        })
    }
}

/// Raises the soft file-descriptor and locked-memory limits to the hard ones; returns the
/// file-descriptor limit now in force. Children (the brokers `compare` starts) inherit them.
///
/// Also grows this process's descriptor table to the limit (up to 2^18) while it has one
/// thread: the kernel grows it by doubling, and in a multi-threaded process each growth
/// waits for an RCU grace period, which stalled the generator's connects for 10–40 ms at
/// 256, 512, 1,024, ... open sockets (the same as iotcore's `fds.rs`). Brokers do not
/// inherit the table.
pub fn raise_limits() -> u64 {
    use rlimit::Resource;
    if let Ok((_, hard)) = rlimit::getrlimit(Resource::MEMLOCK) {
        let _ = rlimit::setrlimit(Resource::MEMLOCK, hard, hard);
    }
    let limit = match rlimit::getrlimit(Resource::NOFILE) {
        Ok((soft, hard)) if soft < hard => match rlimit::setrlimit(Resource::NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    };
    let top = limit.min(1 << 18).saturating_sub(1) as i32;
    if top > 0 && nix::fcntl::fcntl(top, nix::fcntl::FcntlArg::F_GETFD).is_err() {
        if let Ok(fd) = nix::unistd::dup2(2, top) {
            let _ = nix::unistd::close(fd);
        }
    }
    limit
}

/// Machine facts for the result files.
pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": cpu,
        "kernel": kernel,
        "mem_gib": (mem_kib as f64 / 1024.0 / 1024.0).round(),
    })
}

/// 1-, 5-, 15-minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Today's date (UTC) as YYYY-MM-DD, and the time as an RFC 3339 string.
pub fn now_utc() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let time = format!(
        "{date}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    (date, time)
}

/// GETs an http://127.0.0.1:PORT/PATH URL (Prometheus metrics) with HTTP/1.0 and returns the
/// body. Only loopback addresses are accepted.
pub fn http_get(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .context("metrics URL must be http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: std::net::SocketAddr = hostport
        .parse()
        .with_context(|| format!("metrics URL needs an IP:port, got {hostport}"))?;
    if !addr.ip().is_loopback() {
        bail!("metrics URL must be on loopback");
    }
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let (head, body) = body
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1).is_none_or(|c| c != "200") {
        bail!(
            "metrics endpoint answered {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_string())
}

/// The `iotcore_*` sample lines of a Prometheus exposition.
pub fn iotcore_samples(body: &str) -> Vec<String> {
    body.lines()
        .filter(|l| l.starts_with("iotcore_"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_and_date() {
        assert!(cpu_ticks(None).is_ok());
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        let (d, t) = now_utc();
        assert_eq!(d.len(), 10);
        assert!(t.starts_with(&d));
    }
}
