//! Developer and CI tasks (in progress).
fn main() {}
