//! D19 end to end: a UUID prefix that could put archives outside the output tree (a `/`), or
//! control characters or invalid UTF-8 in their names, stops the real daemon at start-up with
//! exit status 2 and a message naming the flag, the file, the character and its byte offset —
//! and it creates nothing, inside or outside `-output`. The same holds for the unsafe default
//! built from `$POD_NAME` or the hostname, and `write-uuid-prefix` refuses a hostile hostname.
//!
//! A baseline run with a clean prefix and the same open connection first shows that these
//! arguments do write an archive, so a hostile prefix that were accepted would write one too
//! (or at least create `-output`: the saver refuses `/` and NUL on its own, but only after
//! that), and the "nothing created" checks would catch it.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure should fail the test where it happens"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tcp_info_tests::Setup;
use tcp_info_tests::daemon::{daemon_binary, run_to_exit};

/// Every file and directory under `dir` (not `dir` itself), recursively.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            }
            found.insert(entry.path());
        }
    }
    found
}

/// `setup`'s base arguments with this test's output root and prefix file (or none).
fn args(setup: &Setup, output: &Path, prefix_file: Option<&Path>) -> Vec<String> {
    let mut args = vec![
        "--reps=3".to_owned(),
        format!("--output={}", output.display()),
    ];
    args.extend(
        setup
            .base_args()
            .into_iter()
            .filter(|a| !a.starts_with("--output=") && !a.starts_with("--uuid-prefix-file=")),
    );
    if let Some(file) = prefix_file {
        args.push(format!("--uuid-prefix-file={}", file.display()));
    }
    args
}

/// A wrapper for [`run_to_exit`] that runs the daemon in a new UTS namespace whose hostname
/// is `hostname` (Linux lets root set any bytes but NUL there, `/` included).
fn with_hostname(hostname: &str) -> Vec<&str> {
    vec![
        "unshare",
        "--uts",
        "--",
        "sh",
        "-c",
        "printf %s \"$0\" > /proc/sys/kernel/hostname && exec \"$@\"",
        hostname,
    ]
}

/// Six `..` lead from `<dir>/a/b/out/YYYY/MM/DD` back to `<dir>`: an accepted prefix like
/// this would put the archive straight into the test directory.
const ESCAPE: &str = "../../../../../../escaped";

