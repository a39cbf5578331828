//! The listening side: binds the socket, accepts clients (a tokio task each, up to a cap),
//! broadcasts events, shuts down.

use super::EventsError;
use super::client::{self, ClientHandle, Killer, Line, Offer};
use super::stats::{Counters, EventStats, EventStatsReader};
use super::wire::FlowEvent;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Pause after an `accept` failure such as `EMFILE`, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Length of the client list below which ended clients are not looked for at accept.
const MIN_PRUNE: usize = 64;
/// Shortest time between two warnings that the socket is full: under a storm of connections
/// it fills and frees up many times a second, and a warning each time would flood the log.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Tuning of an [`EventServer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventServerConfig {
    /// Events that may wait for one client (not counting the batch being written). A client
    /// whose queue is full when an event arrives is disconnected (D8).
    pub queue_capacity: usize,
    /// How long one batch of lines may take to reach a client before it is disconnected as
    /// lagging. Upstream has no deadline (D8).
    pub write_timeout: Duration,
    /// How long [`EventServer::shutdown`] lets clients drain their queues, in total, before
    /// cutting them off.
    pub shutdown_grace: Duration,
    /// Clients connected at once. One more is accepted and closed at once, without a byte,
    /// and counted in [`EventStats::clients_refused`]: a local process that connects
    /// thousands of times costs a descriptor for an instant, not a task each.
    pub max_clients: usize,
    /// The socket file's mode, set after binding whatever the umask: connecting needs write
    /// permission, so 0o660 lets the owner and the group connect and nobody else.
    pub mode: u32,
}

/// The event socket's mode by default: owner and group may connect (read and write).
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

impl Default for EventServerConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            write_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(2),
            max_clients: 1024,
            mode: DEFAULT_SOCKET_MODE,
        }
    }
}

/// State shared by the server and its accept task.
struct Shared {
    /// Connected clients, with the task of each (joined at shutdown).
    clients: Mutex<Vec<(ClientHandle, JoinHandle<()>)>>,
    counters: Arc<Counters>,
    config: EventServerConfig,
}

/// Locks a mutex, ignoring poisoning: the client list stays consistent even if a holder
/// panicked, because every critical section is a handful of non-panicking operations.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The event socket (SPEC §7): a Unix stream socket that broadcasts every published event, as
/// one JSON line, to every connected client.
///
/// The accept loop and every client run as tasks on the tokio runtime given at start; each
/// client has a bounded queue, so [`publish`](Self::publish) (called from the pipeline thread)
/// never waits for a client. Dropping the server shuts it down like
/// [`shutdown`](Self::shutdown).
pub struct EventServer {
    /// Absolute, so that removal at shutdown does not depend on the working directory.
    path: PathBuf,
    /// `(st_dev, st_ino)` of the socket file this server created.
    socket_file: (u64, u64),
    shared: Arc<Shared>,
    runtime: Handle,
    /// Stops the accept task.
    stop_accepting: CancellationToken,
    accept: Option<JoinHandle<()>>,
}

