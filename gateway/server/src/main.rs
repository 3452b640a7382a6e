//! The `portico` binary (being written).
fn main() {}
