//! `iotcore`: a self-hosted AWS IoT Core. `iotcore serve [--config FILE]` runs the server;
//! with no file every setting takes its default (plain MQTT on port 1883, anonymous clients
//! from loopback only).

mod admin;
#[cfg(feature = "alloc-census")]
mod census;
mod config;
mod connection;
mod directory;
mod durable;
mod epoch;
mod events;
mod fds;
mod flow;
mod heap;
mod http;
mod ids;
mod listener;
mod message;
mod metrics;
mod notify;
mod placement;
mod retained_store;
mod server;
mod session;
mod session_store;
mod shadow;
mod shard;
mod storage;
mod stored_message;

use std::path::PathBuf;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// mimalloc: per-thread heaps. With glibc's malloc, a message allocated on one shard and
/// freed on another (every cross-shard delivery) contends on the arena locks; profiles of
/// the shadow benchmark showed 23% of the broker's time waiting there. Long-lived
/// per-connection objects get a heap of their own (`heap.rs`).
#[cfg(not(feature = "alloc-census"))]
#[global_allocator]
static ALLOCATOR: heap::ShardAllocator = heap::ShardAllocator;

#[cfg(feature = "alloc-census")]
#[global_allocator]
static ALLOCATOR: census::Census<heap::ShardAllocator> = census::Census::new(heap::ShardAllocator);

const USAGE: &str = "usage: iotcore [serve] [--config FILE]

  serve            run the server (the default)
  --config FILE    TOML configuration; every field has a default
  --help           this text
  --version        the version

Logging: RUST_LOG (default: info), e.g. RUST_LOG=iotcore_dataplane=debug";

fn main() -> ExitCode {
    epoch::start();
    #[cfg(feature = "alloc-census")]
    census::start_writer();
    let mut config_path: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "serve" => {}
            "--config" | "-c" => match args.next() {
                Some(p) => config_path = Some(PathBuf::from(p)),
                None => {
                    eprintln!("error: --config needs a file\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--version" | "-V" => {
                println!("iotcore {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("error: unexpected argument `{other}`\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }

    if let Err(e) = server::block_stop_signals() {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let config = match &config_path {
        Some(path) => match config::Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => config::Config::default(),
    };
    if !config.server.transparent_huge_pages {
        disable_transparent_huge_pages();
    }
    match fds::prepare() {
        Ok(limit) => tracing::info!(open_files_limit = limit, "descriptor table ready"),
        Err(e) => tracing::warn!(error = %e, "cannot prepare the descriptor table"),
    }
    let code = match server::run(config) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    exit_now(code)
}

/// Turns transparent huge pages off for this process (see `ServerConfig`). The kernel checks
/// the flag when it faults a page in, so memory the allocator reserved earlier is covered
/// too. Failure (an old kernel) only costs memory, so it is logged and ignored.
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not turn transparent huge pages off"
        );
    }
}

/// Ends the process without running exit handlers. The shard threads are still alive (they
/// are parked, see server.rs), and letting `exit` tear down process-wide state under them
/// crashed now and then; there is nothing left to flush but stderr.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stderr().flush();
    let _ = std::io::stdout().flush();
    // SAFETY: `_exit` takes no pointers and never returns; skipping atexit handlers is the
    // point.
    #[allow(unsafe_code)]
    unsafe {
        libc::_exit(code)
    }
}
