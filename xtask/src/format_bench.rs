//! `cargo xtask bench-format` (in progress).

/// Runs the format benchmark.
pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("bench-format is not written yet")
}
