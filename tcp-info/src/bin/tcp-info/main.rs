//! `tcp-info`: records `tcp_info` for every TCP connection of this host (or network namespace)
//! into m-lab/tcp-info archives. See the README and `tcp-info --help`.
//!
//! The binary owns the command line ([`cli`]) and the wiring of sources, pipeline and sinks
//! ([`daemon`]); everything it wires is the `tcp_info` library.

mod cli;
mod daemon;

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    use std::process::ExitCode;
    let parsed = match cli::parse_process() {
        Ok(parsed) => parsed,
        Err(e) => {
            let code = e.exit_code();
            if code == 0 {
                println!("{e}");
            } else {
                eprintln!("tcp-info: {e}");
            }
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    let filter = if parsed.config.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("tcp-info collects from Linux sock_diag and runs on Linux only");
    std::process::exit(1);
}
