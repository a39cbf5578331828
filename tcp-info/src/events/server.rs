//! The listening side: binds the socket, accepts clients, broadcasts events, shuts down.

use super::EventsError;
use super::client::{Client, Line, Offer, WriterContext, deadline_after, lock};
use super::stats::{Counters, EventStats, EventStatsReader};
use super::wire::FlowEvent;
use socket2::SockRef;
use std::fs;
use std::io::ErrorKind;
use std::net::Shutdown;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Pause after an `accept` failure such as `EMFILE`, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often shutdown checks whether every writer has finished draining.
const DRAIN_POLL: Duration = Duration::from_millis(5);

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
}

impl Default for EventServerConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            write_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// State shared with the accept thread.
struct Shared {
    clients: Mutex<Vec<Arc<Client>>>,
    counters: Arc<Counters>,
    closing: AtomicBool,
    capacity: usize,
}

/// The event socket (SPEC §7): a Unix stream socket that broadcasts every published event, as
/// one JSON line, to every connected client.
///
/// Each client has a bounded queue and a writer thread, so [`publish`](Self::publish) never
/// waits for a client. Dropping the server shuts it down like [`shutdown`](Self::shutdown).
pub struct EventServer {
    /// Absolute, so that removal at shutdown does not depend on the working directory.
    path: PathBuf,
    /// `(st_dev, st_ino)` of the socket file this server created.
    socket_file: (u64, u64),
    shared: Arc<Shared>,
    /// A second handle on the listening socket, used to wake the accept thread.
    listener: UnixListener,
    accept: Option<JoinHandle<Vec<JoinHandle<()>>>>,
    drain_deadline: Arc<OnceLock<Instant>>,
    shutdown_grace: Duration,
}

