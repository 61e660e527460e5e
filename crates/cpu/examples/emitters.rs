//! How fast two x86-64 emitters make the code of one typical translated block: the block
//! entry check, three ALU ops, a load and a store with the inline TLB path (the store with
//! its page-flag test), a conditional branch with two exits, and the cold slow paths.
//! keel's translator uses dynasm-rs; iced-x86's `CodeAssembler` was the other candidate
//! (Cranelift was not: it compiles an order of magnitude slower still, see the README).
//!
//! `cargo run --release -p keel-cpu --example emitters --features emitter-bench`

// dynasm's macro passes register numbers through `.into()`.
#![allow(clippy::useless_conversion)]

use std::hint::black_box;
use std::time::Instant;

use dynasmrt::{dynasm, x64::X64Relocation, DynasmApi, DynasmLabelApi, VecAssembler};
use iced_x86::code_asm::*;

const BLOCKS: usize = 20_000;

fn dynasm_block(base: usize, r: [u8; 4]) -> Vec<u8> {
    let mut a: VecAssembler<X64Relocation> = VecAssembler::new(base);
    let [r0, r1, r2, r3] = r;
    let slow_load = a.new_dynamic_label();
    let slow_store = a.new_dynamic_label();
    let resume_load = a.new_dynamic_label();
    let resume_store = a.new_dynamic_label();
    let taken = a.new_dynamic_label();
    let exit = a.new_dynamic_label();
    dynasm!(a
        ; .arch x64
        ; cmp r15, [rbx + 0x208]
        ; jns =>exit
        ; lea Rq(r0), [Rq(r1) + 16]
        ; add Rq(r0), Rq(r2)
        ; xor Rq(r3), Rq(r0)
        ; lea rax, [Rq(r1) + 8]
        ; mov edx, eax
        ; shr edx, 12
        ; and edx, 255
        ; lea rdx, [rdx + rdx * 2]
        ; mov rcx, [rbx + 0x220]
        ; lea rcx, [rcx + rdx * 8]
        ; lea rdx, [rax + 7]
        ; and rdx, -4096
        ; cmp rdx, [rcx]
        ; jne =>slow_load
        ; add rax, [rcx + 16]
        ; mov Rq(r2), [rax]
        ; =>resume_load
        ; lea rax, [Rq(r1) + 24]
        ; mov edx, eax
        ; shr edx, 12
        ; and edx, 255
        ; lea rdx, [rdx + rdx * 2]
        ; mov rcx, [rbx + 0x220]
        ; lea rcx, [rcx + rdx * 8]
        ; lea rdx, [rax + 7]
        ; and rdx, -4096
        ; cmp rdx, [rcx + 8]
        ; jne =>slow_store
        ; add rax, [rcx + 16]
        ; mov rdx, rax
        ; sub rdx, [rbx + 0x228]
        ; shr rdx, 12
        ; add rdx, [rbx + 0x230]
        ; cmp BYTE [rdx], 0
        ; jne =>slow_store
        ; mov [rax], Rq(r3)
        ; =>resume_store
        ; cmp Rq(r0), Rq(r2)
        ; lea r15, [r15 + 9]
        ; jne =>taken
        ; jmp =>exit
        ; =>taken
        ; jmp =>exit
        ; =>slow_load
        ; lea rax, [Rq(r1) + 8]
        ; call =>exit
        ; test rdx, rdx
        ; jz =>exit
        ; mov Rq(r2), rax
        ; jmp =>resume_load
        ; =>slow_store
        ; lea rax, [Rq(r1) + 24]
        ; mov rdx, Rq(r3)
        ; call =>exit
        ; test eax, eax
        ; jz =>exit
        ; jmp =>resume_store
        ; =>exit
        ; mov eax, 1
        ; ret
    );
    a.finalize().expect("all labels are defined")
}

fn gpr(n: u8) -> AsmRegister64 {
    [rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15][n as usize]
}

