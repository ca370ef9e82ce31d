//! Links the executable at a fixed address, as Go links Prometheus on
//! Linux (`-buildmode=exe`), instead of as a position-independent one.
//!
//! A PIE carries a relocation for every pointer in its read-only data
//! (vtables, string tables: 0.49 MB of `.rela.dyn` here), which the dynamic
//! loader applies at every start, dirtying those pages into private memory.
//! Linked at a fixed address the relocations are resolved once, by the
//! linker: the binary is 0.5 MB smaller and that data stays shared, clean
//! page cache. The price is that the executable itself loads at the same
//! address every time (heap, stack and libraries are still randomised);
//! `TRIBUTARY_PIE=1` at build time links a PIE instead.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TRIBUTARY_PIE");
    let target = |key: &str, value: &str| std::env::var(key).is_ok_and(|v| v == value);
    // glibc only: a static musl build is linked as a static PIE by rustc,
    // which a `-no-pie` would contradict.
    let glibc = target("CARGO_CFG_TARGET_OS", "linux") && target("CARGO_CFG_TARGET_ENV", "gnu");
    if glibc && !target("TRIBUTARY_PIE", "1") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
