//! The daemon's configuration: command-line flags and their environment variables (SPEC §2).
//!
//! Upstream's flags keep their names, spellings, environment variables and defaults; the flags
//! this implementation adds (`-mode`, `-poll-interval`, `-safety-sweep-interval`,
//! `-rotation-age`, `-flush-interval`, `-exclude-local`, `-rcvbuf`) have defaults that reproduce
//! upstream's output; `-mode` defaults to `auto`, which collects the same records more cheaply
//! where eBPF can run.
//!
//! - **Grammar:** Go's `flag` package, plus two dashes (see [`usage`]), parsed by clap after a
//!   pass that rewrites `-name` to `--name` (see [`grammar`] for why clap alone cannot).
//! - **Environment:** each flag's variable is its name upper-cased with every character outside
//!   `[A-Z0-9]` replaced by `_`. The command line wins; a variable shadowed by a flag is reported
//!   as a warning. List variables are split on `,`.
//! - **Errors:** any invalid value, from a flag or a variable, is fatal and names its source
//!   (SPEC §12 D10), unlike upstream, which skipped bad ports and addresses and ignored bad
//!   variables.
//!
//! [`parse`] takes the environment as a function so that tests need not touch the process
//! environment; [`parse_process`] reads the real one. Parsing reads the UUID prefix file (SPEC
//! §2.5: relative to the original working directory) or computes the default prefix, but has no
//! other side effects: the warnings it finds come back in [`Parsed::messages`] for the caller to
//! log once logging is set up.
//!
//! Whether eBPF mode can actually run is decided at start-up by the daemon (it loads the
//! programs); parsing only records the request.

mod duration;
mod error;
mod flags;
mod grammar;
mod values;

#[cfg(test)]
mod tests;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

pub use error::{CliError, Origin};
#[cfg(test)]
use flags::usage;
pub use tcp_info::api::ApiListen;
pub use tcp_info::exclude::IpNet;
pub use tcp_info::metrics::ListenAddress;
pub use values::Mode;

use flags::{
    ANONYMIZE_IP, API_LISTEN_ADDRESS, API_RETENTION, EVENT_SOCKET, EXCLUDE_DSTIP, EXCLUDE_LOCAL,
    EXCLUDE_SRCPORT, FLUSH_INTERVAL, LISTEN_ADDRESS, LOGX_DEBUG, MODE, NETNS, NETNS_ATTRIBUTION,
    NETNS_BUNDLE_ROOTS, OUTPUT, POLL_INTERVAL, RCVBUF, REPS, ROTATION_AGE, SAFETY_SWEEP_INTERVAL,
    TRACE, UUID_PREFIX_FILE,
};
use tcp_info::anonymize::Method;
use tcp_info::namespaces::Scope;
use tcp_info::namespaces::attribution::Attributor;
use tcp_info::uuid::Prefix;

