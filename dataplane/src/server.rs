//! Starting and stopping the shards: one glommio executor per shard (bound to its own core
//! with `[server] pin_shards`), each listening on the same port with SO_REUSEPORT so the kernel
//! spreads connections.
//!
//! Shutdown never tears an executor down: each shard says goodbye to its clients, reports
//! that it is done, and parks; the main thread then exits the process. Dropping a glommio
//! executor with I/O in flight is a path we have no need to exercise.

use bytes::BytesMut;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use nix::sys::signal::{SigSet, Signal};

use crate::admin;
use crate::config::Config;
use crate::connection;
use crate::connection::handle::Kill;
use crate::directory::Directory;
use crate::ids::ShardId;
use crate::listener;
use crate::message::SharedMessage;
use crate::metrics::Snapshot;
use crate::retained_store::RetainedStore;
use crate::shard::links::Links;
use crate::shard::mesh::ShardMsg;
use crate::shard::Shard;

/// Batches in flight per ordered pair of shards before a sender waits. 64 → 128 gave fan-in
/// another 5% (the peer's share of a saturated shard) for ~30 MB more in flight at most.
const MESH_CHANNEL_BATCHES: usize = 128;
/// The interest table keeps shard sets as a 64-bit mask.
const MAX_SHARDS: usize = 64;
const PREEMPT_TIMER: Duration = Duration::from_millis(1);
/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How often the main thread and each shard look at the stop flag.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(50);
/// How often each shard copies its counters for the admin thread.
const METRICS_INTERVAL: Duration = Duration::from_millis(250);

/// What the main thread and the shards share about the process's life.
#[derive(Default)]
struct Lifecycle {
    /// Set by a signal (or a failing shard): every shard starts its shutdown.
    stop: AtomicBool,
    /// Shards that finished their shutdown (or failed).
    done: AtomicUsize,
    /// Shards that recovered their state and are about to listen.
    ready: AtomicUsize,
    failure: Mutex<Option<String>>,
}

/// SIGINT and SIGTERM, the signals that stop the server.
fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// Blocks the stop signals in the calling thread and every thread it starts afterwards; one
/// thread then takes them with `sigwait`. No signal handler ever runs, so no shard's
/// `io_uring_enter` is ever interrupted by one (glommio does not expect that). Call before
/// any other thread exists.
pub fn block_stop_signals() -> anyhow::Result<()> {
    stop_signals()
        .thread_block()
        .context("cannot block SIGINT and SIGTERM")
}

