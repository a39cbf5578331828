//! Building, starting and stopping the `tcp-info` daemon under test.

use std::ffi::OsString;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

use crate::netns::NetPair;

/// Environment variable that names a prebuilt daemon binary, skipping the build.
pub const BIN_ENV: &str = "TCP_INFO_BIN";

/// The daemon binary: `$TCP_INFO_BIN`, or `<target>/<profile>/tcp-info` of the target directory
/// this test runs from, (re)built once per test process with `cargo build -p tcp-info --bin
/// tcp-info` so that a stale binary is never tested. Panics with cargo's output if the build
/// fails.
pub fn daemon_binary() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(|| locate_and_build().map_err(|e| format!("{e:#}"))) {
        Ok(path) => path,
        Err(e) => panic!("the tcp-info daemon binary is not available: {e}"),
    }
}

fn locate_and_build() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(BIN_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{BIN_ENV}={} is not a file", path.display());
        }
        return Ok(path);
    }
    // A test runs as <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("unexpected test executable path {}", exe.display()))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| anyhow!("unexpected profile directory {}", profile_dir.display()))?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--quiet", "-p", "tcp-info", "--bin", "tcp-info"])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target_dir);
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "`cargo build -p tcp-info --bin tcp-info` (target dir {}) failed ({}):\n{}",
            target_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bin = profile_dir.join("tcp-info");
    if !bin.is_file() {
        bail!("cargo built tcp-info but {} does not exist", bin.display());
    }
    Ok(bin)
}

/// A running daemon. Dropping it kills it (SIGKILL) if it is still running, and — when the
/// test is failing — prints its standard error.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    status: Option<ExitStatus>,
    stderr_path: PathBuf,
    name: String,
}

impl Daemon {
    /// Starts `tcp-info <args>` with the extra environment `envs`, inside the server namespace
    /// of `net` (via `ip netns exec`, which execs `wrapper` — if any — and that the daemon, so
    /// the child's pid is the daemon's). Standard output and error go to `<log_dir>/<name>.stdout|stderr`.
    pub fn start(
        net: &NetPair,
        wrapper: &[&str],
        args: &[String],
        envs: &[(&str, &str)],
        log_dir: &Path,
        name: &str,
    ) -> Result<Self> {
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let stdout_path = log_dir.join(format!("{name}.stdout"));
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        let stdout = File::create(&stdout_path)
            .with_context(|| format!("creating {}", stdout_path.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", net.server_ns()])
            .args(wrapper)
            .arg(daemon_binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("spawning ip netns exec tcp-info")?;
        Ok(Self {
            child: Some(child),
            status: None,
            stderr_path,
            name: name.to_owned(),
        })
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the daemon wrote to standard error so far.
    pub fn stderr(&self) -> String {
        match std::fs::read(&self.stderr_path) {
            Ok(bytes) => strip_ansi(&String::from_utf8_lossy(&bytes)),
            Err(e) => format!("<cannot read {}: {e}>", self.stderr_path.display()),
        }
    }

    /// Waits until standard error announces the metrics listener (`metrics listening on
    /// <addr>`) and returns its address.
    pub fn metrics_addr(&mut self, timeout: Duration) -> Result<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.stderr();
            if let Some(addr) = parse_metrics_addr(&log) {
                return Ok(addr);
            }
            if let Some(status) = self.try_status()? {
                bail!(
                    "daemon {} exited ({status}) before announcing its metrics address; stderr:\n{log}",
                    self.name
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "daemon {} did not log `metrics listening on <addr>` within {timeout:?}; stderr:\n{log}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status if the daemon has exited.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait().context("waiting for the daemon")?;
        self.status = status;
        Ok(status)
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        let pid = self.pid().ok_or_else(|| anyhow!("daemon not running"))?;
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("kill");
        }
        Ok(())
    }

    /// Waits up to `timeout` for the daemon to exit; returns its status and how long it took.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<(ExitStatus, Duration)> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status()? {
                return Ok((status, start.elapsed()));
            }
            if start.elapsed() > timeout {
                bail!(
                    "daemon {} still running {timeout:?} after being asked to stop; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits up to 30 s (the pod grace period) for the exit.
    pub fn terminate(&mut self) -> Result<(ExitStatus, Duration)> {
        self.signal(libc::SIGTERM)?;
        self.wait_exit(Duration::from_secs(30))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && self.status.is_none()
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- stderr of daemon {} ----\n{}---- end of stderr ----",
                self.name,
                self.stderr()
            );
        }
    }
}

/// Finds the metrics address in the daemon's log: the line containing
/// `metrics listening on <addr>`.
pub fn parse_metrics_addr(log: &str) -> Option<SocketAddr> {
    const MARKER: &str = "metrics listening on ";
    log.lines().find_map(|line| {
        let rest = &line[line.find(MARKER)? + MARKER.len()..];
        let token: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '"')
            .collect();
        token.parse().ok()
    })
}

/// Removes ANSI colour sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs the daemon inside the server namespace of `net` (through `wrapper`, if any, as
/// [`Daemon::start`]) with `args` and `envs`, expecting it to exit by itself within `timeout`;
/// returns the exit status and standard error. Used for start-up errors: bad flags, a mode that
/// cannot run.
pub fn run_to_exit(
    net: &NetPair,
    wrapper: &[&str],
    args: &[&str],
    envs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(ExitStatus, String)> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", net.server_ns()])
        .args(wrapper)
        .arg(daemon_binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().context("spawning the daemon")?;
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let text = reader.join().unwrap_or_default();
            bail!(
                "tcp-info {args:?} (env {envs:?}) did not exit within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&text)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = reader
        .join()
        .map_err(|_| anyhow!("stderr reader panicked"))?;
    Ok((status, strip_ansi(&String::from_utf8_lossy(&text))))
}