/// Default `-poll-interval` (upstream's fixed 10 ms, SPEC §2.3).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Default `-safety-sweep-interval`: a full dump costs about 1 µs per socket, so at 20 000
/// sockets one every 5 s costs about 0.4 % of a core, and a lost mark delays a record by at most
/// 5 s.
pub const DEFAULT_SAFETY_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Default `-rotation-age` (upstream's fixed 10 min, SPEC §6.3): the saver's default.
pub const DEFAULT_ROTATION_AGE: Duration = tcp_info::saver::DEFAULT_ROTATION_AGE;
/// Default `-flush-interval`: the saver's default.
pub const DEFAULT_FLUSH_INTERVAL: Duration = tcp_info::saver::DEFAULT_FLUSH_INTERVAL;
/// Default `-rcvbuf`: 8 MiB.
pub const DEFAULT_RCVBUF: usize = 8 << 20;
/// Default `-api.retention`.
pub const DEFAULT_API_RETENTION: Duration = tcp_info::api::DEFAULT_RETENTION;
/// The variable naming the pod, preferred over the hostname in the default UUID prefix.
pub const POD_NAME_VAR: &str = "POD_NAME";

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "one field per command-line flag, and four flags are booleans"
)]
pub struct Config {
    /// `-reps`: poll cycles to run before a clean shutdown; 0 runs forever.
    pub reps: u64,
    /// `-trace`: accepted and ignored.
    pub trace: bool,
    /// `-output`: the output root to create and change into; `None` keeps the working directory.
    pub output: Option<PathBuf>,
    /// `-exclude-srcport`: local ports to skip, in the order given.
    pub exclude_srcport: Vec<u16>,
    /// `-exclude-dstip`: remote addresses or blocks to skip, in the order given.
    pub exclude_dstip: Vec<IpNet>,
    /// `-tcpinfo.eventsocket`: where to publish events; `None` disables the event socket.
    pub event_socket: Option<PathBuf>,
    /// `-prometheusx.listen-address`.
    pub listen_address: ListenAddress,
    /// `-anonymize.ip`.
    pub anonymize_ip: Method,
    /// `-uuid-prefix-file`, if given (already read into `uuid_prefix`).
    pub uuid_prefix_file: Option<PathBuf>,
    /// The UUID prefix: the file's bytes verbatim, or the unsafe default.
    pub uuid_prefix: Prefix,
    /// `-logx.debug`.
    pub debug: bool,
    /// `-mode` as requested (the daemon decides at start-up whether eBPF can run).
    pub mode: Mode,
    /// `-poll-interval`: time between full sweeps (sweep mode) or mark queries (eBPF mode).
    pub poll_interval: Duration,
    /// `-safety-sweep-interval`: time between full sweeps in eBPF mode.
    pub safety_sweep_interval: Duration,
    /// `-rotation-age`: age at which an archive segment is closed.
    pub rotation_age: Duration,
    /// `-flush-interval`: bound on how long written records stay in memory.
    pub flush_interval: Duration,
    /// `-exclude-local`: skip loopback, link-local, multicast and unspecified addresses (SPEC §8.2).
    pub exclude_local: bool,
    /// `-rcvbuf`: netlink receive buffer size in bytes.
    pub rcvbuf: usize,
    /// `-netns`: the network namespaces to record.
    pub netns: Scope,
    /// `-netns.attribution`: the `Netns` key in Metadata lines and events.
    pub netns_attribution: bool,
    /// `-netns.bundle-roots`: where the container runtime's OCI bundles are.
    pub netns_bundle_roots: Vec<PathBuf>,
    /// `-api.listen-address`: where the query API listens; `None` (the default) is off.
    pub api_listen: Option<ApiListen>,
    /// `-api.retention`: how long a closed connection stays queryable.
    pub api_retention: Duration,
}

