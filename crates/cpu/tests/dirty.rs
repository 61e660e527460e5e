//! Dirty-page tracking as harts see it: every kind of store marks its page (plain, misaligned,
//! FP, AMO, SC, and the page-table walker's A/D updates), code invalidation keeps working
//! while tracking, and a hart storing flat out loses no write to a thread taking rounds.

mod common;

use common::NoDevices;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_cpu::{Cpu, Exit, Hart, HartSignals, Privilege, SATP_SV39};
use keel_memory::{CodeObserver, GuestRam, PAGE_SIZE};

const RAM: u64 = 0x8000_0000;
const RAM_SIZE: u64 = 8 << 20;
/// `a7` of the SBI BASE call the programs end their rounds with.
const ROUND_END: u64 = 0x10;

/// Passes overwritten code on to the hart, as the machine does.
struct Invalidate(Arc<HartSignals>);

impl CodeObserver for Invalidate {
    fn code_overwritten(&self, page_addr: u64, _harts: u64) {
        self.0.post_overwritten_code(page_addr);
    }
}

/// A hart in S-mode (keel as the SBI) at the start of `program`, loaded at RAM.
fn cpu_with(ram: &Arc<GuestRam>, program: &[u32]) -> Cpu {
    let code: Vec<u8> = program.iter().flat_map(|i| i.to_le_bytes()).collect();
    ram.write_slice(RAM, &code).unwrap();
    let signals = Arc::new(HartSignals::new());
    ram.set_code_observer(Arc::new(Invalidate(signals.clone())));
    let mut cpu = Cpu::new(Hart::new(0, ram.clone(), Arc::new(NoDevices), signals));
    cpu.reset(RAM, Privilege::Supervisor, true);
    cpu
}

/// Runs to the next SBI call, which must end a round, and completes it.
fn run_round(cpu: &mut Cpu) {
    assert_eq!(cpu.run(), Exit::Sbi);
    assert_eq!(cpu.hart().x(17), ROUND_END, "a fault? pc {:#x}", cpu.hart().pc());
    cpu.hart_mut().finish_ecall();
}

/// Page numbers (from RAM's base) of the pages written since the last call.
fn take(ram: &GuestRam) -> BTreeSet<u64> {
    ram.take_dirty_pages().into_iter().collect()
}

/// Page number of guest-physical `addr`.
fn pn(addr: u64) -> u64 {
    (addr - RAM) / PAGE_SIZE
}

// Sv39 tables (privileged spec §4.4): root at page 1, one level-1 table at page 2, and three
// leaf tables mapping 2 MiB each, identically (VA = PA):
const ROOT: u64 = RAM + 0x1000;
const L1: u64 = RAM + 0x2000;
/// Maps the code page, with A clear: the first fetch sets it.
const LEAF_CODE: u64 = RAM + 0x3000;
/// Maps 32 pages at B, readable and writable, A and D clear.
const LEAF_B: u64 = RAM + 0x4000;
/// Maps 32 pages at C, with A and D already set.
const LEAF_C: u64 = RAM + 0x5000;
const B: u64 = RAM + (1 << 21);
const C: u64 = RAM + (2 << 21);

const PTE_V: u64 = 1;
const PTE_R: u64 = 2;
const PTE_W: u64 = 4;
const PTE_X: u64 = 8;
const PTE_A: u64 = 1 << 6;
const PTE_D: u64 = 1 << 7;

fn pte(pa: u64, flags: u64) -> u64 {
    (pa >> 12) << 10 | flags
}

fn build_page_tables(ram: &GuestRam) {
    let put = |table: u64, index: u64, value: u64| {
        assert!(ram.store::<u64>(table + 8 * index, value));
    };
    put(ROOT, (RAM >> 30) & 0x1ff, pte(L1, PTE_V));
    put(L1, (RAM >> 21) & 0x1ff, pte(LEAF_CODE, PTE_V));
    put(L1, (B >> 21) & 0x1ff, pte(LEAF_B, PTE_V));
    put(L1, (C >> 21) & 0x1ff, pte(LEAF_C, PTE_V));
    put(LEAF_CODE, 0, pte(RAM, PTE_V | PTE_R | PTE_X));
    for i in 0..32 {
        put(LEAF_B, i, pte(B + i * PAGE_SIZE, PTE_V | PTE_R | PTE_W));
        put(LEAF_C, i, pte(C + i * PAGE_SIZE, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D));
    }
}

