//! Emits one block of x86-64 code with dynasm-rs.
//!
//! A block's code is: the service check, the instructions in order (integer ALU and
//! M-extension inline in `alu.rs`, loads and stores with the TLB fast path inline in
//! `mem.rs`, jumps and branches in `flow.rs`, everything else through the interpreter's
//! handler), the way out if the block runs off its end, and then the cold stubs (slow paths,
//! exits) that the hot code jumps to. Every instruction that can trap has a stub that exits
//! with its page offset and position, so exceptions are precise without any unwinding.

mod alu;
mod atomic;
mod flow;
mod fp;
mod mem;

use dynasmrt::{dynasm, x64::X64Relocation, DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler};

use super::helpers;
use super::regs::{self, RAX};
use super::trampoline::Shared;
use super::{stop_code, JitConfig, EXIT_LOOKUP};
use crate::insn::{flag, Insn, Opcode};
use crate::interp::op::Op;

/// Offsets of the hart fields generated code uses.
pub(crate) mod layout {
    use std::mem::offset_of;

    use crate::hart::{Csrs, Hart, LrReservation};
    use crate::jit::JitCtx;

    const fn off(o: usize) -> i32 {
        assert!(o < i32::MAX as usize);
        o as i32
    }

    pub const X: i32 = off(offset_of!(Hart, x));
    pub const PC: i32 = off(offset_of!(Hart, pc));
    pub const INSTRET: i32 = off(offset_of!(Hart, instret));
    pub const DEADLINE: i32 = off(offset_of!(Hart, deadline));
    pub const BLOCK_VPC: i32 = off(offset_of!(Hart, block_vpc));
    const F: i32 = off(offset_of!(Hart, f));
    const CSR: usize = offset_of!(Hart, csr);
    pub const MSTATUS: i32 = off(CSR + offset_of!(Csrs, mstatus));
    pub const FFLAGS: i32 = off(CSR + offset_of!(Csrs, fflags));
    pub const FRM: i32 = off(CSR + offset_of!(Csrs, frm));
    const JIT: usize = offset_of!(Hart, jit);
    pub const JIT_TLB: i32 = off(JIT + offset_of!(JitCtx, tlb));
    pub const JIT_JUMP: i32 = off(JIT + offset_of!(JitCtx, jump));
    pub const JIT_TAG: i32 = off(JIT + offset_of!(JitCtx, tag));
    pub const JIT_GLOBAL_TAG: i32 = off(JIT + offset_of!(JitCtx, global_tag));
    pub const JIT_PATCH: i32 = off(JIT + offset_of!(JitCtx, patch));
    pub const JIT_PAGE_FLAGS: i32 = off(JIT + offset_of!(JitCtx, page_flags));
    pub const JIT_RAM_HOST: i32 = off(JIT + offset_of!(JitCtx, ram_host));
    pub const JIT_RAM_BASE: i32 = off(JIT + offset_of!(JitCtx, ram_base));
    const RESERVATION: usize = offset_of!(Hart, reservation);
    pub const RESERVATION_ADDR: i32 = off(RESERVATION + offset_of!(LrReservation, addr));
    pub const RESERVATION_VALUE: i32 = off(RESERVATION + offset_of!(LrReservation, value));

    /// Where guest register `x` lives in the hart.
    pub const fn off_x(x: u8) -> i32 {
        X + 8 * x as i32
    }

    /// Where FP register `f` lives in the hart.
    pub const fn off_f(f: u8) -> i32 {
        F + 8 * (f & 31) as i32
    }
}

use layout::*;

pub(super) type Asm = VecAssembler<X64Relocation>;

