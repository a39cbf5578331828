//! The command-line grammar: upstream's (Go's `flag` package), parsed by clap after a
//! normalising pass.
//!
//! Go's `flag` takes a flag with one or two dashes (`-output`, `--output`), its value after `=`
//! or as the next argument whatever that looks like (`-output -x` sets `-x`), except that a
//! boolean flag takes a value only after `=` (`-exclude-local false` is a bare flag and a stray
//! argument). clap expresses all of that for two dashes: one [`Arg`] per flag of [`FLAGS`],
//! whose long names may contain dots (`--anonymize.ip`), value flags taking one value even if it
//! starts with `-`, booleans taking an optional value that requires `=`. What clap alone cannot
//! parse is the single dash: it reads `-reps` as the short flags `-r -e -p -s`. Nor does it know
//! Go's other outcomes: `-h`/`-help` in any spelling is a help request (and `-version` a version
//! request) (clap's help flag is one
//! spelling, and off here so that the usage text stays the project's own), `---reps` and `-=1`
//! are bad syntax, and Go's error texts differ from clap's.
//!
//! So [`matches`] first runs [`normalise`], which walks the arguments in flag position and
//! rewrites `-name…` to `--name…`. It knows which flags take a value, so the argument after a
//! value flag given without `=` is passed on untouched (it is a value: `-output -x`). It stops at
//! the first argument whose outcome is Go's rather than clap's: `--` (the end of the flags;
//! anything after it is an unexpected argument), an argument that is not a flag (with a hint
//! when it follows a bare boolean), a help request, or bad syntax. clap then parses what came
//! before; its error, if any, comes first (Go reports the first bad argument), translated into
//! Go's words by [`from_clap`]; otherwise the outcome of the stop, if any, is the result.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt as _;

use clap::builder::ValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, ArgMatches, Command};

use super::CliError;
use super::flags::{FLAGS, Kind, index_of, usage};

/// Parses the command line (without the program name) into one entry per flag given, whose
/// raw values ([`ArgMatches::get_raw`]) are every occurrence's value in order, a bare boolean
/// counting as `true`.
pub(super) fn matches(args: impl IntoIterator<Item = OsString>) -> Result<ArgMatches, CliError> {
    let Normalised {
        args,
        unknown,
        stop,
    } = normalise(args);
    let matches = command()
        .try_get_matches_from(args)
        .map_err(|err| from_clap(&err, unknown.as_deref()))?;
    stop.map_or(Ok(matches), Err)
}

/// The clap command: one [`Arg`] per flag of [`FLAGS`], named and spelt (after two dashes) as
/// the flag, keeping every value as given (bytes included) for the caller to parse.
fn command() -> Command {
    let args = FLAGS.iter().map(|spec| {
        let arg = Arg::new(spec.name)
            .long(spec.name)
            .action(ArgAction::Append)
            .value_parser(ValueParser::os_string());
        match spec.kind {
            Kind::Bool => arg
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true"),
            Kind::Value | Kind::List => arg.num_args(1).allow_hyphen_values(true),
        }
    });
    Command::new("tcp-info")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .args(args)
}

/// The command line after [`normalise`].
#[derive(Debug)]
pub(super) struct Normalised {
    /// The arguments for clap, up to where the pass stopped: every flag with two dashes, every
    /// value as given.
    pub(super) args: Vec<OsString>,
    /// The first flag not in [`FLAGS`] as the user wrote it (`-foo` or `--foo`), which clap
    /// reports as `--foo`.
    pub(super) unknown: Option<String>,
    /// The outcome of the argument the pass stopped at, if it stopped early: it stands if clap
    /// accepts [`Normalised::args`].
    pub(super) stop: Option<CliError>,
}

/// Rewrites the flags written with one dash to two, up to the first argument whose outcome is
/// Go's rather than clap's (see the module documentation).
pub(super) fn normalise(args: impl IntoIterator<Item = OsString>) -> Normalised {
    let mut args = args.into_iter();
    let mut out = Vec::new();
    let mut unknown = None;
    // The bare boolean flag just seen, to explain a following `true`/`false`.
    let mut bare_bool = None;
    let stop = loop {
        let Some(arg) = args.next() else { break None };
        let bytes = arg.as_bytes();
        if bytes == b"--" {
            break args.next().map(|next| unexpected(&next, None));
        }
        if bytes.len() < 2 || bytes[0] != b'-' {
            break Some(unexpected(&arg, bare_bool));
        }
        let dashes = if bytes[1] == b'-' { "--" } else { "-" };
        let body = &bytes[dashes.len()..];
        if matches!(body.first(), Some(b'-' | b'=')) {
            let shown = arg.to_string_lossy();
            break Some(CliError::usage(format!("bad flag syntax: {shown}")));
        }
        let name = body.split(|&b| b == b'=').next().unwrap_or_default();
        if name == b"h" || name == b"help" {
            break Some(CliError::Help { usage: usage() });
        }
        if name == b"version" {
            break Some(CliError::Version);
        }
        let spec = std::str::from_utf8(name)
            .ok()
            .and_then(index_of)
            .map(|i| &FLAGS[i]);
        let inline = name.len() < body.len();
        bare_bool = spec
            .filter(|s| s.kind == Kind::Bool && !inline)
            .map(|s| s.name);
        if spec.is_none() && unknown.is_none() {
            unknown = Some(format!("{dashes}{}", String::from_utf8_lossy(name)));
        }
        let mut flag = OsString::from("--");
        flag.push(OsStr::from_bytes(body));
        out.push(flag);
        if spec.is_some_and(|s| s.kind != Kind::Bool) && !inline {
            out.extend(args.next());
        }
    };
    Normalised {
        args: out,
        unknown,
        stop,
    }
}