fn iced_block(base: u64, r: [u8; 4]) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let [r0, r1, r2, r3] = r.map(gpr);
    let mut slow_load = a.create_label();
    let mut slow_store = a.create_label();
    let mut resume_load = a.create_label();
    let mut resume_store = a.create_label();
    let mut taken = a.create_label();
    let mut exit = a.create_label();
    a.cmp(r15, qword_ptr(rbx + 0x208))?;
    a.jns(exit)?;
    a.lea(r0, qword_ptr(r1 + 16))?;
    a.add(r0, r2)?;
    a.xor(r3, r0)?;
    a.lea(rax, qword_ptr(r1 + 8))?;
    a.mov(edx, eax)?;
    a.shr(edx, 12)?;
    a.and(edx, 255)?;
    a.lea(rdx, qword_ptr(rdx + rdx * 2))?;
    a.mov(rcx, qword_ptr(rbx + 0x220))?;
    a.lea(rcx, qword_ptr(rcx + rdx * 8))?;
    a.lea(rdx, qword_ptr(rax + 7))?;
    a.and(rdx, -4096)?;
    a.cmp(rdx, qword_ptr(rcx))?;
    a.jne(slow_load)?;
    a.add(rax, qword_ptr(rcx + 16))?;
    a.mov(r2, qword_ptr(rax))?;
    a.set_label(&mut resume_load)?;
    a.lea(rax, qword_ptr(r1 + 24))?;
    a.mov(edx, eax)?;
    a.shr(edx, 12)?;
    a.and(edx, 255)?;
    a.lea(rdx, qword_ptr(rdx + rdx * 2))?;
    a.mov(rcx, qword_ptr(rbx + 0x220))?;
    a.lea(rcx, qword_ptr(rcx + rdx * 8))?;
    a.lea(rdx, qword_ptr(rax + 7))?;
    a.and(rdx, -4096)?;
    a.cmp(rdx, qword_ptr(rcx + 8))?;
    a.jne(slow_store)?;
    a.add(rax, qword_ptr(rcx + 16))?;
    a.mov(rdx, rax)?;
    a.sub(rdx, qword_ptr(rbx + 0x228))?;
    a.shr(rdx, 12)?;
    a.add(rdx, qword_ptr(rbx + 0x230))?;
    a.cmp(byte_ptr(rdx), 0)?;
    a.jne(slow_store)?;
    a.mov(qword_ptr(rax), r3)?;
    a.set_label(&mut resume_store)?;
    a.cmp(r0, r2)?;
    a.lea(r15, qword_ptr(r15 + 9))?;
    a.jne(taken)?;
    a.jmp(exit)?;
    a.set_label(&mut taken)?;
    a.jmp(exit)?;
    a.set_label(&mut slow_load)?;
    a.lea(rax, qword_ptr(r1 + 8))?;
    a.call(exit)?;
    a.test(rdx, rdx)?;
    a.jz(exit)?;
    a.mov(r2, rax)?;
    a.jmp(resume_load)?;
    a.set_label(&mut slow_store)?;
    a.lea(rax, qword_ptr(r1 + 24))?;
    a.mov(rdx, r3)?;
    a.call(exit)?;
    a.test(eax, eax)?;
    a.jz(exit)?;
    a.jmp(resume_store)?;
    a.set_label(&mut exit)?;
    a.mov(eax, 1)?;
    a.ret()?;
    a.assemble(base)
}

fn main() -> Result<(), IcedError> {
    let regs = [[5u8, 6, 12, 13], [7, 8, 9, 14], [10, 11, 12, 5]];
    println!("one block ({BLOCKS} times, median of 5 rounds):");
    let mut dynasm_ns = Vec::new();
    let mut iced_ns = Vec::new();
    let (mut dynasm_bytes, mut iced_bytes) = (0, 0);
    for _ in 0..5 {
        let t = Instant::now();
        for i in 0..BLOCKS {
            dynasm_bytes = black_box(dynasm_block(0x7000_0000 + i * 256, regs[i % 3])).len();
        }
        dynasm_ns.push(t.elapsed().as_nanos() as f64 / BLOCKS as f64);
        let t = Instant::now();
        for i in 0..BLOCKS {
            iced_bytes = black_box(iced_block(0x7000_0000 + i as u64 * 256, regs[i % 3])?).len();
        }
        iced_ns.push(t.elapsed().as_nanos() as f64 / BLOCKS as f64);
    }
    dynasm_ns.sort_by(f64::total_cmp);
    iced_ns.sort_by(f64::total_cmp);
    println!("  dynasm-rs: {:6.0} ns, {dynasm_bytes} bytes", dynasm_ns[2]);
    println!("  iced-x86:  {:6.0} ns, {iced_bytes} bytes (it picks short jumps)", iced_ns[2]);
    Ok(())
}
