//! Table-driven tests of [`parse`]: every flag in every spelling, the environment, precedence,
//! and every error.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::ffi::OsStringExt as _;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

const POD: &str = "ndt-test-pod";

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// An environment holding `vars` plus `POD_NAME`, so the default prefix does not depend on the
/// hostname.
fn env_with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let vars: Vec<(String, OsString)> = vars
        .iter()
        .map(|&(k, v)| (k.to_owned(), OsString::from(v)))
        .chain([(POD_NAME_VAR.to_owned(), OsString::from(POD))])
        .collect();
    move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn run(args: &[&str], vars: &[(&str, &str)]) -> Result<Parsed, CliError> {
    parse(os(args), &env_with(vars))
}

fn defaults() -> Config {
    run(&[], &[]).unwrap().config
}

fn prefix_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f
}

fn ip(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn defaults_reproduce_upstream() {
    let parsed = run(&[], &[]).unwrap();
    let c = &parsed.config;
    let boot = tcp_info::uuid::boot_time().unwrap();
    let want = Config {
        reps: 0,
        trace: false,
        output: None,
        exclude_srcport: vec![],
        exclude_dstip: vec![],
        event_socket: None,
        listen_address: ":9990".parse().unwrap(),
        anonymize_ip: Method::None,
        uuid_prefix_file: None,
        uuid_prefix: Prefix::unsafe_default(Some(POD), Some(boot)).unwrap(),
        debug: false,
        mode: Mode::Auto,
        poll_interval: Duration::from_millis(10),
        safety_sweep_interval: Duration::from_secs(5),
        rotation_age: Duration::from_secs(600),
        flush_interval: Duration::from_secs(1),
        exclude_local: true,
        rcvbuf: 8 * 1024 * 1024,
        netns: Scope::Own,
        netns_attribution: false,
        netns_bundle_roots: vec![
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io".into(),
            "/run/containers/storage/overlay-containers".into(),
        ],
        api_listen: None,
        api_retention: Duration::from_secs(60),
    };
    assert_eq!(*c, want);
    assert_eq!(c.uuid_prefix.as_str(), format!("{POD}_{boot}_unsafe"));
    // The only message: the unsafe default prefix.
    assert_eq!(parsed.messages.len(), 1, "{:?}", parsed.messages);
    assert_eq!(parsed.messages[0].level, Level::Warn);
    assert!(
        parsed.messages[0]
            .text
            .contains("unsafe default UUID prefix")
    );
}

#[test]
fn default_prefix_uses_hostname_without_pod_name() {
    let no_pod = |name: &str| (name == "POD_NAME").then(|| OsString::from(""));
    let c = parse(Vec::new(), &no_pod).unwrap().config;
    let host = tcp_info::uuid::hostname().unwrap();
    let boot = tcp_info::uuid::boot_time().unwrap();
    assert_eq!(c.uuid_prefix.as_str(), format!("{host}_{boot}_unsafe"));
}

type Effect = fn(&mut Config);

/// One sample value per flag and what it does to the default configuration.
const SAMPLES: &[(&str, &str, Effect)] = &[
    ("reps", "5", |c| c.reps = 5),
    ("trace", "true", |c| c.trace = true),
    ("output", "/var/spool/ndt/tcpinfo", |c| {
        c.output = Some("/var/spool/ndt/tcpinfo".into());
    }),
    ("exclude-srcport", "9100,32768,0,65535", |c| {
        c.exclude_srcport = vec![9100, 32_768, 0, 65_535];
    }),
    (
        "exclude-dstip",
        "172.25.0.1,10.0.0.0/8,2001:db8::/32",
        |c| {
            c.exclude_dstip = vec![ip("172.25.0.1"), ip("10.0.0.0/8"), ip("2001:db8::/32")];
        },
    ),
    ("tcpinfo.eventsocket", "/var/local/ev/tcpevents.sock", |c| {
        c.event_socket = Some("/var/local/ev/tcpevents.sock".into());
    }),
    ("prometheusx.listen-address", "127.0.0.1:0", |c| {
        c.listen_address = "127.0.0.1:0".parse().unwrap();
    }),
    ("anonymize.ip", "netblock", |c| {
        c.anonymize_ip = Method::Netblock;
    }),
    ("logx.debug", "true", |c| c.debug = true),
    ("mode", "sweep", |c| c.mode = Mode::Sweep),
    ("poll-interval", "1m30s", |c| {
        c.poll_interval = Duration::from_secs(90);
    }),
    ("safety-sweep-interval", "1h", |c| {
        c.safety_sweep_interval = Duration::from_secs(3600);
    }),
    ("rotation-age", "1h", |c| {
        c.rotation_age = Duration::from_secs(3600);
    }),
    ("flush-interval", "250ms", |c| {
        c.flush_interval = Duration::from_millis(250);
    }),
    ("exclude-local", "false", |c| c.exclude_local = false),
    ("rcvbuf", "1048576", |c| c.rcvbuf = 1 << 20),
    ("netns", "/run/netns/a,/proc/1/ns/net", |c| {
        c.netns = Scope::Paths(vec!["/run/netns/a".into(), "/proc/1/ns/net".into()]);
    }),
    ("netns.attribution", "true", |c| c.netns_attribution = true),
    ("netns.bundle-roots", "/a,/b", |c| {
        c.netns_bundle_roots = vec!["/a".into(), "/b".into()];
    }),
    ("api.listen-address", "127.0.0.1:9991", |c| {
        c.api_listen = Some("127.0.0.1:9991".parse().unwrap());
    }),
    ("api.retention", "5m", |c| {
        c.api_retention = Duration::from_secs(300);
    }),
];

fn is_bool(name: &str) -> bool {
    matches!(
        name,
        "trace" | "logx.debug" | "exclude-local" | "netns.attribution"
    )
}

fn expected(effect: Effect) -> Config {
    let mut c = defaults();
    effect(&mut c);
    c
}

#[test]
fn samples_cover_every_flag_but_the_prefix_file() {
    let mut names: Vec<&str> = SAMPLES.iter().map(|s| s.0).collect();
    names.push("uuid-prefix-file");
    names.sort_unstable();
    let mut all: Vec<&str> = flags::FLAGS.iter().map(|s| s.name).collect();
    all.sort_unstable();
    assert_eq!(names, all);
}

#[test]
fn every_flag_in_every_spelling() {
    for &(name, value, effect) in SAMPLES {
        let want = expected(effect);
        let eq = format!("-{name}={value}");
        let dd_eq = format!("--{name}={value}");
        let dash = format!("-{name}");
        let dd = format!("--{name}");
        let mut spellings: Vec<Vec<&str>> = vec![vec![&eq], vec![&dd_eq]];
        if is_bool(name) {
            if value == "true" {
                spellings.push(vec![&dash]);
                spellings.push(vec![&dd]);
            }
        } else {
            spellings.push(vec![&dash, value]);
            spellings.push(vec![&dd, value]);
        }
        for args in spellings {
            let got = run(&args, &[]).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(got.config, want, "{args:?}");
        }
    }
}

#[test]
fn every_flag_from_its_environment_variable() {
    for &(name, value, effect) in SAMPLES {
        let var = flags::env_name(name);
        let got = run(&[], &[(&var, value)]).unwrap_or_else(|e| panic!("{var}: {e}"));
        assert_eq!(got.config, expected(effect), "{var}={value}");
        assert!(
            !got.messages.iter().any(|m| m.text.contains("ignoring")),
            "{var}"
        );
    }
}

#[test]
fn command_line_beats_environment_with_a_warning() {
    for &(name, value, effect) in SAMPLES {
        let var = flags::env_name(name);
        let flag = format!("-{name}={value}");
        // The shadowed value is not even parsed.
        let got =
            run(&[&flag], &[(&var, "not,a valid,value")]).unwrap_or_else(|e| panic!("{flag}: {e}"));
        assert_eq!(got.config, expected(effect), "{flag}");
        let warning = got
            .messages
            .iter()
            .find(|m| m.text.contains("ignoring environment variable"))
            .unwrap_or_else(|| panic!("{flag}: no warning in {:?}", got.messages));
        assert_eq!(warning.level, Level::Warn);
        assert!(
            warning.text.contains(&var) && warning.text.contains(&format!("-{name}")),
            "{}",
            warning.text
        );
    }
}

#[test]
fn boolean_spellings_are_go_parsebool() {
    for (text, want) in [
        ("1", true),
        ("t", true),
        ("T", true),
        ("TRUE", true),
        ("true", true),
        ("True", true),
        ("0", false),
        ("f", false),
        ("F", false),
        ("FALSE", false),
        ("false", false),
        ("False", false),
    ] {
        for name in ["trace", "logx.debug", "exclude-local"] {
            let flag = format!("--{name}={text}");
            let var = flags::env_name(name);
            for c in [
                run(&[&flag], &[]).unwrap().config,
                run(&[], &[(&var, text)]).unwrap().config,
            ] {
                let got = match name {
                    "trace" => c.trace,
                    "logx.debug" => c.debug,
                    _ => c.exclude_local,
                };
                assert_eq!(got, want, "{flag} / {var}={text}");
            }
        }
    }
}

#[test]
fn bare_boolean_never_takes_the_next_argument() {
    let err = run(&["-exclude-local", "false"], &[]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(text.contains("unexpected argument \"false\""), "{text}");
    assert!(text.contains("as in -exclude-local=false"), "{text}");
    // No hint when the stray argument does not follow a bare boolean.
    let text = run(&["-trace=true", "false"], &[]).unwrap_err().to_string();
    assert!(!text.contains("as in"), "{text}");
    let c = run(&["-trace", "-reps", "3"], &[]).unwrap().config;
    assert!(c.trace);
    assert_eq!(c.reps, 3);
}

#[test]
fn value_flag_takes_the_next_argument_whatever_it_is() {
    let c = run(&["-output", "-reps"], &[]).unwrap().config;
    assert_eq!(c.output, Some(PathBuf::from("-reps")));
    assert_eq!(c.reps, 0);
    let c = run(&["--tcpinfo.eventsocket", "--x=y"], &[])
        .unwrap()
        .config;
    assert_eq!(c.event_socket, Some(PathBuf::from("--x=y")));
}

#[test]
fn values_may_contain_equals_signs() {
    let c = run(&["-output=/data/a=b"], &[]).unwrap().config;
    assert_eq!(c.output, Some(PathBuf::from("/data/a=b")));
}

#[test]
fn last_occurrence_wins_and_lists_accumulate() {
    let c = run(
        &[
            "-reps=1",
            "--reps",
            "2",
            "-anonymize.ip=netblock",
            "-anonymize.ip",
            "none",
        ],
        &[],
    )
    .unwrap()
    .config;
    assert_eq!((c.reps, c.anonymize_ip), (2, Method::None));
    let args = [
        "-exclude-srcport=1",
        "-exclude-srcport",
        "2,3",
        "--exclude-srcport=4",
        "--exclude-srcport",
        "5",
    ];
    assert_eq!(
        run(&args, &[]).unwrap().config.exclude_srcport,
        vec![1, 2, 3, 4, 5]
    );
    let args = [
        "-exclude-dstip=1.2.3.4",
        "--exclude-dstip",
        "::1,10.0.0.0/8",
    ];
    let want = vec![ip("1.2.3.4"), ip("::1"), ip("10.0.0.0/8")];
    assert_eq!(run(&args, &[]).unwrap().config.exclude_dstip, want);
}

#[test]
fn empty_values_mean_unset() {
    let c = run(
        &["-output=", "-tcpinfo.eventsocket=", "-exclude-srcport="],
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(c, defaults());
    let vars = [
        ("OUTPUT", ""),
        ("TCPINFO_EVENTSOCKET", ""),
        ("EXCLUDE_SRCPORT", ""),
        ("EXCLUDE_DSTIP", ""),
    ];
    assert_eq!(run(&[], &vars).unwrap().config, defaults());
}

#[test]
fn source_ports_across_the_whole_u16_range() {
    for (text, want) in [
        ("0", 0u16),
        ("65535", 65_535),
        ("32768", 32_768),
        ("9100", 9100),
    ] {
        assert_eq!(
            run(&[&format!("-exclude-srcport={text}")], &[])
                .unwrap()
                .config
                .exclude_srcport,
            vec![want]
        );
        assert_eq!(
            run(&[], &[("EXCLUDE_SRCPORT", text)])
                .unwrap()
                .config
                .exclude_srcport,
            vec![want]
        );
    }
    for bad in ["65536", "-1"] {
        let err = run(&[&format!("-exclude-srcport={bad}")], &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("flag -exclude-srcport"), "{err}");
        let err = run(&[], &[("EXCLUDE_SRCPORT", bad)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("environment variable EXCLUDE_SRCPORT"),
            "{err}"
        );
    }
}

#[test]
fn production_invocation() {
    let prefix = prefix_file(b"mlab1-lga03.measurement-lab.org_1700000000");
    let prefix_arg = format!("-uuid-prefix-file={}", prefix.path().display());
    let args = [
        "-prometheusx.listen-address=127.0.0.1:9991",
        "-output=/var/spool/ndt/tcpinfo",
        &prefix_arg,
        "-tcpinfo.eventsocket=/var/local/tcpinfoeventsocket/tcpevents.sock",
        "-exclude-srcport=9100,9090,9091,9989,9990,9991,9992,9993,9994,9995,9996,9997",
        "-exclude-dstip=172.25.0.1,35.202.153.90,35.188.150.110,35.185.54.7,35.243.193.167",
        "-anonymize.ip=netblock",
    ];
    let parsed = run(&args, &[]).unwrap();
    assert!(parsed.messages.is_empty(), "{:?}", parsed.messages);
    let c = parsed.config;
    assert_eq!(c.listen_address.to_string(), "127.0.0.1:9991");
    assert_eq!(c.output, Some(PathBuf::from("/var/spool/ndt/tcpinfo")));
    assert_eq!(
        c.uuid_prefix.as_str(),
        "mlab1-lga03.measurement-lab.org_1700000000"
    );
    assert_eq!(c.uuid_prefix_file.as_deref(), Some(prefix.path()));
    assert_eq!(
        c.exclude_srcport,
        vec![
            9100, 9090, 9091, 9989, 9990, 9991, 9992, 9993, 9994, 9995, 9996, 9997
        ]
    );
    assert_eq!(c.exclude_dstip.len(), 5);
    assert!(c.exclude_dstip[0].contains("::ffff:172.25.0.1".parse().unwrap()));
    assert_eq!(c.anonymize_ip, Method::Netblock);
    assert_eq!(
        c.uuid_prefix.uuid(0x3E8),
        "mlab1-lga03.measurement-lab.org_1700000000_00000000000003E8"
    );
}

#[test]
fn prefix_file_bytes_are_kept_verbatim() {
    let f = prefix_file(" ndt-jdczh.é:1553815964".as_bytes());
    for (args, vars) in [
        (
            vec![format!("-uuid-prefix-file={}", f.path().display())],
            vec![],
        ),
        (
            vec![],
            vec![("UUID_PREFIX_FILE", f.path().display().to_string())],
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let parsed = run(&args, &vars).unwrap();
        assert_eq!(
            parsed.config.uuid_prefix.as_str(),
            " ndt-jdczh.é:1553815964"
        );
        assert_eq!(
            parsed.config.uuid_prefix.uuid(0x3E8),
            " ndt-jdczh.é:1553815964_00000000000003E8"
        );
        // Kept, but reported: pusher lints the space and the non-ASCII letter.
        let lint = parsed
            .messages
            .iter()
            .find(|m| m.text.contains("outside [a-zA-Z0-9/:._-]"));
        assert!(
            lint.is_some_and(|m| m.level == Level::Warn && m.text.contains("(\" é\")")),
            "{:?}",
            parsed.messages
        );
    }
}

/// D19: a prefix file that could put archives outside the output tree, or control characters
/// in their names, is fatal (exit 2), naming the flag, the file, the character and its offset.
#[test]
fn hostile_prefix_files_are_fatal_and_named() {
    let cases: &[(&[u8], &str)] = &[
        (b"../../../etc/x", "contains '/' at byte offset 2"),
        (b"a/b", "contains '/' at byte offset 1"),
        (b"ho\0st", "U+0000 (NUL) at byte offset 2"),
        (b"host\t1", "U+0009 (\\t) at byte offset 4"),
        (b"host\x7f", "U+007F (DEL) at byte offset 4"),
        (b"ndt-jdczh_1553815964\n", "U+000A (\\n) at byte offset 20"),
        (
            b"host\xff_1",
            "not valid UTF-8 (first invalid byte at offset 4)",
        ),
    ];
    for &(bytes, want) in cases {
        let f = prefix_file(bytes);
        let path = f.path().display().to_string();
        for (args, vars, origin) in [
            (
                vec![format!("-uuid-prefix-file={path}")],
                vec![],
                "flag -uuid-prefix-file",
            ),
            (
                vec![],
                vec![("UUID_PREFIX_FILE", path.clone())],
                "environment variable UUID_PREFIX_FILE",
            ),
        ] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let err = run(&args, &vars).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("{origin}: the UUID prefix in {path} "))
                    && text.contains(want),
                "{text}"
            );
        }
    }
    // The trailing newline's message says how to write the file.
    let f = prefix_file(b"ndt-jdczh_1553815964\n");
    let err = run(&[&format!("-uuid-prefix-file={}", f.path().display())], &[]).unwrap_err();
    assert!(err.to_string().contains("printf %s"), "{err}");
}

#[test]
fn hostile_pod_name_for_the_default_prefix_is_fatal_and_named() {
    let err = run(&[], &[("POD_NAME", "../../etc/x")]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(
        text.starts_with("no -uuid-prefix-file, and the default cannot be used:")
            && text.contains("built from $POD_NAME, contains '/' at byte offset 2")
            && text.ends_with("give -uuid-prefix-file"),
        "{text}"
    );
    // With a prefix file, POD_NAME is not used at all.
    let f = prefix_file(b"host_1");
    let parsed = run(
        &[&format!("-uuid-prefix-file={}", f.path().display())],
        &[("POD_NAME", "../../etc/x")],
    )
    .unwrap();
    assert_eq!(parsed.config.uuid_prefix.as_str(), "host_1");
}

#[test]
fn prefix_lints() {
    for (bytes, lint) in [
        (b"..host_1".as_slice(), "starts with '.'"),
        (b"a..b", "contains \"..\""),
    ] {
        let f = prefix_file(bytes);
        let parsed = run(&[&format!("-uuid-prefix-file={}", f.path().display())], &[]).unwrap();
        assert!(
            parsed
                .messages
                .iter()
                .any(|m| m.level == Level::Warn && m.text.contains(lint)),
            "{lint}: {:?}",
            parsed.messages
        );
    }
    let f = prefix_file(b"");
    let parsed = run(&[&format!("-uuid-prefix-file={}", f.path().display())], &[]).unwrap();
    assert_eq!(parsed.config.uuid_prefix.uuid(1), "_0000000000000001");
    assert!(
        parsed.messages.iter().any(|m| m.text.contains("empty")),
        "{:?}",
        parsed.messages
    );
}

#[test]
fn unusable_prefix_file_is_fatal_and_named() {
    let missing = "/nonexistent/tcp-info-cli-test/prefix";
    let err = run(&[&format!("-uuid-prefix-file={missing}")], &[]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(
        text.contains("flag -uuid-prefix-file") && text.contains(missing),
        "{text}"
    );

    let err = run(&[], &[("UUID_PREFIX_FILE", missing)]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(
        text.contains("environment variable UUID_PREFIX_FILE") && text.contains(missing),
        "{text}"
    );

    let f = prefix_file(b"host\xff_1");
    let err = run(
        &[&format!("--uuid-prefix-file={}", f.path().display())],
        &[],
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(
        text.contains("UTF-8") && text.contains("flag -uuid-prefix-file"),
        "{text}"
    );
}

#[test]
fn invalid_values_are_fatal_and_named() {
    let flag_cases: &[(&str, &str)] = &[
        ("reps", "-1"),
        ("reps", "x"),
        ("reps", ""),
        ("trace", "yes"),
        ("trace", ""),
        ("exclude-srcport", "65536"),
        ("exclude-srcport", "-1"),
        ("exclude-srcport", "80,,443"),
        ("exclude-srcport", "80,"),
        ("exclude-srcport", " 80"),
        ("exclude-dstip", "1.2.3.256"),
        ("exclude-dstip", "10.0.0.0/33"),
        ("exclude-dstip", "1.2.3.4,"),
        ("prometheusx.listen-address", "9990"),
        ("prometheusx.listen-address", ":99999"),
        ("anonymize.ip", "netblok"),
        ("anonymize.ip", ""),
        ("logx.debug", "2"),
        ("mode", "fast"),
        ("mode", "Sweep"),
        ("poll-interval", "0"),
        ("safety-sweep-interval", "0s"),
        ("poll-interval", "-1s"),
        ("poll-interval", "10"),
        ("rotation-age", "0s"),
        ("rotation-age", "ten minutes"),
        ("flush-interval", "-5ms"),
        ("exclude-local", "maybe"),
        ("rcvbuf", "0"),
        ("rcvbuf", "1M"),
        ("rcvbuf", "4294967296"),
    ];
    for &(name, value) in flag_cases {
        let flag = format!("-{name}={value}");
        let err = run(&[&flag], &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{flag}");
        assert!(
            matches!(err, CliError::InvalidValue { .. }),
            "{flag}: {err:?}"
        );
        assert!(
            err.to_string().contains(&format!("flag -{name}:")),
            "{flag}: {err}"
        );

        let var = flags::env_name(name);
        let err = run(&[], &[(&var, value)]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{var}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("environment variable {var}:")),
            "{var}={value}: {text}"
        );
    }
}

#[test]
fn d10_misspelt_anonymization_is_an_error() {
    let err = run(&[], &[("ANONYMIZE_IP", "netblok")]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert_eq!(
        err.to_string(),
        "invalid value \"netblok\" for environment variable ANONYMIZE_IP: expected none or netblock"
    );
}

#[test]
fn mode_defaults_to_auto_and_takes_each_value() {
    assert_eq!(run(&[], &[]).unwrap().config.mode, Mode::Auto);
    for (text, mode) in [
        ("auto", Mode::Auto),
        ("ebpf", Mode::Ebpf),
        ("sweep", Mode::Sweep),
    ] {
        let parsed = run(&["--mode", text], &[]).unwrap();
        assert_eq!(parsed.config.mode, mode, "{text}");
        // Whether eBPF can run is decided at start-up, not while parsing.
        assert!(
            parsed.messages.iter().all(|m| !m.text.contains("mode")),
            "{:?}",
            parsed.messages
        );
        let env = run(&[], &[("MODE", text)]).unwrap();
        assert_eq!(env.config.mode, mode, "MODE={text}");
    }
    let err = run(&["--mode", "bpf"], &[]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("\"bpf\""), "{err}");
}

#[test]
fn safety_sweep_interval_is_a_positive_go_duration() {
    let c = run(&["-safety-sweep-interval=1h"], &[]).unwrap().config;
    assert_eq!(c.safety_sweep_interval, Duration::from_secs(3600));
    let c = run(&[], &[("SAFETY_SWEEP_INTERVAL", "250ms")])
        .unwrap()
        .config;
    assert_eq!(c.safety_sweep_interval, Duration::from_millis(250));
    for bad in ["0s", "-1s", "5"] {
        let err = run(&["--safety-sweep-interval", bad], &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{bad}");
        assert!(err.to_string().contains("safety-sweep-interval"), "{err}");
    }
}

#[test]
fn trace_warns_that_it_is_ignored() {
    let parsed = run(&["-trace"], &[]).unwrap();
    assert!(
        parsed
            .messages
            .iter()
            .any(|m| m.level == Level::Warn && m.text.contains("-trace"))
    );
    let parsed = run(&["-trace=false"], &[]).unwrap();
    assert!(!parsed.messages.iter().any(|m| m.text.contains("-trace")));
}

#[test]
fn non_utf8_values() {
    let bad = OsString::from_vec(b"/data/\xff".to_vec());
    let mut arg = OsString::from("-output=");
    arg.push(&bad);
    // Paths keep their bytes.
    let c = parse(vec![arg], &env_with(&[])).unwrap().config;
    assert_eq!(c.output, Some(PathBuf::from(bad)));
    // Other values must be text.
    let mut arg = OsString::from("-reps=");
    arg.push(OsString::from_vec(vec![0xff]));
    let err = parse(vec![arg], &env_with(&[])).unwrap_err();
    assert!(
        err.to_string().contains("flag -reps: not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["-foo"], "flag provided but not defined: -foo"),
        (&["--foo=1"], "flag provided but not defined: --foo"),
        (&["-Reps=1"], "flag provided but not defined: -Reps"),
        (&["-reps"], "flag needs an argument: -reps"),
        (&["--output"], "flag needs an argument: -output"),
        (&["stray"], "unexpected argument \"stray\""),
        (
            &["-reps=1", "stray", "-trace"],
            "unexpected argument \"stray\"",
        ),
        (&["-"], "unexpected argument \"-\""),
        (&[""], "unexpected argument \"\""),
        (&["--", "x"], "unexpected argument \"x\""),
        (&["--", "-reps=1"], "unexpected argument \"-reps=1\""),
        (&["---reps=1"], "bad flag syntax: ---reps=1"),
        (&["-=1"], "bad flag syntax: -=1"),
        (&["-trace", "true"], "unexpected argument \"true\""),
        (&["-foo", "-h"], "flag provided but not defined: -foo"),
    ];
    for &(args, want) in cases {
        let err = run(args, &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
        assert!(matches!(err, CliError::Usage { .. }), "{args:?}: {err:?}");
        assert!(err.to_string().contains(want), "{args:?}: {err}");
    }
}

#[test]
fn double_dash_alone_ends_the_flags() {
    assert_eq!(run(&["-reps", "4", "--"], &[]).unwrap().config.reps, 4);
}

#[test]
fn help_exits_zero_with_usage() {
    for args in [
        &["-h"][..],
        &["--help"],
        &["-help"],
        &["--h"],
        &["-reps=1", "-h"],
        &["-help=x"],
    ] {
        let err = run(args, &[]).unwrap_err();
        assert_eq!(err.exit_code(), 0, "{args:?}");
        let CliError::Help { usage: text } = &err else {
            panic!("{args:?}: {err:?}")
        };
        assert_eq!(*text, usage());
        assert_eq!(err.to_string(), usage());
        assert!(text.contains("-uuid-prefix-file FILE") && text.contains("UUID_PREFIX_FILE"));
    }
}

#[test]
fn the_api_listens_on_loopback_or_a_unix_socket_only() {
    assert_eq!(
        run(&["-api.listen-address=/run/tcpinfo/api.sock"], &[])
            .unwrap()
            .config
            .api_listen,
        Some(ApiListen::Unix("/run/tcpinfo/api.sock".into()))
    );
    assert_eq!(
        run(&["-api.listen-address="], &[])
            .unwrap()
            .config
            .api_listen,
        None
    );
    for refused in [":9991", "0.0.0.0:9991", "10.0.0.1:80", "api.sock"] {
        let err = run(&[&format!("-api.listen-address={refused}")], &[]).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{refused}");
        assert!(err.to_string().contains("-api.listen-address"), "{err}");
    }
    let err = run(&["-api.retention=0s"], &[]).unwrap_err();
    assert!(err.to_string().contains("-api.retention"), "{err}");
}

#[test]
fn version_exits_zero_and_needs_no_other_flag_to_be_valid() {
    for args in [
        &["-version"][..],
        &["--version"],
        &["-reps=1", "--version"],
        &["--version", "-no-such-flag"],
    ] {
        let err = run(args, &[]).unwrap_err();
        assert_eq!(err.exit_code(), 0, "{args:?}");
        assert!(matches!(err, CliError::Version), "{args:?}: {err:?}");
    }
    // A malformed flag before it is still a usage error, as for -help.
    let err = run(&["---reps", "-version"], &[]).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err:?}");
    assert!(usage().contains("tcp-info -version"));
}

#[test]
fn usage_defaults_match_the_parsed_defaults() {
    // Giving each flag its documented default (where the usage text shows a literal value)
    // must not change the configuration.
    let base = defaults();
    for spec in flags::FLAGS {
        if spec.default.contains(' ') || (spec.default == "none" && spec.kind == flags::Kind::List)
        {
            continue;
        }
        let flag = format!("-{}={}", spec.name, spec.default);
        assert_eq!(run(&[&flag], &[]).unwrap().config, base, "{flag}");
    }
}

#[test]
fn argument_lines_show_every_effective_value() {
    let f = prefix_file(b"ndt-jdczh_1553815964");
    let path = f.path().display().to_string();
    let args = [
        "-reps=7".to_owned(),
        "-exclude-srcport=9100,32768".to_owned(),
        "-exclude-dstip=172.25.0.1,10.1.2.3/8".to_owned(),
        "-tcpinfo.eventsocket=/run/ev.sock".to_owned(),
        "-anonymize.ip=netblock".to_owned(),
        format!("-uuid-prefix-file={path}"),
        "-mode=auto".to_owned(),
        "-rotation-age=90s".to_owned(),
        "-exclude-local=0".to_owned(),
        "-api.listen-address=[::1]:9991".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = run(&args, &[]).unwrap().config;
    let want = [
        "Argument reps=7".to_owned(),
        "Argument trace=false".to_owned(),
        "Argument output=".to_owned(),
        "Argument exclude-srcport=9100,32768".to_owned(),
        "Argument exclude-dstip=172.25.0.1,10.0.0.0/8".to_owned(),
        "Argument tcpinfo.eventsocket=/run/ev.sock".to_owned(),
        "Argument prometheusx.listen-address=:9990".to_owned(),
        "Argument anonymize.ip=netblock".to_owned(),
        format!("Argument uuid-prefix-file={path} (prefix \"ndt-jdczh_1553815964\")"),
        "Argument logx.debug=false".to_owned(),
        "Argument mode=auto".to_owned(),
        "Argument poll-interval=10ms".to_owned(),
        "Argument safety-sweep-interval=5s".to_owned(),
        "Argument rotation-age=1m30s".to_owned(),
        "Argument flush-interval=1s".to_owned(),
        "Argument exclude-local=false".to_owned(),
        "Argument rcvbuf=8388608".to_owned(),
        "Argument netns=self".to_owned(),
        "Argument netns.attribution=false".to_owned(),
        "Argument netns.bundle-roots=/run/containerd/io.containerd.runtime.v2.task/k8s.io,\
         /run/containers/storage/overlay-containers"
            .to_owned(),
        "Argument api.listen-address=[::1]:9991".to_owned(),
        "Argument api.retention=1m0s".to_owned(),
    ];
    assert_eq!(c.argument_lines(), want);
}

#[test]
fn argument_line_escapes_the_default_prefix() {
    let c = defaults();
    let lines = c.argument_lines();
    let line = lines
        .iter()
        .find(|l| l.starts_with("Argument uuid-prefix-file="))
        .unwrap();
    assert_eq!(
        *line,
        format!("Argument uuid-prefix-file= (prefix \"{}\")", c.uuid_prefix)
    );
}

#[test]
fn durations_from_flags_and_environment() {
    let cases: &[(&str, Duration)] = &[
        ("10ms", Duration::from_millis(10)),
        ("1s", Duration::from_secs(1)),
        ("1m30s", Duration::from_secs(90)),
        ("1.5h", Duration::from_secs(5400)),
        ("500us", Duration::from_micros(500)),
        ("1ns", Duration::from_nanos(1)),
    ];
    for &(text, want) in cases {
        let c = run(&[&format!("--poll-interval={text}")], &[])
            .unwrap()
            .config;
        assert_eq!(c.poll_interval, want, "{text}");
        let c = run(&[], &[("ROTATION_AGE", text)]).unwrap().config;
        assert_eq!(c.rotation_age, want, "{text}");
        let c = run(&["-flush-interval", text], &[]).unwrap().config;
        assert_eq!(c.flush_interval, want, "{text}");
    }
}
