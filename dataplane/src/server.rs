//! Starting and stopping the shards: one glommio executor per shard, each pinned to a core,
//! each listening on the same port with SO_REUSEPORT so the kernel spreads connections.

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::channel::oneshot;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};

use crate::admin;
use crate::config::Config;
use crate::connection;
use crate::connection::handle::Kill;
use crate::directory::Directory;
use crate::ids::ShardId;
use crate::listener;
use crate::metrics::Snapshot;
use crate::shard::mesh::Batch;
use crate::shard::Shard;

/// Batches in flight per ordered pair of shards before a sender waits.
const MESH_CHANNEL_BATCHES: usize = 1024;
/// The interest table keeps shard sets as a 64-bit mask.
const MAX_SHARDS: usize = 64;
/// How often shards copy their counters for the admin thread.
const METRICS_INTERVAL: Duration = Duration::from_millis(250);
/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub fn run(config: Config) -> anyhow::Result<()> {
    let shards = config.shard_count().min(MAX_SHARDS);
    // Fail fast, with a clear message, if the port is taken by another program.
    listener::check_free(config.mqtt.bind)
        .with_context(|| format!("cannot listen on {} (mqtt.bind)", config.mqtt.bind))?;
    let snapshots: Vec<Arc<Snapshot>> = (0..shards).map(|_| Arc::default()).collect();
    if config.admin.enabled {
        admin::start(config.admin.bind, snapshots.clone());
    }
    let config = Arc::new(config);
    let directory = Arc::new(Directory::default());
    let mesh: MeshBuilder<Batch, _> = MeshBuilder::full(shards, MESH_CHANNEL_BATCHES);

    let mut stop_senders = Vec::new();
    let mut stop_receivers = Vec::new();
    for _ in 0..shards {
        let (tx, rx) = oneshot::channel::<()>();
        stop_senders.push(tx);
        stop_receivers.push(Some(rx));
    }
    let stop_receivers = Arc::new(Mutex::new(stop_receivers));

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("iotcore-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "shutting down");
                for tx in stop_senders {
                    let _ = tx.send(());
                }
            }
        })
        .context("cannot start the signal thread")?;

    tracing::info!(shards, bind = %config.mqtt.bind, "iotcore starting");
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(shards, None))
        .name("iotcore-shard")
        .on_all_shards(move || {
            let config = config.clone();
            let directory = directory.clone();
            let mesh = mesh.clone();
            let stop_receivers = stop_receivers.clone();
            let snapshots = snapshots.clone();
            async move {
                if let Err(e) =
                    run_shard(config, directory, mesh, stop_receivers, snapshots, shards).await
                {
                    tracing::error!(error = %e, "shard failed");
                    return Err(e.to_string());
                }
                Ok(())
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the shards: {e}"))?;
    let mut failed = None;
    for result in handles.join_all() {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(e) => failed = Some(format!("{e:?}")),
        }
    }
    match failed {
        Some(e) => anyhow::bail!("a shard failed: {e}"),
        None => {
            tracing::info!("iotcore stopped");
            Ok(())
        }
    }
}

async fn run_shard(
    config: Arc<Config>,
    directory: Arc<Directory>,
    mesh: MeshBuilder<Batch, glommio::channels::channel_mesh::Full>,
    stop_receivers: Arc<Mutex<Vec<Option<oneshot::Receiver<()>>>>>,
    snapshots: Vec<Arc<Snapshot>>,
    shards: usize,
) -> anyhow::Result<()> {
    let (senders, receivers) = mesh
        .join()
        .await
        .map_err(|e| anyhow::anyhow!("cannot join the shard mesh: {e}"))?;
    let id = ShardId(senders.peer_id());
    let stop = stop_receivers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(id.0)
        .and_then(Option::take)
        .context("no stop signal for this shard")?;
    let shard = Shard::new(id, shards, config.clone(), directory);
    shard.start_mesh(senders, receivers);
    if let Some(snapshot) = snapshots.get(id.0).cloned() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            loop {
                shard.publish_metrics(&snapshot);
                glommio::timer::sleep(METRICS_INTERVAL).await;
            }
        })
        .detach();
    }
    let listener = listener::bind(config.mqtt.bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.mqtt.bind))?;
    tracing::debug!(shard = id.0, "listening");

    let accept = async {
        loop {
            match listener.accept().await {
                Ok(stream) => {
                    glommio::spawn_local(connection::serve(shard.clone(), stream)).detach();
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    futures_lite::future::or(accept, async {
        let _ = stop.await;
    })
    .await;
    drop(listener);
    shutdown(&shard).await;
    Ok(())
}

/// Tells every connection the server is going away (MQTT 5: DISCONNECT 0x8B) and waits,
/// briefly, for them to close.
async fn shutdown(shard: &Rc<Shard>) {
    shard.shutting_down.set(true);
    let conns: Vec<_> = shard.connections.borrow().values().cloned().collect();
    for conn in conns {
        conn.kill(Kill::Shutdown);
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while shard.live_connections.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}
