//! Event-socket clients (SPEC §7): one that reads every line on a background thread, and one
//! that connects and never reads.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::Shutdown;
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use tcp_info::events::{Decoded, EventKind, FlowEvent};

use crate::{Setup, traffic};

/// One received line (without its `\n`) and when it arrived.
#[derive(Debug, Clone)]
pub struct Line {
    /// Arrival time.
    pub at: Instant,
    /// The text.
    pub text: String,
}

/// A client that reads continuously.
#[derive(Debug)]
pub struct EventReader {
    lines: Arc<Mutex<Vec<Line>>>,
    eof: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stream: UnixStream,
}

/// Connects to `path`, waiting up to `timeout` for the daemon to create it.
pub fn connect(path: &Path, timeout: Duration) -> Result<UnixStream> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("connecting to event socket {}", path.display()));
            }
        }
    }
}

impl EventReader {
    /// Connects and starts reading.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self> {
        let stream = connect(path, timeout)?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let eof = Arc::new(AtomicBool::new(false));
        let reader = stream.try_clone().context("cloning the event stream")?;
        let thread = {
            let lines = Arc::clone(&lines);
            let eof = Arc::clone(&eof);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(reader);
                let mut buf = String::new();
                loop {
                    buf.clear();
                    match reader.read_line(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let text = buf.strip_suffix('\n').unwrap_or(&buf).to_owned();
                            lines
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(Line {
                                    at: Instant::now(),
                                    text,
                                });
                        }
                    }
                }
                eof.store(true, Ordering::SeqCst);
            })
        };
        Ok(Self {
            lines,
            eof,
            thread: Some(thread),
            stream,
        })
    }

    /// A copy of the lines received so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the server closed the stream.
    pub fn eof(&self) -> bool {
        self.eof.load(Ordering::SeqCst)
    }

    /// Waits until `done(lines)` holds; on timeout, fails showing the lines received.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&[Line]) -> bool,
    ) -> Result<Vec<Line>> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines();
            if done(&lines) {
                return Ok(lines);
            }
            if Instant::now() > deadline {
                let shown: Vec<&str> = lines
                    .iter()
                    .rev()
                    .take(20)
                    .map(|l| l.text.as_str())
                    .collect();
                bail!(
                    "event client: {what} did not happen within {timeout:?} ({} lines received, eof={}; last lines: {shown:#?})",
                    lines.len(),
                    self.eof()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the server to close the stream.
    pub fn wait_eof(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.eof() {
            if Instant::now() > deadline {
                bail!("the daemon did not close the event stream within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for EventReader {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A client that connects and never reads, with a small receive buffer so that it falls
/// behind quickly.
pub fn connect_stalled(path: &Path, timeout: Duration) -> Result<UnixStream> {
    let stream = connect(path, timeout)?;
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt on an open socket with a valid int option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::from_ref(&size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("SO_RCVBUF on the stalled client");
    }
    Ok(stream)
}

/// Bytes waiting unread in a socket's receive queue (`FIONREAD`).
pub fn unread_bytes(stream: &UnixStream) -> Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &raw mut n) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("FIONREAD");
    }
    Ok(n as usize)
}

/// When each UUID's Close event arrived, among `lines`.
pub fn close_times(lines: &[Line]) -> BTreeMap<String, Instant> {
    lines
        .iter()
        .filter_map(|l| match FlowEvent::decode(l.text.as_bytes()) {
            Ok(Decoded::Event(e)) if e.kind == EventKind::Close => Some((e.uuid, l.at)),
            _ => None,
        })
        .collect()
}

/// Makes `probes` short connections in `setup`, one after the other, and returns the worst
/// time from a connection's end to its Close event reaching `reader` (waiting up to `timeout`
/// for them all): the daemon's close latency, for tests that load it otherwise.
pub fn worst_close_latency(
    setup: &Setup,
    reader: &EventReader,
    probes: usize,
    timeout: Duration,
) -> Result<Duration> {
    let listener = setup.net.listen()?;
    let mut ended = Vec::new();
    for _ in 0..probes {
        let (mut client, mut server, cookie) = setup.connected(&listener)?;
        client.shutdown(Shutdown::Write)?;
        ensure!(
            traffic::drain(&mut server)? == 0,
            "a probe's server got data"
        );
        drop(server);
        ensure!(
            traffic::drain(&mut client)? == 0,
            "a probe's client got data"
        );
        ended.push((setup.uuid(cookie), Instant::now()));
    }
    let lines = reader.wait_until(timeout, "the Close of every probe connection", |lines| {
        let closed = close_times(lines);
        ended.iter().all(|(uuid, _)| closed.contains_key(uuid))
    })?;
    let closed = close_times(&lines);
    Ok(ended
        .iter()
        .filter_map(|(uuid, end)| {
            closed
                .get(uuid)
                .map(|at| at.saturating_duration_since(*end))
        })
        .max()
        .unwrap_or_default())
}
