//! Resource use of a process tree, from `/proc`.
//!
//! CPU is `utime + stime + cutime + cstime` summed over the live tree: a child that exited and
//! was reaped by its parent is still counted through the parent's `cutime`/`cstime`. (A
//! descendant re-parented away from the tree before it exits is lost; collectors that
//! daemonise should not be measured this way.) RSS, process, thread and descriptor counts are
//! sums over the tree at one instant; a background [`Sampler`] keeps their peaks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The fields of `/proc/<pid>/stat` the benchmark needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// User + system time of the process, plus that of its reaped children, in clock ticks.
    pub cpu_ticks: u64,
    /// Threads.
    pub threads: u64,
}

/// Parses one `/proc/<pid>/stat` line. The command name may hold spaces and parentheses, so
/// fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let (head, tail) = line.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    // tail fields: [0]=state [1]=ppid ... [11]=utime [12]=stime [13]=cutime [14]=cstime
    // ... [17]=num_threads (fields 3.., 1-based numbering in proc(5) minus 3).
    let f: Vec<&str> = tail.split_whitespace().collect();
    let num = |i: usize| -> Option<u64> { f.get(i)?.parse::<i64>().ok().map(|v| v.max(0) as u64) };
    Some(ProcStat {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        cpu_ticks: num(11)? + num(12)? + num(13)? + num(14)?,
        threads: num(17)?,
    })
}

/// Busy clock ticks of the whole machine so far, all CPUs together: the first line of
/// `/proc/stat` without `idle` and `iowait` (user, nice, system, irq, softirq, steal; guest
/// time is already inside user). eBPF programs run in other tasks' context, so this is where
/// their cost shows.
pub fn system_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_system_busy(stat.lines().next()?)
}

/// [`system_busy_ticks`] of one `cpu ...` line.
fn parse_system_busy(line: &str) -> Option<u64> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields.map(str::parse).collect::<Result<_, _>>().ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let get = |i: usize| v.get(i).copied();
    Some(get(0)? + get(1)? + get(2)? + get(5)? + get(6)? + get(7).unwrap_or(0))
}

/// CPU time of the calling thread, nanoseconds.
fn thread_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0)
    })
}

/// Clock ticks per second (`_SC_CLK_TCK`).
pub fn clock_ticks_per_sec() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |v| v.max(1) as u64)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |v| v.max(1) as u64)
}

/// One instant's view of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSample {
    /// CPU clock ticks (see module docs).
    pub cpu_ticks: u64,
    /// Resident set size summed over the tree, bytes.
    pub rss_bytes: u64,
    /// Processes in the tree.
    pub procs: usize,
    /// Threads in the tree.
    pub threads: u64,
    /// Open file descriptors summed over the tree.
    pub fds: usize,
}

/// Every pid in the tree rooted at `root` (the root first), from a `/proc` scan.
pub fn tree_pids(root: i32) -> Vec<(i32, ProcStat)> {
    let mut stats: HashMap<i32, ProcStat> = HashMap::new();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue; // exited meanwhile
            };
            if let Some(st) = parse_stat(&text) {
                children.entry(st.ppid).or_default().push(pid);
                stats.insert(pid, st);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if let Some(st) = stats.get(&pid) {
            out.push((pid, *st));
            if let Some(c) = children.get(&pid) {
                stack.extend(c);
            }
        }
    }
    out
}

/// Samples the tree rooted at `root` now, descriptors included. An exited root gives an
/// all-zero sample.
pub fn sample_tree(root: i32) -> TreeSample {
    sample_tree_with(root, true)
}

/// [`sample_tree`], counting descriptors only if `fds` (listing `/proc/<pid>/fd` of a daemon
/// with 20 000 open files costs milliseconds of the sampler's CPU each time).
fn sample_tree_with(root: i32, fds: bool) -> TreeSample {
    let page = page_size();
    let mut s = TreeSample::default();
    for (pid, st) in tree_pids(root) {
        s.procs += 1;
        s.cpu_ticks += st.cpu_ticks;
        s.threads += st.threads;
        if let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm"))
            && let Some(resident) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        {
            s.rss_bytes += resident * page;
        }
        if fds && let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            s.fds += rd.count();
        }
    }
    s
}

