//! The code every block shares, emitted once at the start of each code cache: the way into
//! native code and the way out, and the thunks through which blocks call helpers.
//!
//! `enter(hart, code)` saves the host's callee-saved registers, loads the hart pointer into
//! `rbx`, `instret` into `r15` and the mapped guest registers into theirs, and jumps to the
//! block. Blocks chain by plain jumps, so the stack stays as the trampoline left it (aligned
//! for calls); every exit jumps to `exit` with its code in `eax`, which stores the guest
//! registers and `instret` back and returns that code.
//!
//! A block reaches a helper by `call`ing its thunk, which saves what the call would
//! clobber, realigns the stack, calls the helper and restores: so each call site is a few
//! bytes instead of a spill and reload of its own.

use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, VecAssembler};

use super::code::CodeCache;
use super::emit::layout::{off_x, INSTRET};
use super::helpers;
use super::regs::{self, MAPPED};
use crate::hart::Hart;

/// The trampoline's signature: the hart, the block's address; returns the exit code.
pub(crate) type Enter = unsafe extern "sysv64" fn(*mut Hart, usize) -> u32;

/// Addresses of the shared code blocks jump or call to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shared {
    pub enter: Enter,
    /// Stores the guest registers and returns the exit code in eax from `enter`.
    pub exit: usize,
    /// By access size (1, 2, 4, 8 bytes: index 0-3). Loads: virtual address in rax;
    /// return the value (zero-extended) in rax and 0 in rdx if the load raised an exception.
    /// Stores: address in rax, value in rdx; return 0 in eax on an exception.
    pub load: [usize; 4],
    pub store: [usize; 4],
    /// Runs the interpreter op rax points at (`helpers::run_op`) with every guest register
    /// and `instret` in the hart; returns its result in eax.
    pub run_op: usize,
}

type Asm = VecAssembler<X64Relocation>;

/// Emits the shared code into the (empty) cache.
pub(crate) fn emit(code: &mut CodeCache) -> Shared {
    let base = code.next_address();
    let mut a: Asm = VecAssembler::new(base);
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
    load_guest_registers(&mut a, true);
    dynasm!(a ; .arch x64 ; jmp rax);
    let exit = a.offset().0;
    store_guest_registers(&mut a, true);
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
    let loads = [
        helpers::load_u8 as *const () as usize,
        helpers::load_u16 as *const () as usize,
        helpers::load_u32 as *const () as usize,
        helpers::load_u64 as *const () as usize,
    ];
    let stores = [
        helpers::store_u8 as *const () as usize,
        helpers::store_u16 as *const () as usize,
        helpers::store_u32 as *const () as usize,
        helpers::store_u64 as *const () as usize,
    ];
    let load = loads.map(|f| thunk(&mut a, f, false));
    let store = stores.map(|f| thunk(&mut a, f, false));
    let run_op = thunk(&mut a, helpers::run_op as *const () as usize, true);
    let bytes = a.finalize().expect("the shared code has no labels to resolve");
    let start = code.push(&bytes).expect("an empty code cache holds the shared code");
    assert_eq!(start, base);
    // SAFETY: `start` is the address of the code just emitted, which follows the System V
    // calling convention for `Enter`: it preserves the callee-saved registers and the stack,
    // and returns a u32 in eax.
    let enter = unsafe { std::mem::transmute::<usize, Enter>(start) };
    Shared {
        enter,
        exit: start + exit,
        load: load.map(|o| start + o),
        store: store.map(|o| start + o),
        run_op: start + run_op,
    }
}

/// Emits a thunk for helper `f(hart, rax, rdx)` (the arguments arrive in scratch
/// registers: rsi and rdi hold guest registers until they are stored); returns its offset.
/// The guest registers in caller-saved host registers (`all`: every mapped one, and
/// instret) go to the hart and come back after; rax and rdx come back as the helper left
/// them.
fn thunk(a: &mut Asm, f: usize, all: bool) -> usize {
    let at = a.offset().0;
    // Entered by `call` from block code (rsp = 0 mod 16 there): 8 more re-aligns it.
    dynasm!(a ; .arch x64 ; sub rsp, 8);
    store_guest_registers(a, all);
    if all {
        dynasm!(a ; .arch x64 ; mov [rbx + INSTRET], r15);
    }
    dynasm!(a
        ; .arch x64
        ; mov rsi, rax
        ; mov rdi, rbx
        ; mov rax, QWORD f as i64
        ; call rax
    );
    load_guest_registers(a, all);
    if all {
        dynasm!(a ; .arch x64 ; mov r15, [rbx + INSTRET]);
    }
    dynasm!(a ; .arch x64 ; add rsp, 8 ; ret);
    at
}

/// Stores the mapped guest registers (`all`, or only those in caller-saved host
/// registers) into the hart.
fn store_guest_registers(a: &mut Asm, all: bool) {
    for &(g, h) in &MAPPED {
        if all || regs::caller_saved(h) {
            dynasm!(a ; .arch x64 ; mov [rbx + off_x(g)], Rq(h));
        }
    }
}

fn load_guest_registers(a: &mut Asm, all: bool) {
    for &(g, h) in &MAPPED {
        if all || regs::caller_saved(h) {
            dynasm!(a ; .arch x64 ; mov Rq(h), [rbx + off_x(g)]);
        }
    }
}
