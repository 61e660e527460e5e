//! Save/restore of a hart's state: a program interrupted halfway and continued on a fresh hart
//! ends exactly where the uninterrupted one does, and every CSR survives serde.

use std::sync::Arc;

use keel_memory::GuestRam;

use super::*;
use crate::consts::{csr as n, status, MENVCFG_STCE};
use crate::{Bus, Exit, HartSignals, SATP_SV48};

const RAM: u64 = 0x8000_0000;
const RAM_SIZE: u64 = 1 << 16;
/// `a7` of the program's two ecalls.
const CHECKPOINT: u64 = 0x4b_454c;
const DONE: u64 = 0x444f_4e45;

/// No devices, and a clock that stands still so both runs read the same time.
struct NoDevices;

impl Bus for NoDevices {
    fn read(&self, _hart: usize, _addr: u64, _size: u8) -> Option<u64> {
        None
    }
    fn write(&self, _hart: usize, _addr: u64, _size: u8, _value: u64) -> bool {
        false
    }
    fn time(&self) -> u64 {
        1234
    }
    fn timebase_hz(&self) -> u64 {
        10_000_000
    }
}

/// S-mode code (riscv64-linux-gnu-as -march=rv64gc, `.option norvc`, linked at RAM). Data
/// lives at RAM + 0x1000. Integer and FP loops before and after an SBI "checkpoint" ecall,
/// an LR before it whose SC comes after it, and an illegal instruction trapped by S-mode.
const PROGRAM: [u32; 60] = [
    0x00000297, // auipc t0, 0
    0x0e828293, // addi  t0, t0, 232     (data_addr)
    0x0002b283, // ld    t0, 0(t0)       t0 = data
    0x00000e17, // auipc t3, 0
    0x0c8e0e13, // addi  t3, t3, 200     (handler)
    0x105e1073, // csrw  stvec, t3
    0x00000413, // li    s0, 0
    0x12c00493, // li    s1, 300
    0x00700913, // li    s2, 7
    0xd2297453, // fcvt.d.l fs0, s2
    0x00300993, // li    s3, 3
    0xd229f4d3, // fcvt.d.l fs1, s3
    0x03390933, // loop1: mul s2, s2, s3
    0x00b90913, // addi  s2, s2, 11
    0x1a947453, // fdiv.d fs0, fs0, fs1  (inexact: sets fflags.NX)
    0x02947453, // fadd.d fs0, fs0, fs1
    0x03f47313, // andi  t1, s0, 63
    0x00331313, // slli  t1, t1, 3
    0x00530333, // add   t1, t1, t0
    0x01233023, // sd    s2, 0(t1)
    0x20833027, // fsd   fs0, 512(t1)
    0x00140413, // addi  s0, s0, 1
    0xfc944ce3, // blt   s0, s1, loop1
    0x14091073, // csrw  sscratch, s2
    0x1002b32f, // lr.d  t1, (t0)
    0x004b48b7, // lui   a7, 0x4b4
    0x54c8889b, // addiw a7, a7, 1356    (CHECKPOINT)
    0x00000073, // ecall
    0x00130393, // addi  t2, t1, 1
    0x1872beaf, // sc.d  t4, t2, (t0)    succeeds only if the reservation survived
    0x01d2b423, // sd    t4, 8(t0)
    0x00000413, // li    s0, 0
    0x03390933, // loop2: mul s2, s2, s3
    0x00894933, // xor   s2, s2, s0
    0x12947453, // fmul.d fs0, fs0, fs1
    0x5a047453, // fsqrt.d fs0, fs0
    0x03f47313, // andi  t1, s0, 63
    0x00331313, // slli  t1, t1, 3
    0x00530333, // add   t1, t1, t0
    0x00033f03, // ld    t5, 0(t1)
    0x012f0f33, // add   t5, t5, s2
    0x41e33023, // sd    t5, 1024(t1)
    0x00140413, // addi  s0, s0, 1
    0xfc944ae3, // blt   s0, s1, loop2
    0x00000000, // illegal instruction   to handler, which skips it
    0xc0202573, // rdinstret a0
    0xc00025f3, // rdcycle a1
    0xc0102673, // rdtime a2
    0x001026f3, // frflags a3
    0x444f58b7, // lui   a7, 0x444f5
    0xe458889b, // addiw a7, a7, -443    (DONE)
    0x00000073, // ecall
    0x0000006f, // j     .
    0x14102ff3, // handler: csrr t6, sepc
    0x004f8f93, // addi  t6, t6, 4
    0x141f9073, // csrw  sepc, t6
    0x10200073, // sret
    0x00000013, // nop                   (alignment)
    0x80001000, // data_addr: .dword 0x80001000
    0x00000000,
];

