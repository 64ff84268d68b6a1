//! The data directory: one sub-directory per shard, each holding that shard's logs
//! (`shard-0/shadows/`, ...), and a `LAYOUT` file recording the shard count the data was
//! written with. Things are placed on shards by a hash of their name, so starting with a
//! different shard count would hide data on the wrong shard: that is refused with a clear
//! error instead.

use std::path::{Path, PathBuf};

use anyhow::Context;
use iotcore_core::log::Recovery;

use crate::config::Config;
use crate::ids::ShardId;
use crate::message::SharedMessage;
use crate::retained_store::RetainedStore;
use crate::session_store::{RecoveredSession, SessionStore};
use crate::shadow::service::ShadowService;
use crate::shadow::store::ShadowStore;

const LAYOUT_FILE: &str = "LAYOUT";

/// Creates the data directory if needed and checks (or records) its shard count.
pub fn check_layout(data_dir: &Path, shards: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (storage.data_dir)",
            data_dir.display()
        )
    })?;
    let path = data_dir.join(LAYOUT_FILE);
    let expected = format!("shards = {shards}\n");
    match std::fs::read_to_string(&path) {
        Ok(found) if found == expected => Ok(()),
        Ok(found) => anyhow::bail!(
            "the data directory {} was written with `{}`, but this server runs {shards} shards; \
             start it with server.shards set to that count (or use another storage.data_dir)",
            data_dir.display(),
            found.trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Only a directory without any shard data may take a new layout.
            let has_shard_data = std::fs::read_dir(data_dir)
                .with_context(|| format!("cannot read {}", data_dir.display()))?
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("shard-"));
            if has_shard_data {
                anyhow::bail!(
                    "the data directory {} has shard data but no {LAYOUT_FILE} file",
                    data_dir.display()
                );
            }
            std::fs::write(&path, expected)
                .with_context(|| format!("cannot write {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `<data_dir>/shard-N/<name>`: one log of one shard.
fn log_dir(config: &Config, shard: usize, name: &str) -> PathBuf {
    config
        .storage
        .data_dir
        .join(format!("shard-{shard}"))
        .join(name)
}

/// Logs every damaged spot recovery found (and skipped or cut) in a log.
fn report_damage(dir: &Path, recovery: &Recovery, what: &str) {
    for problem in &recovery.corruptions {
        tracing::warn!(dir = %dir.display(), problem = %problem, "{what} log damage found and skipped");
    }
}

/// Opens (recovering) a shard's shadow store.
pub fn open_shadows(config: &Config, shard: ShardId) -> anyhow::Result<ShadowService> {
    let dir = log_dir(config, shard.0, "shadows");
    let (store, recovery) = ShadowStore::open(
        &dir,
        config.storage.segment_bytes,
        config.storage.compact_after_bytes,
    )
    .with_context(|| format!("cannot open the shadow log in {}", dir.display()))?;
    report_damage(&dir, &recovery, "shadow");
    Ok(ShadowService::new(
        store,
        config.shadows.limits(),
        config.storage.durable,
        config.shadows.max_in_flight_per_thing,
    ))
}

/// The shard that writes a retained topic's changes to its log. CRC-32, fixed, because
/// the data must be found on the same shard after a restart.
pub fn retained_owner(topic: &str, shards: usize) -> ShardId {
    ShardId(crc32fast::hash(topic.as_bytes()) as usize % shards.max(1))
}

/// Opens every shard's retained log (before the shards start, since every shard needs every
/// retained message): the stores by shard index, and all live retained messages.
pub fn open_retained(
    config: &Config,
    shards: usize,
) -> anyhow::Result<(Vec<RetainedStore>, Vec<SharedMessage>)> {
    let mut stores = Vec::with_capacity(shards);
    let mut messages = Vec::new();
    for index in 0..shards {
        let dir = log_dir(config, index, "retained");
        let (store, found, recovery) = RetainedStore::open(
            &dir,
            config.storage.segment_bytes,
            config.storage.compact_after_bytes,
            config.storage.durable,
        )
        .with_context(|| format!("cannot open the retained log in {}", dir.display()))?;
        report_damage(&dir, &recovery, "retained");
        messages.extend(found);
        stores.push(store);
    }
    Ok((stores, messages))
}

/// Opens (recovering) a shard's persistent-session log.
pub fn open_sessions(
    config: &Config,
    shard: ShardId,
) -> anyhow::Result<(SessionStore, Vec<RecoveredSession>)> {
    let dir = log_dir(config, shard.0, "sessions");
    let (store, recovered, recovery) = SessionStore::open(
        &dir,
        config.storage.segment_bytes,
        config.storage.compact_after_bytes,
        config.storage.durable,
    )
    .with_context(|| format!("cannot open the session log in {}", dir.display()))?;
    report_damage(&dir, &recovery, "session");
    Ok((store, recovered))
}
