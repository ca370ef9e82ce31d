//! What the built binary asks of the dynamic linker.

/// The C math functions come from `tributary-cmath`, so the binary does not
/// name glibc's libm, and the dynamic linker does not map it (0.65 MiB of
/// an idle agent's resident pages).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn does_not_load_libm() {
    let path = env!("CARGO_BIN_EXE_tributary");
    let binary = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let libc = b"libc.so.6\0";
    assert!(
        binary.windows(libc.len()).any(|w| w == libc),
        "{path} names no libc.so.6: not a dynamically linked glibc binary"
    );
    let libm = b"libm.so.6\0";
    assert!(
        !binary.windows(libm.len()).any(|w| w == libm),
        "{path} needs libm.so.6: a C math function is called that tributary-cmath does not define"
    );
}
