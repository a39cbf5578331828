//! The one-shot commands write to a standard output whose reader is already gone
//! (`tcp-info -version | head -1` once `head` has exited): exit 0 and no panic, as `println!`
//! gave (issue 12: nothing panics).

use std::process::{Command, Stdio};

use tcp_info_tests::daemon::daemon_binary;

#[test]
fn one_shot_commands_survive_a_closed_standard_output() {
    for args in [&["-version"][..], &["-help"], &["plot", "--help"]] {
        // A pipe whose read end is closed before the command starts: every write fails with
        // EPIPE (the Rust runtime ignores SIGPIPE), deterministically.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(daemon_binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "tcp-info {args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "tcp-info {args:?}: {stderr}");
    }
}