/// Cold code a block's hot path jumps to, emitted after the block.
enum Stub {
    /// The service deadline had passed at block entry: exit, to go on at the block's start.
    Service { label: DynamicLabel, page_off: u16 },
    /// A load or store missed the fast path.
    Memory { label: DynamicLabel, resume: DynamicLabel, insn: Insn, page_off: u16, idx: u8 },
    /// A same-page direct jump not chained yet: exit so the run loop can chain it.
    Chain { label: DynamicLabel, target_off: u16, site: usize },
    /// The instruction at `page_off` did not complete: exit with its position.
    Stop { label: DynamicLabel, page_off: u16, idx: u8 },
    /// Run the instruction through its interpreter handler (`op`), then go on at `resume`:
    /// the cases an inline translation leaves out.
    Fallback { label: DynamicLabel, resume: DynamicLabel, op: *const Op, page_off: u16, idx: u8 },
}

/// The state of one block's translation.
pub(super) struct Emitter<'a> {
    a: Asm,
    config: &'a JitConfig,
    /// Executable address the code will have (jump sites are patched by address).
    base: usize,
    /// The trampoline's exit path and the helper thunks.
    shared: &'a Shared,
    /// Instructions in the block: what `instret` grows by when it runs to its end.
    insns: u32,
    stubs: Vec<Stub>,
    /// An earlier F/D instruction of the block checked that FS is not Off, and one marked
    /// the FP state dirty (see `fp.rs`).
    fs_checked: bool,
    fs_dirty: bool,
    /// The host has FMA3 (fused multiply-add with one rounding).
    fma: bool,
    /// Guest registers that borrow, for this block, the host register of a mapped guest
    /// register the block does not use: (guest, lender, host register). See `swaps`.
    swaps: Vec<(u8, u8, u8)>,
    /// Whether the code being emitted runs with the swaps in place.
    swapped: bool,
}

/// Translates a block: its ops (without the interpreter's trailing `continue_at`), the page
/// offset it starts at, for code placed at `base`. Returns the code and the fallback ops it
/// points into, or `None` if a displacement does not fit (never for a sane cache).
pub(super) fn translate_block(
    config: &JitConfig,
    base: usize,
    shared: &Shared,
    ops: &[Op],
    page_off: u16,
) -> Option<(Vec<u8>, Box<[Op]>)> {
    let insns: Vec<Insn> = ops.iter().map(Op::insn).collect();
    // The interpreter ops inline code can't replace, in pairs (see `helpers::run_op`), with
    // page offsets, as their handlers run with `block_vpc` holding the virtual page.
    let mut fallback = Vec::new();
    for (op, insn) in ops.iter().zip(&insns) {
        if needs_handler(insn) {
            let mut op = *op;
            op.pc_off += page_off;
            fallback.push(op);
            fallback.push(Op::new(helpers::end_of_op));
        }
    }
    let fallback = fallback.into_boxed_slice();
    let mut e = Emitter {
        a: VecAssembler::new(base),
        config,
        base,
        shared,
        insns: insns.len() as u32,
        stubs: Vec::new(),
        fs_checked: false,
        fs_dirty: false,
        fma: std::arch::is_x86_feature_detected!("fma"),
        swaps: choose_swaps(&insns),
        swapped: false,
    };
    e.service_check(page_off);
    e.enter_swaps();
    let mut next_fallback = 0;
    let mut ended = false;
    for (op, insn) in ops.iter().zip(&insns) {
        let at = page_off + op.pc_off;
        if fp::translated(insn.op) {
            e.fp(insn, &fallback[next_fallback], at, op.idx);
            next_fallback += 2;
        } else if atomic::translated(insn.op) {
            e.amo(insn, &fallback[next_fallback], at, op.idx);
            next_fallback += 2;
        } else if translated_inline(insn) {
            e.instruction(insn, at, op.idx);
        } else {
            e.fallback(insn, &fallback[next_fallback], at, op.idx);
            next_fallback += 2;
        }
        ended = insn.ends_block();
    }
    if !ended {
        let last = ops.last()?;
        let end = page_off + last.pc_off + last.len as u16;
        e.count_block();
        e.goto_offset(end as i64);
    }
    e.emit_stubs();
    let bytes = e.a.finalize().ok()?;
    Some((bytes, fallback))
}

