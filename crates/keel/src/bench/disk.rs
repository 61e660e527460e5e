//! `keel bench disk`: sequential read and write throughput of a raw virtio-blk disk, measured
//! inside the guest with dd, in keel and in QEMU (`-device virtio-blk-device`, QEMU's default
//! writeback cache, like keel's pread/pwrite through the host page cache).

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use keel_guest::GuestImage;

use super::{median, tail, MEMORY_MIB, QEMU};
use crate::run::DEFAULT_CMDLINE;

/// Reads the whole disk, then writes it whole with an fsync at the end (so the write figure
/// includes getting the data to the host), timed by the guest clock.
fn script(mib: u64) -> String {
    format!(
        "read a x </proc/uptime; dd if=/dev/vda of=/dev/null bs=1M count={mib} 2>/dev/null; \
         read b x </proc/uptime; dd if=/dev/zero of=/dev/vda bs=1M count={mib} conv=fsync \
         2>/dev/null; read c x </proc/uptime; echo \"disk $a $b $c\""
    )
}

/// (read, write) MiB/s from the script's `disk A B C` line.
fn rates(out: &str, mib: u64) -> Result<(f64, f64)> {
    let line =
        out.lines().find_map(|l| l.trim().strip_prefix("disk ")).context("no `disk` line")?;
    let t: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match t[..] {
        [a, b, c] if b > a && c > b => Ok((mib as f64 / (b - a), mib as f64 / (c - b))),
        _ => bail!("malformed `disk` line: {line}"),
    }
}

/// Fills the disk with non-zero data, so the first read in each VM reads real blocks.
fn fill(path: &Path, mib: u64) -> Result<()> {
    let chunk: Vec<u8> =
        (0..1 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut data = Vec::with_capacity((mib << 20) as usize);
    for _ in 0..mib {
        data.extend_from_slice(&chunk);
    }
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}

/// Runs the benchmark on `image` (the caller checked that QEMU is there).
pub fn bench_disk(image: &GuestImage, runs: usize, mib: u64) -> Result<ExitCode> {
    if runs == 0 || mib == 0 {
        bail!("--runs and --size must be at least 1");
    }
    let dir = super::Scratch::new("disk")?;
    let disk = dir.0.join("disk.img");
    let vm = dir.0.join("vm.toml");
    let disk_str = disk.to_string_lossy().into_owned();
    std::fs::write(&vm, format!("[[disk]]\npath = {disk_str:?}\nformat = \"raw\"\n"))?;

    let args = ["sh".to_string(), "-c".to_string(), script(mib)];
    let cmdline = format!("{DEFAULT_CMDLINE} loglevel=1 {}", keel_guest::command_param(&args));
    let keel_exe = std::env::current_exe().context("cannot find keel's own executable")?;
    let kernel = image.kernel.to_string_lossy().into_owned();
    let initrd = image.initrd.to_string_lossy().into_owned();
    let memory = MEMORY_MIB.to_string();
    let mut keel = Command::new(keel_exe);
    keel.arg("run")
        .arg(&vm)
        .args(["--kernel", &kernel, "--initrd", &initrd, "--memory", &memory])
        .args(["--cmdline", &cmdline]);
    let mut qemu = Command::new(QEMU);
    qemu.args(["-M", "virt", "-m", &memory, "-smp", "1", "-nographic", "-no-reboot"])
        .args(["-kernel", &kernel, "-initrd", &initrd, "-append", &cmdline])
        .args(["-drive", &format!("if=none,file={disk_str},format=raw,id=d")])
        .args(["-device", "virtio-blk-device,drive=d"]);

    println!("guest: {} (kernel {}), {MEMORY_MIB} MiB, 1 vCPU", kernel, image.kernel_version);
    println!(
        "disk: {mib} MiB raw image in {}; dd bs=1M, the write with conv=fsync",
        dir.0.display()
    );
    let (mut kr, mut kw, mut qr, mut qw) = (vec![], vec![], vec![], vec![]);
    // Alternate, so slow drifts of the machine affect both alike.
    for i in 0..runs {
        fill(&disk, mib)?;
        let (r, w) = run("keel", &mut keel, mib)?;
        kr.push(r);
        kw.push(w);
        fill(&disk, mib)?;
        let (r2, w2) = run("qemu", &mut qemu, mib)?;
        qr.push(r2);
        qw.push(w2);
        println!(
            "run {}: keel read {r:.1} MiB/s, write {w:.1} MiB/s; qemu read {r2:.1} MiB/s, write \
             {w2:.1} MiB/s",
            i + 1
        );
    }
    let (kr, kw, qr, qw) = (median(&mut kr), median(&mut kw), median(&mut qr), median(&mut qw));
    println!("keel median: read {kr:.1} MiB/s, write {kw:.1} MiB/s");
    println!("qemu median: read {qr:.1} MiB/s, write {qw:.1} MiB/s");
    println!(
        "ratio keel/qemu (throughput, higher is better): read {:.2}, write {:.2}",
        kr / qr,
        kw / qw
    );
    Ok(ExitCode::SUCCESS)
}

fn run(name: &str, cmd: &mut Command, mib: u64) -> Result<(f64, f64)> {
    let stdout = super::run_to_success(name, cmd)?;
    rates(&stdout, mib).with_context(|| format!("{name}'s output:\n{}", tail(&stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_uptime_triple() {
        let (r, w) = rates("x\ndisk 1.00 3.00 7.00\n", 256).unwrap();
        assert!((r - 128.0).abs() < 1e-9 && (w - 64.0).abs() < 1e-9);
        assert!(rates("disk 1 1 2\n", 256).is_err());
        assert!(rates("nothing\n", 256).is_err());
    }
}
