//! `tcp-info plot ARCHIVE… [-o FILE.svg|FILE.png]`: draws one connection's life from its archive
//! segments (`tcp_info::plot`). The segments may be given in any order; without `-o` the SVG
//! goes to standard output. Exit status: 0 done, 1 bad input (unreadable, corrupt, mixed
//! connections) or a failed write, 2 usage errors.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tcp_info::plot;

/// The name of the subcommand, given as the first argument.
pub const SUBCOMMAND: &str = "plot";

/// The usage text.
const USAGE: &str = "\
Usage: tcp-info plot ARCHIVE... [-o FILE.svg|FILE.png]

Draws one connection's life from its archive segments (<uuid>.<seq>.jsonl.zst, in
any order): throughput, RTT, congestion window, retransmits and losses over time,
with its TCP state changes. Without -o, writes the SVG to standard output.

  -o, --output FILE   write FILE instead; its extension (.svg or .png) picks the format
  -h, --help          show this text";

/// Where the figure goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    Stdout,
    Svg(PathBuf),
    Png(PathBuf),
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Help,
    Plot {
        archives: Vec<PathBuf>,
        output: Output,
    },
}

/// Runs the subcommand on the arguments after `plot`.
pub fn main(args: impl Iterator<Item = OsString>) -> ExitCode {
    match parse(args) {
        Ok(Request::Help) => {
            crate::print_line(USAGE);
            ExitCode::SUCCESS
        }
        Ok(Request::Plot { archives, output }) => match run(&archives, &output) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tcp-info plot: {e}");
                ExitCode::FAILURE
            }
        },
        Err(message) => {
            eprintln!("tcp-info plot: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Reads the command line; `Err` is a usage error.
fn parse(args: impl Iterator<Item = OsString>) -> Result<Request, String> {
    let mut archives = Vec::new();
    let mut output: Option<PathBuf> = None;
    let mut args = args.peekable();
    let mut options_done = false;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if options_done || !text.starts_with('-') || text == "-" {
            archives.push(PathBuf::from(arg));
            continue;
        }
        let (name, inline) = match text.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (text.into_owned(), None),
        };
        match name.as_str() {
            "--" => options_done = true,
            "-h" | "-help" | "--help" => return Ok(Request::Help),
            "-o" | "-output" | "--output" => {
                let value = match inline {
                    Some(v) => OsString::from(v),
                    None => args
                        .next()
                        .ok_or_else(|| format!("{name} needs a file name"))?,
                };
                if output.replace(PathBuf::from(value)).is_some() {
                    return Err(format!("{name} given twice"));
                }
            }
            _ => return Err(format!("unknown option {name}")),
        }
    }
    if archives.is_empty() {
        return Err("no archive given".into());
    }
    let output = match output {
        None => Output::Stdout,
        Some(path) => match extension(&path).as_deref() {
            Some("svg") => Output::Svg(path),
            Some("png") => Output::Png(path),
            _ => {
                return Err(format!(
                    "{}: the output's name must end in .svg or .png",
                    path.display()
                ));
            }
        },
    };
    Ok(Request::Plot { archives, output })
}

/// The lower-case extension of `path`.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// Reads, draws and writes.
fn run(archives: &[PathBuf], output: &Output) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let records = plot::read_segments(archives)?;
    let series = plot::Series::from_records(&records)?;
    let svg = plot::svg(&series)?;
    match output {
        Output::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(svg.as_bytes())
                .and_then(|()| out.flush())
                .context("writing to standard output")?;
        }
        Output::Svg(path) => {
            std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        }
        Output::Png(path) => {
            if plot::font_faces() == 0 {
                eprintln!(
                    "tcp-info plot: warning: no fonts found (under /usr/share/fonts, \
                     /usr/local/share/fonts, ~/.fonts, ~/.local/share/fonts): the PNG has no \
                     text; install one (e.g. Debian's fonts-dejavu-core) or use .svg"
                );
            }
            let png = plot::png(&svg)?;
            std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = OsString> {
        list.iter()
            .map(OsString::from)
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn plot(archives: &[&str], output: Output) -> Request {
        Request::Plot {
            archives: archives.iter().map(PathBuf::from).collect(),
            output,
        }
    }

    #[test]
    fn parses_archives_and_output() {
        assert_eq!(
            parse(args(&["a", "b"])),
            Ok(plot(&["a", "b"], Output::Stdout))
        );
        assert_eq!(
            parse(args(&["a", "-o", "x.SVG", "b"])),
            Ok(plot(&["a", "b"], Output::Svg("x.SVG".into())))
        );
        assert_eq!(
            parse(args(&["--output=x.png", "a"])),
            Ok(plot(&["a"], Output::Png("x.png".into())))
        );
        assert_eq!(
            parse(args(&["-o", "y.png", "--", "-odd"])),
            Ok(plot(&["-odd"], Output::Png("y.png".into())))
        );
        assert_eq!(parse(args(&["a", "-h"])), Ok(Request::Help));
        assert_eq!(parse(args(&["--help"])), Ok(Request::Help));
    }

    #[test]
    fn usage_errors() {
        for (given, says) in [
            (&[][..], "no archive given"),
            (&["-o", "x.svg"][..], "no archive given"),
            (&["a", "-o"][..], "-o needs a file name"),
            (&["a", "-o", "x.gif"][..], "must end in .svg or .png"),
            (&["a", "-o", "x"][..], "must end in .svg or .png"),
            (&["a", "-o", "x.svg", "-o", "y.svg"][..], "-o given twice"),
            (&["a", "--width=3"][..], "unknown option --width"),
        ] {
            let err = parse(args(given)).unwrap_err();
            assert!(err.contains(says), "{given:?}: {err}");
        }
    }
}
