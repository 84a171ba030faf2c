//! The `keel` binary: argument parsing and wiring only.

fn main() {
    println!("keel {}", env!("CARGO_PKG_VERSION"));
}