/// With a0 = satp, a1 = B, a2 = C, a3 = a value (riscv64-linux-gnu-as, `.option norvc`).
const PAGING_PROGRAM: [u32; 45] = [
    0x00000297, // auipc t0, 0
    0x0a828293, // addi  t0, t0, 168      (fault)
    0x10529073, // csrw  stvec, t0
    0x18051073, // csrw  satp, a0
    0x12000073, // sfence.vma
    0x00d5b023, // sd    a3, 0(a1)        B page 0
    0x000022b7, // lui   t0, 0x2
    0x00b282b3, // add   t0, t0, a1
    0x00d2a223, // sw    a3, 4(t0)        B page 2
    0x000062b7, // lui   t0, 0x6
    0x00b282b3, // add   t0, t0, a1
    0xfed2be23, // sd    a3, -4(t0)       misaligned, B pages 5 and 6
    0xf2068053, // fmv.d.x ft0, a3
    0x000082b7, // lui   t0, 0x8
    0x00b282b3, // add   t0, t0, a1
    0x0002b027, // fsd   ft0, 0(t0)       B page 8
    0x000092b7, // lui   t0, 0x9
    0x00b282b3, // add   t0, t0, a1
    0x00d2b32f, // amoadd.d t1, a3, (t0)  B page 9
    0x0000a2b7, // lui   t0, 0xa
    0x00b282b3, // add   t0, t0, a1
    0x1002b32f, // lr.d  t1, (t0)
    0x18d2b3af, // sc.d  t2, a3, (t0)     B page 10 (succeeds)
    0x0000b2b7, // lui   t0, 0xb
    0x00b282b3, // add   t0, t0, a1
    0x18d2be2f, // sc.d  t3, a3, (t0)     B page 11: no reservation, fails, writes nothing
    0x0000c2b7, // lui   t0, 0xc
    0x00b282b3, // add   t0, t0, a1
    0x0002be83, // ld    t4, 0(t0)        B page 12: read only
    0x000012b7, // lui   t0, 0x1
    0x00c282b3, // add   t0, t0, a2
    0x00d2b023, // sd    a3, 0(t0)        C page 1 (A/D preset)
    0x01000893, // li    a7, 0x10
    0x00000073, // ecall                  round 1 ends
    0x00d5b423, // sd    a3, 8(a1)        B page 0 again
    0x0000d2b7, // lui   t0, 0xd
    0x00b282b3, // add   t0, t0, a1
    0x00d2b023, // sd    a3, 0(t0)        B page 13
    0x000012b7, // lui   t0, 0x1
    0x00c282b3, // add   t0, t0, a2
    0x00d2b423, // sd    a3, 8(t0)        C page 1 again
    0x00000073, // ecall                  round 2 ends
    0x000018b7, // fault: lui a7, 0x1
    0x9998889b, // addiw a7, a7, -1639    (0x999)
    0x00000073, // ecall
];

#[test]
fn stores_under_sv39_mark_their_pages_and_the_page_tables_the_walker_updated() {
    let ram = Arc::new(GuestRam::new(RAM, RAM_SIZE).unwrap());
    build_page_tables(&ram);
    let mut cpu = cpu_with(&ram, &PAGING_PROGRAM);
    let hart = cpu.hart_mut();
    hart.set_x(10, SATP_SV39 << 60 | ROOT >> 12);
    hart.set_x(11, B);
    hart.set_x(12, C);
    hart.set_x(13, 0x1122_3344_5566_7788);
    ram.start_dirty_tracking();

    run_round(&mut cpu);
    let b = |page: u64| pn(B) + page;
    let mut want: BTreeSet<u64> = [0, 2, 5, 6, 8, 9, 10].map(b).into();
    want.insert(pn(C) + 1);
    // The leaf tables whose PTEs got A (code fetch, loads) or A and D (stores) set. Not the
    // root or level-1 table (non-leaf PTEs have no A/D), nor the one whose PTEs had them.
    want.extend([pn(LEAF_CODE), pn(LEAF_B)]);
    assert_eq!(take(&ram), want);
    assert_eq!(cpu.hart().x(7), 0, "the SC with a reservation succeeded");
    assert_eq!(cpu.hart().x(28), 1, "the SC without one failed");
    assert_eq!(ram.load::<u64>(B + 0x5ffc), Some(0x1122_3344_5566_7788), "misaligned store");
    assert_eq!(ram.load::<u64>(B + 0x9000), Some(0x1122_3344_5566_7788), "AMO");
    assert_eq!(ram.load::<u64>(LEAF_B + 8 * 12).map(|p| p & (PTE_A | PTE_D)), Some(PTE_A));

    // Stores to pages already written (whose stores now hit the TLB's fast path) are
    // marked again in the new round; a page written first now updates its PTE.
    run_round(&mut cpu);
    assert_eq!(take(&ram), [b(0), b(13), pn(C) + 1, pn(LEAF_B)].into());
    assert!(take(&ram).is_empty());
    ram.stop_dirty_tracking();
}

