//! `xtask repeat`: run a command every interval, like a ticker, until SIGTERM.
//!
//! This is the `ss` baseline's driver. A run that takes longer than the interval delays the
//! next one (runs never overlap); missed ticks are dropped, as with Go's `time.Ticker`. The
//! command's output goes to /dev/null.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::interrupt::Interrupt;

/// Arguments of `xtask repeat`.
#[derive(Debug, clap::Args)]
pub struct RepeatArgs {
    /// Interval between starts, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub interval_ms: u64,
    /// Stop after this many runs (default: until SIGTERM).
    #[arg(long)]
    pub max_runs: Option<u64>,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true)]
    pub command: Vec<String>,
}

/// Runs the loop; returns the number of runs.
pub fn run(args: &RepeatArgs, interrupt: &Interrupt) -> anyhow::Result<u64> {
    let (prog, rest) = args.command.split_first().context("no command given")?;
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let mut runs = 0u64;
    let mut next = Instant::now();
    while !interrupt.is_set() && args.max_runs.is_none_or(|m| runs < m) {
        let status = Command::new(prog)
            .args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {prog}"))?;
        if !status.success() {
            // SIGTERM goes to the whole process group: a run killed by it is the normal end.
            if interrupt.is_set() {
                break;
            }
            anyhow::bail!("{prog} failed: {status}");
        }
        runs += 1;
        next += interval;
        let now = Instant::now();
        if next < now {
            next = now; // drop missed ticks
        } else if interrupt.sleep(next - now).is_err() {
            break;
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_at_the_interval_and_stops() {
        let args = RepeatArgs {
            interval_ms: 20,
            max_runs: Some(10),
            command: vec!["true".into()],
        };
        let start = Instant::now();
        assert_eq!(run(&args, &Interrupt::new()).unwrap(), 10);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(180) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let failing = RepeatArgs {
            interval_ms: 1,
            max_runs: Some(3),
            command: vec!["false".into()],
        };
        assert!(run(&failing, &Interrupt::new()).is_err());
        let stopped = Interrupt::new();
        stopped.set();
        assert_eq!(run(&args, &stopped).unwrap(), 0);
    }
}
