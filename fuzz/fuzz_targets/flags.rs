//! The daemon's command line and environment (`-flag=value`, `--flag value`, `$FLAG`): any
//! arguments and variables give a configuration or a `CliError` (exit 2 naming the culprit),
//! never a panic. The binary's own parser is compiled in from its source.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports, reason = "the daemon uses what the fuzz target does not")]
#[path = "../../tcp-info/src/bin/tcp-info/cli/mod.rs"]
mod cli;

#[derive(Debug, Arbitrary)]
struct Input {
    args: Vec<Vec<u8>>,
    env: Vec<(String, Vec<u8>)>,
}

/// Whether `bytes` names the prefix-file flag or variable: the parser reads that file, and the
/// fuzzer's paths (`/dev/zero`, `/proc/kcore`) would test the file system, not the parser.
fn names_a_file_to_read(bytes: &[u8]) -> bool {
    let lower = bytes.to_ascii_lowercase();
    lower.windows(11).any(|w| w == b"prefix-file" || w == b"prefix_file")
}

fuzz_target!(|input: Input| {
    if input.args.iter().any(|a| names_a_file_to_read(a))
        || input.env.iter().any(|(k, _)| names_a_file_to_read(k.as_bytes()))
    {
        return;
    }
    let args = input.args.into_iter().map(OsString::from_vec);
    let env = |name: &str| {
        input
            .env
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| OsString::from_vec(value.clone()))
    };
    match cli::parse(args, &env) {
        Ok(parsed) => drop(parsed.config.argument_lines()),
        Err(error) => drop((error.to_string(), error.exit_code())),
    }
});