fn new_cpu(ram: &Arc<GuestRam>) -> Cpu {
    let signals = Arc::new(HartSignals::new());
    Cpu::new(Hart::new(0, ram.clone(), Arc::new(NoDevices), signals))
}

/// Runs until the program's ecall with `a7 == expect`, and completes it.
fn run_to(cpu: &mut Cpu, expect: u64) {
    assert_eq!(cpu.run(), Exit::Sbi, "pc {:#x}", cpu.hart().pc());
    assert_eq!(cpu.hart().x(17), expect);
    cpu.hart_mut().finish_ecall();
}

fn ram_contents(ram: &GuestRam) -> Vec<u8> {
    let mut buf = vec![0; RAM_SIZE as usize];
    ram.read_slice(RAM, &mut buf).unwrap();
    buf
}

#[test]
fn a_program_saved_halfway_ends_the_same_on_a_fresh_hart() {
    let ram = Arc::new(GuestRam::new(RAM, RAM_SIZE).unwrap());
    let code: Vec<u8> = PROGRAM.iter().flat_map(|i| i.to_le_bytes()).collect();
    ram.write_slice(RAM, &code).unwrap();
    let mut first = new_cpu(&ram);
    first.reset(RAM, Privilege::Supervisor, true);
    run_to(&mut first, CHECKPOINT);

    let saved = first.save_state();
    assert!(saved.reservation.is_some(), "the LR's reservation is part of the state");
    assert!(saved.csr.fflags != 0 && saved.csr.minstret > 1000);
    // Through JSON, as a snapshot file would carry it, into a hart that never ran.
    let json = serde_json::to_string(&saved).unwrap();
    let restored: HartState = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, saved);
    let ram2 = Arc::new(GuestRam::new(RAM, RAM_SIZE).unwrap());
    ram2.write_slice(RAM, &ram_contents(&ram)).unwrap();
    let mut second = new_cpu(&ram2);
    second.restore_state(&restored).unwrap();
    assert_eq!(second.save_state(), saved);

    run_to(&mut first, DONE);
    run_to(&mut second, DONE);
    let end = first.save_state();
    assert_eq!(second.save_state(), end);
    assert_eq!(ram_contents(&ram2), ram_contents(&ram));
    // The run got where the test meant it to: the SC succeeded, the trap went to S-mode.
    assert_eq!(ram.load::<u64>(RAM + 0x1008), Some(0));
    assert_eq!(end.csr.scause, crate::consts::cause::ILLEGAL_INSN);
    assert_eq!(end.x[12], 1234, "rdtime");
    assert_eq!(end.x[10] + 7, end.csr.minstret, "rdinstret, 7 instructions before the end");
}

/// Every stateful CSR but mstatus, written with a distinctive value the hart keeps.
const WRITES: &[(u16, u64)] = &[
    (n::MEDELEG, 0xb1f3),
    (n::MIDELEG, 0x222),
    (n::MIE, 0xaaa),
    (n::MENVCFG, 1),
    (n::MIP, 0x222),
    (n::MENVCFG, MENVCFG_STCE | 1),
    (n::MTVEC, 0x8000_1001),
    (n::MSCRATCH, 0x1111_2222_3333_4444),
    (n::MEPC, 0x8000_2220),
    (n::MCAUSE, 0x8000_0000_0000_0009),
    (n::MTVAL, 0xdead_beef),
    (n::MCOUNTEREN, 0x7),
    (n::MCOUNTINHIBIT, 0x5),
    (n::STVEC, 0xffff_ffc0_0000_1000),
    (n::SSCRATCH, 0x5555_6666),
    (n::SEPC, 0xffff_ffff_8000_0ffe),
    (n::SCAUSE, 0xd),
    (n::STVAL, 0x1_0000_0000),
    (n::SCOUNTEREN, 0x2),
    (n::SENVCFG, 1),
    (n::SATP, (SATP_SV48 << 60) | (0xe << 44) | 0x8_0123),
    (n::STIMECMP, 0x0123_4567_89ab),
    (n::FCSR, (3 << 5) | 0x15),
    // minstret first: mcycle counts on from wherever minstret is put.
    (n::MINSTRET, 0x6666_0000),
    (n::MCYCLE, 0x7777_0000),
];

