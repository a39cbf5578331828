//! Developer and CI tasks.
mod format_bench;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench-format") => format_bench::run(&args[1..]),
        _ => anyhow::bail!("usage: cargo xtask bench-format"),
    }
}
