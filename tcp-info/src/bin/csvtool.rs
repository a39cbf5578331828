//! csvtool: converts one tcp-info archive to CSV (in progress).
fn main() {}
