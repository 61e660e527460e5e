//! Crate-level tests: argv encoding against the real /init decoding, the
//! cache directory rules, and image completeness.
//!
//! The tests that need the network (a real `apt-get` pull) are `#[ignore]`d
//! and run by name: `cargo test -p keel-guest -- --ignored real_`.

use super::*;
use std::ffi::OsString;
use std::process::Command;

/// A fresh, empty directory for one test.
pub(crate) fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-guest-test-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn base64_matches_rfc4648_vectors() {
    for (plain, enc) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), enc);
    }
    assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
}

#[test]
fn command_param_format() {
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(command_param(&args(&["uname", "-m"])), "keel.cmd=dW5hbWU=,LW0=");
    assert_eq!(command_param(&args(&["true"])), "keel.cmd=dHJ1ZQ==");
    assert_eq!(command_param(&args(&["a", ""])), "keel.cmd=YQ==,");
    assert_eq!(command_param(&[]), "keel.cmd=");
    assert!(!command_param(&args(&["a b", "c\td\n"])).contains(char::is_whitespace));
}

/// A block of the real /init between its `# --- keel:NAME-begin/end ---`
/// markers.
fn init_block(name: &str) -> &'static str {
    let start = INIT_SCRIPT.find(&format!("# --- keel:{name}-begin ---")).expect("begin marker");
    let end = INIT_SCRIPT.find(&format!("# --- keel:{name}-end ---")).expect("end marker");
    &INIT_SCRIPT[start..end]
}

/// The decoding block of the real /init.
fn init_decode_block() -> &'static str {
    init_block("decode")
}

/// Runs /init's root= parsing under the host's /bin/sh with `cmdline` as
/// /proc/cmdline's text; returns root, fstype, flags, rw, init, wait,
/// cmdmode.
fn root_params(cmdline: &str) -> Vec<String> {
    let script = format!(
        "{}\nprintf '%s|' \"$keel_root\" \"$keel_fstype\" \"$keel_flags\" \"$keel_rw\" \
         \"$keel_init\" \"$keel_wait\" \"$keel_cmdmode\"\n",
        init_block("root")
    );
    let out = Command::new("/bin/sh").arg("-c").arg(&script).env("cmdline", cmdline).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut v: Vec<String> = text.split('|').map(str::to_string).collect();
    v.pop();
    v
}

#[test]
fn init_reads_root_parameters() {
    let p = |c: &str| root_params(c);
    // No root=: the initramfs stays root.
    assert_eq!(p("console=ttyS0 panic=-1"), ["", "", "", "rw", "/sbin/init", "10", ""]);
    assert_eq!(
        p("console=ttyS0 root=/dev/vda keel.cmd=dHJ1ZQ== x=*"),
        ["/dev/vda", "", "", "rw", "/sbin/init", "10", "1"]
    );
    assert_eq!(
        p("root=UUID=0f3c-11 rootfstype=ext4 rootflags=noatime,data=journal ro rootwait"),
        ["UUID=0f3c-11", "ext4", "noatime,data=journal", "ro", "/sbin/init", "", ""]
    );
    assert_eq!(
        p("ro root=LABEL=keel-root rw rootwait=3 init=/bin/sh"),
        ["LABEL=keel-root", "", "", "rw", "/bin/sh", "3", ""]
    );
    // Nonsense waits fall back to the default; /dev/* is not expanded.
    assert_eq!(p("root=/dev/vd* rootwait=x"), ["/dev/vd*", "", "", "rw", "/sbin/init", "10", ""]);
}

/// Runs /init's own decoding under a host shell with `cmdline` as
/// /proc/cmdline's text; returns the positional parameters it produced.
fn decode_with(shell: &str, cmdline: &str) -> Option<Vec<String>> {
    let script = format!(
        "{}\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done\nprintf 'found=%s%s' \"$keel_found\" \"$keel_bad\"\n",
        init_decode_block()
    );
    let out = Command::new(shell)
        .arg("-c")
        .arg(&script)
        .env("cmdline", cmdline)
        .env("TMPDIR", std::env::temp_dir())
        .output()
        .ok()?;
    assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (args, found) = text.rsplit_once("found=").unwrap();
    match found {
        "" => return None,
        "1" => {}
        _ => return Some(vec!["<bad>".to_string()]),
    }
    let mut v: Vec<String> = args.split('\0').map(str::to_string).collect();
    v.pop(); // after the last NUL
    Some(v)
}

