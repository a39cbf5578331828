//! Wiring of the `tcp-info` daemon: sources → pipeline → saver, events and metrics; signals and
//! graceful shutdown (D11).
//!
//! What runs where (docs/ARCHITECTURE.md has the picture):
//! - **OS threads for the hot loops**, which make blocking netlink calls and must neither wait
//!   for the async edges nor hold up their workers: the sweep or eBPF source (exact queries),
//!   the close source (destroy notifications) and the pipeline (which drives the saver).
//! - **A tokio runtime for the edges** ([`EDGE_THREADS`] workers): the event socket (a task per
//!   client, capped), the metrics endpoint (hyper), the signal handlers, and in eBPF mode the
//!   reader of the programs' ring buffer (`AsyncFd`).
//! - **One cancellation path**: a SIGTERM/SIGINT, the end of `-reps`, or the pipeline thread
//!   ending for any reason cancels one token. The sources see it and stop; then the main thread
//!   stops the rest in order: the pipeline drains what the sources sent (it emits a Close for
//!   every open connection and finishes every file), then the event socket (after its clients
//!   received those Close events), then the metrics endpoint, then the runtime.

use crate::cli::{Config, Mode};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};
use tcp_info::anonymize::{self, Anonymizer, Method};
use tcp_info::api::{self, ApiServer, LiveSink, LiveTable};
use tcp_info::ebpf::{self, EbpfError, Programs};
use tcp_info::events::{EventServer, EventServerConfig, FlowEvent, FlowId};
use tcp_info::exclude::Exclusions;
use tcp_info::metrics::{self, LabelValue as _, Metrics};
use tcp_info::mode::Mode as Collection;
use tcp_info::namespaces::attribution::Attributor;
use tcp_info::namespaces::discover::{self, Found, Roots};
use tcp_info::namespaces::{self, Change, NetnsId, Opened, Opener, Scope, Table};
use tcp_info::pipeline::{ArchiveSink, EventSink, Pipeline, PipelineConfig};
use tcp_info::record::NetnsTag;
use tcp_info::record::Timestamp;
use tcp_info::saver::{ErrorClass, Saver, SaverConfig, SaverStats, repair_tree};
use tcp_info::sockdiag::{DestroyListener, DiagSocket};
use tcp_info::sources::netns::{self as watcher, Outlets, Watcher};
use tcp_info::sources::{self, Input, ebpf::EbpfConfig, sweep::SweepConfig};
use tcp_info::wire::inet_diag::InetDiagMsg;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// How often the pipeline does housekeeping (flushes, rotation, metrics export).
const TICK: Duration = Duration::from_millis(100);
/// Receive buffer of the destroy listener, which the kernel doubles (64 MiB effective): room for
/// about 52 000 notifications arriving at once (≈1.28 KB each), so that a mass close loses no
/// final record. Memory is only used while notifications wait; without CAP_NET_ADMIN the kernel
/// caps it at `net.core.rmem_max`.
const DESTROY_RCVBUF: usize = 32 << 20;
/// Upper bound on archive files open at once: one per connection written to in the current
/// rotation period, as upstream; beyond it the least recently written segments are closed (see
/// `saver::SaverConfig::max_open_files`). An open segment costs a descriptor, its path and a
/// small buffer, so this bounds memory too.
const MAX_OPEN_ARCHIVES: usize = 1 << 18;
/// How long a connection missing from sweeps waits for its destroy notification before an
/// exact query confirms it gone and it is closed without one. Normally the notification comes
/// within milliseconds; it comes later for a socket its application keeps in CLOSE (invisible
/// to sock_diag), and never if it was lost to an overrun. Up to this long, such a connection
/// still ends with its exact final record; beyond it, its Close is sent and a late notification
/// is counted (`tcpinfo_late_destroys_total`), never reopening the connection.
const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// Sweeps that may wait for the pipeline before the sweep source blocks (upstream: 2).
const SWEEP_QUEUE: usize = 2;
/// Inputs of the eBPF source (a refresh per poll interval, and the rare sweep) that may wait
/// for the pipeline before its rounds only merge marks: 80 ms at 10 ms.
const EBPF_QUEUE: usize = 8;
/// Short git commit baked in by `build.rs` (empty when unknown: the metric then reads 0).
pub const GIT_COMMIT: &str = env!("TCP_INFO_GIT_COMMIT");

