//! End-to-end: controlling a running VM through keel-vmm's `VmController`: pause and resume
//! (guest time stands still in between), power-off through the serial console's magic SysRq,
//! stop, and hard reset, all on the real default guest (Debian's kernel and keel's initramfs).

mod common;

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use keel_machine::{Firmware, MachineConfig};
use keel_vmm::{Console, Outcome, VmController, VmState};

/// Prints the guest's uptime (seconds since boot, from its clock) five times a second.
const UPTIME_LOOP: &str = "echo booted; while true; do cat /proc/uptime; sleep 0.2; done";

/// Generous: the guest boots on an interpreter, on a machine that may run other tests too.
const BOOT_LIMIT: Duration = Duration::from_secs(240);

fn config(script: &str) -> MachineConfig {
    let (kernel, initrd) = common::image().clone();
    let args: Vec<String> = ["sh", "-c", script].iter().map(|s| s.to_string()).collect();
    MachineConfig {
        vcpus: 1,
        memory_mib: 256,
        kernel,
        initrd: Some(initrd),
        cmdline: format!("console=ttyS0 panic=-1 quiet {}", keel_guest::command_param(&args)),
        firmware: Firmware::Sbi,
        virtio: vec![],
        accel: keel_machine::Accel::default(),
    }
}

/// A client of the VM's console, collecting what it receives.
struct Screen {
    rx: Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Screen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Takes whatever has arrived, without waiting.
    fn take_arrived(&mut self) {
        while let Ok(chunk) = self.rx.try_recv() {
            self.seen.extend(chunk);
        }
    }

    /// Waits until `done` holds for the text so far; fails the test at the deadline.
    fn wait_for(&mut self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.text()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.seen.extend(chunk),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no {what} within {limit:?}; console:\n{}", self.text())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the console closed before {what}; console:\n{}", self.text())
                }
            }
        }
    }
}

/// The uptime values (first field of /proc/uptime) in the text, in order.
fn uptimes(text: &str) -> Vec<f64> {
    text.lines().filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok()).collect()
}

fn boot(script: &str) -> (VmController, Screen) {
    let console = Console::headless();
    let (rx, _input) = console.attach();
    let vm = VmController::new(config(script), console);
    vm.start().expect("start the VM");
    (vm, Screen { rx, seen: Vec::new() })
}

#[test]
fn pause_freezes_the_guest_and_its_clock_and_resume_goes_on() {
    let (vm, mut screen) = boot(UPTIME_LOOP);
    screen.wait_for("three uptime lines", BOOT_LIMIT, |t| uptimes(t).len() >= 3);

    vm.pause().unwrap();
    assert!(matches!(vm.state(), VmState::Paused));
    let clock = vm.machine().expect("a machine while paused").clock.clone();
    // Everything the guest printed before the pause is delivered; then nothing more comes.
    vm.console().flush_output();
    screen.take_arrived();
    let before = screen.seen.len();
    let guest_time = clock.now();
    // A measurement, not synchronisation: a host wait long enough for the guest loop to print
    // about ten lines and for its clock to move 2 s, had either kept going.
    std::thread::sleep(Duration::from_secs(2));
    vm.console().flush_output();
    screen.take_arrived();
    assert_eq!(screen.seen.len(), before, "output while paused: {}", screen.text());
    assert_eq!(clock.now(), guest_time, "guest time moved while paused");
    assert!(vm.pause().is_err(), "pausing twice is refused");

    let last = *uptimes(&screen.text()).last().unwrap();
    vm.resume().unwrap();
    assert!(matches!(vm.state(), VmState::Running));
    let count = uptimes(&screen.text()).len();
    screen.wait_for("uptime lines after resume", BOOT_LIMIT, |t| uptimes(t).len() >= count + 3);
    let after = uptimes(&screen.text());
    // The guest's uptime goes on from where it stood: the 2 s paused are not in it (the loop
    // prints every 0.2 s of guest time; allow for a slow guest).
    let next = after[count];
    assert!(next > last, "uptime went backwards: {last} -> {next}");
    assert!(next - last < 1.5, "guest time advanced while paused: {last} -> {next}");

    let end = vm.stop(Duration::from_secs(60)).unwrap();
    assert_eq!(end.unwrap(), Outcome::PowerOff);
}

#[test]
fn sysrq_over_the_serial_line_powers_the_guest_off() {
    let (vm, mut screen) = boot(UPTIME_LOOP);
    screen.wait_for("an uptime line", BOOT_LIMIT, |t| !uptimes(t).is_empty());
    vm.request_poweroff().unwrap();
    let end = vm.wait_timeout(Duration::from_secs(120)).expect("the guest powers off");
    assert_eq!(end.unwrap(), Outcome::PowerOff);
    assert!(matches!(vm.state(), VmState::Stopped(Ok(Outcome::PowerOff))));
    vm.console().flush_output();
    screen.take_arrived();
    let text = screen.text();
    // The kernel's own account of each key (drivers/tty/sysrq.c).
    for header in ["sysrq: Emergency Sync", "sysrq: Emergency Remount R/O", "sysrq: Power Off"] {
        assert!(text.contains(header), "no {header:?} on the console:\n{text}");
    }
    assert!(vm.request_poweroff().is_err(), "a stopped VM cannot be asked");
}

#[test]
fn reset_boots_the_guest_again() {
    let (vm, mut screen) = boot(UPTIME_LOOP);
    screen.wait_for("the first boot", BOOT_LIMIT, |t| t.contains("booted"));
    let uptime_before = vm.uptime().unwrap();
    vm.reset().unwrap();
    assert!(matches!(vm.state(), VmState::Running));
    screen.wait_for("the second boot", BOOT_LIMIT, |t| t.matches("booted").count() == 2);
    assert!(vm.uptime().unwrap() > uptime_before, "uptime counts across the reset");
    // The new machine is controllable like the first one.
    let end = vm.stop(Duration::from_secs(60)).unwrap();
    assert_eq!(end.unwrap(), Outcome::PowerOff);
}