#[test]
fn command_param_round_trips_through_init() {
    let long: String = (0..300).map(|i| char::from(b'!' + (i % 90) as u8)).collect();
    let cases: Vec<Vec<&str>> = vec![
        vec!["uname", "-m"],
        vec!["printf", "[%s]\n", "", "a b", "it's \"quoted\"", "trailing\n\n", ""],
        vec!["sh", "-c", "exit 3"],
        vec!["*", "$HOME", "`id`", "\\", ",", "=", "x\ty", "-n", "\u{fc}ber", "\n"],
        vec!["1", "12", "123", "1234", long.as_str()],
        vec![""],
    ];
    // /bin/sh is dash on Debian; bash, when present, is a second opinion.
    // busybox ash runs it for real in the QEMU test.
    let shells: Vec<&str> =
        ["/bin/sh", "/bin/bash"].into_iter().filter(|s| Path::new(s).exists()).collect();
    assert!(!shells.is_empty());
    for shell in shells {
        for case in &cases {
            let args: Vec<String> = case.iter().map(|s| s.to_string()).collect();
            let cmdline = format!("console=ttyS0 panic=-1 {} loglevel=1 x=*", command_param(&args));
            assert_eq!(decode_with(shell, &cmdline), Some(args.clone()), "{shell} {case:?}");
        }
        assert_eq!(decode_with(shell, "console=ttyS0 quiet"), None, "{shell}: no keel.cmd");
        // Cut short by the kernel's command-line limit: flagged, not run.
        let cut = &command_param(&["echo".into(), long.clone()])[..200];
        assert_eq!(decode_with(shell, cut), Some(vec!["<bad>".to_string()]), "{shell}");
        // A NUL can't be in an argv; the rest aren't base64.
        for bad in ["keel.cmd=AA==", "keel.cmd=dHJ1ZQ==,d*E=", "keel.cmd=dHJ1Z===", "keel.cmd=d=Jz"]
        {
            let got = decode_with(shell, bad);
            assert_eq!(got, Some(vec!["<bad>".to_string()]), "{shell} {bad}");
        }
    }
}