/// Which unmapped guest registers get a host register for the block: each one used at
/// least `MIN_SWAP_USES` times (more where the block calls handlers, which cost a store and
/// a load per swap each) borrows the host register of a mapped guest register the block
/// never names, the most used first.
fn choose_swaps(insns: &[Insn]) -> Vec<(u8, u8, u8)> {
    const MIN_SWAP_USES: u32 = 3;
    let mut uses = [0u32; 32];
    let mut calls = 0;
    for insn in insns {
        let flags = insn.op.flags();
        if flags & flag::FD == 0 {
            uses[insn.rd as usize] += 1;
        }
        if flags & flag::F1 == 0 {
            uses[insn.rs1 as usize] += 1;
        }
        if flags & flag::F2 == 0 {
            uses[insn.rs2 as usize] += 1;
        }
        if !translated_inline(insn) && !fp::translated(insn.op) && !atomic::translated(insn.op) {
            calls += 1;
        }
    }
    uses[0] = 0;
    let mut lenders: Vec<(u8, u8)> =
        regs::MAPPED.iter().copied().filter(|&(g, _)| uses[g as usize] == 0).collect();
    let mut wanted: Vec<u8> = (1..32u8)
        .filter(|&x| regs::host(x).is_none() && uses[x as usize] >= MIN_SWAP_USES + 2 * calls)
        .collect();
    wanted.sort_by_key(|&x| std::cmp::Reverse(uses[x as usize]));
    wanted.into_iter().filter_map(|x| lenders.pop().map(|(g, h)| (x, g, h))).collect()
}

/// Instructions whose interpreter handler the code may call: those not translated inline,
/// and the F/D ones and AMOs, whose inline forms fall back to it.
fn needs_handler(insn: &Insn) -> bool {
    !translated_inline(insn) || fp::translated(insn.op) || atomic::translated(insn.op)
}

/// Integer instructions the emitter translates itself (`fp.rs` has the F/D ones,
/// `atomic.rs` the AMOs); the rest run through their interpreter handler.
fn translated_inline(insn: &Insn) -> bool {
    use Opcode::*;
    insn.op.flags() & flag::FP == 0
        && !matches!(
            insn.op,
            FenceI
                | Ecall
                | Ebreak
                | Sret
                | Mret
                | Wfi
                | SfenceVma
                | Csrrw
                | Csrrs
                | Csrrc
                | Csrrwi
                | Csrrsi
                | Csrrci
                | Illegal
        )
        && !is_atomic(insn.op)
}

fn is_atomic(op: Opcode) -> bool {
    (Opcode::LrW as u8..=Opcode::AmomaxuD as u8).contains(&(op as u8))
}

