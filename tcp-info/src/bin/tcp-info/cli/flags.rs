//! The flag table, environment variable names and the usage text. The grammar that reads the
//! flags off the command line is in [`super::grammar`].

use std::fmt::Write as _;

/// How a flag takes values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `-name` means true; a value only as `-name=value` (Go `strconv.ParseBool` spellings).
    Bool,
    /// One value (`-name=value` or `-name value`); the last occurrence wins.
    Value,
    /// Values accumulate across occurrences, and each is split on `,`.
    List,
}

/// One flag.
#[derive(Debug)]
pub(super) struct Spec {
    /// The name, without dashes.
    pub(super) name: &'static str,
    /// How it takes values.
    pub(super) kind: Kind,
    /// What the value looks like, for the usage text.
    pub(super) value: &'static str,
    /// The default as shown in the usage text.
    pub(super) default: &'static str,
    /// Its description, for the usage text.
    pub(super) help: &'static str,
}

/// The name of `-reps`.
pub(super) const REPS: &str = "reps";
/// The name of `-trace`.
pub(super) const TRACE: &str = "trace";
/// The name of `-output`.
pub(super) const OUTPUT: &str = "output";
/// The name of `-exclude-srcport`.
pub(super) const EXCLUDE_SRCPORT: &str = "exclude-srcport";
/// The name of `-exclude-dstip`.
pub(super) const EXCLUDE_DSTIP: &str = "exclude-dstip";
/// The name of `-tcpinfo.eventsocket`.
pub(super) const EVENT_SOCKET: &str = "tcpinfo.eventsocket";
/// The name of `-prometheusx.listen-address`.
pub(super) const LISTEN_ADDRESS: &str = "prometheusx.listen-address";
/// The name of `-anonymize.ip`.
pub(super) const ANONYMIZE_IP: &str = "anonymize.ip";
/// The name of `-uuid-prefix-file`.
pub(super) const UUID_PREFIX_FILE: &str = "uuid-prefix-file";
/// The name of `-logx.debug`.
pub(super) const LOGX_DEBUG: &str = "logx.debug";
/// The name of `-mode`.
pub(super) const MODE: &str = "mode";
/// The name of `-poll-interval`.
pub(super) const POLL_INTERVAL: &str = "poll-interval";
/// The name of `-rotation-age`.
pub(super) const ROTATION_AGE: &str = "rotation-age";
/// The name of `-flush-interval`.
pub(super) const FLUSH_INTERVAL: &str = "flush-interval";
/// The name of `-exclude-local`.
pub(super) const EXCLUDE_LOCAL: &str = "exclude-local";
/// The name of `-rcvbuf`.
pub(super) const RCVBUF: &str = "rcvbuf";
/// The name of `-safety-sweep-interval`.
pub(super) const SAFETY_SWEEP_INTERVAL: &str = "safety-sweep-interval";
/// The name of `-netns`.
pub(super) const NETNS: &str = "netns";
/// The name of `-netns.attribution`.
pub(super) const NETNS_ATTRIBUTION: &str = "netns.attribution";
/// The name of `-netns.bundle-roots`.
pub(super) const NETNS_BUNDLE_ROOTS: &str = "netns.bundle-roots";
/// The name of `-api.listen-address`.
pub(super) const API_LISTEN_ADDRESS: &str = "api.listen-address";
/// The name of `-api.retention`.
pub(super) const API_RETENTION: &str = "api.retention";

