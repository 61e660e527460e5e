//! The translator against the interpreter: the same programs run on two harts, one per
//! engine, and their architectural state (registers, CSRs, counters, pc, privilege) must be
//! equal after every block, and their memory equal at the end.
//!
//! * The ISA programs of `tests/isa/` (built with Debian's RISC-V cross compiler), on a
//!   minimal bus with a CLINT and the test finisher whose clock counts its own reads, so both
//!   harts see the same times.
//! * Random streams of valid instructions (every format, register and rounding mode, traps
//!   included) over random registers, many of which point into a scratch page.
//!
//! Each runs with the translator translating on first sight (threshold 0) with chaining off,
//! so state is compared after every single block; with chaining on, where it is compared at
//! every return to the run loop; and with every load and store forced down the slow path.
//! A last test injects a wrong translation and checks that the comparison catches it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use keel_cpu::{Accel, Bus, Cpu, Exit, Hart, HartSignals, HartState, JitConfig, Opcode, Privilege};
use keel_memory::{CodeObserver, GuestRam};

const RAM: u64 = 0x8000_0000;
/// Room for the ISA programs (their linker script keeps them in 16 MiB).
const ISA_RAM: u64 = 16 << 20;
/// Room for a random case.
const RANDOM_RAM: u64 = 1 << 20;
const FINISHER: u64 = 0x10_0000;
const CLINT: u64 = 0x0200_0000;
const MTIMECMP: u64 = CLINT + 0x4000;
const MTIME: u64 = CLINT + 0xbff8;

/// The CLINT (msip, mtimecmp, mtime) of one hart and the SiFive test finisher. `time` moves
/// on by a fixed step at every read, so two harts doing the same reads see the same times.
struct TestBus {
    signals: Arc<HartSignals>,
    time: AtomicU64,
    /// The finisher's last write plus one (0 while the program runs).
    finished: AtomicU64,
}

impl TestBus {
    fn tick(&self) -> u64 {
        self.time.fetch_add(50, Ordering::Relaxed)
    }
}

impl Bus for TestBus {
    fn read(&self, _hart: usize, addr: u64, size: u8) -> Option<u64> {
        let cmp = self.signals.mtimecmp();
        match (addr, size) {
            (CLINT, 4) => Some((self.signals.lines() >> 3) & 1),
            (MTIMECMP, 8) => Some(cmp),
            (MTIMECMP, 4) => Some(cmp & 0xffff_ffff),
            (a, 4) if a == MTIMECMP + 4 => Some(cmp >> 32),
            (MTIME, 8) => Some(self.tick()),
            (MTIME, 4) => Some(self.tick() & 0xffff_ffff),
            (a, 4) if a == MTIME + 4 => Some(self.tick() >> 32),
            _ => None,
        }
    }

    fn write(&self, _hart: usize, addr: u64, size: u8, value: u64) -> bool {
        let cmp = self.signals.mtimecmp();
        match (addr, size) {
            (FINISHER, 4) => {
                // As the machine's power latch does: the hart returns to its caller.
                self.finished.store(value + 1, Ordering::SeqCst);
                self.signals.request_exit();
            }
            (CLINT, 4) => self.signals.set_line(1 << 3, value & 1 != 0),
            (MTIMECMP, 8) => self.signals.set_mtimecmp(value),
            (MTIMECMP, 4) => {
                self.signals.set_mtimecmp((cmp & !0xffff_ffff) | (value & 0xffff_ffff))
            }
            (a, 4) if a == MTIMECMP + 4 => {
                self.signals.set_mtimecmp((cmp & 0xffff_ffff) | (value << 32))
            }
            _ => return false,
        }
        true
    }

    fn time(&self) -> u64 {
        self.tick()
    }

    fn timebase_hz(&self) -> u64 {
        // A WFI sleeps (deadline - now) / hz of real time: make that nothing.
        1 << 50
    }
}

/// Passes overwritten code on to the hart, as the machine does.
struct Invalidate(Arc<HartSignals>);

impl CodeObserver for Invalidate {
    fn code_overwritten(&self, page_addr: u64, _harts: u64) {
        self.0.post_overwritten_code(page_addr);
    }
}

struct Machine {
    cpu: Cpu,
    ram: Arc<GuestRam>,
    bus: Arc<TestBus>,
}

