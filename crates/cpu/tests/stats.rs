//! A hart's statistics: counted on the slow paths, and readable from another thread while the
//! hart runs (published through its signals), final once `run` returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_cpu::{Bus, Cpu, Exit, Hart, HartSignals, Privilege, SbiExtension};
use keel_memory::GuestRam;

const RAM: u64 = 0x8000_0000;
const DEVICE: u64 = 0x1000_0000;

/// One device register at DEVICE; everything else is a hole.
#[derive(Default)]
struct OneRegister {
    accesses: AtomicU64,
}

impl Bus for OneRegister {
    fn read(&self, _hart: usize, addr: u64, _size: u8) -> Option<u64> {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        (addr == DEVICE).then_some(0)
    }
    fn write(&self, _hart: usize, addr: u64, _size: u8, _value: u64) -> bool {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        addr == DEVICE
    }
    fn time(&self) -> u64 {
        0
    }
    fn timebase_hz(&self) -> u64 {
        10_000_000
    }
}

/// S-mode code (assembled with riscv64-linux-gnu-as, `.option norvc`):
const PROGRAM: [u32; 13] = [
    0x00000e17, // auipc t3, 0
    0x030e0e13, // addi  t3, t3, 48      (the loop below)
    0x105e1073, // csrw  stvec, t3
    0x100002b7, // lui   t0, 0x10000     (DEVICE)
    0x0002a023, // sw    zero, 0(t0)     MMIO
    0x0002a303, // lw    t1, 0(t0)       MMIO
    0x544958b7, // lui   a7, 0x54495
    0xd458889b, // addiw a7, a7, -699    (a7 = SBI TIME)
    0x00000073, // ecall                 SBI
    0x01000893, // li    a7, 0x10        (SBI BASE)
    0x00000073, // ecall                 SBI
    0x00000000, // illegal instruction   exception, to stvec
    0x0000006f, // loop: j loop
];

#[test]
fn statistics_are_published_while_the_hart_runs_and_final_when_it_stops() {
    let ram = Arc::new(GuestRam::new(RAM, 1 << 20).unwrap());
    let code: Vec<u8> = PROGRAM.iter().flat_map(|i| i.to_le_bytes()).collect();
    ram.write_slice(RAM, &code).unwrap();
    let bus = Arc::new(OneRegister::default());
    let signals = Arc::new(HartSignals::new());
    let mut cpu = Cpu::new(Hart::new(0, ram, bus.clone(), signals.clone()));
    cpu.reset(RAM, Privilege::Supervisor, true);

    let runner = std::thread::spawn(move || loop {
        match cpu.run() {
            // keel's machine would answer; returning "success" is enough here.
            Exit::Sbi => {
                cpu.hart_mut().set_x(10, 0);
                cpu.hart_mut().finish_ecall();
            }
            Exit::Requested => return cpu,
            other => panic!("unexpected exit {other:?}"),
        }
    });

    // The hart spins in its loop: its instruction count shows up here while it runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while signals.stats().instructions < 10_000_000 {
        assert!(Instant::now() < deadline, "published: {:?}", signals.stats());
        std::thread::yield_now();
    }
    let live = signals.stats();
    signals.request_exit();
    let cpu = runner.join().unwrap();

    let s = cpu.hart().stats();
    assert_eq!(signals.stats(), s, "what was published last is final");
    assert!(s.instructions >= live.instructions);
    assert_eq!(s.instructions, cpu.hart().instret(), "no reset since the start");
    assert_eq!(s.sbi_calls, 2);
    assert_eq!(s.sbi(SbiExtension::Time), 1);
    assert_eq!(s.sbi(SbiExtension::Base), 1);
    assert_eq!(s.sbi_by_extension.iter().sum::<u64>(), 2);
    assert_eq!(s.mmio_accesses, 2);
    assert_eq!(bus.accesses.load(Ordering::Relaxed), 2);
    assert_eq!(s.exceptions, 1, "the illegal instruction");
    assert_eq!(s.interrupts, 0);
    assert_eq!(s.wfi, 0);
}

#[test]
fn instructions_keep_counting_across_hart_resets() {
    let ram = Arc::new(GuestRam::new(RAM, 1 << 20).unwrap());
    // Three instructions, then an SBI call.
    let code: Vec<u8> = [0x00000013u32, 0x00000013, 0x01000893, 0x00000073]
        .iter()
        .flat_map(|i| i.to_le_bytes())
        .collect();
    ram.write_slice(RAM, &code).unwrap();
    let signals = Arc::new(HartSignals::new());
    let mut cpu = Cpu::new(Hart::new(0, ram, Arc::new(OneRegister::default()), signals.clone()));
    for round in 1..=2 {
        cpu.reset(RAM, Privilege::Supervisor, true);
        assert_eq!(cpu.run(), Exit::Sbi);
        cpu.hart_mut().finish_ecall();
        assert_eq!(cpu.hart().instret(), 4, "minstret restarts with the hart");
        assert_eq!(cpu.hart().stats().instructions, 4 * round);
    }
    // Published when `run` returned, before the ecall retired.
    assert_eq!(signals.stats().instructions, 7);
    assert_eq!(signals.stats().sbi(SbiExtension::Base), 2);
}
