//! Shared helpers for the library's fixture tests.

use std::path::PathBuf;

/// `../shared/fixtures/m-lab` relative to the project root (the workspace directory).
///
/// Outside CI a missing fixture directory skips the calling test with a printed reason; under
/// `CI=true` it panics, because CI always has `shared/` beside the clone.
pub fn mlab_fixtures() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/m-lab");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "fixtures missing at {} (CI must have shared/ beside the clone)",
        dir.display()
    );
    eprintln!("SKIP: fixtures not found at {}", dir.display());
    None
}

/// Decompresses a whole fixture with the `zstd` crate.
pub fn decompress(path: &std::path::Path) -> Vec<u8> {
    let file =
        std::fs::File::open(path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    zstd::decode_all(file).unwrap_or_else(|e| panic!("decompressing {}: {e}", path.display()))
}
