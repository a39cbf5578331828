//! Helpers for tests that need privileges.

/// Whether a test needing root can run. Without root it prints why it skips; with `CI=true`
/// it panics instead, so CI never silently skips.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root (network namespaces) and CI=true forbids skipping it"
    );
    eprintln!("skipping {test}: needs root to create network namespaces");
    false
}