/// Every flag: upstream's (SPEC §2.1) first, then this implementation's additions.
pub(super) const FLAGS: &[Spec] = &[
    Spec {
        name: REPS,
        kind: Kind::Value,
        value: "N",
        default: "0",
        help: "Number of poll cycles to run, then shut down cleanly; 0 runs forever.",
    },
    Spec {
        name: TRACE,
        kind: Kind::Bool,
        value: "",
        default: "false",
        help: "Accepted for compatibility with the Go tcp-info and ignored (no Go runtime trace).",
    },
    Spec {
        name: OUTPUT,
        kind: Kind::Value,
        value: "DIR",
        default: "\"\" (the working directory)",
        help: "Output root; created with its parents, and the daemon changes directory into it.",
    },
    Spec {
        name: EXCLUDE_SRCPORT,
        kind: Kind::List,
        value: "PORT[,PORT...]",
        default: "none",
        help: "Local ports whose connections are not recorded (0-65535). Repeatable.",
    },
    Spec {
        name: EXCLUDE_DSTIP,
        kind: Kind::List,
        value: "IP[/LEN][,...]",
        default: "none",
        help: "Remote addresses or CIDR blocks whose connections are not recorded; an IPv4 entry \
               also matches its ::ffff: form. Repeatable.",
    },
    Spec {
        name: EVENT_SOCKET,
        kind: Kind::Value,
        value: "PATH",
        default: "\"\" (disabled)",
        help: "Unix socket on which open/close events are published.",
    },
    Spec {
        name: LISTEN_ADDRESS,
        kind: Kind::Value,
        value: "[HOST]:PORT",
        default: ":9990",
        help: "HTTP listen address for the Prometheus metrics; :0 picks a free port.",
    },
    Spec {
        name: ANONYMIZE_IP,
        kind: Kind::Value,
        value: "none|netblock",
        default: "none",
        help: "Anonymization of remote addresses in the archives: none, or netblock (IPv4 /24, \
               IPv6 /48).",
    },
    Spec {
        name: UUID_PREFIX_FILE,
        kind: Kind::Value,
        value: "FILE",
        default: "an unsafe <name>_<boottime>_unsafe prefix",
        help: "File whose exact bytes are the UUID prefix; read at start-up.",
    },
    Spec {
        name: LOGX_DEBUG,
        kind: Kind::Bool,
        value: "",
        default: "false",
        help: "Enable debug logging.",
    },
    Spec {
        name: MODE,
        kind: Kind::Value,
        value: "auto|ebpf|sweep",
        default: "auto",
        help: "Collection mode. sweep dumps every socket each poll interval, as upstream. ebpf \
               lets kernel tracepoints mark the sockets that changed and queries only those \
               each poll interval, with rare full sweeps as a safety net; it fails at start-up \
               if the programs cannot run. auto tries ebpf and falls back to sweep, logging why.",
    },
    Spec {
        name: POLL_INTERVAL,
        kind: Kind::Value,
        value: "DURATION",
        default: "10ms",
        help: "Time between full socket dumps in sweep mode, between queries of the marked \
               sockets in eBPF mode (Go duration syntax: 10ms, 1s, 1m30s).",
    },
    Spec {
        name: SAFETY_SWEEP_INTERVAL,
        kind: Kind::Value,
        value: "DURATION",
        default: "5s",
        help: "eBPF mode: time between full socket dumps behind the marks (the safety net that \
               bounds how stale a socket can get if a mark was lost). With -netns, namespaces \
               without marks since their last dump are dumped every 24 intervals.",
    },
    Spec {
        name: ROTATION_AGE,
        kind: Kind::Value,
        value: "DURATION",
        default: "10m",
        help: "Age at which an archive segment is closed and the next record starts a new one.",
    },
    Spec {
        name: FLUSH_INTERVAL,
        kind: Kind::Value,
        value: "DURATION",
        default: "1s",
        help: "Longest time written records may stay in memory before they reach the file.",
    },
    Spec {
        name: EXCLUDE_LOCAL,
        kind: Kind::Bool,
        value: "",
        default: "true",
        help: "Skip connections with a loopback, link-local, multicast or unspecified address at \
               either end (-exclude-local=false to record them).",
    },
    Spec {
        name: RCVBUF,
        kind: Kind::Value,
        value: "BYTES",
        default: "8388608",
        help: "Receive buffer size of the netlink sockets, in bytes.",
    },
    Spec {
        name: NETNS,
        kind: Kind::Value,
        value: "self|all|PATH[,PATH...]",
        default: "self",
        help: "Network namespaces to record. self: the daemon's own. all: every namespace of \
               the node (of every process, and named ones under /run/netns), followed as they \
               come and go (needs CAP_SYS_ADMIN and the host's /proc). Or a list of namespace \
               files (/run/netns/NAME, /proc/PID/ns/net). In eBPF mode idle namespaces cost \
               nothing; in sweep mode every namespace is dumped every poll interval, and each \
               dump walks the kernel's whole socket table, so the cost grows with the number \
               of namespaces.",
    },
    Spec {
        name: NETNS_ATTRIBUTION,
        kind: Kind::Bool,
        value: "",
        default: "false",
        help: "Add a Netns key to each archive's Metadata line and to each event: the \
               namespace's inode and, when the node can tell, its pod's UID, container ID, \
               namespace and name. Upstream writes no such key (the ETL ignores it).",
    },
    Spec {
        name: NETNS_BUNDLE_ROOTS,
        kind: Kind::List,
        value: "DIR",
        default: "\"\" (containerd's and CRI-O's)",
        help: "Where the container runtime keeps its containers' OCI bundles, read for the pod \
               name and namespace of -netns.attribution. Empty: containerd's \
               /run/containerd/io.containerd.runtime.v2.task/k8s.io and CRI-O's \
               /run/containers/storage/overlay-containers.",
    },
    Spec {
        name: API_LISTEN_ADDRESS,
        kind: Kind::Value,
        value: "ADDR",
        default: "\"\" (off)",
        help: "Query API and live page (JSON over HTTP): a loopback HOST:PORT \
               (127.0.0.1:9991, [::1]:9991) or a unix socket path (its directory is created). \
               It lists the open connections and answers by UUID, with addresses anonymized as \
               in the archives.",
    },
    Spec {
        name: API_RETENTION,
        kind: Kind::Value,
        value: "DURATION",
        default: "1m0s",
        help: "How long the query API still answers about a connection after it closed.",
    },
];

