//! End-to-end: virtio-blk disks (`[[disk]]` in a VM file) with the real Linux guest and real
//! image files: ext4 across reboots, data integrity both ways, read-only disks, qcow2 overlays,
//! image locking, serial numbers and rate limiting.
//!
//! Host tools: e2fsprogs (mkfs.ext4, e2fsck, debugfs) and qemu-img (Debian's qemu-utils) for
//! the qcow2 test; a test whose tool is missing fails and says what to install.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const DEADLINE: Duration = Duration::from_secs(180);
const MIB: usize = 1 << 20;

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("block").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a VM file in `dir` with the given `[[disk]]` sections' bodies.
fn vm_file(dir: &Path, disks: &[&str]) -> PathBuf {
    let mut text = String::new();
    for d in disks {
        text.push_str("[[disk]]\n");
        text.push_str(d);
        text.push('\n');
    }
    let path = dir.join("vm.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Boots the VM and runs `script` in the guest's shell.
fn run_script(vm: &Path, script: &str) -> Output {
    image();
    let mut cmd = keel();
    cmd.arg("run").arg(vm).args(["--", "sh", "-c", script]);
    run_with_deadline(&mut cmd, DEADLINE)
}

/// Like [`run_script`], and the script must succeed.
fn run_ok(vm: &Path, script: &str) -> String {
    let out = run_script(vm, script);
    assert!(
        out.status.success(),
        "guest script failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// A host program, also looked for in the sbin directories (e2fsprogs lives there and they
/// are not always on a user's PATH).
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("this test needs {name} on the host: install Debian's {package} package")
    })
}

fn host(program: &Path, args: &[&str]) -> Output {
    Command::new(program).args(args).stdin(Stdio::null()).output().unwrap()
}

/// The MD5 of `data` as md5sum prints it (the guest has md5sum too).
fn md5(data: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run md5sum");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The words of the line starting with `key` in the guest's output.
fn field<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} line in the guest's output:\n{out}"))
        .split_whitespace()
        .collect()
}

