//! Which guest registers live in host registers while native code runs, and the host
//! registers generated code uses for itself.
//!
//! The mapping is static: a guest register keeps its host register across chained blocks,
//! so a loop that stays in native code never stores or reloads it. The ten mapped registers
//! are the ones guest code uses most (measured on a Debian boot and userland; see the README).

/// x86-64 register numbers, as the encoder takes them.
pub(crate) const RAX: u8 = 0;
pub(crate) const RCX: u8 = 1;
pub(crate) const RDX: u8 = 2;
pub(crate) const RBP: u8 = 5;
pub(crate) const RSI: u8 = 6;
pub(crate) const RDI: u8 = 7;
pub(crate) const R8: u8 = 8;
pub(crate) const R9: u8 = 9;
pub(crate) const R10: u8 = 10;
pub(crate) const R11: u8 = 11;
pub(crate) const R12: u8 = 12;
pub(crate) const R13: u8 = 13;
pub(crate) const R14: u8 = 14;

/// (guest x register, host register). `rbx` holds the hart, `r15` instret; `rax`, `rcx` and
/// `rdx` are scratch.
pub(crate) const MAPPED: [(u8, u8); 10] = [
    (2, R12),  // sp
    (8, R13),  // s0
    (10, R14), // a0
    (11, RBP), // a1
    (12, RSI), // a2
    (13, RDI), // a3
    (14, R8),  // a4
    (15, R9),  // a5
    (16, R10), // a6
    (17, R11), // a7
];

/// The host register holding guest register `x`, if it has one.
pub(crate) const fn host(x: u8) -> Option<u8> {
    let mut i = 0;
    while i < MAPPED.len() {
        if MAPPED[i].0 == x {
            return Some(MAPPED[i].1);
        }
        i += 1;
    }
    None
}

/// Host registers a call clobbers (System V ABI) that hold guest registers.
pub(crate) fn caller_saved(host: u8) -> bool {
    matches!(host, RSI | RDI | R8 | R9 | R10 | R11)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_registers_are_distinct_and_never_scratch() {
        for (i, &(g, h)) in MAPPED.iter().enumerate() {
            assert!(g != 0 && g < 32);
            assert!(![RAX, RCX, RDX, 3, 4, 15].contains(&h), "x{g} in a reserved register");
            for &(g2, h2) in &MAPPED[i + 1..] {
                assert!(g != g2 && h != h2);
            }
            assert_eq!(host(g), Some(h));
        }
        assert_eq!(host(0), None);
        assert_eq!(host(31), None);
    }
}
