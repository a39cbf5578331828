//! Collectors under test: `--collector NAME=COMMAND` or a built-in preset, run with `sh -c`
//! inside the server namespace (on the namespace axis, the benchmark's own), in their own
//! process group, and stopped with SIGTERM.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::fake::FakeMode;

/// Whether a collector writes m-lab archives we can grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Archives {
    /// It must (the daemon, fakes): coverage is computed, and 0 % if it wrote nothing.
    Expected,
    /// It writes none (the `ss` baseline): CPU and memory only.
    None,
    /// Unknown (external command): coverage is computed if archives appear.
    IfPresent,
}

/// What a self-test collector must score for the coverage measure to be working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expectation {
    /// About two thirds seen and exact (drops every third connection).
    TwoThirds,
    /// Everything seen, nothing exact (stale final counters).
    AllSeenNoneExact,
    /// Everything seen and exact.
    Perfect,
}

impl Expectation {
    /// Why `cov` is not what this expectation demands, if it is not.
    pub fn problem(self, cov: &super::coverage::Coverage) -> Option<String> {
        let all = cov.overall();
        let seen = all.seen_frac()?;
        let exact = all.exact_frac().unwrap_or(0.0);
        let ok = match self {
            // Every third of each class is dropped: 2/3 overall, up to rounding of small classes.
            Self::TwoThirds => (0.60..=0.74).contains(&seen) && (exact - seen).abs() < 0.02,
            Self::AllSeenNoneExact => all.seen == all.total && all.exact == 0,
            Self::Perfect => all.seen == all.total && all.exact == all.gradable,
        };
        (!ok).then(|| {
            format!(
                "expected {}, got seen {:.1}%, exact {:.1}%",
                self.describe(),
                seen * 100.0,
                exact * 100.0
            )
        })
    }

    /// What the expectation demands, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::TwoThirds => "≈67% seen and exact",
            Self::AllSeenNoneExact => "100% seen, 0% exact",
            Self::Perfect => "100% seen and exact",
        }
    }
}

/// One collector to measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectorSpec {
    /// Name in the report.
    pub name: String,
    /// Shell command; `{out}`, `{truth}`, `{prefix_file}` and `{xtask}` are replaced (quoted).
    pub command: String,
    /// Whether archives are graded.
    pub archives: Archives,
    /// For self-test collectors, the score they must get.
    pub expectation: Option<Expectation>,
}

/// Names of the built-in presets, for help and errors.
pub const PRESETS: &str = "tcp-info-sweep, tcp-info-auto, tcp-info-ebpf, ss-baseline, \
                           fake-drop-third, fake-stale, fake-faithful";

/// Parses `NAME=COMMAND` or a preset name. `daemon` is the `tcp-info` binary, if found.
pub fn parse_spec(s: &str, daemon: &DaemonBinary) -> anyhow::Result<CollectorSpec> {
    if let Some((name, command)) = s.split_once('=') {
        let name = name.trim();
        if name.is_empty() || command.trim().is_empty() {
            bail!("--collector {s:?}: expected NAME=COMMAND");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            bail!("--collector name {name:?}: use letters, digits, '-', '_' or '.'");
        }
        return Ok(CollectorSpec {
            name: name.into(),
            command: command.into(),
            archives: Archives::IfPresent,
            expectation: None,
        });
    }
    let fake = |mode: FakeMode, expectation| CollectorSpec {
        name: s.into(),
        command: format!(
            "exec {{xtask}} fake-collector --mode {} --truth {{truth}} --out {{out}} --prefix-file {{prefix_file}}",
            mode.flag()
        ),
        archives: Archives::Expected,
        expectation: Some(expectation),
    };
    Ok(match s {
        "ss-baseline" => CollectorSpec {
            name: s.into(),
            // `repeat` starts `ss` every 10 ms like a ticker (a slow run delays the next one,
            // never overlaps it) and sends its output to /dev/null.
            command: "exec {xtask} repeat --interval-ms 10 -- ss -tinm".into(),
            archives: Archives::None,
            expectation: None,
        },
        "fake-drop-third" => fake(FakeMode::DropEveryThird, Expectation::TwoThirds),
        "fake-stale" => fake(FakeMode::StaleFinal, Expectation::AllSeenNoneExact),
        "fake-faithful" => fake(FakeMode::Faithful, Expectation::Perfect),
        _ => match s.strip_prefix("tcp-info-") {
            Some(mode @ ("sweep" | "auto" | "ebpf")) => {
                let bin = daemon.require(s)?;
                CollectorSpec {
                    name: s.into(),
                    command: format!(
                        "exec {} --output {{out}} --prometheusx.listen-address=127.0.0.1:0 \
                         --mode {mode} --uuid-prefix-file {{prefix_file}} --exclude-local=false",
                        shell_quote(&bin.display().to_string())
                    ),
                    archives: Archives::Expected,
                    expectation: None,
                }
            }
            _ => bail!("unknown collector {s:?}: give NAME=COMMAND or one of {PRESETS}"),
        },
    })
}

