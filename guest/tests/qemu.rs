//! Boots the real default guest under QEMU's `virt` machine, the reference
//! keel copies, and checks /init's contract: byte-exact output, argv intact,
//! exit status through the test finisher, virtio modules loading, and booting
//! from a copy of rootfs.ext4 (`root=/dev/vda`) with files that persist and
//! a filesystem left clean.
//!
//! Needs the network (the first run pulls ~113 MB), `qemu-system-riscv64`
//! and e2fsprogs, so it is ignored; run it by name:
//! `cargo test -p keel-guest --test qemu -- --ignored --nocapture`.
//! The image goes to `$KEEL_TEST_CACHE` (default /tmp/keel-guest-real).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use keel_guest::{command_param, pull, GuestImage, ImageCache};

/// Pulled (or refreshed) once: tests run in parallel threads of one process,
/// and two pulls at once would share a temporary directory.
fn image() -> GuestImage {
    static IMAGE: OnceLock<GuestImage> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let root = std::env::var_os("KEEL_TEST_CACHE")
                .map_or_else(|| PathBuf::from("/tmp/keel-guest-real"), PathBuf::from);
            pull(&ImageCache::new(root), false, &mut |l| eprintln!("{l}")).expect("pull")
        })
        .clone()
}

struct Run {
    status: i32,
    /// What the guest wrote after OpenSBI's banner (the last one, after a
    /// reboot).
    output: Vec<u8>,
    wall: Duration,
}

fn boot(image: &GuestImage, args: &[&str], extra: &[&str]) -> Run {
    boot_with(image, "", args, extra)
}

/// QEMU's command line for `image`, `params` added to the kernel's. Powering
/// off or rebooting ends QEMU unless `reboot` (then a reboot restarts it).
fn qemu(image: &GuestImage, params: &str, extra: &[&str], reboot: bool) -> Command {
    let append = format!("console=ttyS0 panic=-1 loglevel=1 {params}");
    let mut cmd = Command::new("qemu-system-riscv64");
    cmd.args(["-M", "virt", "-m", "256", "-smp", "1", "-nographic"])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", append.trim_end()])
        .args(extra);
    if !reboot {
        cmd.arg("-no-reboot");
    }
    cmd
}

/// Runs `args` in command mode; `params` go on the kernel command line first.
fn boot_with(image: &GuestImage, params: &str, args: &[&str], extra: &[&str]) -> Run {
    run_qemu(image, params, args, extra, false)
}

fn run_qemu(image: &GuestImage, params: &str, args: &[&str], extra: &[&str], reboot: bool) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let params = format!("{params} {}", command_param(&args));
    let start = Instant::now();
    let out = qemu(image, params.trim(), extra, reboot)
        .stdin(Stdio::null())
        .output()
        .expect("qemu-system-riscv64");
    let wall = start.elapsed();
    Run { status: out.status.code().unwrap_or(-1), output: after_banner(&out.stdout), wall }
}

/// OpenSBI (QEMU's firmware) prints a banner ending in "Boot HART ..."
/// lines; everything after the last one comes from the guest.
fn after_banner(all: &[u8]) -> Vec<u8> {
    let anchor = all.windows(9).rposition(|w| w == b"Boot HART").expect("OpenSBI banner");
    let nl = anchor + all[anchor..].iter().position(|&b| b == b'\n').unwrap();
    all[nl + 1..].to_vec()
}

fn host(cmd: &str) -> Vec<u8> {
    Command::new("sh").args(["-c", cmd]).output().unwrap().stdout
}