/// Worker threads of the edges' runtime: its tasks only move bytes between sockets and queues.
const EDGE_THREADS: usize = 2;
/// How long the runtime waits for stray tasks at exit (everything has been stopped by then).
const RUNTIME_EXIT_GRACE: Duration = Duration::from_secs(1);

/// The one way to stop the daemon: a token that the sources watch, with the first reason given.
#[derive(Debug, Clone, Default)]
struct Stop {
    token: CancellationToken,
    reason: Arc<OnceLock<&'static str>>,
}

impl Stop {
    /// Asks everything to stop; the first reason is the one logged.
    fn request(&self, reason: &'static str) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }
}

/// Runs the daemon until a signal or the end of `-reps`; returns when everything is closed.
pub fn run(config: &Config) -> Result<()> {
    // Archives 0644, directories 0755 (SPEC D18), whatever umask the daemon was started with.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    enter_output(config.output.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(EDGE_THREADS)
        .max_blocking_threads(EDGE_THREADS)
        .thread_name("tcpinfo-edges")
        // The edges talk to other programs (scrapers, event clients): no capability at all.
        .on_thread_start(crate::privileges::drop_all_on_this_thread)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let edges = runtime.handle();
    let stop = Stop::default();
    let signals = {
        let _context = runtime.enter();
        let install = |kind| signal(kind).context("installing signal handlers");
        (
            install(SignalKind::terminate())?,
            install(SignalKind::interrupt())?,
        )
    };
    runtime.spawn(stop_on_signal(signals, stop.clone()));

    let metrics = Arc::new(Metrics::new(GIT_COMMIT).context("creating metrics")?);
    let own_netns = discover::inode_of(Path::new(SELF_NETNS))
        .context("identifying the daemon's network namespace (/proc/self/ns/net)")?;
    let (mut namespaces, close_source) = open_namespaces(config, own_netns, &metrics)?;
    // Before anything announces the daemon as up: loading takes a few hundred milliseconds,
    // and connections made meanwhile would be seen only by the first sweep.
    let watch: Vec<NetnsId> = namespaces.initial.iter().map(|o| o.netns).collect();
    let programs = load_programs(config, close_source, &watch)?;
    release_freed_memory();
    let listen = config.listen_address.to_string();
    let server = metrics::serve(&listen, Arc::clone(&metrics), edges)
        .with_context(|| format!("serving metrics on {listen}"))?;
    tracing::info!("metrics listening on {}", server.local_addr());

    let events = match &config.event_socket {
        Some(path) => Some(
            EventServer::start(path, EventServerConfig::default(), edges)
                .with_context(|| format!("starting the event socket at {}", path.display()))?,
        ),
        None => None,
    };

    let mode = if programs.is_some() {
        Collection::Ebpf
    } else {
        Collection::Sweep
    };
    metrics.set_mode(mode);
    tracing::info!(
        mode = mode.as_str(),
        requested = %config.mode,
        ebpf_embedded = ebpf::EMBEDDED,
        "collection mode"
    );

    let local = anonymize::local_addresses().context("listing local addresses")?;
    repair_archives(&config.uuid_prefix);
    let mut saver_config = SaverConfig::new(config.uuid_prefix.clone());
    saver_config.rotation_age = config.rotation_age;
    saver_config.flush_interval = config.flush_interval;
    saver_config.max_open_files = file_budget(MAX_OPEN_ARCHIVES);
    // One rule for the archives and the query API's answers.
    let anonymize: Option<api::Anonymize> = (config.anonymize_ip != Method::None).then(|| {
        let anonymizer = Anonymizer::new(config.anonymize_ip, local);
        let apply: api::Anonymize = Arc::new(move |idm: &[u8; 72]| {
            // Dumps only carry AF_INET/AF_INET6 sockets, so `apply` cannot refuse the family.
            anonymizer.apply(idm).ok().flatten().unwrap_or(*idm)
        });
        apply
    });
    if let Some(apply) = &anonymize {
        let apply = Arc::clone(apply);
        saver_config.anonymize = Some(Box::new(move |idm| apply(idm)));
    }
    let saver = Saver::new(saver_config).context("starting the saver")?;
    let (live, api_server) = start_api(config, anonymize, edges, &metrics)?;
    let close_grace = if close_source {
        CLOSE_GRACE
    } else {
        Duration::ZERO
    };
    let pipeline = Pipeline::new(
        PipelineConfig {
            exclusions: Exclusions::new(
                config.exclude_local,
                &config.exclude_srcport,
                &config.exclude_dstip,
            ),
            prefix: config.uuid_prefix.clone(),
            safety_net: programs.is_some(),
            close_grace,
            own_netns,
            global_cookies: namespaces::cookies_are_global(&namespaces::kernel_release()),
            attribution: config.netns_attribution,
        },
        LiveSink::new(
            SaverSink::new(saver, Arc::clone(&metrics))?,
            live,
            config.uuid_prefix.clone(),
        ),
        Events(events),
        Arc::clone(&metrics),
    );

    let queued = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<Input>();
    // Every namespace opened at start-up reaches the pipeline before any record of it, and the
    // sources' tables before their first cycle.
    let (poll_sockets, close_listeners) = namespaces.hand_out(&tx, close_source);

    // Everything privileged is done: the programs are attached and every socket is open. The
    // threads started from here on inherit what is left.
    crate::privileges::drop_after_start(config.netns != Scope::Own, programs.is_some())?;

    let mut sources = Vec::new();
    if let Some(watcher) = namespaces.watcher.take() {
        let outlets = namespaces.outlets(&tx);
        let (token, metrics) = (stop.token.clone(), Arc::clone(&metrics));
        sources.push(
            spawn_stopping("netns", "the namespace watcher ended", &stop, move || {
                watcher.run(&outlets, &token, &metrics);
            })
            .context("starting the namespace watcher")?,
        );
    }
    {
        let (tx, token, metrics) = (tx.clone(), stop.token.clone(), Arc::clone(&metrics));
        let queued = Arc::clone(&queued);
        let thread = if let Some(programs) = programs {
            let ebpf_config = EbpfConfig {
                interval: config.poll_interval,
                safety_interval: config.safety_sweep_interval,
                reps: config.reps,
                max_queued: EBPF_QUEUE,
                own_netns,
                close_grace,
            };
            let mut kernel =
                sources::ebpf::start(programs, config.poll_interval, edges, token.clone())
                    .context("starting the eBPF ring buffer reader")?;
            spawn_stopping("ebpf", "the eBPF source ended", &stop, move || {
                sources::ebpf::run(
                    &mut kernel,
                    poll_sockets,
                    ebpf_config,
                    &tx,
                    &queued,
                    &token,
                    &metrics,
                );
            })
        } else {
            let sweep_config = SweepConfig {
                interval: config.poll_interval,
                reps: config.reps,
                max_queued: SWEEP_QUEUE,
            };
            spawn_stopping("sweep", "the sweep source ended", &stop, move || {
                sources::sweep::run(poll_sockets, sweep_config, &tx, &queued, &token, &metrics);
            })
        };
        sources.push(thread.context("starting the collection thread")?);
    }
    if let Some(listeners) = close_listeners {
        let (tx, token, metrics) = (tx.clone(), stop.token.clone(), Arc::clone(&metrics));
        sources.push(
            spawn_stopping("close", "the close source ended", &stop, move || {
                sources::close::run(listeners, &tx, &token, &metrics);
            })
            .context("starting the close thread")?,
        );
    }
    drop(tx);

    let pipeline = {
        let reps_done = stop.clone();
        spawn_stopping("pipeline", "the pipeline ended", &stop, move || {
            crate::privileges::drop_all_on_this_thread();
            run_pipeline(pipeline, &rx, &queued, &reps_done)
        })
        .context("starting the pipeline thread")?
    };

    runtime.block_on(stop.token.cancelled());
    let reason = stop.reason.get().copied().unwrap_or("stopped");
    tracing::info!(reason, "stopping sources");
    for source in sources {
        if source.join().is_err() {
            tracing::error!("a source thread panicked");
        }
    }
    // The sources are gone, so the pipeline drains what they sent, closes every connection and
    // file, and returns the event server.
    let events = pipeline
        .join()
        .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?;
    if let Some(server) = events.0 {
        let stats = server.shutdown();
        tracing::info!(?stats, "event socket closed");
    }
    if let Some(api) = api_server {
        api.shutdown();
    }
    server.shutdown();
    runtime.shutdown_timeout(RUNTIME_EXIT_GRACE);
    tracing::info!("stopped");
    Ok(())
}

/// Creates `-output` if it is missing and changes into it (without `-output` the archives go
/// to the working directory), then checks that archives can be created there. A failure is a
/// start-up error naming the directory (exit 1), rather than a daemon that runs and loses
/// every record.
fn enter_output(output: Option<&Path>) -> Result<()> {
    if let Some(output) = output {
        if output.exists() && !output.is_dir() {
            anyhow::bail!(
                "the output directory {} exists and is not a directory",
                output.display()
            );
        }
        std::fs::create_dir_all(output)
            .with_context(|| format!("cannot create the output directory {}", output.display()))?;
        std::env::set_current_dir(output).with_context(|| {
            format!(
                "cannot change into the output directory {}",
                output.display()
            )
        })?;
    }
    let shown = match output {
        Some(output) => output.to_owned(),
        None => std::env::current_dir().unwrap_or_else(|_| ".".into()),
    };
    // Archives are created by the pipeline thread, which holds no capability: as root without
    // CAP_DAC_OVERRIDE the directory's mode applies to it. The check runs the same way.
    let probe = thread::Builder::new()
        .name("output-check".into())
        .spawn(|| {
            crate::privileges::drop_all_on_this_thread();
            probe_create(Path::new("."))
        })
        .context("starting the output directory check")?;
    let result = probe
        .join()
        .map_err(|_| anyhow::anyhow!("the output directory check panicked"))?;
    match result {
        Ok(()) => Ok(()),
        // A full disk is not a configuration error: writing resumes when space returns.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => {
            tracing::warn!(
                output = %shown.display(),
                error = %e,
                "the output directory is full; archives are written once space returns"
            );
            Ok(())
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "the output directory {} is not writable: archives cannot be created in it",
                shown.display()
            )
        }),
    }
}