fn sparse_file(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn an_ext4_file_survives_power_off_and_a_second_boot() {
    let dir = scratch("ext4");
    let disk = dir.join("fs.img");
    sparse_file(&disk, 64 << 20);
    let mkfs = host(&tool("mkfs.ext4", "e2fsprogs"), &["-F", "-q", disk.to_str().unwrap()]);
    assert!(mkfs.status.success(), "mkfs.ext4: {}", String::from_utf8_lossy(&mkfs.stderr));
    let vm = vm_file(&dir, &[r#"path = "fs.img""#]);

    let first = run_ok(
        &vm,
        "mount -t ext4 /dev/vda /mnt && head -c 3000000 /dev/urandom >/mnt/data && \
         echo written $(md5sum </mnt/data) && fstrim /mnt && umount /mnt",
    );
    let sum = field(&first, "written ")[0].to_string();

    let second = run_ok(&vm, "mount -t ext4 -o ro /dev/vda /mnt && echo read $(md5sum </mnt/data)");
    assert_eq!(field(&second, "read ")[0], sum, "the file read in the second boot");

    let fsck = host(&tool("e2fsck", "e2fsprogs"), &["-fn", disk.to_str().unwrap()]);
    assert!(
        fsck.status.success(),
        "e2fsck -fn finds problems:\n{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let dumped = host(&tool("debugfs", "e2fsprogs"), &["-R", "cat /data", disk.to_str().unwrap()]);
    assert_eq!(dumped.stdout.len(), 3_000_000, "the file as the host's debugfs reads it");
    assert_eq!(md5(&dumped.stdout), sum);
}

#[test]
fn a_root_disk_made_from_the_image_keeps_files_across_boots() {
    let template = image().0.parent().unwrap().join("rootfs.ext4");
    let template_md5 = md5(&std::fs::read(&template).unwrap());
    for format in ["raw", "qcow2"] {
        let dir = scratch(&format!("rootfs-{format}"));
        let disk = dir.join(format!("root.{format}"));
        let mut make = keel();
        make.args(["image", "rootfs", disk.to_str().unwrap(), "--format", format]);
        let made = run_with_deadline(&mut make, DEADLINE);
        assert!(made.status.success(), "keel image rootfs: {}", stderr(&made));
        let again = run_with_deadline(&mut make, DEADLINE);
        assert!(!again.status.success(), "an existing disk is never overwritten");
        assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));

        let vm = dir.join("vm.toml");
        std::fs::write(
            &vm,
            format!(
                "cmdline = \"console=ttyS0 root=/dev/vda\"\n\
                 [[disk]]\npath = \"root.{format}\"\nformat = \"{format}\"\n"
            ),
        )
        .unwrap();
        let first = run_ok(&vm, "grep ' / ' /proc/mounts; date > /root/first-boot; echo ok");
        assert!(first.contains("/dev/vda / ext4 rw"), "root is the disk: {first}");
        let second = run_ok(&vm, "cat /root/first-boot >/dev/null && echo kept");
        assert!(second.contains("kept"), "{format}: the file from the first boot: {second}");
        if format == "raw" {
            let fsck = host(&tool("e2fsck", "e2fsprogs"), &["-fn", disk.to_str().unwrap()]);
            assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
        }
        assert_eq!(
            md5(&std::fs::read(&template).unwrap()),
            template_md5,
            "the template under every VM's disk is never written"
        );
    }
}

#[test]
fn data_crosses_intact_in_both_directions() {
    let dir = scratch("integrity");
    let disk = dir.join("raw.img");
    let host_data = random_bytes(12 * MIB, 0x6b65_656c);
    let mut image = host_data.clone();
    image.resize(32 * MIB, 0);
    std::fs::write(&disk, &image).unwrap();
    let vm = vm_file(&dir, &[r#"path = "raw.img""#]);

    // The guest reads what the host wrote, writes 8 MiB at 16 MiB (from /tmp, a tmpfs), and
    // discards 4 MiB of zeroes (they may read as zeroes or be freed).
    let out = run_ok(
        &vm,
        "echo read $(dd if=/dev/vda bs=1M count=12 2>/dev/null | md5sum) && \
         head -c 8388608 /dev/urandom >/tmp/x && echo wrote $(md5sum </tmp/x) && \
         dd if=/tmp/x of=/dev/vda bs=1M seek=16 conv=fsync 2>/dev/null && \
         blkdiscard -o 12582912 -l 4194304 /dev/vda",
    );
    assert_eq!(field(&out, "read ")[0], md5(&host_data), "the guest's view of the host's data");
    let after = std::fs::read(&disk).unwrap();
    assert_eq!(after.len(), 32 * MIB, "the image keeps its size");
    assert_eq!(md5(&after[16 * MIB..24 * MIB]), field(&out, "wrote ")[0]);
    assert!(after[..12 * MIB] == host_data[..], "the rest is untouched");
    assert!(after[12 * MIB..16 * MIB].iter().chain(&after[24 * MIB..]).all(|&b| b == 0));
}

#[test]
fn a_read_only_disk_refuses_writes() {
    let dir = scratch("read-only");
    let disk = dir.join("ro.img");
    let data = random_bytes(4 * MIB, 7);
    std::fs::write(&disk, &data).unwrap();
    let vm = vm_file(&dir, &["path = \"ro.img\"\nread_only = true"]);

    let out = run_ok(
        &vm,
        "echo ro $(cat /sys/block/vda/ro) $(blockdev --getro /dev/vda); \
         if dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=fsync 2>/dev/null; \
         then echo dd wrote; else echo dd failed; fi; \
         echo read $(dd if=/dev/vda bs=1M count=4 2>/dev/null | md5sum)",
    );
    assert_eq!(field(&out, "ro "), ["1", "1"], "the guest sees a read-only disk");
    assert!(out.contains("dd failed"), "a write must fail: {out}");
    assert_eq!(field(&out, "read ")[0], md5(&data), "reads still work");
    assert!(std::fs::read(&disk).unwrap() == data, "the image is byte-identical");
}

#[test]
fn a_qcow2_overlay_takes_the_writes_and_leaves_its_base_alone() {
    let qemu_img = tool("qemu-img", "qemu-utils");
    let dir = scratch("qcow2");
    let base = random_bytes(16 * MIB, 42);
    std::fs::write(dir.join("base.raw"), &base).unwrap();
    let overlay = dir.join("overlay.qcow2");
    let create = host(
        &qemu_img,
        &["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", overlay.to_str().unwrap()],
    );
    assert!(
        create.status.success(),
        "qemu-img create: {}",
        String::from_utf8_lossy(&create.stderr)
    );
    let vm = vm_file(&dir, &["path = \"overlay.qcow2\"\nformat = \"qcow2\""]);

    // 4 MiB written at 3 MiB + 512 bytes: partial clusters at both ends (64 KiB clusters).
    let out = run_ok(
        &vm,
        "echo base $(dd if=/dev/vda bs=1M count=1 2>/dev/null | md5sum) && \
         head -c 4194304 /dev/urandom >/tmp/x && echo wrote $(md5sum </tmp/x) && \
         dd if=/tmp/x of=/dev/vda bs=512 seek=6145 conv=fsync 2>/dev/null && \
         echo back $(dd if=/dev/vda bs=512 skip=6145 count=8192 2>/dev/null | md5sum)",
    );
    assert_eq!(field(&out, "base ")[0], md5(&base[..MIB]), "reads fall through to the base");
    let wrote = field(&out, "wrote ")[0];
    assert_eq!(field(&out, "back ")[0], wrote);

    assert!(std::fs::read(dir.join("base.raw")).unwrap() == base, "the base is byte-identical");
    let check = host(&qemu_img, &["check", overlay.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "qemu-img check on the overlay keel wrote:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let flat = dir.join("flat.raw");
    let convert = host(
        &qemu_img,
        &["convert", "-O", "raw", overlay.to_str().unwrap(), flat.to_str().unwrap()],
    );
    assert!(convert.status.success(), "{}", String::from_utf8_lossy(&convert.stderr));
    let flat = std::fs::read(flat).unwrap();
    let (start, end) = (3 * MIB + 512, 7 * MIB + 512);
    assert_eq!(flat.len(), base.len());
    assert_eq!(md5(&flat[start..end]), wrote, "qemu-img sees the guest's data");
    assert!(flat[..start] == base[..start] && flat[end..] == base[end..], "and the base elsewhere");
}

#[test]
fn a_disk_in_use_by_a_running_vm_is_refused_before_boot() {
    image();
    let dir = scratch("locking");
    sparse_file(&dir.join("shared.img"), 8 << 20);
    let vm = vm_file(&dir, &[r#"path = "shared.img""#]);

    // The first VM holds the disk until it reads a line from its console.
    let mut first = keel()
        .arg("run")
        .arg(&vm)
        .args(["--", "sh", "-c", "echo ready; read line; echo got $line"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = BufReader::new(first.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = rx.recv_timeout(DEADLINE);
    if ready.as_deref() != Ok("ready") {
        let _ = first.kill();
        let err = first.wait_with_output().map(|o| stderr(&o)).unwrap_or_default();
        panic!("the first VM did not come up ({ready:?}); stderr: {err}");
    }

    let started = Instant::now();
    let second = run_script(&vm, "echo booted");
    let took = started.elapsed();
    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    let first_line = rx.recv_timeout(DEADLINE);
    let status = first.wait().unwrap();

    assert!(!second.status.success(), "the second VM must fail");
    let err = stderr(&second);
    assert!(
        err.contains("shared.img is in use by another VM or program")
            && err.contains("read_only = true"),
        "the error says what is wrong and what to do: {err}"
    );
    assert!(!stdout(&second).contains("booted"), "it failed before booting");
    // A boot takes seconds even on an idle machine; refusing the disk takes milliseconds.
    assert!(took < Duration::from_secs(10), "it failed right away, not after booting: {took:?}");
    assert_eq!(first_line.as_deref(), Ok("got go"));
    assert!(status.success(), "the first VM is unaffected: {status}");
}

#[test]
fn the_serial_number_shows_in_the_guest() {
    let dir = scratch("serial");
    sparse_file(&dir.join("a.img"), 1 << 20);
    sparse_file(&dir.join("b.img"), 2 << 20);
    let vm =
        vm_file(&dir, &["path = \"a.img\"\nserial = \"keel-serial-0123456\"", "path = \"b.img\""]);
    let out = run_ok(
        &vm,
        "echo a $(cat /sys/block/vda/serial) $(cat /sys/block/vda/size); \
         echo b $(cat /sys/block/vdb/serial) $(cat /sys/block/vdb/size)",
    );
    assert_eq!(field(&out, "a "), ["keel-serial-0123456", "2048"]);
    assert_eq!(field(&out, "b "), ["4096"], "no serial: an empty one; disks in file order");
}

#[test]
fn a_rate_limited_disk_reads_at_its_limit() {
    let dir = scratch("rate-limit");
    sparse_file(&dir.join("slow.img"), 20 << 20);
    sparse_file(&dir.join("fast.img"), 20 << 20);
    // 4 MiB/s in 1 MiB buckets (a bucket must hold the largest request, ~1 MiB for Linux, or
    // a request would be charged less than its size).
    let limit = 4.0 * MIB as f64;
    let vm = vm_file(
        &dir,
        &[
            "path = \"slow.img\"\nrate_limit = { bandwidth = { size = 1048576, refill_time_ms = 250 } }",
            "path = \"fast.img\"",
        ],
    );
    // The first MiB empties the bucket, so the timed read runs at the steady rate.
    let out = run_ok(
        &vm,
        "dd if=/dev/vda of=/dev/null bs=1M count=1 2>/dev/null; \
         read a x </proc/uptime; dd if=/dev/vda of=/dev/null bs=1M skip=1 count=16 2>/dev/null; \
         read b x </proc/uptime; dd if=/dev/vdb of=/dev/null bs=1M skip=1 count=16 2>/dev/null; \
         read c x </proc/uptime; echo times $a $b $c",
    );
    let t: Vec<f64> = field(&out, "times ").iter().map(|s| s.parse().unwrap()).collect();
    let (limited, unlimited) = (t[1] - t[0], t[2] - t[1]);
    let rate = 16.0 * MIB as f64 / limited;
    eprintln!(
        "limited: {limited:.2} s ({:.2} MiB/s), unlimited: {unlimited:.2} s",
        rate / MIB as f64
    );
    assert!(
        rate >= 0.5 * limit && rate <= 1.1 * limit,
        "16 MiB took {limited:.2} s: {:.2} MiB/s for a 4 MiB/s limit",
        rate / MIB as f64
    );
    assert!(unlimited < limited * 0.8, "the unlimited disk is faster: {unlimited:.2} s");
}