impl EventServer {
    /// Listens at `path` and starts accepting clients on `runtime`.
    ///
    /// Whatever already exists at `path` is removed first, as upstream does (a stale socket
    /// left by a crash caused crash loops, upstream #126), whether it is a socket, a regular
    /// file or a symlink (the link itself); only a directory is refused. A relative path is
    /// resolved against the current directory now (SPEC §2.5: after `-output`'s `chdir`).
    pub fn start(
        path: &Path,
        config: EventServerConfig,
        runtime: &Handle,
    ) -> Result<Self, EventsError> {
        if path.as_os_str().is_empty() {
            return Err(EventsError::EmptyPath);
        }
        if config.queue_capacity == 0 {
            return Err(EventsError::ZeroCapacity);
        }
        let path = std::path::absolute(path).map_err(|source| EventsError::Inspect {
            path: path.to_path_buf(),
            source,
        })?;
        // Like `-output`, the socket's directory is created when missing (mode 0755).
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|source| EventsError::CreateDirectory {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        remove_stale(&path)?;
        let bind_error = |source| EventsError::Bind {
            path: path.clone(),
            source,
        };
        let listener = {
            // Registering with the reactor needs the runtime's context.
            let _context = runtime.enter();
            UnixListener::bind(&path).map_err(bind_error)?
        };
        if let Err(source) = fs::set_permissions(&path, fs::Permissions::from_mode(config.mode)) {
            // Ignored: the start error being returned matters more than a leftover file.
            let _ = fs::remove_file(&path);
            return Err(EventsError::Inspect {
                path: path.clone(),
                source,
            });
        }
        let meta = fs::symlink_metadata(&path).map_err(|source| {
            // Ignored: the start error being returned matters more than a leftover file.
            let _ = fs::remove_file(&path);
            EventsError::Inspect {
                path: path.clone(),
                source,
            }
        })?;
        let shared = Arc::new(Shared {
            clients: Mutex::new(Vec::new()),
            counters: Arc::new(Counters::default()),
            config,
        });
        let stop_accepting = CancellationToken::new();
        let accept = runtime.spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            runtime.clone(),
            stop_accepting.clone(),
        ));
        tracing::info!(path = %path.display(), max_clients = config.max_clients, "event socket listening");
        Ok(Self {
            path,
            socket_file: (meta.dev(), meta.ino()),
            shared,
            runtime: runtime.clone(),
            stop_accepting,
            accept: Some(accept),
        })
    }

    /// The absolute path of the socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `event` to every connected client. Never waits for a client (D8): the line is
    /// encoded once and offered to each client's bounded queue; a client whose queue is full
    /// is disconnected and counted. The only waiting is for the client list's short, I/O-free
    /// critical section.
    pub fn publish(&self, event: &FlowEvent) {
        Counters::add(&self.shared.counters.events_published, 1);
        let mut clients = lock(&self.shared.clients);
        if clients.is_empty() {
            return;
        }
        let line: Line = event.to_line().into();
        clients.retain(|(client, _)| client.offer(&line) == Offer::Queued);
    }

    /// The counters now.
    pub fn stats(&self) -> EventStats {
        self.stats_reader().snapshot()
    }

    /// A handle for reading the counters from another thread, valid after shutdown too.
    pub fn stats_reader(&self) -> EventStatsReader {
        EventStatsReader(Arc::clone(&self.shared.counters))
    }

    /// Stops accepting clients, lets each client send what is queued (the Close events of the
    /// final flush, D11) until the shutdown grace period ends, closes every connection and
    /// removes the socket file. Returns the final counters.
    ///
    /// Blocks the calling thread, which must not be one of the runtime's own.
    pub fn shutdown(mut self) -> EventStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.stop_accepting.cancel();
        let shared = &self.shared;
        let grace = shared.config.shutdown_grace;
        // `block_on` from a scoped helper thread, so that `stop` also works when the caller
        // happens to run inside the runtime (a `Drop` in async code).
        let drained = std::thread::scope(|s| {
            s.spawn(|| {
                self.runtime.block_on(async {
                    // First the accept task, so that no client joins after the list is taken.
                    if accept.await.is_err() {
                        tracing::error!("the event socket accept task panicked");
                    }
                    let clients = std::mem::take(&mut *lock(&shared.clients));
                    // Dropping a client's sender ends its queue: its task sends what is
                    // queued, then stops.
                    let (killers, mut tasks): (Vec<Killer>, Vec<JoinHandle<()>>) = clients
                        .into_iter()
                        .map(|(handle, task)| (handle.into_killer(), task))
                        .unzip();
                    let all = async {
                        for task in &mut tasks {
                            let _ = task.await;
                        }
                    };
                    if tokio::time::timeout(grace, all).await.is_ok() {
                        return true;
                    }
                    for killer in &killers {
                        killer.cut();
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                    false
                })
            })
            .join()
            .unwrap_or(false)
        });
        if !drained {
            tracing::warn!(
                grace_ms = grace.as_millis(),
                "event socket clients still had events queued at the end of the shutdown grace period"
            );
        }
        self.remove_socket_file();
        let stats = self.stats();
        tracing::info!(
            path = %self.path.display(),
            events_written = stats.events_written,
            events_dropped = stats.events_dropped,
            "event socket closed"
        );
    }

    /// Removes the socket file, unless something else has replaced it since start.
    fn remove_socket_file(&self) {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.socket_file => {
                if let Err(e) = fs::remove_file(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove event socket");
                }
            }
            Ok(_) => tracing::warn!(
                path = %self.path.display(),
                "event socket path now holds another file; leaving it"
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot inspect event socket path");
            }
        }
    }
}