#[test]
fn hostile_prefixes_exit_2_naming_the_culprit_and_create_nothing() {
    let Some(setup) = Setup::new("hostile-prefix") else {
        return;
    };
    let dir = setup.dir().to_owned();
    let output = dir.join("a/b/out");
    let listener = setup.net.listen().unwrap();
    let (_client, _server, cookie) = setup.connected(&listener).unwrap();

    // Baseline: a clean prefix with every accepted kind of character but '/' — letters, digits,
    // '.', ':', '-', '_', a non-ASCII letter — writes this connection's archive inside the tree.
    let clean = "mlab1.lga03:ndt-é_1700000000";
    let clean_file = dir.join("clean-prefix");
    std::fs::write(&clean_file, clean).unwrap();
    let before = tree(&dir);
    let (status, stderr) = run_to_exit(
        &setup.net,
        &[],
        &as_strs(&args(&setup, &output, Some(&clean_file))),
        &[],
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(status.code(), Some(0), "baseline run failed:\n{stderr}");
    let created: Vec<PathBuf> = tree(&dir).difference(&before).cloned().collect();
    let archive = format!("{clean}_{cookie:016X}.00000.jsonl.zst");
    assert!(
        created
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == archive.as_str())),
        "the baseline wrote no {archive}: {created:?}"
    );
    for path in &created {
        assert!(
            path.starts_with(&output) || output.starts_with(path),
            "the baseline created {} outside the output tree",
            path.display()
        );
    }
    std::fs::remove_dir_all(dir.join("a")).unwrap();

    let long = "x".repeat(tcp_info::uuid::MAX_PREFIX_LEN + 1);
    let cases: &[(&str, &[u8], &str)] = &[
        ("escape", ESCAPE.as_bytes(), "contains '/' at byte offset 2"),
        ("absolute", b"/etc/x", "contains '/' at byte offset 0"),
        ("nested", b"host/1", "contains '/' at byte offset 4"),
        ("nul", b"host\0_1", "U+0000 (NUL) at byte offset 4"),
        ("tab", b"host\t1", "U+0009 (\\t) at byte offset 4"),
        (
            "escape-sequence",
            b"host\x1b[31m",
            "U+001B (\\u{1b}) at byte offset 4",
        ),
        ("del", b"host_1\x7f", "U+007F (DEL) at byte offset 6"),
        (
            "c1",
            "host\u{85}".as_bytes(),
            "U+0085 (\\u{85}) at byte offset 4",
        ),
        (
            "newline",
            b"mlab1-lga03_1700000000\n",
            "U+000A (\\n) at byte offset 22: the file ends with a newline; write it without \
             one, e.g. `printf %s NAME > FILE`",
        ),
        ("crlf", b"host_1\r\n", "U+000D (\\r) at byte offset 6"),
        (
            "not-utf8",
            b"host\xff_1",
            "is not valid UTF-8 (first invalid byte at offset 4)",
        ),
        ("too-long", long.as_bytes(), "is longer than 217 bytes"),
    ];
    let mut files: Vec<(String, PathBuf, &str)> = Vec::new();
    for (name, bytes, want) in cases {
        let file = dir.join(format!("prefix-{name}"));
        std::fs::write(&file, bytes).unwrap();
        files.push(((*name).to_owned(), file, want));
    }
    // A file that never ends: refused at its first byte, not read into memory.
    files.push((
        "dev-zero".to_owned(),
        PathBuf::from("/dev/zero"),
        "U+0000 (NUL) at byte offset 0",
    ));
    let before = tree(&dir);

    let mut problems = Vec::new();
    for (name, file, want) in &files {
        let by_flag = args(&setup, &output, Some(file));
        let by_env = args(&setup, &output, None);
        let file_env = file.display().to_string();
        for (args, envs, origin) in [
            (by_flag, vec![], "flag -uuid-prefix-file"),
            (
                by_env,
                vec![("UUID_PREFIX_FILE", file_env.as_str())],
                "environment variable UUID_PREFIX_FILE",
            ),
        ] {
            let (status, stderr) = run_to_exit(
                &setup.net,
                &[],
                &as_strs(&args),
                &envs,
                Duration::from_secs(10),
            )
            .unwrap();
            let head = format!("tcp-info: {origin}: the UUID prefix in {} ", file.display());
            if status.code() != Some(2) {
                problems.push(format!(
                    "{name} ({origin}): exit {status}, want 2:\n{stderr}"
                ));
            } else if !stderr.starts_with(&head) || !stderr.contains(*want) {
                problems.push(format!(
                    "{name} ({origin}): stderr does not start with {head:?} and say {want:?}:\n\
                     {stderr}"
                ));
            }
            if stderr.contains("panicked") {
                problems.push(format!("{name} ({origin}): panicked:\n{stderr}"));
            }
            let created: Vec<_> = tree(&dir).difference(&before).cloned().collect();
            if !created.is_empty() {
                problems.push(format!("{name} ({origin}): created {created:?}"));
                std::fs::remove_dir_all(dir.join("a")).ok();
                for path in created.iter().filter(|p| p.is_file()) {
                    std::fs::remove_file(path).ok();
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// A run without a prefix file: the wrapper the daemon runs under, its environment, and what its
/// error must say.
type DefaultCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

/// Without a prefix file the unsafe default is `<$POD_NAME or hostname>_<boottime>_unsafe`;
/// a name that would make it hostile stops the daemon the same way, naming where it came from.
#[test]
fn hostile_default_prefix_exits_2_naming_its_source() {
    let Some(setup) = Setup::new("hostile-default") else {
        return;
    };
    let dir = setup.dir().to_owned();
    let output = dir.join("a/b/out");
    let listener = setup.net.listen().unwrap();
    let _connection = setup.connected(&listener).unwrap();
    let before = tree(&dir);
    let daemon_args = args(&setup, &output, None);
    let cases: &[DefaultCase<'_>] = &[
        (
            &[],
            &[("POD_NAME", ESCAPE)],
            "built from $POD_NAME, contains '/' at byte offset 2",
        ),
        (
            &[],
            &[("POD_NAME", "pod\n")],
            "built from $POD_NAME, contains the control character U+000A (\\n) at byte offset 3",
        ),
        // An empty POD_NAME falls back to the hostname (and keeps an inherited one out).
        (
            &with_hostname(ESCAPE),
            &[("POD_NAME", "")],
            "built from the hostname (/proc/sys/kernel/hostname), contains '/' at byte offset 2",
        ),
        (
            &with_hostname("host\x1b]0;title\x07"),
            &[("POD_NAME", "")],
            "built from the hostname (/proc/sys/kernel/hostname), contains the control \
             character U+001B (\\u{1b}) at byte offset 4",
        ),
    ];
    for (wrapper, envs, want) in cases {
        let (status, stderr) = run_to_exit(
            &setup.net,
            wrapper,
            &as_strs(&daemon_args),
            envs,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(status.code(), Some(2), "{envs:?} {wrapper:?}:\n{stderr}");
        assert!(
            stderr.starts_with("tcp-info: no -uuid-prefix-file, and the default cannot be used: ")
                && stderr.contains(want)
                && stderr.trim_end().ends_with("; give -uuid-prefix-file"),
            "{envs:?} {wrapper:?}: want {want:?}:\n{stderr}"
        );
        assert_eq!(tree(&dir), before, "{envs:?} {wrapper:?} created files");
    }
}

/// `write-uuid-prefix` builds `<hostname>_<btime>`: a hostname the daemon would refuse makes
/// the command fail, naming it, and write nothing; a clean one writes what the daemon accepts.
#[test]
fn write_uuid_prefix_refuses_a_hostile_hostname() {
    if !tcp_info_tests::privileged("set a hostname in a new UTS namespace") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("uuid/prefix");
    let run = |hostname: &str| {
        Command::new(with_hostname(hostname)[0])
            .args(&with_hostname(hostname)[1..])
            .arg(daemon_binary())
            .arg("write-uuid-prefix")
            .arg(&target)
            .output()
            .unwrap()
    };
    for (hostname, want) in [
        ("evil/../../x", "contains '/' at byte offset 4"),
        ("host\ttab", "U+0009 (\\t) at byte offset 4"),
    ] {
        let out = run(hostname);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{hostname:?}: {stderr}");
        assert!(
            stderr.starts_with("tcp-info: the UUID prefix ")
                && stderr.contains("built from the hostname (/proc/sys/kernel/hostname)")
                && stderr.contains(want),
            "{hostname:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            tree(dir.path()).is_empty(),
            "{hostname:?}: {:?}",
            tree(dir.path())
        );
    }
    let out = run("mlab1-lga03.measurement-lab.org");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read(&target).unwrap();
    let prefix = tcp_info::uuid::Prefix::read_file(&target).unwrap();
    assert_eq!(prefix.as_str().as_bytes(), written);
    assert!(
        prefix
            .as_str()
            .starts_with("mlab1-lga03.measurement-lab.org_"),
        "{prefix}"
    );
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
