//! The way into native code and the way out, emitted once at the start of each code cache.
//!
//! `enter(hart, code)` saves the host's callee-saved registers, loads the hart pointer into
//! `rbx`, `instret` into `r15` and the mapped guest registers into theirs, and jumps to the
//! block. Blocks chain by plain jumps, so the stack stays as the trampoline left it (aligned
//! for calls); every exit jumps to `exit` with its code in `eax`, which stores the guest
//! registers and `instret` back and returns that code.

use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, VecAssembler};

use super::code::CodeCache;
use super::emit::layout::{off_x, INSTRET};
use super::regs::MAPPED;
use crate::hart::Hart;

/// The trampoline's signature: the hart, the block's address; returns the exit code.
pub(crate) type Enter = unsafe extern "sysv64" fn(*mut Hart, usize) -> u32;

/// Emits the trampoline into the (empty) cache; returns it and the address of the exit path.
pub(crate) fn emit(code: &mut CodeCache) -> (Enter, usize) {
    let base = code.next_address();
    let mut a: VecAssembler<X64Relocation> = VecAssembler::new(base);
    dynasm!(a
        ; .arch x64
        ; push rbx
        ; push rbp
        ; push r12
        ; push r13
        ; push r14
        ; push r15
        // Entered with rsp = 8 (mod 16); six pushes keep it so: realign for calls.
        ; sub rsp, 8
        ; mov rbx, rdi
        ; mov rax, rsi
        ; mov r15, [rbx + INSTRET]
    );
    for &(g, h) in &MAPPED {
        dynasm!(a ; .arch x64 ; mov Rq(h), [rbx + off_x(g)]);
    }
    dynasm!(a ; .arch x64 ; jmp rax);
    let exit_offset = a.offset().0;
    for &(g, h) in &MAPPED {
        dynasm!(a ; .arch x64 ; mov [rbx + off_x(g)], Rq(h));
    }
    dynasm!(a
        ; .arch x64
        ; mov [rbx + INSTRET], r15
        ; add rsp, 8
        ; pop r15
        ; pop r14
        ; pop r13
        ; pop r12
        ; pop rbp
        ; pop rbx
        ; ret
    );
    let bytes = a.finalize().expect("the trampoline has no labels to resolve");
    let start = code.push(&bytes).expect("an empty code cache holds the trampoline");
    assert_eq!(start, base);
    // SAFETY: `start` is the address of the code just emitted, which follows the System V
    // calling convention for `Enter`: it preserves the callee-saved registers and the stack,
    // and returns a u32 in eax.
    let enter = unsafe { std::mem::transmute::<usize, Enter>(start) };
    (enter, start + exit_offset)
}