/// Where the `tcp-info` daemon binary is (or was looked for).
#[derive(Debug, Clone)]
pub struct DaemonBinary {
    /// The binary, if found.
    pub found: Option<PathBuf>,
    /// Every place looked at, for the error message.
    pub searched: Vec<PathBuf>,
}

impl DaemonBinary {
    /// Uses `explicit` if given, else `$CARGO_TARGET_DIR/release/tcp-info`, else
    /// `<workspace>/target/release/tcp-info`.
    pub fn locate(explicit: Option<&Path>, workspace: &Path) -> Self {
        let searched: Vec<PathBuf> = match explicit {
            Some(p) => vec![p.to_path_buf()],
            None => std::env::var_os("CARGO_TARGET_DIR")
                .map(|d| {
                    let d = PathBuf::from(d);
                    if d.is_absolute() {
                        d
                    } else {
                        workspace.join(d)
                    }
                })
                .into_iter()
                .chain([workspace.join("target")])
                .map(|d| d.join("release").join("tcp-info"))
                .collect(),
        };
        let found = searched.iter().find(|p| p.is_file()).cloned();
        Self { found, searched }
    }

    fn require(&self, preset: &str) -> anyhow::Result<PathBuf> {
        self.found.clone().with_context(|| {
            format!(
                "collector {preset}: the tcp-info daemon binary was not found (looked at {}); \
                 build it with `cargo build --release -p tcp-info` or pass --tcp-info-bin",
                self.searched
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// Quotes `s` for `sh`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:=+,@".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Paths substituted into a collector command.
#[derive(Debug, Clone)]
pub struct Placeholders {
    /// `{out}`: a fresh output directory.
    pub out: PathBuf,
    /// `{truth}`: where the ground truth will be (written before the collector is stopped).
    pub truth: PathBuf,
    /// `{prefix_file}`: a UUID prefix file.
    pub prefix_file: PathBuf,
    /// `{xtask}`: this executable.
    pub xtask: PathBuf,
}

impl CollectorSpec {
    /// The same collector with `args` appended to its command (e.g. `--netns all`).
    #[must_use]
    pub fn with_args(mut self, args: &str) -> Self {
        self.command.push(' ');
        self.command.push_str(args);
        self
    }

    /// The command with placeholders replaced.
    pub fn render(&self, p: &Placeholders) -> String {
        let q = |p: &Path| shell_quote(&p.display().to_string());
        self.command
            .replace("{out}", &q(&p.out))
            .replace("{truth}", &q(&p.truth))
            .replace("{prefix_file}", &q(&p.prefix_file))
            .replace("{xtask}", &q(&p.xtask))
    }
}

/// How a collector ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopOutcome {
    /// `exit 0`, `exit 3`, `signal 9`…
    pub status: String,
    /// Exited by itself after SIGTERM, with status 0.
    pub clean: bool,
    /// Seconds from SIGTERM to exit.
    pub stop_s: f64,
    /// User+system CPU of the whole run from `wait4` (the root and every descendant it reaped).
    pub cpu_total_s: f64,
}

/// A collector process.
pub struct RunningCollector {
    pid: Pid,
    reaped: bool,
}

impl RunningCollector {
    /// Starts `command` with `sh -c` inside the named namespace `ns` (`None`: this process's
    /// own); output goes to `log`.
    pub fn spawn(command: &str, ns: Option<&str>, log: &Path) -> anyhow::Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "sh"]);
                c
            }
            None => Command::new("sh"),
        };
        let child = cmd
            .args(["-c", command])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting collector `{command}`"))?;
        // Reaped with wait4 (for its rusage), so the std handle is not used again.
        let pid = Pid::from_raw(child.id() as i32);
        drop(child);
        Ok(Self { pid, reaped: false })
    }

    /// The root process id (`ip netns exec` execs `sh`, so this is the shell or what it execs).
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// `Some(status)` if the collector has exited (it is then reaped).
    pub fn try_exit(&mut self) -> anyhow::Result<Option<String>> {
        Ok(self.wait4(false)?.map(|(s, _)| s))
    }

    /// SIGTERM to the process group, wait up to `timeout`, then SIGKILL.
    pub fn stop(&mut self, timeout: Duration) -> anyhow::Result<StopOutcome> {
        if self.reaped {
            bail!("collector already exited");
        }
        let start = Instant::now();
        let _ = killpg(self.pid, Signal::SIGTERM);
        loop {
            if let Some((status, cpu)) = self.wait4(false)? {
                let stop_s = start.elapsed().as_secs_f64();
                // Stragglers left in the group would skew the next trial.
                let _ = killpg(self.pid, Signal::SIGKILL);
                return Ok(StopOutcome {
                    clean: status == "exit 0",
                    status,
                    stop_s,
                    cpu_total_s: cpu,
                });
            }
            if start.elapsed() > timeout {
                let _ = killpg(self.pid, Signal::SIGKILL);
                let (status, cpu) = self
                    .wait4(true)?
                    .context("collector did not die on SIGKILL")?;
                return Ok(StopOutcome {
                    status: format!("{status} (killed after {timeout:?})"),
                    clean: false,
                    stop_s: start.elapsed().as_secs_f64(),
                    cpu_total_s: cpu,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `wait4` on the root: its status and the CPU seconds of it and its reaped descendants.
    fn wait4(&mut self, block: bool) -> anyhow::Result<Option<(String, f64)>> {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain old data; zeroed is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if block { 0 } else { libc::WNOHANG };
        // SAFETY: `status` and `ru` are valid for writes; the pid is our own child.
        let rc = unsafe { libc::wait4(self.pid.as_raw(), &raw mut status, flags, &raw mut ru) };
        if rc == 0 {
            return Ok(None);
        }
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context("wait4 on the collector");
        }
        self.reaped = true;
        let desc = if libc::WIFEXITED(status) {
            format!("exit {}", libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            format!("signal {}", libc::WTERMSIG(status))
        } else {
            format!("status {status:#x}")
        };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Ok(Some((desc, secs(ru.ru_utime) + secs(ru.ru_stime))))
    }
}

impl Drop for RunningCollector {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = killpg(self.pid, Signal::SIGKILL);
            let _ = self.wait4(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_daemon() -> DaemonBinary {
        DaemonBinary {
            found: None,
            searched: vec!["/nonexistent/tcp-info".into()],
        }
    }

    #[test]
    fn parses_external_and_presets() {
        let d = no_daemon();
        let e = parse_spec("mine=ss -ti > {out}/x", &d).unwrap();
        assert_eq!(
            (e.name.as_str(), e.command.as_str(), e.archives),
            ("mine", "ss -ti > {out}/x", Archives::IfPresent)
        );
        assert_eq!(
            parse_spec("ss-baseline", &d).unwrap().archives,
            Archives::None
        );
        assert_eq!(
            parse_spec("fake-drop-third", &d).unwrap().expectation,
            Some(Expectation::TwoThirds)
        );
        let err = parse_spec("tcp-info-sweep", &d).unwrap_err().to_string();
        assert!(
            err.contains("cargo build --release -p tcp-info") && err.contains("/nonexistent"),
            "{err}"
        );
        assert!(parse_spec("nonsense", &d).is_err());
        assert!(parse_spec("=cmd", &d).is_err());
        assert!(parse_spec("a b=cmd", &d).is_err());

        let d = DaemonBinary {
            found: Some("/opt/my bin/tcp-info".into()),
            searched: vec![],
        };
        let s = parse_spec("tcp-info-sweep", &d).unwrap();
        let cmd = s.render(&Placeholders {
            out: "/tmp/o".into(),
            truth: "/tmp/t".into(),
            prefix_file: "/tmp/p".into(),
            xtask: "/x".into(),
        });
        assert_eq!(
            cmd,
            "exec '/opt/my bin/tcp-info' --output /tmp/o --prometheusx.listen-address=127.0.0.1:0 \
             --mode sweep --uuid-prefix-file /tmp/p --exclude-local=false"
        );
        let all = s.with_args("--netns all");
        assert!(all.command.ends_with("--exclude-local=false --netns all"));
        assert_eq!(all.name, "tcp-info-sweep");
    }

    #[test]
    fn self_test_expectations_discriminate() {
        use crate::bench::coverage::{ClassCoverage, Coverage};
        let cov = |seen: usize, exact: usize| Coverage {
            per_class: [
                ClassCoverage {
                    total: 300,
                    seen,
                    gradable: 300,
                    exact,
                },
                ClassCoverage::default(),
                ClassCoverage::default(),
            ],
        };
        assert_eq!(Expectation::TwoThirds.problem(&cov(200, 200)), None);
        assert!(Expectation::TwoThirds.problem(&cov(300, 300)).is_some());
        assert!(Expectation::TwoThirds.problem(&cov(200, 0)).is_some());
        assert_eq!(Expectation::AllSeenNoneExact.problem(&cov(300, 0)), None);
        assert!(
            Expectation::AllSeenNoneExact
                .problem(&cov(300, 1))
                .is_some()
        );
        assert_eq!(Expectation::Perfect.problem(&cov(300, 300)), None);
        assert!(Expectation::Perfect.problem(&cov(299, 299)).is_some());
    }

    #[test]
    fn shell_quote_round_trips_through_sh() {
        for s in ["plain/path", "with space", "it's", "$HOME", ""] {
            let out = Command::new("sh")
                .args(["-c", &format!("printf %s {}", shell_quote(s))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn locate_prefers_explicit_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("tcp-info");
        std::fs::write(&bin, b"").unwrap();
        let d = DaemonBinary::locate(Some(&bin), Path::new("/nowhere"));
        assert_eq!(d.found, Some(bin));
        let d = DaemonBinary::locate(Some(Path::new("/nowhere/tcp-info")), Path::new("/nowhere"));
        assert_eq!(d.found, None);
    }
}