/// Peaks over a sampling period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peaks {
    /// Highest tree RSS, bytes.
    pub rss_bytes: u64,
    /// Most processes at once.
    pub procs: usize,
    /// Most threads at once.
    pub threads: u64,
    /// Most descriptors at once.
    pub fds: usize,
    /// Samples taken.
    pub samples: u64,
}

impl Peaks {
    fn absorb(&mut self, s: &TreeSample) {
        self.rss_bytes = self.rss_bytes.max(s.rss_bytes);
        // A sample that did not count descriptors has 0, which max ignores.
        self.procs = self.procs.max(s.procs);
        self.threads = self.threads.max(s.threads);
        self.fds = self.fds.max(s.fds);
        self.samples += 1;
    }
}

/// Descriptors are counted every this many samples (about once a second at 100 ms).
const FD_EVERY: u64 = 10;

/// A background thread sampling a process tree and keeping the peaks. It reports its own CPU
/// time, so that the system-wide figure of a trial can leave the measurement out.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<Mutex<Peaks>>,
    cpu_ns: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling the tree at `root` every `interval`.
    pub fn start(root: i32, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        let cpu_ns = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peaks, cpu_ns) =
                (Arc::clone(&stop), Arc::clone(&peaks), Arc::clone(&cpu_ns));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let s = sample_tree_with(root, n.is_multiple_of(FD_EVERY));
                    n += 1;
                    if let Ok(mut p) = peaks.lock() {
                        p.absorb(&s);
                    }
                    cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
                    std::thread::sleep(interval);
                }
            })
        };
        Self {
            stop,
            peaks,
            cpu_ns,
            thread: Some(thread),
        }
    }

    /// CPU time the sampling thread has used so far, in nanoseconds (as of its last sample).
    pub fn cpu_ns(&self) -> u64 {
        self.cpu_ns.load(Ordering::Relaxed)
    }

    /// Stops sampling and returns the peaks.
    pub fn finish(mut self) -> Peaks {
        self.halt();
        self.peaks.lock().map(|p| *p).unwrap_or_default()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn parse_stat_handles_odd_names() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 7 3 20 0 4 0 12345 1000000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let st = parse_stat(line).unwrap();
        assert_eq!(
            st,
            ProcStat {
                pid: 1234,
                ppid: 1,
                cpu_ticks: 310,
                threads: 4
            }
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    /// A real tree: a shell with a busy child. CPU grows, reaped children still count, and
    /// processes and descriptors are seen.
    #[test]
    fn samples_a_real_tree() {
        use std::os::unix::process::CommandExt as _;
        let mut child = Command::new("sh")
            .args([
                "-c",
                // A child burns CPU and is reaped; then two sleeping children hold on.
                "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done & wait; sleep 30 & sleep 30 & wait",
            ])
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let root = child.id() as i32;
        let sampler = Sampler::start(root, Duration::from_millis(20));
        let mut last = TreeSample::default();
        for _ in 0..400 {
            std::thread::sleep(Duration::from_millis(50));
            last = sample_tree(root);
            if last.procs == 3 {
                break; // the busy child is reaped and both sleepers run
            }
        }
        // Let the background sampler see the final tree too (it samples every 20 ms).
        std::thread::sleep(Duration::from_millis(200));
        let peaks = sampler.finish();
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(root), nix::sys::signal::SIGKILL)
            .unwrap();
        child.wait().unwrap();
        assert_eq!(last.procs, 3, "{last:?}");
        assert!(
            last.cpu_ticks > 0,
            "the reaped busy child's CPU is lost: {last:?}"
        );
        assert!(
            last.fds >= 3 && last.rss_bytes > 0 && last.threads >= 3,
            "{last:?}"
        );
        assert!(peaks.samples > 0 && peaks.procs >= 3 && peaks.rss_bytes >= last.rss_bytes / 2);
        assert!(clock_ticks_per_sec() >= 100);
        assert_eq!(sample_tree(root), TreeSample::default());
    }

    #[test]
    fn system_busy_excludes_idle_and_iowait() {
        let line = "cpu  100 5 50 1000 40 3 2 1 0 0";
        assert_eq!(super::parse_system_busy(line), Some(161));
        assert_eq!(super::parse_system_busy("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(super::parse_system_busy("cpu 1 2"), None);
        assert!(super::system_busy_ticks().is_some());
    }
}
