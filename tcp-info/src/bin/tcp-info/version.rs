//! `tcp-info -version`: what this build is and what the running kernel offers it, without
//! loading anything (no program, no socket, no privilege needed), so that an operator can tell
//! before deploying which mode `-mode auto` will pick and why.

use std::fmt::Write as _;

use tcp_info::ebpf::{self, btf::Btf};
use tcp_info::namespaces::{kernel_at_least, kernel_release};

/// The version text for this build on this kernel.
pub fn report(git_commit: &str) -> String {
    let release = kernel_release();
    let btf = Btf::from_kernel()
        .and_then(|btf| btf.offsets().map(|_| ()))
        .map_err(|e| ebpf::error_chain(&e));
    render(&Facts {
        version: env!("CARGO_PKG_VERSION"),
        git_commit,
        embedded: ebpf::EMBEDDED,
        release: &release,
        btf,
    })
}

/// What the report is made of (separate from the machine so that tests can vary it).
struct Facts<'a> {
    version: &'a str,
    git_commit: &'a str,
    /// Whether the eBPF object is embedded in this build.
    embedded: bool,
    /// The running kernel's release (`uname -r`).
    release: &'a str,
    /// Whether the kernel's BTF resolves every `struct sock` field the programs read.
    btf: Result<(), String>,
}

/// Kernel features eBPF mode needs or uses: (minimum major, minor, what).
const FEATURES: [(u32, u32, &str); 4] = [
    (5, 8, "BPF ring buffer (marks)"),
    (
        5,
        12,
        "tp_btf programs calling bpf_get_socket_cookie (eBPF mode)",
    ),
    (
        5,
        12,
        "socket cookies global across network namespaces (UUIDs as upstream in every namespace)",
    ),
    (
        6,
        5,
        "bpf() checks CAP_BPF per command (the daemon drops CAP_BPF after loading)",
    ),
];

fn render(facts: &Facts<'_>) -> String {
    let mut out = String::new();
    let commit = if facts.git_commit.is_empty() {
        "unknown"
    } else {
        facts.git_commit
    };
    let _ = writeln!(out, "tcp-info {} (git commit {commit})", facts.version);
    let _ = writeln!(
        out,
        "eBPF programs: {}",
        if facts.embedded {
            "embedded"
        } else {
            "not embedded (built without `cargo xtask build-ebpf`: sweep mode only)"
        }
    );
    let release = if facts.release.is_empty() {
        "unknown"
    } else {
        facts.release
    };
    let _ = writeln!(out, "kernel: Linux {release}");
    let _ = writeln!(
        out,
        "BTF: {}",
        match &facts.btf {
            Ok(()) => format!(
                "{} resolves every field the programs read",
                ebpf::btf::VMLINUX_BTF
            ),
            Err(e) => format!("unusable: {e}"),
        }
    );
    let mut missing = Vec::new();
    for (major, minor, what) in FEATURES {
        let present = kernel_at_least(facts.release, major, minor);
        let _ = writeln!(
            out,
            "  {} Linux {major}.{minor}+: {what}",
            if present { "[x]" } else { "[ ]" }
        );
        if !present && major == 5 {
            missing.push(format!("Linux {major}.{minor}"));
        }
    }
    let verdict = match (facts.embedded, &facts.btf, missing.first()) {
        (false, _, _) => "sweep (no eBPF object in this build)".to_owned(),
        (true, Err(_), _) => "sweep (no usable BTF)".to_owned(),
        (true, Ok(()), Some(needed)) => format!("sweep (eBPF mode needs {needed})"),
        (true, Ok(()), None) => {
            "ebpf, if the programs load (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)".to_owned()
        }
    };
    let _ = write!(out, "-mode auto would choose: {verdict}");
    out
}

#[cfg(test)]
mod tests {
    use super::{Facts, render};

    fn facts(embedded: bool, release: &str, btf: Result<(), String>) -> String {
        render(&Facts {
            version: "1.2.3",
            git_commit: "abc1234",
            embedded,
            release,
            btf,
        })
    }

    #[test]
    fn a_modern_kernel_with_the_object_chooses_ebpf() {
        let text = facts(true, "6.18.0-1-amd64", Ok(()));
        assert!(text.starts_with("tcp-info 1.2.3 (git commit abc1234)\neBPF programs: embedded\n"));
        assert!(text.contains("kernel: Linux 6.18.0-1-amd64\n"));
        assert!(text.contains("/sys/kernel/btf/vmlinux resolves every field"));
        assert_eq!(text.matches("[x]").count(), 4, "{text}");
        assert!(text.ends_with("-mode auto would choose: ebpf, if the programs load (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)"));
    }

    #[test]
    fn each_missing_piece_names_the_reason_for_sweep_mode() {
        let old = facts(true, "5.10.0-28-amd64", Ok(()));
        assert!(old.contains("  [x] Linux 5.8+: BPF ring buffer"), "{old}");
        assert!(old.contains("  [ ] Linux 5.12+: tp_btf"), "{old}");
        assert!(old.ends_with("would choose: sweep (eBPF mode needs Linux 5.12)"));
        let no_btf = facts(
            true,
            "6.1.0",
            Err("reading /sys/kernel/btf/vmlinux: No such file".into()),
        );
        assert!(no_btf.contains("BTF: unusable: reading /sys/kernel/btf/vmlinux: No such file\n"));
        assert!(no_btf.ends_with("would choose: sweep (no usable BTF)"));
        let bare = facts(false, "", Ok(()));
        assert!(bare.contains("eBPF programs: not embedded"));
        assert!(bare.contains("kernel: Linux unknown\n"));
        assert!(bare.ends_with("would choose: sweep (no eBPF object in this build)"));
        let unknown_commit = render(&Facts {
            version: "1.2.3",
            git_commit: "",
            embedded: true,
            release: "6.1.0",
            btf: Ok(()),
        });
        assert!(unknown_commit.starts_with("tcp-info 1.2.3 (git commit unknown)\n"));
    }
}
