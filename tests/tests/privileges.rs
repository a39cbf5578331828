//! Least privilege: the daemon, started as root with every capability, keeps only the
//! documented ones once it runs (README, "Privileges"), in every thread and every set, and
//! still records connections, including those of a namespace that appears after start-up.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure should fail the test where it happens"
)]

use std::io::Write as _;
use std::net::Shutdown;
use std::time::Duration;

use tcp_info_tests::pods::{Naming, Pod};
use tcp_info_tests::{Daemon, Setup, archive, traffic, wait_for};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// One thread's capability sets, from `/proc/PID/task/TID/status`.
#[derive(Debug)]
struct Thread {
    name: String,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
    bounding: u64,
    no_new_privs: u64,
}

fn threads(daemon: &Daemon) -> Vec<Thread> {
    let pid = daemon.pid().unwrap();
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue; // the thread ended meanwhile
        };
        let field = |name: &str| {
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {}", dir.display()));
            u64::from_str_radix(line.trim(), 16).unwrap()
        };
        threads.push(Thread {
            name: status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .unwrap()
                .trim()
                .to_owned(),
            effective: field("CapEff:"),
            permitted: field("CapPrm:"),
            inheritable: field("CapInh:"),
            ambient: field("CapAmb:"),
            bounding: field("CapBnd:"),
            no_new_privs: field("NoNewPrivs:"),
        });
    }
    threads
}

fn mask(caps: &[u32]) -> u64 {
    caps.iter().fold(0, |m, c| m | 1 << c)
}

/// What the README documents as kept after start-up.
fn documented(other_namespaces: bool, ebpf: bool) -> u64 {
    let release = tcp_info::namespaces::kernel_release();
    let mut kept = Vec::new();
    if other_namespaces {
        kept.extend([CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_NET_ADMIN]);
    }
    if ebpf && !tcp_info::namespaces::kernel_at_least(&release, 6, 5) {
        kept.push(CAP_BPF);
    }
    mask(&kept)
}

/// Every thread holds at most `kept` in its bounding, permitted and effective sets and nothing
/// inheritable or ambient; the threads named in `holders` hold exactly `kept`, every other one
/// nothing.
fn check(daemon: &Daemon, kept: u64, holders: &[&str], what: &str) {
    let threads = threads(daemon);
    assert!(threads.len() > 3, "{what}: {threads:?}");
    for t in &threads {
        let expected = if holders.contains(&t.name.as_str()) {
            kept
        } else {
            0
        };
        assert_eq!(
            (t.effective, t.permitted),
            (expected, expected),
            "{what}: thread {t:?}, expected {expected:#x}"
        );
        assert_eq!((t.inheritable, t.ambient), (0, 0), "{what}: thread {t:?}");
        assert_eq!(
            t.no_new_privs, 1,
            "{what}: thread {t:?} could regain capabilities"
        );
        assert_eq!(t.bounding & !kept, 0, "{what}: bounding set of {t:?}");
    }
    for holder in holders.iter().filter(|h| **h != "tcp-info") {
        assert!(
            threads.iter().any(|t| t.name == *holder),
            "{what}: no thread {holder} in {threads:?}"
        );
    }
}

/// Waits until the daemon has logged its capability drop and its threads named `holders` have
/// started. A new thread names itself once running (until then it has the daemon's name), so
/// each is waited for by name.
fn dropped(daemon: &Daemon, holders: &[&str]) {
    wait_for(Duration::from_secs(10), "the capability drop", || {
        let log = daemon.stderr();
        Ok(
            (log.contains("capabilities: all dropped") || log.contains("capability kept"))
                .then_some(()),
        )
    })
    .unwrap();
    wait_for(Duration::from_secs(10), "the collection threads", || {
        let names: Vec<String> = threads(daemon).into_iter().map(|t| t.name).collect();
        Ok(holders
            .iter()
            .all(|h| names.iter().any(|n| n == h))
            .then_some(()))
    })
    .unwrap();
}

/// Waits for the final record of the server socket `cookie` (every byte and the FIN).
fn recorded_exactly(setup: &Setup, cookie: u64, bytes: u64) {
    archive::wait_for_last(
        &setup.output(),
        cookie,
        Duration::from_secs(15),
        "the final record",
        |_, info| info.is_some_and(|i| i.bytes_received == bytes + 1),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
}

fn send_and_close(mut client: std::net::TcpStream, mut server: std::net::TcpStream, bytes: usize) {
    client.write_all(&vec![7; bytes]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(traffic::drain(&mut server).unwrap(), bytes);
}

/// The modes to check: both when this build has the programs, and always both under CI.
fn modes() -> Vec<&'static str> {
    if tcp_info::ebpf::EMBEDDED || std::env::var("CI").as_deref() == Ok("true") {
        vec!["ebpf", "sweep"]
    } else {
        eprintln!("eBPF mode not checked: this build has no eBPF object");
        vec!["sweep"]
    }
}

#[test]
fn the_own_namespace_keeps_no_capability() {
    let Some(setup) = Setup::new("capsown") else {
        return;
    };
    for mode in modes() {
        let mode_arg = format!("--mode={mode}");
        let mut daemon = setup.start(&[&mode_arg], &[]).unwrap();
        let holders = ["tcp-info", mode, "close"];
        dropped(&daemon, &holders);
        let kept = documented(false, mode == "ebpf");
        check(&daemon, kept, &holders, mode);

        let listener = setup.net.listen().unwrap();
        let (client, server, cookie) = setup.connected(&listener).unwrap();
        let bytes = 300_000 + mode.len();
        send_and_close(client, server, bytes);
        recorded_exactly(&setup, cookie, bytes as u64);
        daemon.terminate().unwrap();
    }
}

#[test]
fn other_namespaces_keep_what_entering_new_ones_needs() {
    let Some(setup) = Setup::new("capsall") else {
        return;
    };
    for mode in modes() {
        let mode_arg = format!("--mode={mode}");
        let mut daemon = setup
            .start(&[&mode_arg, "--netns=all", "--exclude-local=false"], &[])
            .unwrap();
        let holders = ["tcp-info", "netns", mode, "close"];
        dropped(&daemon, &holders);
        let kept = documented(true, mode == "ebpf");
        // The main thread and the collection threads hold the kept set (they inherit it from
        // the main thread); the edges and the pipeline hold nothing.
        check(&daemon, kept, &holders, mode);
        // What is kept is enough: a pod made now is entered, and its connection (over its
        // loopback, hence `--exclude-local=false`) recorded.
        let pod = Pod::create(&format!("caps{mode}"), &Naming::Hostname).unwrap();
        let watching = format!(
            "watching a network namespace netns={}",
            pod.inode().unwrap()
        );
        wait_for(
            Duration::from_secs(5),
            "the pod's namespace watched",
            || Ok(daemon.stderr().contains(&watching).then_some(())),
        )
        .unwrap();
        let (client, server, cookie) = pod.connection().unwrap();
        let bytes = 200_000 + mode.len();
        send_and_close(client, server, bytes);
        recorded_exactly(&setup, cookie, bytes as u64);
        // Entering it changed nothing.
        check(&daemon, kept, &holders, mode);
        drop(pod);
        daemon.terminate().unwrap();
    }
}
