//! Helpers shared by the end-to-end tests of the `tcp-info` daemon.
//!
//! Each test builds a [`Setup`]: two fresh network namespaces joined by a veth pair
//! ([`netns::NetPair`]), a temporary directory with the UUID prefix file and the output tree,
//! and starts the daemon inside the server namespace ([`daemon::Daemon`]), so that the daemon
//! sees only the sockets the test creates. Everything is removed by `Drop` guards.
//!
//! The tests need root (namespaces, `setns`, sock_diag). Without it they print why and pass
//! vacuously — except when `CI=true`, where they fail instead.

pub mod archive;
pub mod conn;
pub mod daemon;
pub mod events;
pub mod exposition;
pub mod faults;
pub mod netns;
pub mod openapi;
pub mod pods;
pub mod sockets;
pub mod ss;
pub mod traffic;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

pub use daemon::Daemon;
pub use netns::NetPair;

/// Whether the test may run privileged operations. Not root: prints a skip message and returns
/// `false`, or panics when `CI=true`.
pub fn privileged(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: this end-to-end test needs root to {what}"
    );
    eprintln!("skipping: this end-to-end test needs root to {what}");
    false
}

/// Polls `probe` every 20 ms until it returns `Some`, for at most `timeout`. On timeout the
/// error says `what` and shows the last failure `probe` reported through `Err`.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        if Instant::now() > deadline {
            match last {
                Some(e) => bail!("{what}: not done within {timeout:?}; last error: {e:#}"),
                None => bail!("{what}: not done within {timeout:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

static DAEMON_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Variable choosing the mode the end-to-end tests run the daemon in: `sweep` (the default) or
/// `ebpf`. `scripts/test.sh` runs them in both; `ebpf` never falls back, so a run in eBPF mode
/// fails if the programs cannot load.
pub const MODE_ENV: &str = "TCP_INFO_E2E_MODE";

/// The mode of [`MODE_ENV`]. Panics on any other value, so a typo cannot silently test sweep.
pub fn mode() -> &'static str {
    match std::env::var(MODE_ENV).as_deref() {
        Err(_) | Ok("" | "sweep") => "sweep",
        Ok("ebpf") => "ebpf",
        Ok(other) => panic!("{MODE_ENV}={other:?}: expected sweep or ebpf"),
    }
}

/// Everything one test needs: namespaces, a temporary directory and the daemon's paths.
#[derive(Debug)]
pub struct Setup {
    /// The namespaces.
    pub net: NetPair,
    /// The UUID prefix written to the prefix file (no trailing newline).
    pub prefix: String,
    dir: tempfile::TempDir,
}

impl Setup {
    /// Creates the namespaces and the directory, and writes the prefix file. `None` when the
    /// test must be skipped (see [`privileged`]).
    pub fn new(test: &str) -> Option<Self> {
        let net = NetPair::create()?;
        let dir = match tempfile::Builder::new()
            .prefix(&format!("tcpinfo-e2e-{test}-"))
            .tempdir()
        {
            Ok(dir) => dir,
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        };
        // The production shape `<name>_<boottime>`, distinct per test.
        let prefix = format!("e2e-{test}_{}", std::process::id());
        if let Err(e) = std::fs::write(dir.path().join("prefix"), &prefix) {
            panic!("cannot write the prefix file: {e}");
        }
        Some(Self { net, prefix, dir })
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's `-output` root.
    pub fn output(&self) -> PathBuf {
        self.dir().join("out")
    }

    /// The UUID prefix file.
    pub fn prefix_file(&self) -> PathBuf {
        self.dir().join("prefix")
    }

    /// A path for the event socket (absolute, outside the output tree).
    pub fn event_socket(&self) -> PathBuf {
        self.dir().join("events.sock")
    }

    /// The arguments every test passes: output, prefix file, metrics on a free loopback port,
    /// the mode of [`mode`] polling every 10 ms. A test's own arguments come after these, so a
    /// test that needs one mode names it and wins.
    pub fn base_args(&self) -> Vec<String> {
        vec![
            format!("--output={}", self.output().display()),
            format!("--uuid-prefix-file={}", self.prefix_file().display()),
            "--prometheusx.listen-address=127.0.0.1:0".to_owned(),
            format!("--mode={}", mode()),
            "--poll-interval=10ms".to_owned(),
        ]
    }

    /// Starts the daemon with [`Self::base_args`] plus `extra`, and waits until it announces
    /// its metrics address (so it is up).
    pub fn start(&self, extra: &[&str], envs: &[(&str, &str)]) -> Result<Daemon> {
        self.start_wrapped(&[], extra, envs)
    }

    /// [`Self::start`] with the daemon run through `wrapper` (a command that execs its
    /// arguments, such as `setpriv --bounding-set=-bpf --`).
    pub fn start_wrapped(
        &self,
        wrapper: &[&str],
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Daemon> {
        let mut args = self.base_args();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let n = DAEMON_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut daemon = Daemon::start(
            &self.net,
            wrapper,
            &args,
            envs,
            self.dir(),
            &format!("daemon{n}"),
        )?;
        daemon.metrics_addr(Duration::from_secs(20))?;
        Ok(daemon)
    }

    /// Starts the daemon with an event socket (beside `extra`) and connects a reader to it.
    pub fn start_with_events(&self, extra: &[&str]) -> Result<(Daemon, events::EventReader)> {
        let sock = self.event_socket();
        let sock_arg = format!("--tcpinfo.eventsocket={}", sock.display());
        let mut args = vec![sock_arg.as_str()];
        args.extend_from_slice(extra);
        let daemon = self.start(&args, &[])?;
        let reader = events::EventReader::connect(&sock, Duration::from_secs(10))?;
        Ok((daemon, reader))
    }

    /// A connection from the client namespace to `listener`, accepted: the client end, the
    /// server end and the server socket's cookie (what the daemon records).
    pub fn connected(
        &self,
        listener: &std::net::TcpListener,
    ) -> Result<(std::net::TcpStream, std::net::TcpStream, u64)> {
        let client = self.net.connect(listener.local_addr()?.port())?;
        let (server, cookie, _) = traffic::accept(listener)?;
        Ok((client, server, cookie))
    }

    /// Waits until `daemon`'s `/ready` answers 200: its first sweep has completed, so what the
    /// test does from now on is not in it.
    pub fn wait_ready(&self, daemon: &mut Daemon, timeout: Duration) -> Result<()> {
        let addr = daemon.metrics_addr(timeout)?;
        wait_for(timeout, "the daemon ready (/ready 200)", || {
            let (status, _) = sockets::http_get(&self.net, addr, "/ready")?;
            Ok((status == 200).then_some(()))
        })
    }

    /// `daemon`'s metrics, fetched from the server namespace and parsed; an error unless the
    /// answer is 200.
    pub fn scrape(&self, daemon: &mut Daemon) -> Result<exposition::Exposition> {
        let addr = daemon.metrics_addr(Duration::from_secs(5))?;
        let (status, body) = sockets::http_get(&self.net, addr, "/metrics")?;
        if status != 200 {
            bail!("GET /metrics answered {status}");
        }
        exposition::parse(&body)
    }

    /// The UUID of a cookie under this setup's prefix.
    pub fn uuid(&self, cookie: u64) -> String {
        sockets::uuid(&self.prefix, cookie)
    }
}

/// Raises this process's soft descriptor limit to its hard limit, and returns it.
pub fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid, initialised struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit), 0);
    }
    limit.rlim_cur
}

/// The number of threads of process `pid` (its `/proc/<pid>/status` `Threads:` line).
pub fn thread_count(pid: u32) -> Result<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Threads: line in /proc/{pid}/status"))
}