/// Creates and removes a file in `dir`: an unnamed one (`O_TMPFILE`) where the file system has
/// them, so that nothing ever appears in the tree (SPEC §11.2), else a hidden named one that
/// no reader of archives would pick up. Writes nothing: only creation is checked.
fn probe_create(dir: &Path) -> std::io::Result<()> {
    use std::fs::OpenOptions;
    use std::os::unix::fs::OpenOptionsExt as _;
    let unnamed = OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match unnamed {
        Ok(_) => return Ok(()),
        // File systems without O_TMPFILE say so in one of these ways.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) => {}
        Err(e) => return Err(e),
    }
    let name = dir.join(format!(".tcp-info-write-check.{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&name)?;
    std::fs::remove_file(&name)
}

/// Starts the query API if `-api.listen-address` asks for it: the table the pipeline keeps up
/// to date, and the server. Its socket for fresh queries is opened now, while the daemon still
/// holds CAP_NET_ADMIN for `SO_RCVBUFFORCE`; without it fresh queries answer 503.
fn start_api(
    config: &Config,
    anonymize: Option<api::Anonymize>,
    edges: &tokio::runtime::Handle,
    metrics: &Metrics,
) -> Result<(Option<Arc<LiveTable>>, Option<ApiServer>)> {
    let Some(listen) = &config.api_listen else {
        return Ok((None, None));
    };
    let table = Arc::new(LiveTable::new(config.api_retention));
    let fresh = match DiagSocket::open(config.rcvbuf) {
        Ok(socket) => Some(socket),
        Err(e) => {
            tracing::warn!("query API: no socket for fresh queries ({e}); they answer 503");
            None
        }
    };
    // The daemon changed into `-output`: archives are found from here.
    let output = std::env::current_dir().context("reading the working directory")?;
    let on_drop = metrics
        .http_drop_hook("api")
        .context("counting the query API's dropped connections")?;
    let server = api::serve(
        listen,
        Arc::clone(&table),
        anonymize,
        fresh,
        &output,
        edges,
        Some(on_drop),
    )
    .with_context(|| format!("starting the query API on {listen}"))?;
    Ok((Some(table), Some(server)))
}

/// Waits for SIGTERM or SIGINT, then asks the daemon to stop. A second signal during the
/// shutdown exits at once (status 1): an operator's way out of a shutdown that hangs.
async fn stop_on_signal(mut signals: (Signal, Signal), stop: Stop) {
    let mut first = true;
    loop {
        let name = tokio::select! {
            _ = signals.0.recv() => "SIGTERM",
            _ = signals.1.recv() => "SIGINT",
        };
        if first {
            first = false;
            tracing::info!(
                signal = name,
                "shutting down (a second signal exits at once)"
            );
            stop.request("signal");
        } else {
            tracing::warn!(signal = name, "second signal during shutdown: exiting now");
            std::process::exit(1);
        }
    }
}

/// The daemon's own network namespace.
const SELF_NETNS: &str = "/proc/self/ns/net";

/// The namespaces opened at start-up, and the watcher that follows them (`--netns` other than
/// `self`).
struct Namespaces {
    initial: Vec<Opened>,
    watcher: Option<Watcher>,
    /// The channels the watcher feeds, once [`Namespaces::hand_out`] made them.
    poll: Option<mpsc::Sender<Change<DiagSocket>>>,
    close: Option<mpsc::Sender<Change<DestroyListener>>>,
}

/// Opens the sockets of every namespace in `--netns` scope (with `self`, the daemon's own,
/// directly: no `setns`, no watcher). Returns them, and whether the close source can run:
/// without CAP_NET_ADMIN the destroy groups may be closed to us, and the daemon then runs
/// without it, as upstream always does (connections end when a sweep misses them).
fn open_namespaces(config: &Config, own: NetnsId, metrics: &Metrics) -> Result<(Namespaces, bool)> {
    let opener = Opener {
        own,
        rcvbuf: config.rcvbuf,
        destroy_rcvbuf: Some(DESTROY_RCVBUF),
        attributor: config
            .netns_attribution
            .then(|| Attributor::new("/proc", config.netns_bundle_roots.clone())),
    };
    let (initial, watcher) = if config.netns == Scope::Own {
        let found = Found {
            path: SELF_NETNS.into(),
            pid: Some(std::process::id()),
        };
        let opened = opener
            .open(own, &found)
            .context("opening the sock_diag sockets")?;
        (vec![opened], None)
    } else {
        let mut watcher = Watcher::new(config.netns.clone(), Roots::default(), opener);
        // Nothing can be gone or re-tagged at the first discovery.
        let opened = watcher.discover(metrics).opened;
        if opened.is_empty() {
            anyhow::bail!(
                "no network namespace in --netns scope could be opened (entering another \
                 namespace needs CAP_SYS_ADMIN and access to its /proc/PID/ns/net)"
            );
        }
        (opened, Some(watcher))
    };
    let close_source = initial.iter().any(|o| o.destroy.is_some());
    if !close_source {
        tracing::warn!(
            "no close source: short connections may be missed and final records may be stale"
        );
    }
    let mut namespaces = Namespaces {
        initial,
        watcher,
        poll: None,
        close: None,
    };
    if let (Some(watcher), false) = (&mut namespaces.watcher, close_source) {
        watcher.without_listeners();
    }
    Ok((namespaces, close_source))
}

impl Namespaces {
    /// Hands the namespaces opened at start-up to the pipeline (through `tx`) and returns the
    /// polling source's and the close source's tables (the close source's only if it runs).
    /// Without a watcher the tables are fixed; with one they follow its channels.
    fn hand_out(
        &mut self,
        tx: &mpsc::Sender<Input>,
        close_source: bool,
    ) -> (Table<DiagSocket>, Option<Table<DestroyListener>>) {
        let initial = std::mem::take(&mut self.initial);
        if self.watcher.is_none() {
            // `--netns self`: one namespace, for good.
            let (mut poll, mut close) = (None, None);
            for o in initial {
                let _ = tx.send(Input::NetnsAdded {
                    netns: o.netns,
                    tag: o.tag,
                    lookup: o.lookup,
                });
                poll = Some(Table::fixed(o.netns, o.poll));
                close = (o.destroy)
                    .filter(|_| close_source)
                    .map(|l| Table::fixed(o.netns, l));
            }
            let none = || Table::following(Vec::new(), mpsc::channel().1);
            return (poll.unwrap_or_else(none), close);
        }
        let (poll_tx, poll_rx) = mpsc::channel();
        let (close_tx, close_rx) = mpsc::channel();
        self.poll = Some(poll_tx);
        self.close = close_source.then_some(close_tx);
        let outlets = self.outlets(tx);
        for o in initial {
            watcher::hand_out(o, &outlets);
        }
        (
            Table::following(Vec::new(), poll_rx),
            close_source.then(|| Table::following(Vec::new(), close_rx)),
        )
    }

    /// Where the watcher sends what it opens.
    fn outlets(&self, tx: &mpsc::Sender<Input>) -> Outlets {
        Outlets {
            pipeline: tx.clone(),
            poll: self.poll.clone().unwrap_or_else(|| mpsc::channel().0),
            close: self.close.clone(),
        }
    }
}

/// Loads the eBPF programs if the mode asks for them, watching the namespaces `watch`.
/// `--mode ebpf` fails with the reason they cannot run; `--mode auto` falls back to sweep mode
/// after one log line naming it.
///
/// eBPF mode needs the close source: sock_diag cannot see a socket once it is in CLOSE, so a
/// connection's final record, and any connection shorter than a poll interval, comes only from
/// its destroy notification.
fn load_programs(
    config: &Config,
    close_source: bool,
    watch: &[NetnsId],
) -> Result<Option<Programs>> {
    let load = || -> Result<Programs, EbpfError> {
        if !close_source {
            return Err(EbpfError::NoCloseSource);
        }
        Programs::load(config.poll_interval, watch, config.exclude_local)
    };
    match config.mode {
        Mode::Sweep => Ok(None),
        Mode::Ebpf => load().map(Some).map_err(|e| {
            anyhow::anyhow!(
                "eBPF mode (--mode ebpf) cannot run: {}",
                ebpf::error_chain(&e)
            )
        }),
        Mode::Auto => match load() {
            Ok(loaded) => Ok(Some(loaded)),
            Err(e) => {
                let reason = ebpf::error_chain(&e);
                tracing::warn!(%reason, "eBPF mode unavailable; running sweep mode");
                Ok(None)
            }
        },
    }
}

/// Returns to the system the heap that start-up freed (parsing the kernel's BTF, twice, takes
/// tens of megabytes for a moment), so that the daemon's resident size reflects what it keeps.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointer is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Starts thread `name` running `body`, and stops the daemon with `reason` when it ends,
/// however it ends (the end of `-reps`, a lost peer, a panic), so that a dead thread does not
/// leave the daemon running half-blind. After a stop the threads end because of it; the first
/// reason is kept.
fn spawn_stopping<T: Send + 'static>(
    name: &'static str,
    reason: &'static str,
    stop: &Stop,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<thread::JoinHandle<T>> {
    let on_exit = StopOnExit(stop.clone(), reason);
    thread::Builder::new().name(name.into()).spawn(move || {
        let _on_exit = on_exit;
        body()
    })
}

/// Requests a stop when dropped: as its thread returns or unwinds.
struct StopOnExit(Stop, &'static str);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        if !self.0.token.is_cancelled() {
            if thread::panicking() {
                tracing::error!(reason = self.1, "a thread panicked; stopping");
            }
            self.0.request(self.1);
        }
    }
}

