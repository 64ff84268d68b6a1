//! The server configuration: one serde tree, every field with a documented default, so
//! `iotcore serve` runs with no file at all. Validation returns errors naming the field.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config value `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub mqtt: MqttConfig,
    pub auth: AuthConfig,
    pub limits: Limits,
    pub admin: AdminConfig,
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub shadows: ShadowConfig,
}

/// The HTTP listener of the device shadow REST API (plain HTTP for now).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Default `127.0.0.1:8080`: local only until authentication covers it.
    pub bind: SocketAddr,
    /// Set false to run without the REST API. Default true.
    pub enabled: bool,
    /// Largest request body accepted. Default 131072 (128 KB).
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            enabled: true,
            max_body_bytes: 128 * 1024,
        }
    }
}

/// Where and how durable state (shadows, retained messages) is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The data directory. Default `iotcore-data`, relative to the working directory.
    pub data_dir: std::path::PathBuf,
    /// Acknowledge a durable write (`/update/accepted`, a REST 200, the PUBACK of a
    /// retained message) only once it is fsynced. Default true. False trades the last
    /// moments before a crash for latency.
    pub durable: bool,
    /// Log segment size in bytes. Default 64 MiB.
    pub segment_bytes: u64,
    /// Compact (snapshot the live state, drop older segments) once the log since the last
    /// snapshot exceeds this many bytes and twice the live state. Default 256 MiB.
    pub compact_after_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: std::path::PathBuf::from("iotcore-data"),
            durable: true,
            segment_bytes: 64 * 1024 * 1024,
            compact_after_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Device shadow limits, AWS IoT Core's values by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowConfig {
    /// Largest desired + reported state in bytes. Default 8192 (AWS: 8 KB).
    pub max_state_bytes: usize,
    /// Deepest nesting of the state. Default 6 (AWS).
    pub max_depth: usize,
    /// Longest clientToken in bytes. Default 64 (AWS).
    pub max_client_token_bytes: usize,
    /// Requests per thing waiting for their answer; more get 429. Default 10 (AWS).
    pub max_in_flight_per_thing: usize,
    /// Most names ListNamedShadowsForThing returns per page. Default 100.
    pub max_page_size: usize,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            max_state_bytes: 8192,
            max_depth: 6,
            max_client_token_bytes: 64,
            max_in_flight_per_thing: 10,
            max_page_size: 100,
        }
    }
}

impl ShadowConfig {
    pub fn limits(&self) -> iotcore_core::shadow::ShadowLimits {
        iotcore_core::shadow::ShadowLimits {
            max_state_bytes: self.max_state_bytes,
            max_depth: self.max_depth,
            max_client_token_bytes: self.max_client_token_bytes,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Admin HTTP listener (`GET /metrics`). Default `127.0.0.1:9883`: local only.
    pub bind: SocketAddr,
    /// Set false to run without the admin listener. Default true.
    pub enabled: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 9883)),
            enabled: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Number of shards (one thread and one io_uring each). Default 0: one per core.
    pub shards: usize,
    /// Let the kernel back the heap with 2 MiB transparent huge pages (where the system's
    /// THP mode is `madvise`, the allocator asks for them). Default false: each huge-page
    /// fault zeroes 2 MiB on the shard thread (a 28% share of the broker's CPU while 10,000
    /// clients connect) and resident memory grows in 2 MiB steps (7.4 KiB per idle
    /// connection with them, 4.5 KiB without).
    pub transparent_huge_pages: bool,
    /// Serve a client whose id names a thing that has a shadow on the shard that owns that
    /// thing's shadows (AWS recommends the thing name as client id): its shadow requests
    /// then never cross between shards (p99 at 50,000 durable updates/s 3.7–4.5 against
    /// 6.0–7.7 ms; bench/results, session 5). Clients without a shadow are placed as any
    /// other. Default true; false: connections stay where placed.
    pub thing_affinity: bool,
    /// A connection with no traffic either way for this long parks: it keeps its socket and
    /// session but no tasks, stream or armed poll until something arrives or is to be sent
    /// (`connection/park.rs`; 2.5 → 0.9 KiB per idle connection, bench/results, sessions 6
    /// and 7).
    /// Waking costs a few microseconds; a connection woken soon after parking needs twice
    /// the quiet time next time (up to 64 times this). Default 500; 0: never park.
    pub park_idle_ms: u64,
    /// Bind each shard's thread to one core. Default false: the kernel may move a shard to
    /// an idle core. Pinned, a shard whose core is running another thread (a client, a
    /// sidecar, another shard's helper) waits for it: with the load generator on the same
    /// 2 cores, p50 at 10,000 msgs/s was 42 µs pinned against 30 unpinned, QoS 1 p99 124–187
    /// against 102–126 µs, and throughput the same (bench/results, session 8). Set true on a
    /// host whose cores are the broker's alone.
    pub pin_shards: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            shards: 0,
            transparent_huge_pages: false,
            thing_affinity: true,
            park_idle_ms: 500,
            pin_shards: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Plain MQTT listener. Default `0.0.0.0:1883`, the conventional MQTT port.
    pub bind: SocketAddr,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 1883)),
        }
    }
}

/// Who may connect without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousPolicy {
    /// Only clients connecting from a loopback address (Mosquitto 2's default stance).
    Loopback,
    /// Anyone.
    Any,
    /// No one.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Default `loopback`: safe out of the box on a server with a public address.
    pub allow_anonymous: AnonymousPolicy,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous: AnonymousPolicy::Loopback,
        }
    }
}

