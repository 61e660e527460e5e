//! Boots the real default guest under QEMU's `virt` machine, the reference
//! keel copies, and checks /init's contract: byte-exact output, argv intact,
//! exit status through the test finisher, virtio modules loading.
//!
//! Needs the network (the first run pulls ~113 MB) and
//! `qemu-system-riscv64`, so it is ignored; run it by name:
//! `cargo test -p keel-guest --test qemu -- --ignored --nocapture`.
//! The image goes to `$KEEL_TEST_CACHE` (default /tmp/keel-guest-real).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_guest::{command_param, pull, GuestImage, ImageCache};

fn image() -> GuestImage {
    let root = std::env::var_os("KEEL_TEST_CACHE")
        .map_or_else(|| PathBuf::from("/tmp/keel-guest-real"), PathBuf::from);
    pull(&ImageCache::new(root), false, &mut |l| eprintln!("{l}")).expect("pull")
}

struct Run {
    status: i32,
    /// What the guest wrote after OpenSBI's banner.
    output: Vec<u8>,
    wall: Duration,
}

fn boot(image: &GuestImage, args: &[&str], extra: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let append = format!("console=ttyS0 panic=-1 loglevel=1 {}", command_param(&args));
    let start = Instant::now();
    let out = Command::new("qemu-system-riscv64")
        .args(["-M", "virt", "-m", "256", "-smp", "1", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", &append])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("qemu-system-riscv64");
    let wall = start.elapsed();
    // OpenSBI (QEMU's firmware) prints a banner ending in "Boot HART ..."
    // lines; everything after it comes from the guest.
    let all = out.stdout;
    let anchor = all.windows(9).rposition(|w| w == b"Boot HART").expect("OpenSBI banner");
    let nl = anchor + all[anchor..].iter().position(|&b| b == b'\n').unwrap();
    Run { status: out.status.code().unwrap_or(-1), output: all[nl + 1..].to_vec(), wall }
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