#[test]
#[ignore = "needs the network (first pull) and qemu-system-riscv64"]
fn qemu_command_mode() {
    let img = image();
    let r = boot(&img, &["uname", "-m"], &[]);
    assert_eq!((r.status, r.output.as_slice()), (0, b"riscv64\n".as_slice()));

    assert_eq!(boot(&img, &["sh", "-c", "exit 3"], &[]).status, 3);
    assert_eq!(boot(&img, &["sh", "-c", "exit 255"], &[]).status, 255);
    assert_eq!(boot(&img, &["false"], &[]).status, 1);
    assert_eq!(boot(&img, &["no-such-command"], &[]).status, 127);

    let args = [
        "printf",
        "[%s]\n",
        "",
        "a b",
        "it's \"quoted\"",
        "trail\n\n",
        "*",
        "$HOME",
        "\\",
        "\u{fc}",
    ];
    let r = boot(&img, &args, &[]);
    let expected = Command::new(args[0]).args(&args[1..]).output().unwrap().stdout;
    assert_eq!(String::from_utf8_lossy(&r.output), String::from_utf8_lossy(&expected));

    // Every byte value, 64 times, raw: no \n -> \r\n, nothing eaten.
    let awk = "BEGIN{for(j=0;j<64;j++)for(i=0;i<256;i++)printf \"%c\", i}";
    let r = boot(&img, &["awk", awk], &[]);
    assert!(r.output == (0..=255u8).collect::<Vec<_>>().repeat(64), "binary output differs");

    let md5 = "dd if=/dev/zero bs=1k count=64 2>/dev/null | md5sum";
    assert_eq!(boot(&img, &["sh", "-c", md5], &[]).output, host(md5));

    // A long tail must not be cut by the power-off.
    let r = boot(&img, &["seq", "1", "30000"], &[]);
    assert!(r.output == host("seq 1 30000"), "seq output differs");

    // The applet links the image builder found are exactly busybox's own list.
    let check = "busybox --list-full | grep -vx bin/busybox | while read -r p; do [ \"$(readlink /$p)\" = /bin/busybox ] || echo \"missing /$p\"; done; \
                 ls /bin /sbin /usr/bin /usr/sbin | grep -vc :";
    let r = boot(&img, &["sh", "-c", check], &[]);
    let out = String::from_utf8_lossy(&r.output);
    assert!(!out.contains("missing"), "{out}");

    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let r = boot(&img, &["true"], &[]);
            assert_eq!(r.status, 0);
            assert!(r.output.is_empty(), "{:?}", String::from_utf8_lossy(&r.output));
            r.wall.as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    eprintln!("boot to power-off of `true`: min {:.2} s, median {:.2} s", times[0], times[2]);
}

#[test]
#[ignore = "needs the network (first pull) and qemu-system-riscv64"]
fn qemu_virtio_modules() {
    let img = image();
    let disk = std::env::temp_dir().join(format!("keel-guest-disk-{}.img", std::process::id()));
    std::fs::write(&disk, vec![0u8; 16 << 20]).unwrap();
    let mkfs = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk).status();
    assert!(mkfs.is_ok_and(|s| s.success()), "mkfs.ext4 (e2fsprogs) needed");
    let drive = format!("if=none,id=d,file={},format=raw", disk.display());
    let extra = [
        "-device",
        "virtio-rng-device",
        "-drive",
        &drive,
        "-device",
        "virtio-blk-device,drive=d",
        "-netdev",
        "user,id=n,restrict=on",
        "-device",
        "virtio-net-device,netdev=n",
        "-device",
        "virtio-balloon-device",
    ];
    let script = "lsmod | cut -d' ' -f1 | sort | tr '\\n' ' '; echo; \
                  cat /sys/class/misc/hw_random/rng_current; ls /sys/block; \
                  ls /sys/class/net | tr '\\n' ' '; echo; \
                  mount -t ext4 /dev/vda /mnt && echo hello >/mnt/f && umount /mnt && \
                  mount /dev/vda /mnt && cat /mnt/f; \
                  modprobe vmw_vsock_virtio_transport && test -c /dev/vsock && echo vsock";
    let r = boot(&img, &["sh", "-c", script], &extra);
    let _ = std::fs::remove_file(&disk);
    let out = String::from_utf8_lossy(&r.output);
    eprintln!("{out}");
    assert_eq!(r.status, 0);
    for m in ["virtio_mmio", "virtio_blk", "virtio_net", "virtio_rng", "virtio_balloon"] {
        assert!(out.lines().next().unwrap().contains(m), "{m} not loaded");
    }
    assert!(out.contains("virtio_rng.0\nvda\n"), "rng or disk missing");
    assert!(out.contains("eth0"), "no eth0");
    assert!(out.contains("hello\n"), "ext4 on virtio-blk failed");
    assert!(out.contains("vsock\n"), "vsock transport failed");

    // No virtio devices (QEMU still describes empty transports): nothing
    // but the transport driver is loaded.
    let r = boot(&img, &["sh", "-c", "lsmod | tail -n +2 | cut -d' ' -f1"], &[]);
    assert_eq!(String::from_utf8_lossy(&r.output), "virtio_mmio\n");
}

/// A private copy of the image's root filesystem template, as keel gives
/// each VM; removed on drop.
struct Disk(PathBuf);

