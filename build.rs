//! Build script: lays out the release binary's startup and idle code together.
//!
//! `link/startup-symbols.txt` lists the functions that a server with one check
//! runs from its start through its first scrapes (written by
//! `scripts/startup-symbols.sh`). Handed to the linker as a symbol ordering
//! file, those functions end up next to each other at the start of `.text`, so
//! the pages that an idle exporter maps are the few that hold them, instead of
//! one 64 KB fault-around window per function scattered over 23 MB of code
//! (README, Benchmarks). Symbols that a later build no longer has are skipped
//! without a warning: a stale list costs memory, never a failed build.
//!
//! Only for release builds for x86_64 Linux with glibc, whose default linker
//! since Rust 1.90 is LLD (the flag is LLD's). Set
//! `RUNBOOK_NO_SYMBOL_ORDER=1` to build with another linker.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=link/startup-symbols.txt");
    println!("cargo:rerun-if-env-changed=RUNBOOK_NO_SYMBOL_ORDER");
    let var = |key: &str| env::var(key).unwrap_or_default();
    let lld_by_default = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if !lld_by_default
        || var("PROFILE") != "release"
        || env::var_os("RUNBOOK_NO_SYMBOL_ORDER").is_some()
    {
        return;
    }
    let list = format!("{}/link/startup-symbols.txt", var("CARGO_MANIFEST_DIR"));
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={list}");
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