/// Every limit, with AWS IoT Core's value as the default where AWS has one.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest PUBLISH payload accepted. Default 131072 (AWS: 128 KB).
    pub max_payload_bytes: usize,
    /// Largest packet accepted, and the Maximum Packet Size sent in CONNACK. Default 149504
    /// (the payload limit plus room for a topic and properties).
    pub max_packet_bytes: u32,
    /// Longest topic name in bytes. Default 256 (AWS).
    pub max_topic_bytes: usize,
    /// Most levels in a topic name or filter. Default 8 (AWS: 7 slashes).
    pub max_topic_levels: usize,
    /// Longest client id in bytes. Default 128 (AWS).
    pub max_client_id_bytes: usize,
    /// Subscriptions one session may hold. Default 50 (AWS).
    pub max_subscriptions_per_connection: usize,
    /// Filters in one SUBSCRIBE. Default 8 (AWS).
    pub max_filters_per_subscribe: usize,
    /// QoS 1/2 messages in flight per direction: the Receive Maximum sent in CONNACK, and the
    /// cap on the window toward a client. Default 100 (AWS).
    pub receive_maximum: u16,
    /// QoS 1/2 messages queued per session beyond the in-flight window or while offline.
    /// Default 1000.
    pub max_queued_messages: usize,
    /// Publisher flow control (`flow.rs`): while a subscriber's queue is over half of
    /// `max_queued_messages`, the PUBACKs of QoS 1 messages for it wait, up to this long, for
    /// it to catch up. 0 turns flow control off. Default 100.
    pub max_puback_delay_ms: u64,
    /// Bytes waiting to be written to one connection; past this, QoS 0 deliveries are dropped
    /// (and counted). Default 1048576.
    pub max_outbound_bytes: usize,
    /// A client whose outbound bytes stay over `max_outbound_bytes` with no write progress for
    /// this long is disconnected (a subscriber that never reads). Default 10.
    pub slow_consumer_timeout_secs: u64,
    /// Topic aliases a client may use toward the server. Default 8 (AWS).
    pub topic_alias_maximum: u16,
    /// A client asking for a shorter keep-alive gets this one (MQTT 5 learns it through
    /// Server Keep Alive). Default 30 (AWS).
    pub keep_alive_min_secs: u16,
    /// A client asking for a longer keep-alive, or none (0), gets this one. Default 1200 (AWS).
    pub keep_alive_max_secs: u16,
    /// Longest session expiry granted, and the expiry of a 3.1.1 clean-session=0 session.
    /// Default 3600 (AWS: one hour).
    pub session_expiry_max_secs: u32,
    /// A connection that has not sent a whole CONNECT within this many seconds is closed
    /// (slowloris). Default 10.
    pub connect_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 128 * 1024,
            max_packet_bytes: 146 * 1024,
            max_topic_bytes: 256,
            max_topic_levels: 8,
            max_client_id_bytes: 128,
            max_subscriptions_per_connection: 50,
            max_filters_per_subscribe: 8,
            receive_maximum: 100,
            max_queued_messages: 1000,
            max_puback_delay_ms: 100,
            max_outbound_bytes: 1024 * 1024,
            slow_consumer_timeout_secs: 10,
            topic_alias_maximum: 8,
            keep_alive_min_secs: 30,
            keep_alive_max_secs: 1200,
            session_expiry_max_secs: 3600,
            connect_timeout_secs: 10,
        }
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.to_string(),
            })
        };
        if l.receive_maximum == 0 {
            return invalid("limits.receive_maximum", "must be at least 1");
        }
        if l.max_packet_bytes < 64 {
            return invalid("limits.max_packet_bytes", "must be at least 64");
        }
        if l.max_packet_bytes > 268_435_460 {
            return invalid(
                "limits.max_packet_bytes",
                "must be at most 268435460 (the MQTT maximum)",
            );
        }
        if l.max_topic_levels == 0 || l.max_topic_bytes == 0 {
            return invalid("limits.max_topic_levels", "topic limits must be at least 1");
        }
        if l.keep_alive_min_secs > l.keep_alive_max_secs {
            return invalid(
                "limits.keep_alive_min_secs",
                "must not exceed limits.keep_alive_max_secs",
            );
        }
        if l.max_client_id_bytes == 0 || l.max_client_id_bytes > 65535 {
            return invalid("limits.max_client_id_bytes", "must be in 1..=65535");
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return invalid("storage.data_dir", "must not be empty");
        }
        if self.storage.segment_bytes < 4096 {
            return invalid("storage.segment_bytes", "must be at least 4096");
        }
        if self.shadows.max_in_flight_per_thing == 0 || self.shadows.max_page_size == 0 {
            return invalid(
                "shadows.max_in_flight_per_thing",
                "shadow limits must be at least 1",
            );
        }
        Ok(())
    }

    /// The shard count to start: the configured one, or one per available core.
    pub fn shard_count(&self) -> usize {
        if self.server.shards > 0 {
            self.server.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.mqtt.bind.port(), 1883);
        assert_eq!(c.limits.max_payload_bytes, 131072);
        assert_eq!(c.auth.allow_anonymous, AnonymousPolicy::Loopback);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_errors() {
        let err = toml::from_str::<Config>("[limits]\nmax_payload = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_payload"), "{err}");
    }

    #[test]
    fn zero_receive_maximum_is_rejected_by_name() {
        let c: Config = toml::from_str("[limits]\nreceive_maximum = 0\n").unwrap();
        let err = c.validate().unwrap_err();
        assert!(err.to_string().contains("limits.receive_maximum"), "{err}");
    }
}
