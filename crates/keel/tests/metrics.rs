//! End-to-end: a VM's metrics (`keel_vmm::metrics`) from a real guest. The machine is built
//! and run here the way the VMM runs it (one thread per vCPU), with a disk and an entropy
//! device, and the metrics are read while it runs and after it powered off.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use keel_machine::{ConsoleSink, GuestExit, Machine, MachineConfig, Vcpu, VcpuExit};
use keel_vmm::metrics::{collect, to_prometheus, Metrics};
use keel_vmm::VmFile;

const DEADLINE: Duration = Duration::from_secs(180);
const MIB: u64 = 1 << 20;

/// A console that keeps what the guest printed, to show when something fails.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("metrics").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The machine for `vm_text` (a VM file's body) running `script` in the guest's shell.
fn machine_config(dir: &Path, vm_text: &str, script: &str) -> MachineConfig {
    let (kernel, initrd) = image().clone();
    let vm_path = dir.join("vm.toml");
    std::fs::write(&vm_path, vm_text).unwrap();
    let vm = VmFile::load(&vm_path).unwrap();
    let command = ["sh", "-c", script].map(String::from);
    MachineConfig {
        vcpus: vm.vcpus.unwrap_or(1),
        memory_mib: vm.memory.unwrap_or(256),
        kernel,
        initrd: Some(initrd),
        cmdline: format!(
            "console=ttyS0 panic=-1 quiet loglevel=1 {}",
            keel_guest::command_param(&command)
        ),
        firmware: vm.firmware(),
        virtio: vm.virtio("metrics-test"),
        accel: vm.accel(),
    }
}

/// Runs the machine's vCPUs on their own threads until the first one stops, reading the
/// metrics every 50 ms meanwhile. Returns how the VM ended and the metrics read while it ran.
fn run(machine: &mut Machine, started: Instant) -> (VcpuExit, Vec<Metrics>) {
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = machine
        .take_vcpus()
        .into_iter()
        .map(|mut vcpu| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(vcpu.run());
            })
        })
        .collect();
    drop(tx);
    let mut live = Vec::new();
    let exit = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(exit) => break exit,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(started.elapsed() < DEADLINE, "the guest did not finish in time");
                live.push(collect(machine, started));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("every vCPU thread died"),
        }
    };
    machine.stop();
    for t in threads {
        t.join().expect("a vCPU thread panicked");
    }
    (exit, live)
}

#[test]
fn a_guest_reading_its_disk_shows_in_the_metrics() {
    let dir = scratch("disk");
    std::fs::write(dir.join("disk.img"), vec![0x5a; 4 * MIB as usize]).unwrap();
    let config = machine_config(
        &dir,
        "vcpus = 2\nmemory = 256\nrng = true\n[[disk]]\npath = \"disk.img\"\n",
        "dd if=/dev/vda of=/dev/null bs=64k count=16 && head -c 4096 /dev/hwrng >/dev/null && \
         dd if=/dev/zero of=/dev/vda bs=4k count=8 seek=512 conv=fsync",
    );
    let console = Captured::default();
    let sink: ConsoleSink = Arc::new(Mutex::new(Box::new(console.clone())));
    let started = Instant::now();
    let mut machine = Machine::build(&config, sink).unwrap();
    let (exit, live) = run(&mut machine, started);
    assert_eq!(exit, VcpuExit::Guest(GuestExit::PowerOff), "console:\n{}", console.text());

    let m = collect(&machine, started);
    // The vCPUs: both ran; hart 0 booted the kernel (SBI calls, hart 1 started through HSM).
    assert_eq!(m.vcpus.len(), 2);
    for (i, c) in m.vcpus.iter().enumerate() {
        assert_eq!(c.id, i as u32);
        assert!(c.instructions > 1_000_000, "vcpu{i}: {c:?}");
        assert!(c.exits.exceptions > 0 && c.interrupts_taken > 0, "vcpu{i}: {c:?}");
        assert_eq!(c.sbi_calls.values().sum::<u64>(), c.exits.sbi, "vcpu{i}");
    }
    let boot = &m.vcpus[0];
    assert!(boot.instructions > 100_000_000, "booting Linux takes more: {boot:?}");
    assert!(boot.exits.sbi > 0 && boot.sbi_calls["hsm"] > 0, "{boot:?}");
    assert!(boot.exits.mmio > 0, "the UART and virtio registers: {boot:?}");
    // The translator's figures (the VM file names no engine: the translator runs): a boot
    // translates thousands of blocks and chains them.
    assert!(boot.blocks_translated > 1000, "{boot:?}");
    assert!(boot.translated_bytes > boot.blocks_translated * 16, "{boot:?}");
    assert!(boot.translate_ns > 0 && boot.blocks_chained > 0, "{boot:?}");
    assert!(boot.native_exits > 0, "{boot:?}");
    assert!(m.vcpus.iter().map(|c| c.exits.interrupts).sum::<u64>() > 0, "timer ticks");

    // The disk: at least what dd moved, in requests no larger than Linux makes them.
    let vda = &m.devices["vda"];
    assert!(vda["read_bytes"] >= MIB, "{vda:?}");
    assert!(vda["read_ops"] >= 2, "{vda:?}");
    assert!(vda["write_bytes"] >= 32 * 1024, "{vda:?}");
    assert!(vda["write_ops"] >= 1 && vda["flush_ops"] >= 1, "conv=fsync flushes: {vda:?}");
    assert_eq!(vda["errors"], 0, "{vda:?}");
    assert!(vda["interrupts"] > 0 && vda["queue_notifications"] > 0, "{vda:?}");
    let rng = &m.devices["rng"];
    assert!(rng["bytes"] >= 4096, "{rng:?}");
    assert_eq!(m.devices.len(), 2, "{:?}", m.devices.keys());

    assert_eq!(m.memory.guest_bytes, 256 * MIB);
    assert!(m.memory.rss_bytes > 16 * MIB, "the guest touched memory: {:?}", m.memory);
    assert!(m.uptime_s > 0.0 && m.uptime_s < DEADLINE.as_secs_f64());

    // Read while the VM ran: counters only go up, and the last reading before the end was
    // already most of the way there.
    assert!(!live.is_empty(), "the guest ran for less than 50 ms?");
    let mut readings = live.clone();
    readings.push(m.clone());
    for pair in readings.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        for (x, y) in a.vcpus.iter().zip(&b.vcpus) {
            assert!(x.instructions <= y.instructions && x.exits.sbi <= y.exits.sbi);
        }
        assert!(a.devices["vda"]["read_bytes"] <= b.devices["vda"]["read_bytes"]);
    }
    assert!(live.iter().any(|l| l.vcpus[0].instructions > 0), "published while running");

    // The same numbers in the Prometheus text.
    let text = to_prometheus(&m);
    let line = format!("keel_device_read_bytes_total{{device=\"vda\"}} {}\n", vda["read_bytes"]);
    assert!(text.contains(&line), "{text}");
    let line = format!("keel_vcpu_instructions_total{{vcpu=\"1\"}} {}\n", m.vcpus[1].instructions);
    assert!(text.contains(&line), "{text}");
    assert!(text.contains(&format!("keel_memory_guest_bytes {}\n", 256 * MIB)));
}