/// The environment variable of a flag: upper-cased, every character outside `[A-Z0-9]` replaced
/// by `_`, and a `_` in front of a leading digit (SPEC §2.2).
pub(super) fn env_name(flag: &str) -> String {
    let mut out: String = flag
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            u @ ('A'..='Z' | '0'..='9') => u,
            _ => '_',
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The index in [`FLAGS`] of the flag called `name`.
pub(super) fn index_of(name: &str) -> Option<usize> {
    FLAGS.iter().position(|s| s.name == name)
}

/// The `-help` text.
pub fn usage() -> String {
    let mut out = String::from(
        "Usage: tcp-info [flags]\n\
         \x20      tcp-info -version                 (this build and the kernel's features)\n\
         \x20      tcp-info write-uuid-prefix PATH   (write <hostname>_<boot time> to PATH)\n\
         \x20      tcp-info plot ARCHIVE... [-o OUT] (draw a connection's life: SVG/PNG)\n\n\
         Records the tcp_info of every TCP connection into zstd-compressed JSONL\n\
         archives.\n\n\
         A flag takes one or two dashes and its value after '=' or as the next argument\n\
         (-output=/data, --output /data); a boolean flag takes a value only after '='\n\
         (-exclude-local=false). Every flag can also be set with the environment variable\n\
         shown; a flag on the command line wins over its variable. List variables are\n\
         comma-separated.\n\nFlags:\n",
    );
    let _ = writeln!(
        out,
        "  (eBPF mode: {})",
        if tcp_info::ebpf::EMBEDDED {
            "this build embeds the programs"
        } else {
            "not in this build, which has no eBPF object; auto runs sweep mode"
        }
    );
    for spec in FLAGS {
        let _ = write!(out, "  -{}", spec.name);
        if spec.kind != Kind::Bool {
            let _ = write!(out, " {}", spec.value);
        }
        out.push('\n');
        let note = format!("(env {}; default {})", env_name(spec.name), spec.default);
        wrap_into(&mut out, spec.help);
        wrap_into(&mut out, &note);
    }
    out
}

/// Usage text width, indentation included.
const USAGE_WIDTH: usize = 80;
/// Indentation of the usage text's descriptions.
const USAGE_INDENT: &str = "        ";

/// Appends `text` word-wrapped to [`USAGE_WIDTH`], each line indented by [`USAGE_INDENT`].
fn wrap_into(out: &mut String, text: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && USAGE_INDENT.len() + line.len() + 1 + word.len() > USAGE_WIDTH {
            let _ = writeln!(out, "{USAGE_INDENT}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{USAGE_INDENT}{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_the_shell_rule() {
        let cases = [
            ("reps", "REPS"),
            ("tcpinfo.eventsocket", "TCPINFO_EVENTSOCKET"),
            ("prometheusx.listen-address", "PROMETHEUSX_LISTEN_ADDRESS"),
            ("uuid-prefix-file", "UUID_PREFIX_FILE"),
            ("anonymize.ip", "ANONYMIZE_IP"),
            ("logx.debug", "LOGX_DEBUG"),
            ("exclude-srcport", "EXCLUDE_SRCPORT"),
            ("poll-interval", "POLL_INTERVAL"),
            ("9lives", "_9LIVES"),
            ("a\u{e9}b", "A_B"),
        ];
        for (flag, want) in cases {
            assert_eq!(env_name(flag), want);
        }
    }

    #[test]
    fn flag_names_are_unique_and_distinct_from_help() {
        for (i, spec) in FLAGS.iter().enumerate() {
            assert_eq!(index_of(spec.name), Some(i), "{} listed twice", spec.name);
            assert!(spec.name != "h" && spec.name != "help");
        }
    }

    #[test]
    fn usage_lists_every_flag_with_its_variable() {
        let text = usage();
        for spec in FLAGS {
            assert!(text.contains(&format!("  -{}", spec.name)), "{}", spec.name);
            assert!(
                text.contains(&format!("(env {};", env_name(spec.name))),
                "{}",
                spec.name
            );
        }
        for line in text.lines() {
            assert!(line.chars().count() <= USAGE_WIDTH, "too wide: {line:?}");
        }
    }

    #[test]
    fn wrapping_keeps_every_word() {
        let mut out = String::new();
        let text = "one two three four five six seven eight nine ten eleven twelve thirteen \
                    fourteen fifteen sixteen seventeen eighteen nineteen twenty";
        wrap_into(&mut out, text);
        assert!(out.lines().count() > 1);
        assert!(
            out.lines()
                .all(|l| l.starts_with(USAGE_INDENT) && l.len() <= USAGE_WIDTH)
        );
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(words, text.split_whitespace().collect::<Vec<_>>());
    }
}