/// Calls f (a0 = 1), rewrites f's first instruction to `li a0, 2`, FENCE.I, calls f again.
const SELF_MODIFYING: [u32; 14] = [
    0x00000417, // auipc s0, 0
    0x03040413, // addi  s0, s0, 48       (f)
    0x000400e7, // jalr  s0
    0x00050493, // mv    s1, a0
    0x00200337, // lui   t1, 0x200
    0x5133031b, // addiw t1, t1, 1299     (0x00200513: li a0, 2)
    0x00642023, // sw    t1, 0(s0)
    0x0000100f, // fence.i
    0x000400e7, // jalr  s0
    0x00050913, // mv    s2, a0
    0x01000893, // li    a7, 0x10
    0x00000073, // ecall
    0x00100513, // f: li a0, 1
    0x00008067, // ret
];

#[test]
fn self_modifying_code_runs_the_new_code_with_and_without_tracking() {
    for tracking in [false, true] {
        let ram = Arc::new(GuestRam::new(RAM, RAM_SIZE).unwrap());
        let mut cpu = cpu_with(&ram, &SELF_MODIFYING);
        if tracking {
            ram.start_dirty_tracking();
        }
        run_round(&mut cpu);
        assert_eq!((cpu.hart().x(9), cpu.hart().x(18)), (1, 2), "tracking {tracking}");
        assert!(cpu.hart().stats().code_pages_invalidated >= 1);
        if tracking {
            assert_eq!(take(&ram), [0].into(), "the code page was written");
        }
    }
}

/// Bare S-mode, a1 = 64-page region, a2 = a counter: stores a counting value at
/// pseudo-random places in the region forever, with an AMO on the counter every 256 stores.
const STORE_LOOP: [u32; 21] = [
    0x00000313, // li    t1, 0
    0x000123b7, // lui   t2, 0x12
    0x3453839b, // addiw t2, t2, 837
    0x00130313, // loop: addi t1, t1, 1
    0x00d39e13, // slli  t3, t2, 13       (xorshift)
    0x01c3c3b3, // xor   t2, t2, t3
    0x0073de13, // srli  t3, t2, 7
    0x01c3c3b3, // xor   t2, t2, t3
    0x01139e13, // slli  t3, t2, 17
    0x01c3c3b3, // xor   t2, t2, t3
    0x03f3fe93, // andi  t4, t2, 63       page
    0x00ce9e93, // slli  t4, t4, 12
    0x0143df13, // srli  t5, t2, 20
    0x1f8f7f13, // andi  t5, t5, 504      offset
    0x01ee8eb3, // add   t4, t4, t5
    0x00be8eb3, // add   t4, t4, a1
    0x006eb023, // sd    t1, 0(t4)
    0x0ff37f93, // andi  t6, t1, 255
    0xfc0f92e3, // bnez  t6, loop
    0x0066302f, // amoadd.d zero, t1, (a2)
    0xfbdff06f, // j     loop
];

/// Live migration's pre-copy, against a real hart: copy all of RAM, then keep copying what
/// each round reports while the hart stores; after the hart stops and a last round is
/// copied, the copy equals RAM.
#[test]
fn a_running_hart_loses_no_write_to_a_thread_taking_rounds() {
    let ram = Arc::new(GuestRam::new(RAM, RAM_SIZE).unwrap());
    let mut cpu = cpu_with(&ram, &STORE_LOOP);
    cpu.hart_mut().set_x(11, RAM + 0x10_0000);
    cpu.hart_mut().set_x(12, RAM + 0x20_0000);
    let signals = cpu.hart().signals().clone();
    let hart = std::thread::spawn(move || {
        assert_eq!(cpu.run(), Exit::Requested);
        cpu
    });
    std::thread::sleep(Duration::from_millis(20));

    ram.start_dirty_tracking();
    let mut copy = vec![0u8; RAM_SIZE as usize];
    ram.read_slice(RAM, &mut copy).unwrap();
    let copy_pages = |copy: &mut Vec<u8>, pages: &BTreeSet<u64>| {
        for &p in pages {
            let at = (p * PAGE_SIZE) as usize;
            ram.read_slice(RAM + at as u64, &mut copy[at..at + PAGE_SIZE as usize]).unwrap();
        }
    };
    let (mut rounds, mut reported) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(300) {
        let pages = take(&ram);
        reported += pages.len();
        copy_pages(&mut copy, &pages);
        rounds += 1;
    }
    signals.request_exit();
    let cpu = hart.join().unwrap();
    copy_pages(&mut copy, &take(&ram));

    assert!(rounds > 5 && reported > 64, "{rounds} rounds, {reported} pages");
    assert!(cpu.hart().instret() > 100_000);
    let mut now = vec![0u8; RAM_SIZE as usize];
    ram.read_slice(RAM, &mut now).unwrap();
    let stale: Vec<usize> = (0..(RAM_SIZE / PAGE_SIZE) as usize)
        .filter(|p| now[p * 4096..(p + 1) * 4096] != copy[p * 4096..(p + 1) * 4096])
        .collect();
    assert!(stale.is_empty(), "pages whose copy missed a write: {stale:?}");
}