/// Go's error for an argument that is not a flag, with a hint if it follows a bare boolean.
fn unexpected(arg: &OsStr, bare_bool: Option<&str>) -> CliError {
    let shown = arg.to_string_lossy();
    let mut message = format!("unexpected argument {shown:?}: tcp-info takes only flags");
    if let Some(flag) = bare_bool {
        let _ = write!(
            message,
            "; a boolean flag takes its value only after '=', as in -{flag}={shown}"
        );
    }
    CliError::usage(message)
}

/// Go's words for clap's error on normalised arguments. `unknown` is the first unknown flag
/// as written, the one clap reports (it stops at the first).
fn from_clap(err: &clap::Error, unknown: Option<&str>) -> CliError {
    let arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.as_str(),
        _ => "",
    };
    CliError::usage(match err.kind() {
        ErrorKind::UnknownArgument => {
            format!("flag provided but not defined: {}", unknown.unwrap_or(arg))
        }
        // No value for a value flag (`--reps <reps>`): it was the last argument.
        ErrorKind::InvalidValue => {
            let name = arg.trim_start_matches('-');
            let name = name.split_once(' ').map_or(name, |(name, _)| name);
            format!("flag needs an argument: -{name}")
        }
        // Nothing else can happen with this command; keep clap's description.
        kind => format!("{kind}: {arg}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments as `OsString`s.
    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    /// The normalised arguments, the first unknown flag and the stop's message.
    fn run(args: &[&str]) -> (Vec<OsString>, Option<String>, Option<String>) {
        let n = normalise(os(args));
        (n.args, n.unknown, n.stop.map(|e| e.to_string()))
    }

    #[test]
    fn one_dash_becomes_two_and_values_stay_as_given() {
        let (args, unknown, stop) = run(&[
            "-reps",
            "-3",
            "--output=-x",
            "-trace",
            "-anonymize.ip=netblock",
            "-tcpinfo.eventsocket",
            "-h",
            "-exclude-srcport",
            "--",
            "-logx.debug=-1",
        ]);
        let want = [
            "--reps",
            "-3",
            "--output=-x",
            "--trace",
            "--anonymize.ip=netblock",
            "--tcpinfo.eventsocket",
            "-h",
            "--exclude-srcport",
            "--",
            "--logx.debug=-1",
        ];
        assert_eq!(args, os(&want));
        assert_eq!((unknown, stop), (None, None));
    }

    #[test]
    fn booleans_never_take_the_next_argument() {
        let (args, _, stop) = run(&["-trace", "-reps", "1", "--exclude-local", "x"]);
        assert_eq!(args, os(&["--trace", "--reps", "1", "--exclude-local"]));
        let stop = stop.unwrap_or_default();
        assert!(stop.contains("as in -exclude-local=x"), "{stop}");
    }

    #[test]
    fn stops_where_go_decides() {
        let help = usage();
        let cases: &[(&[&str], &[&str], &str)] = &[
            (
                &["-reps=1", "--", "-x"],
                &["--reps=1"],
                "unexpected argument \"-x\"",
            ),
            (&["-reps=1", "--"], &["--reps=1"], ""),
            (
                &["-trace=1", "x", "-y"],
                &["--trace=1"],
                "unexpected argument \"x\"",
            ),
            (&["-trace", "-", "-y"], &["--trace"], "as in -trace=-"),
            (
                &["-reps=1", "---reps=1"],
                &["--reps=1"],
                "bad flag syntax: ---reps=1",
            ),
            (&["--=1"], &[], "bad flag syntax: --=1"),
            (&["-foo", "-help=x", "-bar"], &["--foo"], &help),
            (&["--h"], &[], &help),
        ];
        for &(args, want, stop) in cases {
            let (got, _, got_stop) = run(args);
            assert_eq!(got, os(want), "{args:?}");
            let got_stop = got_stop.unwrap_or_default();
            assert!(
                got_stop.contains(stop) && (stop.is_empty() == got_stop.is_empty()),
                "{args:?}: {got_stop}"
            );
        }
    }

    #[test]
    fn remembers_the_first_unknown_flag_as_written() {
        for (args, want) in [
            (&["-foo", "--bar"][..], "-foo"),
            (&["--foo=1", "-bar"], "--foo"),
            (&["-output", "-foo", "--bar"], "--bar"),
            (&["-Reps=1"], "-Reps"),
        ] {
            assert_eq!(run(args).1.as_deref(), Some(want), "{args:?}");
        }
    }

    #[test]
    fn clap_errors_in_go_words() {
        for (args, want) in [
            (
                &["-reps=1", "--foo=1", "-h"][..],
                "flag provided but not defined: --foo",
            ),
            (&["-trace", "-output"], "flag needs an argument: -output"),
            (&["--anonymize.ip"], "flag needs an argument: -anonymize.ip"),
        ] {
            let err = matches(os(args)).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn values_come_back_in_order() {
        let m = matches(os(&[
            "-exclude-srcport=1",
            "--exclude-srcport",
            "2",
            "-trace",
            "-trace=false",
            "-output",
            "--",
        ]))
        .unwrap();
        let raw = |name| -> Vec<&OsStr> { m.get_raw(name).into_iter().flatten().collect() };
        assert_eq!(raw("exclude-srcport"), ["1", "2"]);
        assert_eq!(raw("trace"), ["true", "false"]);
        assert_eq!(raw("output"), ["--"]);
        assert!(raw("reps").is_empty());
    }
}
