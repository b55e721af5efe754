//! The voxgate command line.
fn main() {}