impl Disk {
    fn new(image: &GuestImage, name: &str) -> Disk {
        let path = std::env::temp_dir()
            .join(format!("keel-guest-rootfs-{}-{name}.ext4", std::process::id()));
        std::fs::copy(&image.rootfs, &path).expect("copy rootfs.ext4");
        Disk(path)
    }
    fn qemu_args(&self) -> Vec<String> {
        let drive = format!("if=none,id=d0,file={},format=raw", self.0.display());
        ["-drive", &drive, "-device", "virtio-blk-device,drive=d0"].map(String::from).to_vec()
    }
    /// The guest unmounted it cleanly: e2fsck has nothing to fix or replay.
    fn assert_clean(&self, after: &str) {
        let out = Command::new(e2fsprogs("e2fsck")).arg("-fn").arg(&self.0).output().unwrap();
        assert!(
            out.status.success(),
            "e2fsck after {after}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// /sbin is not in a normal user's PATH on Debian.
fn e2fsprogs(tool: &str) -> PathBuf {
    ["/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(tool))
}

#[test]
#[ignore = "needs the network (first pull), qemu-system-riscv64 and e2fsprogs"]
fn qemu_root_disk() {
    let img = image();
    let disk = Disk::new(&img, "cmd");
    let d = disk.qemu_args();
    let d: Vec<&str> = d.iter().map(String::as_str).collect();
    let root = "root=/dev/vda";
    let run = |args: &[&str]| boot_with(&img, root, args, &d);

    // Written in one boot (no sync: /init's power-off makes it safe), read
    // in the next.
    let r = run(&["sh", "-c", "echo hello >/root/f"]);
    assert_eq!((r.status, r.output.as_slice()), (0, b"".as_slice()));
    disk.assert_clean("power-off");
    let r = run(&["cat", "/root/f"]);
    assert_eq!((r.status, String::from_utf8_lossy(&r.output).as_ref()), (0, "hello\n"));
    disk.assert_clean("a second boot");

    // Command mode is unchanged on the disk: raw bytes, exit status.
    let r = run(&["uname", "-m"]);
    assert_eq!((r.status, r.output.as_slice()), (0, b"riscv64\n".as_slice()));
    assert_eq!(run(&["sh", "-c", "exit 3"]).status, 3);
    assert_eq!(run(&["no-such-command"]).status, 127);
    let r = run(&["seq", "1", "30000"]);
    assert!(r.output == host("seq 1 30000"), "seq output differs");

    // It really is the disk, mounted rw; the initramfs's mounts came along
    // and nothing else was loaded.
    let check = "grep -E ' (/|/dev|/proc|/sys|/run|/tmp) ' /proc/mounts | cut -d' ' -f1-3; \
                 lsmod | tail -n +2 | cut -d' ' -f1 | sort | tr '\\n' ' '; \
                 cat /proc/sys/kernel/hostname; test -e /init && echo disk";
    let r = run(&["sh", "-c", check]);
    let out = String::from_utf8_lossy(&r.output);
    assert_eq!(r.status, 0, "{out}");
    for m in ["devtmpfs /dev devtmpfs", "proc /proc proc", "sysfs /sys sysfs", "tmpfs /tmp tmpfs"] {
        assert!(out.contains(m), "{m}: {out}");
    }
    assert!(out.contains("/dev/vda / ext4\n"), "{out}");
    assert!(
        out.contains("crc16 crc32c_generic ext4 jbd2 mbcache virtio_blk virtio_mmio keel\n"),
        "{out}"
    );
    let r =
        boot_with(&img, "root=/dev/vda ro", &["sh", "-c", "grep ' / ' /proc/mounts; touch /x"], &d);
    let out = String::from_utf8_lossy(&r.output);
    assert!(r.status != 0 && out.contains("/dev/vda / ext4 ro,"), "{out}");
    disk.assert_clean("a ro boot");

    // A process still writing when the command ends is stopped; a typed
    // `poweroff` (no -f) goes through /init too.
    let r = run(&["sh", "-c", "(while :; do date >>/root/log; done) & echo bg >/root/bg"]);
    assert_eq!(r.status, 0);
    disk.assert_clean("a power-off with a writer running");
    let r = run(&["sh", "-c", "echo p >/root/p; poweroff"]);
    assert_eq!(r.status, 0);
    disk.assert_clean("poweroff");
    let r = run(&["cat", "/root/bg", "/root/p"]);
    assert_eq!(String::from_utf8_lossy(&r.output), "bg\np\n");

    // `reboot`: QEMU restarts the machine, the file is there the second time.
    let reboot = "if [ -e /root/r ]; then cat /root/r; else echo rebooted >/root/r; reboot; fi";
    let r = run_qemu(&img, root, &["sh", "-c", reboot], &d, true);
    assert_eq!((r.status, String::from_utf8_lossy(&r.output).as_ref()), (0, "rebooted\n"));
    disk.assert_clean("reboot");

    // The label finds it too.
    let r = boot_with(&img, "root=LABEL=keel-root", &["cat", "/root/f"], &d);
    assert_eq!(String::from_utf8_lossy(&r.output), "hello\n");

    // A missing device: a clear message and status 125, after the wait.
    let r = boot_with(&img, "root=/dev/vdb rootwait=1", &["true"], &d);
    let out = String::from_utf8_lossy(&r.output);
    assert_eq!(r.status, 125, "{out}");
    assert!(
        out.contains("root device /dev/vdb did not appear within 1s (block devices: vda)"),
        "{out}"
    );
    disk.assert_clean("a failed root=");

    let times = |params: &str| {
        let mut t: Vec<f64> = (0..5)
            .map(|_| {
                let r = boot_with(&img, params, &["true"], &d);
                assert_eq!((r.status, r.output.as_slice()), (0, b"".as_slice()));
                r.wall.as_secs_f64()
            })
            .collect();
        t.sort_by(f64::total_cmp);
        format!("min {:.2} s, median {:.2} s", t[0], t[2])
    };
    let initramfs = times("");
    let disk_root = times(root);
    eprintln!(
        "boot to power-off of `true` with the disk attached: initramfs only {initramfs}; \
         root=/dev/vda {disk_root}"
    );
}

/// The console of a running QEMU, driven through pipes (the guest's side is
/// the UART, a tty either way).
struct Console {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
    /// How much of the output `expect` has consumed.
    seen: usize,
}

impl Console {
    fn start(mut cmd: Command) -> Console {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("qemu-system-riscv64");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Console { child, stdin, out, seen: 0 }
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }
    /// Waits until `pat` appears after what earlier calls consumed, and
    /// consumes the output up to its end.
    fn expect(&mut self, pat: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.out.lock().unwrap().clone();
            if let Some(i) = out[self.seen..].windows(pat.len()).position(|w| w == pat.as_bytes()) {
                self.seen += i + pat.len();
                return;
            }
            assert!(Instant::now() < deadline, "no {pat:?} in:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn send(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\r").as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }
    fn wait_exit(&mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status.code().unwrap_or(-1), self.text());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("QEMU still running:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A failed test must not leave QEMU running (holding the test's stderr).
impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs the network (first pull), qemu-system-riscv64 and e2fsprogs"]
fn qemu_root_disk_interactive() {
    let img = image();
    let disk = Disk::new(&img, "interactive");
    let d = disk.qemu_args();
    let d: Vec<&str> = d.iter().map(String::as_str).collect();
    // PS1 is '\h:\w\$ '; the shell starts in /.
    let prompt = "keel:/# ";

    // Typed into the shell, then `poweroff`.
    let mut c = Console::start(qemu(&img, "root=/dev/vda", &d, false));
    c.expect("root filesystem on /dev/vda");
    c.expect(prompt);
    c.send("echo typed >/root/t");
    c.expect(prompt);
    c.send("poweroff");
    let (status, out) = c.wait_exit();
    assert_eq!(status, 0, "{out}");
    disk.assert_clean("a typed poweroff");

    // `reboot` typed: QEMU restarts it; the file is there. (The shell may
    // print another prompt before /init stops it.)
    let mut c = Console::start(qemu(&img, "root=/dev/vda", &d, true));
    c.expect(prompt);
    c.send("cat /root/t; echo again >/root/t2");
    c.expect("typed\r\n");
    c.expect(prompt);
    c.send("reboot");
    c.expect("reboot: Restarting system");
    c.expect("root filesystem on /dev/vda");
    c.expect(prompt);
    c.send("cat /root/t2");
    c.expect("again\r\n");
    c.expect(prompt);
    c.send("exit");
    let (status, out) = c.wait_exit();
    assert_eq!(status, 0, "{out}");
    disk.assert_clean("a typed reboot and exit");
}
