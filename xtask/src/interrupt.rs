//! Ctrl-C / SIGTERM handling for long-running tasks.
//!
//! The first SIGINT or SIGTERM sets a flag; every wait in the benchmark polls it and returns
//! [`Interrupted`], so the error unwinds through the `Drop` guards that remove namespaces and
//! kill children. A second signal exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The error returned by waits when the user interrupted the run.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by a signal")]
pub struct Interrupted;

/// A shared "stop now" flag set by SIGINT/SIGTERM.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A flag no signal is wired to.
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag set by SIGINT and SIGTERM; a second signal terminates the process with status 1.
    pub fn install() -> anyhow::Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it runs (and exits) only when the flag is already set.
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&flag))
                .with_context(|| format!("installing the handler for signal {sig}"))?;
            signal_hook::flag::register(sig, Arc::clone(&flag))
                .with_context(|| format!("installing the handler for signal {sig}"))?;
        }
        Ok(Self(flag))
    }

    /// Whether a signal arrived.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sets the flag.
    #[cfg(test)]
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// `Err(Interrupted)` when a signal arrived.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.is_set() {
            Err(Interrupted)
        } else {
            Ok(())
        }
    }

    /// Sleeps for `d`, waking early (with `Err`) when a signal arrives.
    pub fn sleep(&self, d: Duration) -> Result<(), Interrupted> {
        let end = Instant::now() + d;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep((end - now).min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_returns_early_once_set() {
        let i = Interrupt::new();
        assert!(i.sleep(Duration::from_millis(10)).is_ok());
        let i2 = i.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            i2.set();
        });
        let start = Instant::now();
        assert!(i.sleep(Duration::from_secs(30)).is_err());
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().ok();
    }
}
