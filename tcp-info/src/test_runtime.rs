//! The tokio runtime that unit tests of the edges (event socket, metrics endpoint) run their
//! servers on: shaped like the daemon's (two workers), one for the whole test binary because
//! tests run in parallel.

#![expect(
    clippy::expect_used,
    reason = "tests only: no runtime means no test can run"
)]

use std::sync::OnceLock;
use tokio::runtime::{Builder, Handle, Runtime};

/// The shared runtime's handle, created on first use.
pub(crate) fn handle() -> &'static Handle {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime for the tests")
        })
        .handle()
}