/// Finishes archives a crashed predecessor left with a partial last frame (SPEC §5.3).
fn repair_archives(prefix: &tcp_info::uuid::Prefix) {
    match repair_tree(Path::new("."), prefix) {
        Ok(report) => {
            for (path, error) in &report.failures {
                tracing::warn!(path = %path.display(), %error, "cannot check an existing archive");
            }
            if !report.truncated.is_empty() || !report.removed.is_empty() {
                tracing::warn!(
                    truncated = report.truncated.len(),
                    removed = report.removed.len(),
                    bytes_cut = report.bytes_cut,
                    "repaired archives left unfinished by a previous run"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot scan the output tree for unfinished archives"),
    }
}

/// Raises the soft descriptor limit to the hard one and returns how many archive files may be
/// open at once: at most `wanted`, keeping a sixteenth of the limit (at least 256) for sockets,
/// eBPF maps, event clients and scrapes.
fn file_budget(wanted: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let limit = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read RLIMIT_NOFILE; assuming 1024");
            1024
        }
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let budget = wanted.min(limit - (limit / 16).max(256).min(limit)).max(16);
    tracing::info!(limit, budget, "archive file descriptor budget");
    budget
}

/// The pipeline thread: consumes inputs until every source hung up or `-reps` finished, then
/// shuts the pipeline down. Returns the event sink so that the main thread can close the
/// socket after the final Close events.
fn run_pipeline(
    mut pipeline: Pipeline<LiveSink<SaverSink>, Events>,
    rx: &mpsc::Receiver<Input>,
    queued: &AtomicUsize,
    stop: &Stop,
) -> Events {
    let mut last_tick = Instant::now();
    loop {
        match rx.recv_timeout(TICK) {
            Ok(Input::Sweep(sweeps)) => {
                pipeline.sweep_namespaces(&sweeps, Instant::now());
                queued.fetch_sub(1, Ordering::AcqRel);
            }
            Ok(Input::Refreshed { batches, timestamp }) => {
                pipeline.refreshed(&batches, timestamp, Instant::now());
                queued.fetch_sub(1, Ordering::AcqRel);
            }
            Ok(Input::Destroyed {
                netns,
                payloads,
                timestamp,
            }) => pipeline.destroyed(netns, &payloads, timestamp, Instant::now()),
            Ok(Input::NetnsAdded { netns, tag, lookup }) => {
                pipeline.add_namespace(netns, tag, Some(Box::new(lookup)));
            }
            Ok(Input::NetnsRetagged { netns, tag }) => pipeline.retag_namespace(netns, tag),
            Ok(Input::NetnsRemoved { netns }) => pipeline.remove_namespace(netns, Instant::now()),
            Ok(Input::Finished) => stop.request("reps finished"),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if now.duration_since(last_tick) >= TICK {
            last_tick = now;
            pipeline.tick(now);
            pipeline.events().export(pipeline.metrics());
        }
    }
    pipeline.shutdown();
    pipeline.into_sinks().1
}

/// How often saver errors are logged at most: a full disk fails every connection's writes,
/// and a line per failure would flood the log (every failure is counted in the metrics).
const SAVER_LOG_EVERY: Duration = Duration::from_secs(10);

/// The saver as the pipeline's archive sink, exporting its counters as metrics and logging its
/// errors (at most one line per [`SAVER_LOG_EVERY`]).
struct SaverSink {
    saver: Saver,
    metrics: Arc<Metrics>,
    /// `tcpinfo_saver_snapshots_lost_total`, registered here: `SaverStats::snapshots_lost`.
    lost: prometheus::IntCounter,
    exported: SaverStats,
    log: ErrorLog,
}

impl SaverSink {
    fn new(saver: Saver, metrics: Arc<Metrics>) -> Result<Self> {
        let lost = prometheus::IntCounter::new(
            "tcpinfo_saver_snapshots_lost_total",
            "Number of snapshot records in no archive file: refused because their file could \
             not be created, or dropped with their buffer when it could not be written.",
        )
        .context("creating tcpinfo_saver_snapshots_lost_total")?;
        metrics
            .registry()
            .register(Box::new(lost.clone()))
            .context("registering tcpinfo_saver_snapshots_lost_total")?;
        Ok(Self {
            saver,
            metrics,
            lost,
            exported: SaverStats::default(),
            log: ErrorLog::default(),
        })
    }

    /// Adds what the saver counted since the last export to the Prometheus counters.
    fn export(&mut self) {
        let now = self.saver.stats();
        let was = &self.exported;
        let m = &self.metrics;
        m.new_files.inc_by(now.files_opened - was.files_opened);
        m.files_closed.inc_by(now.files_closed - was.files_closed);
        m.rotations.inc_by(now.rotations - was.rotations);
        m.evictions.inc_by(now.evictions - was.evictions);
        m.lines_written
            .inc_by(now.lines_written - was.lines_written);
        m.compressed_bytes
            .inc_by(now.bytes_compressed - was.bytes_compressed);
        m.uncompressed_bytes
            .inc_by(now.bytes_uncompressed - was.bytes_uncompressed);
        for class in ErrorClass::ALL {
            m.saver_errors
                .get(class)
                .inc_by(now.errors(class) - was.errors(class));
        }
        self.lost.inc_by(now.snapshots_lost - was.snapshots_lost);
        m.open_files.set(now.open_segments as i64);
        self.exported = now;
    }
}

/// Rate-limited logging of saver errors: the first at once, then at most one line per
/// [`SAVER_LOG_EVERY`], saying how many were not logged since the previous line.
#[derive(Debug, Default)]
struct ErrorLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl ErrorLog {
    fn error(&mut self, what: &str, error: &tcp_info::saver::SaveError) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < SAVER_LOG_EVERY)
        {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(
            %error,
            not_logged_since_previous = self.unlogged,
            "{what} (archive errors are logged at most every {}s; \
             tcpinfo_saver_errors_total counts them all)",
            SAVER_LOG_EVERY.as_secs()
        );
        self.last = Some(now);
        self.unlogged = 0;
    }

    /// Logs how many errors went unlogged since the last line, if any.
    fn finish(&mut self) {
        if self.unlogged > 0 {
            tracing::warn!(
                not_logged = self.unlogged,
                "archive errors not logged since the previous one"
            );
            self.unlogged = 0;
        }
    }
}

impl ArchiveSink for SaverSink {
    fn write(
        &mut self,
        cookie: u64,
        record: &tcp_info::record::ArchivalRecord,
        netns: Option<&Arc<NetnsTag>>,
        now: Instant,
    ) -> Result<(), String> {
        // Errors are counted by the saver and logged here, rate-limited: nothing is left for
        // the pipeline to log once per record.
        match self.saver.write_tagged(cookie, record, netns, now) {
            Ok(outcome) => {
                for e in &outcome.errors {
                    self.log.error("closing another archive failed", e);
                }
            }
            Err(e) => self.log.error("archiving a record failed", &e),
        }
        Ok(())
    }

    fn close(&mut self, cookie: u64, _now: Instant) {
        if let Err(e) = self.saver.close(cookie) {
            self.log.error("closing an archive failed", &e);
        }
    }

    fn tick(&mut self, now: Instant) {
        for e in self.saver.tick(now).errors {
            self.log.error("saver housekeeping failed", &e);
        }
        self.export();
    }

    fn shutdown(&mut self) {
        for e in self.saver.shutdown().errors {
            self.log.error("finishing an archive failed", &e);
        }
        self.log.finish();
        self.export();
    }
}

/// The event server (if configured) as the pipeline's event sink.
struct Events(Option<EventServer>);

impl Events {
    /// Copies the server's counters into the metrics.
    fn export(&self, metrics: &Metrics) {
        let Some(server) = &self.0 else { return };
        let stats = server.stats();
        metrics.event_clients.set(stats.clients_connected as i64);
        let dropped = stats.events_dropped;
        metrics
            .events_dropped
            .inc_by(dropped.saturating_sub(metrics.events_dropped.get()));
        metrics.event_clients_refused.inc_by(
            stats
                .clients_refused
                .saturating_sub(metrics.event_clients_refused.get()),
        );
        metrics.event_clients_sent_data.inc_by(
            stats
                .clients_dropped_input
                .saturating_sub(metrics.event_clients_sent_data.get()),
        );
        let lagging = stats.clients_dropped_lag;
        metrics
            .event_clients_disconnected
            .inc_by(lagging.saturating_sub(metrics.event_clients_disconnected.get()));
    }
}

impl EventSink for Events {
    fn open(
        &self,
        timestamp: Timestamp,
        uuid: &str,
        first: &InetDiagMsg<'_>,
        netns: Option<&Arc<NetnsTag>>,
    ) {
        if let Some(server) = &self.0 {
            let event = FlowEvent::open(timestamp.to_utc(), uuid, FlowId::from_idm(first));
            server.publish(&event.with_netns(netns.cloned()));
        }
    }

    fn close(&self, timestamp: Timestamp, uuid: &str, netns: Option<&Arc<NetnsTag>>) {
        if let Some(server) = &self.0 {
            let event = FlowEvent::close(timestamp.to_utc(), uuid);
            server.publish(&event.with_netns(netns.cloned()));
        }
    }
}