/// Every CSR the hart can read (the constant ones included, as a check on the restore).
const READS: &[u16] = &[
    n::FFLAGS,
    n::FRM,
    n::FCSR,
    n::CYCLE,
    n::TIME,
    n::INSTRET,
    n::SSTATUS,
    n::SIE,
    n::STVEC,
    n::SCOUNTEREN,
    n::SENVCFG,
    n::SSCRATCH,
    n::SEPC,
    n::SCAUSE,
    n::STVAL,
    n::SIP,
    n::STIMECMP,
    n::SATP,
    n::MHARTID,
    n::MSTATUS,
    n::MISA,
    n::MEDELEG,
    n::MIDELEG,
    n::MIE,
    n::MTVEC,
    n::MCOUNTEREN,
    n::MENVCFG,
    n::MCOUNTINHIBIT,
    n::MSCRATCH,
    n::MEPC,
    n::MCAUSE,
    n::MTVAL,
    n::MIP,
    n::PMPCFG0,
    n::PMPADDR0,
    n::MCYCLE,
    n::MINSTRET,
];

fn read_all(h: &mut Hart) -> Vec<(u16, u64)> {
    READS.iter().map(|&c| (c, h.csr_read(c).unwrap_or_else(|_| panic!("{c:#x}")))).collect()
}

#[test]
fn every_csr_survives_a_round_trip_through_json() {
    let ram = Arc::new(GuestRam::new(RAM, RAM_SIZE).unwrap());
    let mut cpu = new_cpu(&ram);
    let h = cpu.hart_mut();
    // FS on, so the FP CSRs can be written; the other fields come from WRITES.
    h.csr_write(n::MSTATUS, status::FS_DIRTY).unwrap();
    for &(csr, value) in WRITES {
        h.csr_write(csr, value).unwrap_or_else(|_| panic!("write {csr:#x}"));
    }
    // mstatus last, with every field in a distinctive position.
    let st = status::SIE
        | status::MPIE
        | status::SPP
        | (1 << status::MPP_SHIFT)
        | (2 << status::FS_SHIFT)
        | status::SUM
        | status::MXR
        | status::TVM
        | status::TW;
    h.csr_write(n::MSTATUS, st).unwrap();
    for i in 1..32 {
        h.set_x(i, 0x100 * i as u64 + 1);
        h.f[i] = 0xffff_ffff_0000_0000 | i as u64;
    }
    h.set_pc(RAM + 0x44);
    h.prv = Privilege::Supervisor;
    h.reservation.set(Some((RAM + 0x80, 42)));
    h.set_max_paging_mode(SATP_SV48);
    let saved = h.save_state();
    h.prv = Privilege::Machine; // to read every CSR
    let before = read_all(h);
    for &(csr, value) in WRITES.iter().filter(|w| w.0 != n::MENVCFG) {
        let got = before.iter().find(|r| r.0 == csr).unwrap().1;
        // WARL fields that drop bits are not what this test is about: all of these stick.
        let expect = if csr == n::MINSTRET { value - 1 } else { value };
        assert_eq!(got, expect, "csr {csr:#x}");
    }

    let json = serde_json::to_string_pretty(&saved).unwrap();
    let back: HartState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, saved);
    let mut fresh = new_cpu(&ram);
    fresh.restore_state(&back).unwrap();
    let f = fresh.hart_mut();
    assert_eq!(f.save_state(), saved);
    assert_eq!(f.pc(), RAM + 0x44);
    assert_eq!(f.privilege(), Privilege::Supervisor);
    assert_eq!(f.reservation.get(), Some((RAM + 0x80, 42)));
    assert_eq!(f.max_satp_mode, SATP_SV48);
    f.prv = Privilege::Machine;
    assert_eq!(read_all(f), before);
}

#[test]
fn an_ipi_not_yet_seen_by_the_hart_is_saved_as_ssip() {
    let ram = Arc::new(GuestRam::new(RAM, RAM_SIZE).unwrap());
    let cpu = new_cpu(&ram);
    cpu.hart().signals().post_ipi();
    assert_eq!(cpu.save_state().csr.mip, crate::consts::irq::SSIP);
}

#[test]
fn states_of_another_hart_or_out_of_range_are_refused() {
    let ram = Arc::new(GuestRam::new(RAM, RAM_SIZE).unwrap());
    let mut cpu = new_cpu(&ram);
    cpu.hart_mut().set_pc(RAM + 8);
    let good = cpu.save_state();
    let mut other = good.clone();
    other.hartid = 3;
    assert_eq!(cpu.restore_state(&other), Err(StateError::HartId { saved: 3, hart: 0 }));
    let mut bad = good.clone();
    bad.pc = 0;
    bad.csr.frm = 9;
    assert!(matches!(cpu.restore_state(&bad), Err(StateError::Invalid { field: "frm", .. })));
    bad.csr.frm = 0;
    bad.csr.satp = 11 << 60;
    assert!(matches!(cpu.restore_state(&bad), Err(StateError::Invalid { field: "satp", .. })));
    assert_eq!(cpu.hart().pc(), RAM + 8, "a refused state leaves the hart alone");
}