impl Machine {
    fn new(accel: &Accel, ram_size: u64, image: &[u8], image_at: u64) -> Machine {
        let ram = Arc::new(GuestRam::new(RAM, ram_size).unwrap());
        ram.write_slice(image_at, image).unwrap();
        let signals = Arc::new(HartSignals::new());
        ram.set_code_observer(Arc::new(Invalidate(signals.clone())));
        let bus = Arc::new(TestBus {
            signals: signals.clone(),
            time: AtomicU64::new(0),
            finished: AtomicU64::new(0),
        });
        let hart = Hart::new(0, ram.clone(), bus.clone(), signals);
        let mut cpu = Cpu::with_accel(hart, accel).unwrap();
        // Both engines take interrupts at the same instruction counts.
        cpu.set_time_slice(4096);
        cpu.reset(RAM, Privilege::Machine, false);
        Machine { cpu, ram, bus }
    }

    fn state(&self) -> HartState {
        self.cpu.save_state()
    }

    fn memory(&self) -> Vec<u8> {
        let mut bytes = vec![0; self.ram.size() as usize];
        self.ram.read_slice(RAM, &mut bytes).unwrap();
        bytes
    }

    fn finished(&self) -> Option<u64> {
        self.bus.finished.load(Ordering::SeqCst).checked_sub(1)
    }
}

fn jit(chain: bool, force_slow_memory: bool) -> Accel {
    Accel::Jit(JitConfig {
        threshold: 0,
        cache_bytes: 4 << 20,
        chain,
        force_slow_memory,
        ..JitConfig::default()
    })
}

/// Where two runs parted: what ran, and the first difference.
fn divergence(what: &str, reference: &HartState, native: &HartState) -> String {
    let a = format!("{reference:#x?}");
    let b = format!("{native:#x?}");
    let diff: Vec<String> = a
        .lines()
        .zip(b.lines())
        .filter(|(x, y)| x != y)
        .map(|(x, y)| format!("  interpreter: {}\n  translator:  {}", x.trim(), y.trim()))
        .collect();
    format!(
        "{what}: the engines differ (reference pc {:#x}, instret {}):\n{}",
        reference.pc,
        reference.csr.minstret,
        diff.join("\n")
    )
}

/// Runs both machines until `done` says so (or `max_steps` blocks), comparing state after
/// every step of the reference (interpreter) machine. With chaining, the translator's step
/// runs many blocks; the reference then steps until it reaches the same state, and must not
/// get past the translator's instruction count without doing so.
fn compare(
    what: &str,
    reference: &mut Machine,
    native: &mut Machine,
    chained: bool,
    max_steps: usize,
    done: &dyn Fn(&Machine) -> bool,
) -> Result<(), String> {
    let mut steps = 0;
    while steps < max_steps && !done(reference) {
        let native_exit = native.cpu.step();
        let native_state = native.state();
        // What really retired (the guest may write minstret).
        let native_retired = native.cpu.hart().stats().instructions;
        // A chained run may take up to a slice of instructions in blocks of one instruction,
        // plus traps that retire nothing: the reference gets that long to catch up.
        let mut catch_up = 0;
        loop {
            let reference_exit = reference.cpu.step();
            steps += 1;
            catch_up += 1;
            let state = reference.state();
            if state == native_state {
                if reference_exit != native_exit {
                    return Err(format!(
                        "{what}: same state, but the interpreter exited with {reference_exit:?} and the translator with {native_exit:?}"
                    ));
                }
                break;
            }
            let retired = reference.cpu.hart().stats().instructions;
            if !chained || retired > native_retired || catch_up > 100_000 {
                return Err(divergence(what, &state, &native_state));
            }
        }
        if let Some(Exit::UndeliverableTrap { .. }) = native_exit {
            break;
        }
    }
    if reference.memory() != native.memory() {
        return Err(format!("{what}: guest memory differs at the end"));
    }
    Ok(())
}

// ---- The ISA programs ----

fn isa_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/isa")
}