impl Config {
    /// One `Argument <name>=<value>` line per flag with its effective value, as upstream logs
    /// at start-up. Lists are comma-separated; the prefix file line also shows the prefix.
    pub fn argument_lines(&self) -> Vec<String> {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let join = |items: Vec<String>| items.join(",");
        let prefix_file = format!(
            "{} (prefix \"{}\")",
            path(&self.uuid_prefix_file),
            self.uuid_prefix.as_str().escape_debug()
        );
        let netns = match &self.netns {
            Scope::Own => "self".to_owned(),
            Scope::All => "all".to_owned(),
            Scope::Paths(paths) => join(paths.iter().map(|p| p.display().to_string()).collect()),
        };
        let values: [(&str, String); 22] = [
            (REPS, self.reps.to_string()),
            (TRACE, self.trace.to_string()),
            (OUTPUT, path(&self.output)),
            (
                EXCLUDE_SRCPORT,
                join(self.exclude_srcport.iter().map(u16::to_string).collect()),
            ),
            (
                EXCLUDE_DSTIP,
                join(self.exclude_dstip.iter().map(IpNet::to_string).collect()),
            ),
            (EVENT_SOCKET, path(&self.event_socket)),
            (LISTEN_ADDRESS, self.listen_address.to_string()),
            (
                ANONYMIZE_IP,
                values::anonymize_name(self.anonymize_ip).to_owned(),
            ),
            (UUID_PREFIX_FILE, prefix_file),
            (LOGX_DEBUG, self.debug.to_string()),
            (MODE, self.mode.to_string()),
            (
                POLL_INTERVAL,
                duration::format_go_duration(self.poll_interval),
            ),
            (
                SAFETY_SWEEP_INTERVAL,
                duration::format_go_duration(self.safety_sweep_interval),
            ),
            (
                ROTATION_AGE,
                duration::format_go_duration(self.rotation_age),
            ),
            (
                FLUSH_INTERVAL,
                duration::format_go_duration(self.flush_interval),
            ),
            (EXCLUDE_LOCAL, self.exclude_local.to_string()),
            (RCVBUF, self.rcvbuf.to_string()),
            (NETNS, netns),
            (NETNS_ATTRIBUTION, self.netns_attribution.to_string()),
            (
                NETNS_BUNDLE_ROOTS,
                join(
                    self.netns_bundle_roots
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                ),
            ),
            (
                API_LISTEN_ADDRESS,
                self.api_listen
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            (
                API_RETENTION,
                duration::format_go_duration(self.api_retention),
            ),
        ];
        values
            .into_iter()
            .map(|(name, value)| format!("Argument {name}={value}"))
            .collect()
    }

    /// Logs [`Config::argument_lines`] at info level.
    pub fn log_arguments(&self) {
        for line in self.argument_lines() {
            tracing::info!("{line}");
        }
    }
}

/// How important a [`Message`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Probably a mistake that did not stop start-up (e.g. a variable shadowed by a flag).
    Warn,
}

/// Something parsing noticed and the caller should log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its level.
    pub level: Level,
    /// Its text.
    pub text: String,
}

/// The result of a successful [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The configuration.
    pub config: Config,
    /// Warnings and notices, in the order found.
    pub messages: Vec<Message>,
}

impl Parsed {
    /// Logs [`Parsed::messages`] through `tracing`.
    pub fn log_messages(&self) {
        for m in &self.messages {
            match m.level {
                Level::Warn => tracing::warn!("{}", m.text),
            }
        }
    }
}

/// Builds the configuration from `args` (the command line **without** the program name) and
/// `env` (a lookup of environment variables; also consulted for `POD_NAME`).
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: &impl Fn(&str) -> Option<OsString>,
) -> Result<Parsed, CliError> {
    let mut inputs = Inputs {
        given: grammar::matches(args)?,
        env,
        messages: Vec::new(),
    };
    let config = inputs.config()?;
    Ok(Parsed {
        config,
        messages: inputs.messages,
    })
}

/// [`parse`] on this process's arguments and environment.
pub fn parse_process() -> Result<Parsed, CliError> {
    parse(std::env::args_os().skip(1), &|name: &str| {
        std::env::var_os(name)
    })
}

/// The command line and environment, and what has been noticed while reading them.
struct Inputs<'a, E> {
    /// The flags on the command line, as [`grammar::matches`] found them.
    given: clap::ArgMatches,
    /// The environment lookup.
    env: &'a E,
    /// The warnings found so far.
    messages: Vec<Message>,
}

