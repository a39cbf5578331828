//! A small HTTP/1.1 server for the daemon's endpoints (metrics, query API): hyper on the
//! edges' tokio runtime, over TCP or a unix socket, with the limits a daemon needs.
//!
//! - a deadline for each request head ([`HEAD_TIMEOUT`]) and a bound on its size
//!   ([`MAX_HEAD`], answered with 431);
//! - a deadline for the whole exchange ([`CONNECTION_DEADLINE`]): a client that asks and then
//!   never reads the answer is cut off;
//! - one request per connection;
//! - at most [`MAX_CONNECTIONS`] connections at once: more are closed at once, so a slow or
//!   malicious client holds one slot for a bounded time but cannot block the others.
//!
//! What to answer is the caller's [`Handler`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, UnixListener};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Connections served at the same time; more are closed at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Longest time a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head accepted (hyper's read buffer; its minimum is 8 KiB).
pub const MAX_HEAD: usize = 8 * 1024;
/// Longest time one connection may take, request and answer (a metrics exposition or a plot,
/// read by a slow client) included.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// Pause after an accept error that is not about one connection (e.g. EMFILE), so the loop
/// does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A response being prepared.
pub type Responding = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// What a server answers: one response per request.
pub type Handler = Arc<dyn Fn(Request<Incoming>) -> Responding + Send + Sync>;

/// A bound listener, TCP or unix.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener (non-blocking, not yet registered with a runtime).
    Tcp(std::net::TcpListener),
    /// A unix-socket listener (non-blocking, not yet registered with a runtime) and its path.
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAddr {
    /// A TCP address (with the real port when port 0 was asked for).
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "http://{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A running server. Stops when [`Server::shutdown`] is called or it is dropped.
#[derive(Debug)]
pub struct Server {
    local: LocalAddr,
    stop: CancellationToken,
    runtime: Handle,
    accept: Option<JoinHandle<()>>,
    /// Named in logs.
    name: &'static str,
}

impl Server {
    /// Serves `handler` on `listener` as tasks on `runtime`. `name` names the server in logs.
    pub fn start(
        name: &'static str,
        listener: Listener,
        handler: Handler,
        runtime: &Handle,
    ) -> std::io::Result<Self> {
        Self::start_with_deadline(name, listener, handler, runtime, CONNECTION_DEADLINE)
    }

    /// [`Server::start`] with another deadline per connection than [`CONNECTION_DEADLINE`].
    pub fn start_with_deadline(
        name: &'static str,
        listener: Listener,
        handler: Handler,
        runtime: &Handle,
        deadline: Duration,
    ) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let _context = runtime.enter();
        let (local, accept) = match listener {
            Listener::Tcp(listener) => {
                listener.set_nonblocking(true)?;
                let local = LocalAddr::Tcp(listener.local_addr()?);
                let listener = Arc::new(TcpListener::from_std(listener)?);
                let accept = runtime.spawn(accept_loop(
                    name,
                    move || {
                        let listener = Arc::clone(&listener);
                        async move { listener.accept().await.map(|(s, p)| (s, p.to_string())) }
                    },
                    handler,
                    stop.clone(),
                    deadline,
                ));
                (local, accept)
            }
            Listener::Unix(listener, path) => {
                listener.set_nonblocking(true)?;
                let listener = Arc::new(UnixListener::from_std(listener)?);
                let accept = runtime.spawn(accept_loop(
                    name,
                    move || {
                        let listener = Arc::clone(&listener);
                        async move {
                            listener
                                .accept()
                                .await
                                .map(|(s, _)| (s, "a unix client".to_owned()))
                        }
                    },
                    handler,
                    stop.clone(),
                    deadline,
                ));
                (LocalAddr::Unix(path), accept)
            }
        };
        Ok(Self {
            local,
            stop,
            runtime: runtime.clone(),
            accept: Some(accept),
            name,
        })
    }

    /// Where the server listens.
    pub fn local_addr(&self) -> &LocalAddr {
        &self.local
    }

    /// Stops accepting, ends the connections being served, and waits for the accept task.
    /// Blocks the calling thread, which must not be one of the runtime's own.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.stop.cancel();
        if let Some(accept) = self.accept.take() {
            let (runtime, name) = (&self.runtime, self.name);
            // From a scoped thread, so that this also works if dropped inside the runtime.
            std::thread::scope(|s| {
                s.spawn(|| {
                    if runtime.block_on(accept).is_err() {
                        tracing::error!("the {name} accept task panicked");
                    }
                });
            });
        }
        if let LocalAddr::Unix(path) = &self.local {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Accepts connections until `stop`; each is served by its own task, within the cap. The
/// connection tasks are cancelled with the listener.
async fn accept_loop<S, A, F>(
    name: &'static str,
    accept: A,
    handler: Handler,
    stop: CancellationToken,
    deadline: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    A: Fn() -> F,
    F: Future<Output = std::io::Result<(S, String)>>,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = accept() => accepted,
            // Reap finished connections so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::warn!("{name} server: accept failed: {e}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("{name} server: refusing {peer}: {MAX_CONNECTIONS} connections busy");
            continue; // Dropping the stream closes it.
        };
        let handler = Arc::clone(&handler);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let responding = handler(request);
                async move { Ok::<_, Infallible>(responding.await) }
            });
            let serving = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(deadline, serving).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("{name} server: connection from {peer}: {e}"),
                Err(_) => tracing::debug!("{name} server: {peer} cut off after {deadline:?}"),
            }
            drop(slot);
        });
    }
    // Ends every connection being served, stalled ones included.
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::test_runtime::handle as rt;

    /// A handler answering every request with `size` bytes.
    fn big(size: usize) -> Handler {
        let body = Bytes::from(vec![b'x'; size]);
        Arc::new(move |_| {
            let body = body.clone();
            Box::pin(async move { Response::new(Full::new(body)) })
        })
    }

    #[test]
    fn clients_that_never_read_the_answer_are_cut_off() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let deadline = Duration::from_millis(500);
        // Far more than the socket buffers hold, so that the answer waits on the client.
        let server = Server::start_with_deadline(
            "test",
            Listener::Tcp(listener),
            big(64 << 20),
            rt(),
            deadline,
        )
        .unwrap();
        let LocalAddr::Tcp(addr) = server.local_addr().clone() else {
            panic!()
        };
        // Every slot taken by a client that asks and never reads.
        let stalled: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // After the deadline the slots are free again: a new client gets its whole answer.
        let start = Instant::now();
        let answered = loop {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut response = Vec::new();
            let _ = s.read_to_end(&mut response);
            if response.len() > 64 << 20 {
                break response;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "never answered");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(answered.starts_with(b"HTTP/1.1 200 OK\r\n"));
        drop(stalled);
        server.shutdown();
    }
}