/// Builds `tests/isa/NAME.S` into a flat image for RAM's start.
fn build_isa(name: &str) -> Vec<u8> {
    let dir = isa_dir();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential");
    std::fs::create_dir_all(&out).unwrap();
    let elf = out.join(format!("{name}.elf"));
    let bin = out.join(format!("{name}.bin"));
    let cc = Command::new("riscv64-linux-gnu-gcc")
        .args(["-march=rv64gc_zicsr_zifencei", "-mabi=lp64d", "-nostdlib", "-nostartfiles"])
        .args(["-static", "-Wl,--build-id=none", "-T"])
        .arg(dir.join("link.ld"))
        .arg("-I")
        .arg(&dir)
        .arg("-o")
        .arg(&elf)
        .arg(dir.join(format!("{name}.S")))
        .status()
        .expect(
            "riscv64-linux-gnu-gcc (install gcc-riscv64-linux-gnu; the README's test command does)",
        );
    assert!(cc.success(), "building {name}.S failed");
    let copy = Command::new("riscv64-linux-gnu-objcopy")
        .args(["-O", "binary"])
        .arg(&elf)
        .arg(&bin)
        .status()
        .expect("riscv64-linux-gnu-objcopy (binutils-riscv64-linux-gnu)");
    assert!(copy.success());
    std::fs::read(&bin).unwrap()
}

/// The programs that only need a CLINT and the finisher (the PLIC ones run end to end in
/// `crates/keel/tests/isa.rs` under both engines instead).
fn isa_programs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(isa_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "S").then(|| p.file_stem().unwrap().to_string_lossy().into())
        })
        .filter(|n: &String| {
            !n.starts_with("smp-") && n != "interrupts-plic" && n != "interrupts-priority-full"
        })
        .collect();
    names.sort();
    assert!(names.len() > 20, "the ISA programs are missing from {}", isa_dir().display());
    names
}

