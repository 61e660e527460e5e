//! `VmController` on tiny bare programs (hand-assembled, loaded as ELF files): pausing parks
//! running, sleeping (WFI) and stopped (SBI HSM) harts and freezes guest time; resume, kill,
//! stop, reset, the guest's own power-off, wrong-state requests and the balloon.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_devices::virtio::config::BalloonConfig;
use keel_machine::{Firmware, Machine, MachineConfig, VirtioConfig};
use keel_vmm::{Console, ControlError, Outcome, VmController, VmState};

const RAM: u64 = 0x8000_0000;
/// Where the counting program keeps its count.
const COUNTER: u64 = RAM + 0x1000;

// RV64 encodings (unprivileged spec, chapter "RV32/64G Instruction Set Listings").
const T0: u32 = 5;
const T1: u32 = 6;
const A0: u32 = 10;

fn i_type(imm: i32, rs1: u32, f3: u32, rd: u32, op: u32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | rs1 << 15 | f3 << 12 | rd << 7 | op
}
fn s_type(imm: i32, rs2: u32, rs1: u32, f3: u32) -> u32 {
    let imm = imm as u32;
    ((imm >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm & 0x1f) << 7 | 0x23
}
fn bne(rs1: u32, rs2: u32, off: i32) -> u32 {
    let o = off as u32;
    ((o >> 12) & 1) << 31
        | ((o >> 5) & 0x3f) << 25
        | rs2 << 20
        | rs1 << 15
        | 1 << 12
        | ((o >> 1) & 0xf) << 8
        | ((o >> 11) & 1) << 7
        | 0x63
}
fn jal_x0(off: i32) -> u32 {
    let o = off as u32;
    ((o >> 20) & 1) << 31 | ((o >> 1) & 0x3ff) << 21 | ((o >> 11) & 1) << 20 | (o & 0xff000) | 0x6f
}
fn auipc(rd: u32, imm20: u32) -> u32 {
    imm20 << 12 | rd << 7 | 0x17
}
fn lui(rd: u32, imm20: u32) -> u32 {
    imm20 << 12 | rd << 7 | 0x37
}
const WFI: u32 = 0x1050_0073;

/// Hart 0 counts at [`COUNTER`] forever; every other hart sleeps in WFI forever.
fn counting_program() -> Vec<u32> {
    vec![
        auipc(T0, 1),               // 0x00: t0 = COUNTER
        bne(A0, 0, 0x14),           // 0x04: other harts: to 0x18
        i_type(0, T0, 3, T1, 0x03), // 0x08: ld t1, 0(t0)
        i_type(1, T1, 0, T1, 0x13), // 0x0c: addi t1, t1, 1
        s_type(0, T1, T0, 3),       // 0x10: sd t1, 0(t0)
        jal_x0(-12),                // 0x14: to 0x08
        WFI,                        // 0x18
        jal_x0(-4),                 // 0x1c: to 0x18
    ]
}

/// Powers the machine off through the SiFive test device (0x5555 to 0x100000).
fn power_off_program() -> Vec<u32> {
    vec![
        lui(T0, 0x100),                 // t0 = 0x100000
        lui(T1, 0x5),                   // t1 = 0x5000
        i_type(0x555, T1, 0, T1, 0x13), // t1 += 0x555
        s_type(0, T1, T0, 2),           // sw t1, 0(t0)
        jal_x0(0),
    ]
}

/// A minimal ELF64 RISC-V executable: one PT_LOAD segment with `code` at RAM.
fn elf_file(name: &str, code: &[u32]) -> PathBuf {
    let text: Vec<u8> = code.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut out = vec![0u8; 64 + 56];
    let mut put = |at: usize, v: &[u8]| out[at..at + v.len()].copy_from_slice(v);
    put(0, &[0x7f, b'E', b'L', b'F', 2, 1, 1]);
    put(16, &2u16.to_le_bytes()); // ET_EXEC
    put(18, &243u16.to_le_bytes()); // EM_RISCV
    put(20, &1u32.to_le_bytes());
    put(24, &RAM.to_le_bytes()); // entry
    put(32, &64u64.to_le_bytes()); // phoff
    put(52, &64u16.to_le_bytes());
    put(54, &56u16.to_le_bytes());
    put(56, &1u16.to_le_bytes());
    put(64, &1u32.to_le_bytes()); // PT_LOAD
    put(68, &7u32.to_le_bytes());
    put(72, &120u64.to_le_bytes()); // offset
    put(80, &RAM.to_le_bytes());
    put(88, &RAM.to_le_bytes());
    put(96, &(text.len() as u64).to_le_bytes());
    put(104, &(text.len() as u64).to_le_bytes());
    put(112, &4096u64.to_le_bytes());
    out.extend_from_slice(&text);
    // Same name, same bytes on every run: written aside and renamed into place, so that
    // concurrent test runs never see a partly written file and none pile up.
    let dir = std::env::temp_dir();
    let path = dir.join(format!("keel-ctl-{name}.elf"));
    let part = dir.join(format!("keel-ctl-{name}.elf.{}", std::process::id()));
    std::fs::write(&part, out).unwrap();
    std::fs::rename(&part, &path).unwrap();
    path
}

fn config(name: &str, code: &[u32], vcpus: u32, firmware: Firmware) -> MachineConfig {
    MachineConfig {
        vcpus,
        memory_mib: 16,
        kernel: elf_file(name, code),
        initrd: None,
        cmdline: String::new(),
        firmware,
        virtio: vec![],
        accel: keel_machine::Accel::default(),
    }
}

fn counter(machine: &Machine) -> u64 {
    let mut b = [0u8; 8];
    machine.ram.read_slice(COUNTER, &mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Waits (with a deadline) until the running machine's counter passes `above`.
fn wait_count_above(vm: &VmController, above: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = vm.machine().expect("a running machine");
        let c = counter(&m);
        if c > above {
            return c;
        }
        assert!(Instant::now() < deadline, "the counter stays at {c}");
        std::thread::yield_now();
    }
}

fn started(cfg: MachineConfig) -> VmController {
    let vm = VmController::new(cfg, Console::headless());
    vm.start().unwrap();
    vm
}

/// Pause holds the counting hart and a hart that is asleep in WFI (bare metal starts every
/// hart) or stopped (keel's SBI starts only hart 0; hart 1 waits for an HSM start that never
/// comes): pause returns only once every vCPU thread is parked.
#[test]
fn pause_parks_every_hart_and_freezes_guest_time() {
    for (name, firmware) in [("wfi", Firmware::None), ("hsm", Firmware::Sbi)] {
        let vm = started(config(name, &counting_program(), 2, firmware));
        wait_count_above(&vm, 1000);
        vm.pause().unwrap();
        let m = vm.machine().unwrap();
        let (count, time) = (counter(&m), m.clock.now());
        // A measurement, not synchronisation: long enough for millions of increments and
        // 2,000,000 clock ticks had the VM kept running.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(counter(&m), count, "{name}: a vCPU ran while paused");
        assert_eq!(m.clock.now(), time, "{name}: guest time moved while paused");
        assert!(matches!(vm.state(), VmState::Paused));
        vm.resume().unwrap();
        wait_count_above(&vm, count);
        assert!(m.clock.now() > time);
        // Resumed guest time goes on from where it stood, not from the host's clock.
        assert!(m.clock.now() - time < 2_000_000, "{name}: the pause counted as guest time");
        vm.kill().unwrap();
        assert_eq!(vm.wait().unwrap(), Outcome::Quit);
    }
}

#[test]
fn the_guest_powering_off_ends_the_vm() {
    let vm = started(config("off", &power_off_program(), 1, Firmware::None));
    assert_eq!(vm.wait().unwrap(), Outcome::PowerOff);
    assert!(matches!(vm.state(), VmState::Stopped(Ok(Outcome::PowerOff))));
    assert!(vm.machine().is_none());
    let up = vm.uptime().unwrap();
    assert_eq!(vm.uptime().unwrap(), up, "uptime stops at the end");
    assert!(matches!(vm.pause(), Err(ControlError::WrongState { state: "stopped", .. })));
    assert!(vm.reset().is_err());
    assert!(matches!(vm.stop(Duration::ZERO), Ok(Ok(Outcome::PowerOff))));
}

#[test]
fn stop_forces_a_guest_that_does_not_answer() {
    // A bare program has no serial driver to take the SysRq keys.
    let vm = started(config("stop", &counting_program(), 1, Firmware::None));
    wait_count_above(&vm, 0);
    let end = vm.stop(Duration::from_millis(300)).unwrap();
    assert_eq!(end.unwrap(), Outcome::Quit);
    assert!(vm.machine().is_none(), "every vCPU thread has ended");
}

#[test]
fn stopping_a_paused_vm_ends_it() {
    let vm = started(config("paused-stop", &counting_program(), 2, Firmware::None));
    vm.pause().unwrap();
    vm.kill().unwrap();
    assert_eq!(vm.wait().unwrap(), Outcome::Quit);
}

#[test]
fn reset_builds_a_new_machine_and_unpauses() {
    let vm = started(config("reset", &counting_program(), 2, Firmware::None));
    wait_count_above(&vm, 1000);
    let first = vm.machine().unwrap();
    vm.pause().unwrap();
    vm.reset().unwrap();
    assert!(matches!(vm.state(), VmState::Running));
    let second = vm.machine().unwrap();
    assert!(!Arc::ptr_eq(&first, &second), "a reset builds a new machine");
    wait_count_above(&vm, 0);
    assert!(!second.clock.is_paused());
    vm.kill().unwrap();
    assert_eq!(vm.wait().unwrap(), Outcome::Quit);
}

#[test]
fn requests_in_the_wrong_state_are_refused() {
    let vm = VmController::new(config("states", &counting_program(), 1, Firmware::None), {
        Console::headless()
    });
    assert!(matches!(vm.state(), VmState::NotStarted));
    assert_eq!(vm.uptime(), None);
    let refused = |r: Result<(), ControlError>, what: &str| match r {
        Err(e @ ControlError::WrongState { .. }) => e.to_string(),
        other => panic!("{what}: {other:?}"),
    };
    assert_eq!(refused(vm.pause(), "pause"), "cannot pause: the VM is not started");
    refused(vm.resume(), "resume");
    refused(vm.reset(), "reset");
    refused(vm.kill(), "kill");
    refused(vm.request_poweroff(), "power off");
    assert!(vm.wait_timeout(Duration::ZERO).is_none());
    vm.start().unwrap();
    assert!(matches!(vm.start(), Err(ControlError::WrongState { state: "running", .. })));
    assert_eq!(refused(vm.resume(), "resume"), "cannot resume: the VM is running");
    assert!(matches!(vm.balloon_status(), Err(ControlError::NoBalloon)));
}

#[test]
fn a_machine_that_cannot_be_built_is_a_start_error() {
    let mut cfg = config("missing", &counting_program(), 1, Firmware::None);
    cfg.kernel = PathBuf::from("/nonexistent/keel-kernel");
    let vm = VmController::new(cfg, Console::headless());
    let err = vm.start().unwrap_err();
    assert!(matches!(err, ControlError::Start(_)));
    assert!(err.to_string().contains("/nonexistent/keel-kernel"), "{err}");
    assert!(matches!(vm.state(), VmState::NotStarted));
}

#[test]
fn the_balloon_target_is_set_and_read_back() {
    let mut cfg = config("balloon", &counting_program(), 1, Firmware::None);
    cfg.virtio = vec![VirtioConfig::Balloon(BalloonConfig {
        target_mib: 0,
        stats_interval_s: 0,
        free_page_reporting: false,
    })];
    let vm = started(cfg);
    vm.set_balloon_target(4).unwrap();
    let status = vm.balloon_status().unwrap();
    assert_eq!((status.target_mib(), status.actual_mib()), (4, 0), "no driver takes pages");
    assert!(matches!(vm.set_balloon_target(u64::MAX), Err(ControlError::Balloon(_))));
    // The target carries over a reset.
    vm.reset().unwrap();
    assert_eq!(vm.balloon_status().unwrap().target_mib(), 4);
    vm.kill().unwrap();
}

#[test]
fn pause_and_resume_many_times_in_a_row() {
    let vm = started(config("cycles", &counting_program(), 3, Firmware::None));
    let mut count = 0;
    for _ in 0..200 {
        vm.pause().unwrap();
        let m = vm.machine().unwrap();
        let frozen = counter(&m);
        assert!(frozen >= count, "the count went back");
        assert_eq!(counter(&m), frozen);
        count = frozen;
        vm.resume().unwrap();
    }
    wait_count_above(&vm, count);
    vm.kill().unwrap();
    assert_eq!(vm.wait().unwrap(), Outcome::Quit);
}