impl EventServer {
    /// Listens at `path` and starts accepting clients.
    ///
    /// Whatever already exists at `path` is removed first, as upstream does (a stale socket
    /// left by a crash caused crash loops, upstream #126), whether it is a socket, a regular
    /// file or a symlink (the link itself); only a directory is refused. A relative path is
    /// resolved against the current directory now (SPEC §2.5: after `-output`'s `chdir`).
    pub fn start(path: &Path, config: EventServerConfig) -> Result<Self, EventsError> {
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
        remove_stale(&path)?;
        let listener = UnixListener::bind(&path).map_err(|source| EventsError::Bind {
            path: path.clone(),
            source,
        })?;
        let cleanup_on_error = |e: EventsError| {
            // Ignored: the start error being returned matters more than a leftover file.
            let _ = fs::remove_file(&path);
            e
        };
        let meta = fs::symlink_metadata(&path)
            .map_err(|source| EventsError::Inspect {
                path: path.clone(),
                source,
            })
            .map_err(cleanup_on_error)?;
        let wake = listener
            .try_clone()
            .map_err(|source| EventsError::Bind {
                path: path.clone(),
                source,
            })
            .map_err(cleanup_on_error)?;

        let shared = Arc::new(Shared {
            clients: Mutex::new(Vec::new()),
            counters: Arc::new(Counters::default()),
            closing: AtomicBool::new(false),
            capacity: config.queue_capacity,
        });
        let drain_deadline = Arc::new(OnceLock::new());
        let ctx = WriterContext {
            write_timeout: config.write_timeout,
            drain_deadline: Arc::clone(&drain_deadline),
        };
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("tcpinfo-events-accept".into())
                .spawn(move || accept_loop(&listener, &shared, &ctx))
                .map_err(|source| EventsError::Spawn {
                    path: path.clone(),
                    source,
                })
                .map_err(cleanup_on_error)?
        };
        tracing::info!(path = %path.display(), "event socket listening");
        Ok(Self {
            path,
            socket_file: (meta.dev(), meta.ino()),
            shared,
            listener: wake,
            accept: Some(accept),
            drain_deadline,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The absolute path of the socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `event` to every connected client. Never waits for a client (D8): the line is
    /// encoded once and pushed onto each client's bounded queue; a client whose queue is full
    /// is disconnected and counted. The only waiting is for short, I/O-free critical sections.
    pub fn publish(&self, event: &FlowEvent) {
        Counters::add(&self.shared.counters.events_published, 1);
        let mut clients = lock(&self.shared.clients);
        if clients.is_empty() {
            return;
        }
        let line: Line = event.to_line().into();
        clients.retain(|client| client.offer(&line) == Offer::Queued);
    }

    /// The counters now.
    pub fn stats(&self) -> EventStats {
        self.stats_reader().snapshot()
    }

    /// A handle for reading the counters from another thread, valid after shutdown too.
    pub fn stats_reader(&self) -> EventStatsReader {
        EventStatsReader(Arc::clone(&self.shared.counters))
    }

    /// Stops accepting clients, lets each client's writer send what is queued (the Close
    /// events of the final flush, D11) until the shutdown grace period ends, closes every
    /// connection and removes the socket file. Returns the final counters.
    pub fn shutdown(mut self) -> EventStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.closing.store(true, Ordering::SeqCst);
        self.wake_accept();
        let writers = accept.join().unwrap_or_else(|_| {
            tracing::error!("event socket accept thread panicked");
            Vec::new()
        });

        let deadline = deadline_after(self.shutdown_grace);
        // Cannot already be set: `stop` runs its body once.
        let _ = self.drain_deadline.set(deadline);
        let clients = std::mem::take(&mut *lock(&self.shared.clients));
        for client in &clients {
            client.begin_drain();
        }
        // Each writer stops by itself when its queue is empty or its deadline passes; cutting
        // the connections at the deadline also ends sends that started before shutdown.
        while writers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
            thread::sleep(DRAIN_POLL);
        }
        for client in &clients {
            client.cut();
        }
        for writer in writers {
            if writer.join().is_err() {
                tracing::error!("event socket writer thread panicked");
            }
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

    /// Makes the blocked `accept` return. Shutting a listening Unix socket down wakes its
    /// `accept` with `EINVAL`; connecting to it is the fallback.
    fn wake_accept(&self) {
        if let Err(e) = SockRef::from(&self.listener).shutdown(Shutdown::Both) {
            tracing::debug!(error = %e, "shutdown of the event listener failed; connecting to wake it");
            // Ignored: if this fails too, the socket is gone and accept has already failed.
            let _ = UnixStream::connect(&self.path);
        }
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

/// Accepts clients until shutdown; returns the writer threads still to be joined.
fn accept_loop(
    listener: &UnixListener,
    shared: &Shared,
    ctx: &WriterContext,
) -> Vec<JoinHandle<()>> {
    let mut writers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    loop {
        let accepted = listener.accept();
        if shared.closing.load(Ordering::SeqCst) {
            break;
        }
        match accepted {
            Ok((stream, _)) => {
                // Finished writers need no join; forget them so the list stays short.
                writers.retain(|w| !w.is_finished());
                next_id += 1;
                if let Some(writer) = add_client(next_id, stream, shared, ctx) {
                    writers.push(writer);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                tracing::warn!(error = %e, "event socket accept failed");
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
    writers
}

/// Registers a new client and starts its writer thread.
fn add_client(
    id: u64,
    stream: UnixStream,
    shared: &Shared,
    ctx: &WriterContext,
) -> Option<JoinHandle<()>> {
    let counters = &shared.counters;
    Counters::add(&counters.clients_connected, 1);
    let client = Arc::new(Client::new(
        id,
        stream,
        shared.capacity,
        Arc::clone(counters),
    ));
    let writer = {
        let client = Arc::clone(&client);
        let ctx = ctx.clone();
        thread::Builder::new()
            .name(format!("tcpinfo-events-{id}"))
            .spawn(move || client.run_writer(&ctx))
    };
    let writer = match writer {
        Ok(writer) => {
            lock(&shared.clients).push(client);
            tracing::debug!(client = id, "event socket client connected");
            Some(writer)
        }
        Err(e) => {
            tracing::warn!(client = id, error = %e, "cannot start an event socket writer; dropping the client");
            client.abandon();
            None
        }
    };
    // Counted last: once a client shows as accepted, every later event reaches its queue.
    Counters::add(&counters.clients_accepted, 1);
    writer
}
