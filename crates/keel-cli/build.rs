//! Lays out the release binary's code: the functions that serve requests side by side, then
//! those start-up runs, then the rest (`symbol-order.txt`, made by `bench/layout.sh`).
//!
//! The kernel maps 64 KiB of code around every page a process touches. Laid out in no
//! particular order, start-up and the request path touched code all over keel's 19 MiB of
//! text and ~14 MiB of it stayed resident (docs/performance.md, "Round 6"). Listed functions
//! that a build no longer has are skipped; unlisted ones follow the listed.
//!
//! Only lld reads the list (`--symbol-ordering-file`), and lld is what Rust links with on
//! x86_64 Linux. Other targets, a linker chosen through RUSTFLAGS, debug builds and a checkout
//! without the file build exactly as before.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    let rustflags = var("CARGO_ENCODED_RUSTFLAGS");
    let lld_links = var("TARGET") == "x86_64-unknown-linux-gnu"
        && !rustflags.contains("linker")
        && !rustflags.contains("fuse-ld");
    if var("PROFILE") == "release" && lld_links && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // A list made from an older build names some functions this one does not have.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