impl Drop for EventServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for EventServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventServer")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Removes whatever is at `path`, except a directory.
fn remove_stale(path: &Path) -> Result<(), EventsError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(EventsError::Inspect {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if meta.is_dir() {
        return Err(EventsError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(source) => {
            return Err(EventsError::RemoveStale {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    if meta.file_type().is_socket() {
        tracing::info!(path = %path.display(), "removed stale event socket");
    } else {
        tracing::warn!(path = %path.display(), "removed a non-socket file at the event socket path");
    }
    Ok(())
}

/// Accepts clients until `stop` is cancelled: a task each, up to the cap; one over the cap is
/// closed at once and counted.
async fn accept_loop(
    listener: UnixListener,
    shared: Arc<Shared>,
    runtime: Handle,
    stop: CancellationToken,
) {
    let counters = &shared.counters;
    let mut next_id = 0u64;
    // When the last "full" warning was logged, and the clients refused since.
    let mut warned_full: Option<std::time::Instant> = None;
    let mut refused_since_warning = 0u64;
    // The client list's length at which ended clients are next forgotten.
    let mut prune_at = MIN_PRUNE;
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "event socket accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let connected = counters.clients_connected.load(Ordering::Relaxed);
        if connected >= shared.config.max_clients as u64 {
            Counters::add(&counters.clients_refused, 1);
            refused_since_warning += 1;
            if warned_full.is_none_or(|at| at.elapsed() >= FULL_WARNING_INTERVAL) {
                warned_full = Some(std::time::Instant::now());
                tracing::warn!(
                    max_clients = shared.config.max_clients,
                    refused = refused_since_warning,
                    "event socket is full; refusing clients (counted in tcpinfo_eventsocket_clients_refused_total)"
                );
                refused_since_warning = 0;
            }
            // Dropping the stream closes it: the client reads end-of-file at once.
            drop(stream);
            continue;
        }
        next_id += 1;
        Counters::add(&counters.clients_connected, 1);
        let (handle, task) = client::client(
            next_id,
            stream,
            shared.config.queue_capacity,
            counters,
            shared.config.write_timeout,
        );
        let mut clients = lock(&shared.clients);
        // Forget clients whose task has ended (hung up, lagged): on a quiet host no publish
        // does it, and connection churn would grow the list. Only once the list has doubled
        // since the last time, so that each accept costs O(1), not a scan of every client (a
        // storm of connections made that scan the daemon's main cost); the list stays under
        // twice the clients connected, plus `MIN_PRUNE`, and an ended client's entry holds no
        // socket.
        if clients.len() >= prune_at {
            clients.retain(|(_, task)| !task.is_finished());
            prune_at = (2 * clients.len()).max(MIN_PRUNE);
        }
        let join = runtime.spawn(task.run());
        tracing::debug!(client = handle.id(), "event socket client connected");
        clients.push((handle, join));
        drop(clients);
        // Counted last: once a client shows as accepted, every later event reaches its queue.
        Counters::add(&counters.clients_accepted, 1);
    }
}