fn run_isa(accel: &Accel, chained: bool) {
    let mut failures = Vec::new();
    for name in isa_programs() {
        let image = build_isa(&name);
        let mut reference = Machine::new(&Accel::Interp, ISA_RAM, &image, RAM);
        let mut native = Machine::new(accel, ISA_RAM, &image, RAM);
        let done = |m: &Machine| m.finished().is_some();
        if let Err(e) = compare(&name, &mut reference, &mut native, chained, 5_000_000, &done) {
            failures.push(e);
            continue;
        }
        // The comparison means something only if the translator ran the program, to its
        // verdict.
        let stats = native.cpu.hart().stats();
        if stats.blocks_translated == 0 || stats.native_entries == 0 {
            failures.push(format!("{name}: nothing ran as native code ({stats:?})"));
        }
        let want = if name == "selftest-fail" { (7 << 16) | 0x3333 } else { 0x5555 };
        if reference.finished() != Some(want) {
            failures
                .push(format!("{name}: finished with {:x?}, not {want:#x}", reference.finished()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn isa_programs_block_by_block() {
    run_isa(&jit(false, false), false);
}

#[test]
fn isa_programs_chained() {
    run_isa(&jit(true, false), true);
}

#[test]
fn isa_programs_with_every_memory_access_slow() {
    run_isa(&jit(false, true), false);
}

// ---- Random instruction streams ----

/// xorshift64*: deterministic, so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where the random code goes, the scratch data it works on, and the trap vector (the
/// harness handles traps itself; see `random_case`).
const CODE: u64 = RAM + 0x1_0000;
const SCRATCH: u64 = RAM + 0x8_0000;
const TRAP: u64 = RAM + 0x4000;
const STREAM_LEN: usize = 96;

/// Interesting register values: scratch pointers (aligned and not), edge integers, noise.
fn register_value(rng: &mut Rng) -> u64 {
    match rng.below(8) {
        0..=2 => SCRATCH + rng.below(0x1000) * 8 + [0, 0, 0, 1, 2, 3, 4, 6][rng.below(8) as usize],
        3 => [0, 1, u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 31, 0xffff_ffff, 0x8000_0000]
            [rng.below(8) as usize],
        4 => rng.below(64),
        5 => rng.below(0x1000),
        6 => 0x8000_0000 + rng.below(8 << 20),
        _ => rng.next(),
    }
}

/// CSRs random code may touch without ending in a trap loop: scratch registers, the FP
/// CSRs, the counters, and a few with side effects on translation (mstatus: MPRV, SUM, MXR).
const CSRS: [u32; 12] =
    [0x001, 0x002, 0x003, 0x340, 0x140, 0x300, 0xb00, 0xb02, 0xc00, 0xc01, 0xc02, 0x305];

/// A floating-point register value: for the FP-heavy streams mostly ordinary doubles and
/// NaN-boxed singles (the cases the translator runs inline), sometimes zeros, subnormals,
/// infinities, NaNs and unboxed singles.
fn fp_value(rng: &mut Rng) -> u64 {
    let sign = rng.below(2);
    match rng.below(16) {
        0 => sign << 63,
        1 => (sign << 63) | (rng.next() >> 12), // subnormal double
        2 => (sign << 63) | (0x7ff << 52) | (rng.below(2) << 51), // inf or qNaN
        3 => 0xffff_ffff_0000_0000 | (rng.next() & 0x807f_ffff), // subnormal or zero single
        4 => rng.next(),                        // anything (unboxed)
        5..=9 => {
            let exp = 127 - 20 + rng.below(40);
            0xffff_ffff_0000_0000 | (sign << 31) | (exp << 23) | (rng.next() & 0x7f_ffff)
        }
        _ => (sign << 63) | ((1023 - 60 + rng.below(120)) << 52) | (rng.next() >> 12),
    }
}

/// A random valid instruction: a table encoding with random operand fields, biased towards
/// small immediates so that branches stay near and memory offsets stay in the scratch page.
/// With `fp_heavy`, mostly F/D instructions with the rounding modes code really uses.
fn instruction(rng: &mut Rng, table: &[(Opcode, u32, u32)], fp_heavy: bool) -> u32 {
    let fp_ops: Vec<_> = table.iter().filter(|e| is_fp(e.0)).copied().collect();
    loop {
        let (op, mask, bits) = if fp_heavy && rng.below(3) != 0 {
            fp_ops[rng.below(fp_ops.len() as u64) as usize]
        } else {
            table[rng.below(table.len() as u64) as usize]
        };
        // WFI would wait for an interrupt that never comes, and MRET/SRET jump to wherever
        // mepc/sepc point: no WFI, and few of the others.
        if op == Opcode::Wfi || (matches!(op, Opcode::Mret | Opcode::Sret) && rng.below(8) != 0) {
            continue;
        }
        let mut raw = (rng.next() as u32 & !mask) | bits;
        if rng.below(4) != 0 {
            // Small immediates in the I/S/B layouts' upper bits.
            raw = (raw & 0x000f_ffff) | (((rng.below(64) as u32).wrapping_sub(32) & 0xfff) << 20);
            raw = (raw & !mask) | bits;
        }
        if raw & 0x7f == 0x73 && raw & 0x3000 != 0 && rng.below(8) != 0 {
            // Mostly CSRs that exist.
            raw = (raw & 0x000f_ffff) | CSRS[rng.below(CSRS.len() as u64) as usize] << 20;
        }
        if fp_heavy && is_fp(op) && mask & 0x7000 == 0 && rng.below(4) != 0 {
            // Mostly RNE or DYN.
            raw = (raw & !0x7000) | [0, 7][rng.below(2) as usize] << 12;
        }
        if keel_cpu::decode(raw, 4).op == op {
            return raw;
        }
    }
}

fn is_fp(op: Opcode) -> bool {
    let name = op.name();
    name.starts_with('f') && !name.starts_with("fence")
}

fn random_program(rng: &mut Rng, fp_heavy: bool) -> Vec<u8> {
    let table: Vec<_> = keel_cpu::encodings().collect();
    let mut code = Vec::new();
    while code.len() < STREAM_LEN * 4 {
        if rng.below(6) == 0 {
            // A compressed instruction (reserved encodings are rare in real code too).
            let half = (rng.next() as u16 & !3) | rng.below(3) as u16;
            if keel_cpu::decode(half as u32, 2).op != Opcode::Illegal || rng.below(16) == 0 {
                code.extend_from_slice(&half.to_le_bytes());
            }
        } else {
            code.extend_from_slice(&instruction(rng, &table, fp_heavy).to_le_bytes());
        }
    }
    code
}

/// One random case: the stream at CODE over random registers. A trap lands at TRAP, where
/// the harness skips the trapping instruction on both harts alike (as a handler would) and
/// goes on, until the step budget is spent or a trap comes from outside the stream.
fn random_case(seed: u64, accel: &Accel, chained: bool, fp_heavy: bool) -> Result<(), String> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let code = random_program(&mut rng, fp_heavy);
    let mut scratch = vec![0u8; 0x9000];
    scratch.iter_mut().for_each(|b| *b = rng.next() as u8);
    let x: Vec<u64> = (0..32).map(|_| register_value(&mut rng)).collect();
    let f: Vec<u64> = (0..32)
        .map(|_| if fp_heavy { fp_value(&mut rng) } else { register_value(&mut rng) })
        .collect();
    let frm = if fp_heavy && rng.below(4) != 0 { 0 } else { rng.below(5) };
    // NX already set is what lets the translator's inline arithmetic run.
    let fflags = if fp_heavy && rng.below(4) != 0 { 1 } else { rng.below(32) };
    let setup = |m: &mut Machine| {
        m.ram.write_slice(SCRATCH, &scratch).unwrap();
        let hart = m.cpu.hart_mut();
        hart.set_pc(CODE);
        for (i, v) in x.iter().enumerate() {
            hart.set_x(i, *v);
        }
        let mut state = m.cpu.save_state();
        state.f.copy_from_slice(&f);
        state.csr.mtvec = TRAP;
        state.csr.frm = frm as u8;
        state.csr.fflags = fflags as u8;
        state.csr.mstatus |= 3 << 13; // FS = Dirty: FP instructions run
        m.cpu.restore_state(&state).unwrap();
    };
    let mut reference = Machine::new(&Accel::Interp, RANDOM_RAM, &code, CODE);
    let mut native = Machine::new(accel, RANDOM_RAM, &code, CODE);
    setup(&mut reference);
    setup(&mut native);
    let what = format!("random stream, seed {seed}");
    let at_trap = |m: &Machine| m.cpu.hart().pc() == TRAP;
    let code_range = CODE..CODE + code.len() as u64;
    for _ in 0..64 {
        compare(&what, &mut reference, &mut native, chained, 400, &at_trap)?;
        if !at_trap(&reference) {
            break;
        }
        let epc = reference.state().csr.mepc;
        if !code_range.contains(&epc) {
            break;
        }
        let low = reference.ram.load::<u16>(epc).unwrap();
        let next = epc + if low & 3 == 3 { 4 } else { 2 };
        reference.cpu.hart_mut().set_pc(next);
        native.cpu.hart_mut().set_pc(next);
    }
    Ok(())
}

fn run_random(accel: &Accel, chained: bool, cases: u64) -> Vec<String> {
    (0..cases).filter_map(|seed| random_case(seed, accel, chained, false).err()).collect()
}

/// Streams mostly of F/D instructions over ordinary values, with NX set and round to
/// nearest: where the translator's inline floating point runs.
#[test]
fn random_floating_point_streams() {
    let failures: Vec<String> = (0..3000)
        .filter_map(|seed| random_case(seed, &jit(false, false), false, true).err())
        .collect();
    assert!(failures.is_empty(), "{} cases failed; the first:\n{}", failures.len(), failures[0]);
}

#[test]
fn random_instruction_streams_block_by_block() {
    let failures = run_random(&jit(false, false), false, 3000);
    assert!(failures.is_empty(), "{} cases failed; the first:\n{}", failures.len(), failures[0]);
}

#[test]
fn random_instruction_streams_chained() {
    let failures = run_random(&jit(true, false), true, 1500);
    assert!(failures.is_empty(), "{} cases failed; the first:\n{}", failures.len(), failures[0]);
}

#[test]
fn random_instruction_streams_with_every_memory_access_slow() {
    let failures = run_random(&jit(false, true), false, 1500);
    assert!(failures.is_empty(), "{} cases failed; the first:\n{}", failures.len(), failures[0]);
}

/// The comparison must be able to fail: a translator that translates `sub` as `add` is
/// caught by the random streams.
#[test]
fn a_wrong_translation_is_caught() {
    let wrong = Accel::Jit(JitConfig {
        inject_fault: true,
        ..match jit(false, false) {
            Accel::Jit(c) => c,
            Accel::Interp => unreachable!(),
        }
    });
    let failures = run_random(&wrong, false, 300);
    assert!(
        failures.iter().any(|f| f.contains("the engines differ")),
        "no case caught sub translated as add ({} failures)",
        failures.len()
    );
}
