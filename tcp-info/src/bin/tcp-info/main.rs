//! `tcp-info`: records `tcp_info` for every TCP connection of this host (or network namespace)
//! into m-lab/tcp-info archives. See the README and `tcp-info --help`.
//!
//! The binary owns the command line ([`cli`]), the wiring of sources, pipeline and sinks
//! ([`daemon`]), the privileges it gives up once started ([`privileges`]), and three one-shot
//! commands: `-version` ([`version`]), `write-uuid-prefix PATH` ([`prefix_file`]) and
//! `plot ARCHIVE…` ([`plot_command`]); everything it wires is the `tcp_info` library.

mod cli;
mod daemon;
mod plot_command;
mod prefix_file;
mod privileges;
mod version;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    use std::io::IsTerminal as _;
    use std::process::ExitCode;

    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(plot_command::SUBCOMMAND))
    {
        return plot_command::main(std::env::args_os().skip(2));
    }
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(prefix_file::SUBCOMMAND)) {
        return write_uuid_prefix(args.next(), args.next());
    }
    let parsed = match cli::parse_process() {
        Ok(parsed) => parsed,
        Err(cli::CliError::Version) => {
            print_line(&version::report(daemon::GIT_COMMIT));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let code = e.exit_code();
            if code == 0 {
                print_line(&e.to_string());
            } else {
                eprintln!("tcp-info: {e}");
            }
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    let filter = if parsed.config.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a container's log.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .init();
    parsed.log_messages();
    parsed.config.log_arguments();
    match daemon::run(&parsed.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tcp-info write-uuid-prefix PATH`: exactly one argument.
#[cfg(target_os = "linux")]
fn write_uuid_prefix(
    path: Option<std::ffi::OsString>,
    extra: Option<std::ffi::OsString>,
) -> std::process::ExitCode {
    let (Some(path), None) = (path, extra) else {
        eprintln!("usage: tcp-info {} PATH", prefix_file::SUBCOMMAND);
        return std::process::ExitCode::from(2);
    };
    match prefix_file::write(std::path::Path::new(&path)) {
        Ok(prefix) => {
            print_line(prefix.as_str());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tcp-info: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes `text` and a newline to standard output. A reader that went away (`tcp-info -version
/// | head -1`) is not an error, and no failure to write panics, as `println!` would.
pub(crate) fn print_line(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("tcp-info: writing to standard output: {e}");
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("tcp-info collects from Linux sock_diag and runs on Linux only");
    std::process::exit(1);
}