pub fn run(config: Config) -> anyhow::Result<()> {
    let shards = config.shard_count().min(MAX_SHARDS);
    // Fail fast, with a clear message, if the port is taken by another program.
    listener::check_free(config.mqtt.bind)
        .with_context(|| format!("cannot listen on {} (mqtt.bind)", config.mqtt.bind))?;
    if config.http.enabled {
        listener::check_free(config.http.bind)
            .with_context(|| format!("cannot listen on {} (http.bind)", config.http.bind))?;
    }
    crate::storage::check_layout(&config.storage.data_dir, shards)?;
    let (retained_stores, retained) = crate::storage::open_retained(&config, shards)?;
    tracing::info!(retained = retained.len(), "retained messages recovered");
    let retained_stores = Arc::new(Mutex::new(
        retained_stores.into_iter().map(Some).collect::<Vec<_>>(),
    ));
    let retained = Arc::new(retained);
    let snapshots: Vec<Arc<Snapshot>> = (0..shards).map(|_| Arc::default()).collect();
    if config.admin.enabled {
        admin::start(config.admin.bind, snapshots.clone());
    }
    let config = Arc::new(config);
    let directory = Arc::new(Directory::default());
    let placement = Arc::new(crate::placement::Placement::new(shards));
    let backlogs = Arc::new(crate::flow::Backlogs::new(shards));
    let links = Arc::new(Links::new(shards, MESH_CHANNEL_BATCHES));
    let next_index = Arc::new(AtomicUsize::new(0));
    let life = Arc::new(Lifecycle::default());

    let signal_life = life.clone();
    std::thread::Builder::new()
        .name("iotcore-signals".into())
        .spawn(move || match stop_signals().wait() {
            Ok(sig) => {
                tracing::info!(signal = %sig, "shutting down");
                signal_life.stop.store(true, Ordering::Release);
            }
            Err(e) => tracing::error!(error = %e, "waiting for signals failed"),
        })
        .context("cannot start the signal thread")?;

    tracing::info!(shards, bind = %config.mqtt.bind, "iotcore starting");
    let shard_life = life.clone();
    // The handles are never joined: the process exits once every shard is done.
    // One thread per shard either way; pinned to distinct cores only when asked
    // (`[server] pin_shards`).
    let placement_policy = if config.server.pin_shards {
        PoolPlacement::MaxSpread(shards, None)
    } else {
        PoolPlacement::Unbound(shards)
    };
    let _handles = LocalExecutorPoolBuilder::new(placement_policy)
        .name("iotcore-shard")
        // glommio polls for I/O at least this often while tasks are runnable; the default
        // (100 ms) would let one busy connection delay every other one on its shard.
        .preempt_timer(PREEMPT_TIMER)
        // glommio's helper thread of each shard (system calls it cannot put on the ring) may
        // run on any core. glommio's default pins it like the shards (every shard's to the
        // same first core), where a busy shard delays it by scheduler slices; while it ran
        // the fsyncs, durable answers waited milliseconds for an idle disk. Fsyncs now go
        // through the ring (durable.rs).
        .blocking_thread_pool_placement(PoolPlacement::Unbound(1))
        .on_all_shards(move || {
            let config = config.clone();
            let directory = directory.clone();
            let placement = placement.clone();
            let backlogs = backlogs.clone();
            let links = links.clone();
            let index = next_index.fetch_add(1, Ordering::AcqRel);
            let snapshots = snapshots.clone();
            let life = shard_life.clone();
            let retained_store = retained_stores
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(index)
                .and_then(Option::take);
            let retained = retained.clone();
            async move {
                // The executor polls its main future only when no task is runnable, so a
                // busy shard would never reach an accept loop living there: everything runs
                // in a spawned task instead.
                let body = glommio::spawn_local({
                    let life = life.clone();
                    async move {
                        let durable = Durable {
                            retained_store,
                            retained,
                        };
                        run_shard(
                            config, directory, placement, backlogs, &links, index, snapshots,
                            &life, shards, durable,
                        )
                        .await
                    }
                });
                if let Err(e) = body.await {
                    tracing::error!(error = %e, "shard failed");
                    life.failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e.to_string());
                    life.stop.store(true, Ordering::Release);
                }
                life.done.fetch_add(1, Ordering::AcqRel);
                futures_lite::future::pending::<()>().await;
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the shards: {e}"))?;

    // Wait for the stop, then for every shard to finish (bounded: a stuck shard must not
    // keep the process alive).
    while !life.stop.load(Ordering::Acquire) {
        std::thread::sleep(HOUSEKEEPING_INTERVAL);
    }
    let deadline = Instant::now() + SHUTDOWN_GRACE + Duration::from_secs(2);
    while life.done.load(Ordering::Acquire) < shards && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let failure = life
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    match failure {
        Some(e) => anyhow::bail!("a shard failed: {e}"),
        None => {
            tracing::info!("iotcore stopped");
            Ok(())
        }
    }
}

/// What a shard takes over from start-up recovery.
struct Durable {
    retained_store: Option<RetainedStore>,
    /// Every retained message recovered, for the shard's replica.
    retained: Arc<Vec<SharedMessage>>,
}

#[allow(clippy::too_many_arguments)]
async fn run_shard(
    config: Arc<Config>,
    directory: Arc<Directory>,
    placement: Arc<crate::placement::Placement>,
    backlogs: Arc<crate::flow::Backlogs>,
    links: &Links,
    index: usize,
    snapshots: Vec<Arc<Snapshot>>,
    life: &Lifecycle,
    shards: usize,
    durable: Durable,
) -> anyhow::Result<()> {
    let id = ShardId(index);
    tracing::debug!(shard = id.0, "shard starting");
    let shard_links = links
        .take(index)
        .context("no channels for this shard index")?;
    let shard = Shard::new(id, shards, config.clone(), directory, placement, backlogs);
    shard.start_mesh(shard_links);
    let started = Instant::now();
    let service = crate::storage::open_shadows(&config, id)?;
    tracing::info!(
        shard = id.0,
        shadows = service.store.len(),
        ms = started.elapsed().as_millis() as u64,
        "shadows recovered"
    );
    shard.set_shadow_service(service);
    for message in durable.retained.iter() {
        shard.apply_retained(&message.topic, Some(message.clone()));
    }
    if let Some(store) = durable.retained_store {
        shard.set_retained_store(store);
        shard.start_retained_commits();
    }
    let (sessions, recovered) = crate::storage::open_sessions(&config, id)?;
    shard.restore_sessions(sessions, recovered).await;
    shard.start_shadow_commits();
    connection::start_parking(&shard);
    // Every shard recovers before any listens: with SO_REUSEPORT the kernel spreads
    // connections only over the sockets bound so far, so early clients would all land on
    // the quickest shard.
    life.ready.fetch_add(1, Ordering::AcqRel);
    while life.ready.load(Ordering::Acquire) < shards {
        if life.stop.load(Ordering::Acquire) {
            return Ok(());
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    if config.http.enabled {
        let http = listener::bind(config.http.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.http.bind))?;
        glommio::spawn_local(crate::http::serve(shard.clone(), http)).detach();
    }
    let listener = listener::bind_mqtt(config.mqtt.bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.mqtt.bind))?;
    tracing::debug!(shard = id.0, "listening");
    let snapshot = snapshots.get(id.0).cloned().unwrap_or_default();

    let accept = async {
        let mut accepted = Vec::new();
        loop {
            match listener.accept_pending(&mut accepted).await {
                Ok(()) => {
                    for (socket, peer) in accepted.drain(..) {
                        // Served here, or by a shard with fewer connections (`placement.rs`).
                        let to = shard.placement.place(id);
                        if to == id {
                            let stream = connection::stream_of(socket);
                            glommio::spawn_local(connection::serve(
                                shard.clone(),
                                stream,
                                BytesMut::new(),
                                peer,
                            ))
                            .detach();
                        } else {
                            crate::metrics::bump(&shard.metrics.connections_handed_over_total, 1);
                            shard.post_to(to, ShardMsg::Adopt(Box::new((socket, peer))));
                        }
                    }
                    // A connect storm must not keep the shard from its other tasks (the
                    // accepts above need no await while connections are pending).
                    glommio::yield_if_needed().await;
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    // The stop flag is polled rather than signalled: a wake-up from the signal thread would
    // be a foreign wake of a glommio task (see shard/replies.rs).
    let housekeeping = async {
        let mut last_metrics = Instant::now();
        while !life.stop.load(Ordering::Acquire) {
            if last_metrics.elapsed() >= METRICS_INTERVAL {
                shard.publish_metrics(&snapshot);
                #[cfg(feature = "alloc-census")]
                crate::census::write_heap_areas();
                last_metrics = Instant::now();
            }
            // Reads keep the shard's clock fresh while busy; this bounds its age when idle
            // (timer-driven deliveries read it too).
            shard.clock.set(Instant::now());
            shard.expire_handshakes();
            shard.expire_keep_alives();
            shard.ask_idle_to_park();
            shard.expire_held();
            glommio::timer::sleep(HOUSEKEEPING_INTERVAL).await;
        }
    };
    futures_lite::future::or(accept, housekeeping).await;
    tracing::debug!(shard = id.0, "stopping");
    drop(listener);
    shutdown(&shard).await;
    shard.sync_logs();
    shard.publish_metrics(&snapshot);
    tracing::debug!(shard = id.0, "stopped");
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