#[test]
fn cache_dir_rules() {
    let env = |pairs: &'static [(&str, &str)]| {
        move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    };
    let root = |r: Result<ImageCache, PullError>| r.unwrap().root().to_path_buf();
    let all = &[("KEEL_CACHE_DIR", "/k"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
    assert_eq!(root(ImageCache::from_lookup(env(all))), Path::new("/k"));
    let xdg = &[("KEEL_CACHE_DIR", ""), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
    assert_eq!(root(ImageCache::from_lookup(env(xdg))), Path::new("/x/keel"));
    let rel = &[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")];
    assert_eq!(root(ImageCache::from_lookup(env(rel))), Path::new("/h/.cache/keel"));
    assert!(matches!(ImageCache::from_lookup(env(&[])), Err(PullError::NoCacheDir)));
}

#[test]
fn default_image_only_when_complete() {
    let dir = scratch_dir("complete");
    let cache = ImageCache::new(dir.clone());
    assert_eq!(cache.default_image(), None);
    let img = cache.default_dir();
    fs::create_dir_all(&img).unwrap();
    fs::write(img.join(KERNEL_FILE), b"kernel").unwrap();
    fs::write(img.join(INITRD_FILE), b"initrd!").unwrap();
    assert_eq!(cache.default_image(), None, "no manifest yet");
    let mut m = Manifest::default();
    m.set("kernel_version", "6.12.0-test");
    m.set("vmlinux_size", 6);
    m.set("initrd_size", 7);
    fs::write(img.join(MANIFEST), m.render()).unwrap();
    // Kernel and initrd alone (an image from before rootfs.ext4): intact,
    // so pull can refresh it, but not complete.
    assert!(cache.intact_image().is_some());
    assert_eq!(cache.default_image(), None, "no rootfs");
    m.set("rootfs_size", 5);
    fs::write(img.join(MANIFEST), m.render()).unwrap();
    assert_eq!(cache.default_image(), None, "rootfs in the manifest only");
    fs::write(img.join(ROOTFS_FILE), b"ext4!").unwrap();
    let image = cache.default_image().expect("complete");
    assert_eq!(image.kernel, img.join("vmlinux"));
    assert_eq!(image.initrd, img.join("initrd.img"));
    assert_eq!(image.rootfs, img.join("rootfs.ext4"));
    assert_eq!(image.kernel_version, "6.12.0-test");
    // A truncated file, or a manifest from another /init, is not complete.
    fs::write(img.join(INITRD_FILE), b"init").unwrap();
    assert_eq!(cache.default_image(), None);
    fs::write(img.join(INITRD_FILE), b"initrd!").unwrap();
    fs::write(img.join(ROOTFS_FILE), b"ext").unwrap();
    assert_eq!(cache.default_image(), None);
    fs::write(img.join(ROOTFS_FILE), b"ext4!").unwrap();
    let stale = m.render().replace(&init_hash(), "0000000000000000");
    fs::write(img.join(MANIFEST), stale).unwrap();
    assert_eq!(cache.default_image(), None);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn manifest_round_trip() {
    let mut m = Manifest::default();
    m.set("kernel_version", "6.12.0-test");
    m.set("rootfs_size", ROOTFS_SIZE);
    m.set("rootfs_label", "keel-root");
    m.set("rootfs_size", ROOTFS_SIZE); // set twice: one line
    let text = m.render();
    assert!(text.starts_with("# keel guest image"), "{text}");
    assert!(text.contains("\n# rootfs.ext4 is a template"), "{text}");
    assert_eq!(text.matches("rootfs_size=").count(), 1, "{text}");
    let back = Manifest::parse(&text);
    assert_eq!(back.get("format"), Some(IMAGE_FORMAT));
    assert_eq!(back.get("init"), Some(init_hash().as_str()));
    assert_eq!(back.get("rootfs_size"), Some("67108864"));
    assert_eq!(back.get("rootfs_label"), Some("keel-root"));
    assert_eq!(back.get("kernel_version"), Some("6.12.0-test"));
    assert_eq!(back.render(), text);
}

/// An image built with another /init gets the current one swapped in by a
/// plain pull, without apt (this test has no network and runs no apt).
#[test]
fn stale_init_is_swapped_without_download() {
    let dir = scratch_dir("refresh");
    let cache = ImageCache::new(dir.clone());
    let img = cache.default_dir();
    fs::create_dir_all(&img).unwrap();
    let entries = vec![
        cpio::Entry::dir("bin", 0o755),
        cpio::Entry::file("bin/busybox", 0o755, b"busybox".to_vec()),
        cpio::Entry::file("init", 0o755, b"#!/bin/sh\nold init\n".to_vec()),
    ];
    let mut initrd = Vec::new();
    cpio::write_archive(&mut initrd, &entries).unwrap();
    fs::write(img.join(INITRD_FILE), &initrd).unwrap();
    fs::write(img.join(KERNEL_FILE), b"kernel").unwrap();
    let mut m = Manifest::default();
    m.set("kernel_version", "6.12.0-test");
    m.set("vmlinux_size", 6);
    m.set("initrd_size", initrd.len());
    m.set("modules", "a,b");
    let old_init = "0123456789abcdef";
    fs::write(img.join(MANIFEST), m.render().replace(&init_hash(), old_init)).unwrap();
    assert_eq!(cache.default_image(), None, "stale /init");

    let mut said = Vec::new();
    let image = pull(&cache, false, &mut |l| said.push(l.to_string())).unwrap();
    assert!(said[0].contains("updating /init"), "{said:?}");
    assert_eq!(cache.default_image(), Some(image.clone()));
    let new = cpio::parse_archive(&fs::read(&image.initrd).unwrap()).unwrap();
    assert_eq!(new[..2], entries[..2]);
    assert_eq!(new[2].data, INIT_SCRIPT.as_bytes());
    assert_eq!(fs::read(&image.kernel).unwrap(), b"kernel");
    let manifest = fs::read_to_string(img.join(MANIFEST)).unwrap();
    assert!(manifest.contains("modules=a,b\n") && !manifest.contains(old_init), "{manifest}");
    assert_eq!(manifest.matches("init=").count(), 1, "{manifest}");
    // The root filesystem, built from the initrd's files (e2fsprogs needed).
    assert!(manifest.contains(&format!("rootfs_size={ROOTFS_SIZE}\n")), "{manifest}");
    assert_eq!(fs::metadata(&image.rootfs).unwrap().len(), ROOTFS_SIZE);
    // Nothing left beside the image.
    let names: Vec<_> =
        fs::read_dir(cache.images_dir()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, ["default"]);

    // A root filesystem gone missing is built again, still without apt.
    fs::remove_file(&image.rootfs).unwrap();
    assert_eq!(cache.default_image(), None, "no rootfs");
    said.clear();
    let again = pull(&cache, false, &mut |l| said.push(l.to_string())).unwrap();
    assert!(said[0].contains("building rootfs.ext4"), "{said:?}");
    assert_eq!(again, image);
    assert_eq!(cache.default_image(), Some(image));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unwritable_cache_is_reported() {
    // A regular file where the cache directory should be: no root needed.
    let dir = scratch_dir("unwritable");
    let file = dir.join("file");
    fs::write(&file, b"").unwrap();
    let cache = ImageCache::new(file.join("keel"));
    let err = pull(&cache, false, &mut |_| {}).unwrap_err();
    assert!(matches!(err, PullError::CacheNotWritable { .. }), "{err}");
    assert!(err.to_string().contains("KEEL_CACHE_DIR"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_script_shape() {
    assert!(INIT_SCRIPT.starts_with("#!/bin/busybox sh\n"));
    // /init must never fall off the end: PID 1 exiting panics the kernel.
    assert!(INIT_SCRIPT.trim_end().ends_with("exec /bin/busybox poweroff -f"));
    // Host syntax check (dash): catches quoting slips before a guest boot.
    let out = Command::new("/bin/sh").arg("-n").arg("-c").arg(INIT_SCRIPT).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Network: pulls the real image into `$KEEL_TEST_CACHE` (default
/// /tmp/keel-guest-real) and checks what went into it. Run by name:
/// `cargo test -p keel-guest -- --ignored real_pull`.
#[test]
#[ignore = "downloads ~113 MB from the Debian archive"]
fn real_pull() {
    let root =
        std::env::var_os("KEEL_TEST_CACHE").map_or("/tmp/keel-guest-real".into(), PathBuf::from);
    let cache = ImageCache::new(root);
    let mut lines = Vec::new();
    let image = pull(&cache, true, &mut |l| {
        eprintln!("{l}");
        lines.push(l.to_string());
    })
    .unwrap();
    assert!(lines[0].starts_with("keel: [1/6]"));
    assert!(lines.iter().any(|l| l.contains("downloading linux-image-")));
    assert_eq!(cache.default_image().as_ref(), Some(&image));
    let initrd = fs::read(&image.initrd).unwrap();
    let entries = cpio::parse_archive(&initrd).unwrap();
    let dep_path = format!("lib/modules/{}/modules.dep", image.kernel_version);
    let dep = entries.iter().find(|e| e.path == dep_path).expect("modules.dep");
    let dep = String::from_utf8(dep.data.clone()).unwrap();
    eprintln!("{dep}");
    for m in ["virtio_mmio.ko:", "virtio_blk.ko:", "virtio-rng.ko:", "ext4.ko:"] {
        assert!(dep.contains(m), "{m}");
    }
    assert!(dep.contains("kernel/crypto/crc32c_generic.ko\n"), "ext4's softdep");
    // Every module listed is in the archive, decompressed.
    for line in dep.lines() {
        let ko = line.split(':').next().unwrap();
        let p = format!("lib/modules/{}/{ko}", image.kernel_version);
        let e = entries.iter().find(|e| e.path == p).expect(&p);
        assert!(e.data.starts_with(b"\x7fELF"));
    }
    // busybox's applets come as symlinks in the archive, where it installs them.
    let modprobe = entries.iter().find(|e| e.path == "sbin/modprobe").expect("applet links");
    assert_eq!(modprobe.mode, cpio::S_IFLNK | 0o777);
    assert_eq!(modprobe.data, b"/bin/busybox");
    assert!(entries.iter().any(|e| e.path == "usr/bin/env"));
    // The root filesystem: clean, with the initrd's modules index and
    // keel's init script as /sbin/init.
    let fsck = Command::new("/sbin/e2fsck").arg("-fn").arg(&image.rootfs).output().unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
    let debugfs = |req: &str| {
        let out = Command::new("/sbin/debugfs").args(["-R", req]).arg(&image.rootfs).output();
        out.unwrap().stdout
    };
    assert_eq!(debugfs(&format!("cat /{dep_path}")), dep.as_bytes());
    assert_eq!(debugfs("cat /sbin/init"), INIT_SCRIPT.as_bytes());
    // A second pull is a no-op that says so.
    let mut said = String::new();
    pull(&cache, false, &mut |l| said.push_str(l)).unwrap();
    assert!(said.contains("already present"), "{said}");
}
