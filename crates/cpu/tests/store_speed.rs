//! How fast a store-heavy loop runs with dirty-page tracking off, on, and on while another
//! thread takes rounds. A measurement, not a check: run it with
//! `cargo test --release -p keel-cpu --test store_speed -- --ignored --nocapture`.

mod common;

use common::NoDevices;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_cpu::{Cpu, Exit, Hart, HartSignals, Privilege};
use keel_memory::GuestRam;

const RAM: u64 = 0x8000_0000;

/// 50M iterations of 13 instructions, 5 of them stores (one to a different page of 64 each
/// time), then an SBI call (riscv64-linux-gnu-as, `.option norvc`).
const PROGRAM: [u32; 19] = [
    0x00010297, // auipc t0, 0x10         data at RAM + 0x10000
    0x00000313, // li    t1, 0
    0x02fafe37, // lui   t3, 0x2faf       iterations
    0x00000e93, // li    t4, 0
    0x0062b023, // loop: sd t1, 0(t0)
    0x0062b423, // sd    t1, 8(t0)
    0x0062a823, // sw    t1, 16(t0)
    0x00628c23, // sb    t1, 24(t0)
    0x0002b383, // ld    t2, 0(t0)
    0x007e8eb3, // add   t4, t4, t2
    0x03f37f13, // andi  t5, t1, 63
    0x00cf1f13, // slli  t5, t5, 12
    0x005f0f33, // add   t5, t5, t0
    0x026f3023, // sd    t1, 32(t5)       one of 64 pages
    0x00130313, // addi  t1, t1, 1
    0xfffe0e13, // addi  t3, t3, -1
    0xfc0e18e3, // bnez  t3, loop
    0x01000893, // li    a7, 0x10
    0x00000073, // ecall
];

/// Million instructions per second of one run of the loop.
fn run(tracking: bool, take_every: Option<Duration>) -> f64 {
    let ram = Arc::new(GuestRam::new(RAM, 1 << 20).unwrap());
    let code: Vec<u8> = PROGRAM.iter().flat_map(|i| i.to_le_bytes()).collect();
    ram.write_slice(RAM, &code).unwrap();
    let signals = Arc::new(HartSignals::new());
    let mut cpu = Cpu::new(Hart::new(0, ram.clone(), Arc::new(NoDevices), signals));
    cpu.reset(RAM, Privilege::Supervisor, true);
    if tracking {
        ram.start_dirty_tracking();
    }
    let done = Arc::new(AtomicBool::new(false));
    let taker = take_every.map(|every| {
        let (ram, done) = (ram.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut rounds, mut waited) = (0u64, Duration::ZERO);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                let t = Instant::now();
                ram.take_dirty_pages();
                waited += t.elapsed();
                rounds += 1;
            }
            (rounds, waited)
        })
    });
    let t = Instant::now();
    assert_eq!(cpu.run(), Exit::Sbi);
    let secs = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    if let Some(taker) = taker {
        let (rounds, waited) = taker.join().unwrap();
        eprint!("[{rounds} takes, {:.1} us each] ", waited.as_secs_f64() * 1e6 / rounds as f64);
    }
    cpu.hart().instret() as f64 / secs / 1e6
}

#[test]
#[ignore]
fn store_loop_speed() {
    let runs = 7;
    for (name, tracking, every) in [
        ("tracking off", false, None),
        ("tracking on, no takes", true, None),
        ("tracking on, a take every 1 ms", true, Some(Duration::from_millis(1))),
        ("tracking off", false, None),
    ] {
        let mut mips: Vec<f64> = (0..runs).map(|_| run(tracking, every)).collect();
        mips.sort_by(f64::total_cmp);
        eprintln!(
            "\n{name}: median {:.0} MIPS, best {:.0}, worst {:.0}",
            mips[runs / 2],
            mips[runs - 1],
            mips[0]
        );
    }
}

/// How long a take lasts on big idle RAM (the harvest walks every page's flags).
#[test]
#[ignore]
fn take_cost_on_big_ram() {
    for gib in [1u64, 16] {
        let ram = GuestRam::new(RAM, gib << 30).unwrap();
        ram.start_dirty_tracking();
        for p in 0..1000u64 {
            ram.store::<u8>(RAM + p * 7 * 4096, 1);
        }
        let t = Instant::now();
        let d = ram.take_dirty_pages();
        let first = t.elapsed();
        let t = Instant::now();
        ram.take_dirty_pages();
        eprintln!(
            "{gib} GiB: take with {} dirty pages {:.2} ms, with none {:.2} ms",
            d.len(),
            first.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}