impl<E: Fn(&str) -> Option<OsString>> Inputs<'_, E> {
    /// Every flag's effective value, parsed.
    fn config(&mut self) -> Result<Config, CliError> {
        let reps = self.value(REPS, 0, values::parse_reps)?;
        let trace = self.value(TRACE, false, values::parse_bool)?;
        if trace {
            self.warn(format!(
                "-{TRACE} is accepted for compatibility and ignored: no Go runtime trace is written"
            ));
        }
        let output = self.path(OUTPUT).map(|(_, p)| p);
        let exclude_srcport = self.list(EXCLUDE_SRCPORT, values::parse_port)?;
        let exclude_dstip = self.list(EXCLUDE_DSTIP, str::parse::<IpNet>)?;
        let event_socket = self.path(EVENT_SOCKET).map(|(_, p)| p);
        let listen_address = self.value(LISTEN_ADDRESS, ListenAddress::default(), str::parse)?;
        let anonymize_ip = self.value(ANONYMIZE_IP, Method::None, values::parse_anonymize)?;
        let (uuid_prefix_file, uuid_prefix) = self.uuid_prefix()?;
        let debug = self.value(LOGX_DEBUG, false, values::parse_bool)?;
        let mode = self.value(MODE, Mode::Auto, str::parse)?;
        let positive = duration::parse_positive_duration;
        Ok(Config {
            reps,
            trace,
            output,
            exclude_srcport,
            exclude_dstip,
            event_socket,
            listen_address,
            anonymize_ip,
            uuid_prefix_file,
            uuid_prefix,
            debug,
            mode,
            poll_interval: self.value(POLL_INTERVAL, DEFAULT_POLL_INTERVAL, positive)?,
            safety_sweep_interval: self.value(
                SAFETY_SWEEP_INTERVAL,
                DEFAULT_SAFETY_SWEEP_INTERVAL,
                positive,
            )?,
            rotation_age: self.value(ROTATION_AGE, DEFAULT_ROTATION_AGE, positive)?,
            flush_interval: self.value(FLUSH_INTERVAL, DEFAULT_FLUSH_INTERVAL, positive)?,
            exclude_local: self.value(EXCLUDE_LOCAL, true, values::parse_bool)?,
            rcvbuf: self.value(RCVBUF, DEFAULT_RCVBUF, values::parse_rcvbuf)?,
            netns: self.value(NETNS, Scope::Own, Scope::parse)?,
            netns_attribution: self.value(NETNS_ATTRIBUTION, false, values::parse_bool)?,
            netns_bundle_roots: match self.list(NETNS_BUNDLE_ROOTS, |p| Ok(PathBuf::from(p)))? {
                roots if roots.is_empty() => Attributor::DEFAULT_BUNDLE_ROOTS
                    .iter()
                    .map(PathBuf::from)
                    .collect(),
                roots => roots,
            },
            api_listen: self.value(API_LISTEN_ADDRESS, None, |text| {
                if text.is_empty() {
                    Ok(None)
                } else {
                    text.parse().map(Some)
                }
            })?,
            api_retention: self.value(API_RETENTION, DEFAULT_API_RETENTION, positive)?,
        })
    }

    /// The raw values of a flag and where they came from: the command line if the flag is there
    /// (warning if its variable is set too), else its variable, else `None`.
    fn raw(&mut self, name: &'static str) -> Option<(Origin, Vec<OsString>)> {
        let var = flags::env_name(name);
        let from_env = (self.env)(&var);
        let Some(values) = self.given.get_raw(name) else {
            return from_env.map(|value| (Origin::Env(var), vec![value]));
        };
        let values = values.map(OsStr::to_owned).collect();
        if let Some(ignored) = from_env {
            self.warn(format!(
                "ignoring environment variable {var}={:?}: flag -{name} is given on the command line",
                ignored.to_string_lossy()
            ));
        }
        Some((Origin::Flag(name), values))
    }

    /// A single-valued flag: the last value given, parsed, or `default`.
    fn value<T>(
        &mut self,
        name: &'static str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, CliError> {
        let Some((origin, values)) = self.raw(name) else {
            return Ok(default);
        };
        let Some(last) = values.last() else {
            return Ok(default);
        };
        let text = utf8(&origin, last)?;
        parse(text).map_err(|reason| invalid(origin, text, reason))
    }

    /// A path flag: the last value given; `None` when absent or empty (upstream's "unset").
    fn path(&mut self, name: &'static str) -> Option<(Origin, PathBuf)> {
        let (origin, mut values) = self.raw(name)?;
        let last = values.pop().filter(|v| !v.is_empty())?;
        Some((origin, PathBuf::from(last)))
    }

    /// A list flag: every value given, each split on `,`, every item parsed. An empty value
    /// adds nothing (`EXCLUDE_SRCPORT=` means no ports); an empty item in a non-empty value is
    /// an error.
    fn list<T>(
        &mut self,
        name: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, CliError> {
        let Some((origin, values)) = self.raw(name) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for value in &values {
            let text = utf8(&origin, value)?;
            if text.is_empty() {
                continue;
            }
            for item in text.split(',') {
                if item.is_empty() {
                    let reason = "empty item in comma-separated list".to_owned();
                    return Err(invalid(origin, text, reason));
                }
                out.push(parse(item).map_err(|reason| invalid(origin.clone(), item, reason))?);
            }
        }
        Ok(out)
    }

    /// The prefix file (read now) or the unsafe default, plus lint warnings.
    fn uuid_prefix(&mut self) -> Result<(Option<PathBuf>, Prefix), CliError> {
        let (file, prefix) = if let Some((origin, path)) = self.path(UUID_PREFIX_FILE) {
            let prefix = Prefix::read_file(&path)
                .map_err(|source| CliError::PrefixFile { origin, source })?;
            (Some(path), prefix)
        } else {
            let pod = (self.env)(POD_NAME_VAR);
            let prefix =
                Prefix::host_default(pod.as_deref().map(OsStr::to_string_lossy).as_deref())
                    .map_err(|source| CliError::DefaultPrefix { source })?;
            self.warn(format!(
                "no -{UUID_PREFIX_FILE}: using the unsafe default UUID prefix \"{}\", which \
                 other programs on this host will not reproduce",
                prefix.as_str().escape_debug()
            ));
            (None, prefix)
        };
        let shown = prefix.as_str().escape_debug().to_string();
        let bad = prefix.unsafe_chars();
        if !bad.is_empty() {
            let list: String = bad.iter().flat_map(|c| c.escape_debug()).collect();
            self.warn(format!(
                "UUID prefix \"{shown}\" contains characters outside [a-zA-Z0-9/:._-] \
                 (\"{list}\"); m-lab/pusher will flag every archive name"
            ));
        }
        // `/` and control characters never get here (`Prefix` refuses them, D19); these are
        // pusher's name lints that concern whole names rather than characters.
        if prefix.as_str().starts_with('.') {
            self.warn(format!(
                "UUID prefix \"{shown}\" starts with '.': archives are hidden files, which \
                 m-lab/pusher flags"
            ));
        }
        if prefix.as_str().contains("..") {
            self.warn(format!(
                "UUID prefix \"{shown}\" contains \"..\", which m-lab/pusher flags in every \
                 archive name"
            ));
        }
        if prefix.as_str().is_empty() {
            self.warn("the UUID prefix is empty: UUIDs will be just \"_<cookie>\"".to_owned());
        }
        Ok((file, prefix))
    }

    /// Records a warning.
    fn warn(&mut self, text: String) {
        self.messages.push(Message {
            level: Level::Warn,
            text,
        });
    }
}

/// `value` as text, or an invalid-value error naming `origin`.
fn utf8<'v>(origin: &Origin, value: &'v OsStr) -> Result<&'v str, CliError> {
    value.to_str().ok_or_else(|| {
        invalid(
            origin.clone(),
            &value.to_string_lossy(),
            "not valid UTF-8".to_owned(),
        )
    })
}

/// The invalid-value error for `value` from `origin`.
fn invalid(origin: Origin, value: &str, reason: String) -> CliError {
    CliError::InvalidValue {
        origin,
        value: value.to_owned(),
        reason,
    }
}