impl Emitter<'_> {
    fn instruction(&mut self, insn: &Insn, page_off: u16, idx: u8) {
        use Opcode::*;
        match insn.op {
            Lui | Auipc => self.upper(insn, page_off),
            Jal | Jalr => self.jump(insn, page_off),
            Beq | Bne | Blt | Bge | Bltu | Bgeu => self.branch(insn, page_off),
            Lb | Lh | Lw | Ld | Lbu | Lhu | Lwu | Sb | Sh | Sw | Sd => {
                self.memory(insn, page_off, idx)
            }
            Fence => self.fence(insn),
            _ => self.alu(insn),
        }
    }

    /// Exits to the run loop when the service deadline has come (`Hart::service_due`),
    /// before anything runs.
    fn service_check(&mut self, page_off: u16) {
        let label = self.a.new_dynamic_label();
        dynasm!(self.a
            ; .arch x64
            ; cmp r15, [rbx + DEADLINE]
            ; jns =>label
        );
        self.stubs.push(Stub::Service { label, page_off });
    }

    /// The block ran to its end: give borrowed host registers back and count its
    /// instructions (flags untouched).
    fn count_block(&mut self) {
        self.leave_swaps();
        let n = self.insns as i32;
        dynasm!(self.a ; .arch x64 ; lea r15, [r15 + n]);
    }

    /// At block entry: the lenders' values go to the hart, the borrowers' come in.
    fn enter_swaps(&mut self) {
        for &(x, lender, h) in &self.swaps {
            dynasm!(self.a
                ; .arch x64
                ; mov [rbx + off_x(lender)], Rq(h)
                ; mov Rq(h), [rbx + off_x(x)]
            );
        }
        self.swapped = !self.swaps.is_empty();
    }

    /// Before leaving the block or calling a thunk (which sees the static mapping): the
    /// borrowers' values go to the hart, the lenders' come back.
    fn leave_swaps(&mut self) {
        if !self.swapped {
            return;
        }
        for &(x, lender, h) in &self.swaps {
            dynasm!(self.a
                ; .arch x64
                ; mov [rbx + off_x(x)], Rq(h)
                ; mov Rq(h), [rbx + off_x(lender)]
            );
        }
        self.swapped = false;
    }

    /// After a thunk returned (the lenders' values are still in the hart): the borrowers'
    /// values, which the helper may have changed, come back.
    fn resume_swaps(&mut self) {
        for &(x, _, h) in &self.swaps {
            dynasm!(self.a ; .arch x64 ; mov Rq(h), [rbx + off_x(x)]);
        }
        self.swapped = !self.swaps.is_empty();
    }

    /// The host register holding guest register `x` at this point of the code, if any.
    fn host(&self, x: u8) -> Option<u8> {
        if self.swapped {
            for &(g, lender, h) in &self.swaps {
                if g == x {
                    return Some(h);
                }
                if lender == x {
                    return None;
                }
            }
        }
        regs::host(x)
    }

    /// The host register holding guest register `x`: its own, or `scratch` loaded from the
    /// hart (zeroed for x0).
    fn src(&mut self, x: u8, scratch: u8) -> u8 {
        if x == 0 {
            dynasm!(self.a ; .arch x64 ; xor Rd(scratch), Rd(scratch));
            return scratch;
        }
        match self.host(x) {
            Some(h) => h,
            None => {
                dynasm!(self.a ; .arch x64 ; mov Rq(scratch), [rbx + off_x(x)]);
                scratch
            }
        }
    }

    /// Where to compute a value for guest register `x`: its host register, or rax (then
    /// [`Emitter::commit`] stores it).
    fn dst(&self, x: u8) -> u8 {
        self.host(x).unwrap_or(RAX)
    }

    /// Stores a value computed in `r` to guest register `x` if it lives in the hart.
    fn commit(&mut self, x: u8, r: u8) {
        if x != 0 && self.host(x).is_none() {
            dynasm!(self.a ; .arch x64 ; mov [rbx + off_x(x)], Rq(r));
        }
    }

    /// `mov dst, src` unless they are the same register.
    fn mov(&mut self, dst: u8, src: u8) {
        if dst != src {
            dynasm!(self.a ; .arch x64 ; mov Rq(dst), Rq(src));
        }
    }

    /// A jump (`opcode` 0xe9) or call (0xe8) to an address outside this block's code, in
    /// the same cache.
    fn rel32(&mut self, opcode: u8, target: usize) {
        let here = self.base + self.a.offset().0 + 5;
        let rel = i32::try_from(target as i64 - here as i64).expect("code cache below 2 GiB");
        dynasm!(self.a ; .arch x64 ; .bytes [opcode] ; .i32 rel);
    }

    /// Calls one of the shared thunks (see `trampoline.rs`).
    fn call_thunk(&mut self, thunk: usize) {
        self.rel32(0xe8, thunk);
    }

    /// Exits to the run loop with `code` (`hart.pc` and the rest already set).
    fn exit_with(&mut self, code: u32) {
        dynasm!(self.a ; .arch x64 ; mov eax, code as i32);
        self.rel32(0xe9, self.shared.exit);
    }

    /// A label whose stub exits with "the instruction at `page_off` did not complete".
    fn stop_label(&mut self, page_off: u16, idx: u8) -> DynamicLabel {
        let label = self.a.new_dynamic_label();
        self.stubs.push(Stub::Stop { label, page_off, idx });
        label
    }

    /// An instruction run by its interpreter handler ([`helpers::run_op`]).
    fn fallback(&mut self, insn: &Insn, op: &Op, page_off: u16, idx: u8) {
        self.call_handler(op, page_off, idx, !insn.ends_block());
        // A CSR write may have changed FS: the next F/D instruction checks it again.
        self.fs_checked = false;
        self.fs_dirty = false;
        if insn.ends_block() {
            // The handler set the next pc; the run loop must see what it changed.
            self.count_block();
            self.exit_with(EXIT_LOOKUP);
        }
    }

    /// Calls `op`'s handler, exiting if the instruction did not complete. The handler may
    /// read and write any guest register and `instret`, so all of them go through the hart.
    /// `resume`: the block goes on after it (else it exits, the swaps undone).
    fn call_handler(&mut self, op: *const Op, page_off: u16, idx: u8, resume: bool) {
        let stop = self.stop_label(page_off, idx);
        dynasm!(self.a ; .arch x64 ; mov rax, QWORD op as i64);
        self.leave_swaps();
        self.call_thunk(self.shared.run_op);
        dynasm!(self.a ; .arch x64 ; test eax, eax ; jz =>stop);
        if resume {
            self.resume_swaps();
        }
    }

    /// FENCE: x86 keeps every order RVWMO's FENCE asks for except a store before a later
    /// load; a fence ordering those (predecessor W, successor R, not FENCE.TSO) needs
    /// `mfence` (unprivileged spec §2.7, A.5).
    fn fence(&mut self, insn: &Insn) {
        if crate::insn::fence_orders_store_load(insn.raw) {
            dynasm!(self.a ; .arch x64 ; mfence);
        }
    }

    fn emit_stubs(&mut self) {
        // Stubs may add stubs (a slow path's exit): emit until none is left.
        while let Some(stub) = self.stubs.pop() {
            // Slow paths and fallbacks are entered from the block's body, with the swaps in
            // place; the exits are entered with them undone.
            self.swapped = matches!(stub, Stub::Memory { .. } | Stub::Fallback { .. })
                && !self.swaps.is_empty();
            match stub {
                Stub::Service { label, page_off } => {
                    dynasm!(self.a ; .arch x64 ; =>label);
                    self.set_pc(page_off as i64);
                    self.exit_with(EXIT_LOOKUP);
                }
                Stub::Memory { label, resume, insn, page_off, idx } => {
                    dynasm!(self.a ; .arch x64 ; =>label);
                    self.memory_slow_path(&insn, resume, page_off, idx);
                }
                Stub::Chain { label, target_off, site } => {
                    dynasm!(self.a ; .arch x64 ; =>label);
                    self.set_pc(target_off as i64);
                    dynasm!(self.a
                        ; .arch x64
                        ; mov rax, QWORD site as i64
                        ; mov [rbx + JIT_PATCH], rax
                    );
                    self.exit_with(super::EXIT_CHAIN);
                }
                Stub::Stop { label, page_off, idx } => {
                    dynasm!(self.a ; .arch x64 ; =>label);
                    self.exit_with(stop_code(page_off, idx));
                }
                Stub::Fallback { label, resume, op, page_off, idx } => {
                    dynasm!(self.a ; .arch x64 ; =>label);
                    self.call_handler(op, page_off, idx, true);
                    dynasm!(self.a ; .arch x64 ; jmp =>resume);
                }
            }
        }
    }

    /// `hart.pc` = the running page + `offset` (uses rax).
    fn set_pc(&mut self, offset: i64) {
        dynasm!(self.a ; .arch x64 ; mov rax, [rbx + BLOCK_VPC]);
        self.add_imm(RAX, offset);
        dynasm!(self.a ; .arch x64 ; mov [rbx + PC], rax);
    }

    /// `r += imm` for any 64-bit `imm` (uses rcx when it does not fit 32 bits).
    fn add_imm(&mut self, r: u8, imm: i64) {
        if let Ok(imm) = i32::try_from(imm) {
            if imm != 0 {
                dynasm!(self.a ; .arch x64 ; add Rq(r), imm);
            }
        } else {
            dynasm!(self.a ; .arch x64 ; mov rcx, QWORD imm ; add Rq(r), rcx);
        }
    }
}
