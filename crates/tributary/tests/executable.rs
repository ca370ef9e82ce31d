//! The executable as built: linked at a fixed address on glibc Linux
//! (`build.rs`), so the dynamic loader has no relocations to apply to its
//! read-only data at start-up.

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn is_linked_at_a_fixed_address_unless_a_pie_is_asked_for() {
    let bin = env!("CARGO_BIN_EXE_tributary");
    let header = match std::fs::read(bin) {
        Ok(b) => b,
        Err(e) => panic!("reading {bin}: {e}"),
    };
    assert_eq!(header.get(..4), Some(&b"\x7fELF"[..]), "{bin} is not ELF");
    // e_type, little-endian at offset 16: 2 = ET_EXEC, 3 = ET_DYN (a PIE).
    let e_type = header.get(16..18).map(|t| u16::from_le_bytes([t[0], t[1]]));
    let want = if option_env!("TRIBUTARY_PIE") == Some("1") { 3 } else { 2 };
    assert_eq!(e_type, Some(want), "ELF type of {bin}");
}
