//! Busybox's applet list, read from the (riscv64) binary on the host, so the
//! initramfs can carry the applet symlinks that `busybox --install -s` would
//! otherwise create at every boot (about 270 symlink calls: over 0.1 s of
//! QEMU's emulated boot). The binary can't be run on the host, so this reads
//! the tables busybox compiles in:
//!
//! - `applet_names`: the names, NUL-separated, sorted, ending in an empty
//!   name; it starts with "[" and "[[" whenever `test`'s aliases are built.
//! - `applet_install_loc`: one nibble per applet (two per byte, low nibble
//!   first): 1 /bin, 2 /sbin, 3 /usr/bin, 4 /usr/sbin; 0 (the root) only for
//!   `linuxrc`.
//!
//! Finding the second table is a search, so a match must put well-known
//! applets where busybox always installs them. If anything doesn't check
//! out this returns `None`, and /init falls back to `busybox --install -s`.

const INSTALL_DIRS: [&str; 5] = ["", "bin/", "sbin/", "usr/bin/", "usr/sbin/"];

/// Applets whose install directory is fixed in busybox's sources; those
/// present must match, and at least three must be present.
const KNOWN: &[(&str, u8)] = &[
    ("sh", 1),
    ("mount", 1),
    ("modprobe", 2),
    ("poweroff", 2),
    ("env", 3),
    ("awk", 3),
    ("chroot", 4),
];

fn applet_names(bin: &[u8]) -> Option<Vec<String>> {
    let start = bin.windows(5).position(|w| w == b"[\0[[\0")?;
    let mut names = Vec::new();
    let mut rest = &bin[start..];
    loop {
        let end = rest.iter().position(|&b| b == 0)?;
        if end == 0 {
            break;
        }
        let name = std::str::from_utf8(&rest[..end]).ok()?;
        let valid = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"[-_.".contains(&b));
        if !valid || names.last().is_some_and(|last: &String| last.as_str() >= name) {
            return None;
        }
        names.push(name.to_string());
        rest = &rest[end + 1..];
    }
    (names.len() >= 5).then_some(names)
}

/// `(path, link target)` for every applet, e.g. `("sbin/modprobe",
/// "/bin/busybox")`, or `None` when the tables can't be found for sure.
pub fn applet_links(bin: &[u8]) -> Option<Vec<(String, &'static str)>> {
    let names = applet_names(bin)?;
    let len = names.len().div_ceil(2);
    let loc = |table: &[u8], i: usize| (table[i / 2] >> ((i & 1) * 4)) & 0xf;
    let known: Vec<(usize, u8)> = KNOWN
        .iter()
        .filter_map(|(n, dir)| Some((names.binary_search_by(|x| x.as_str().cmp(n)).ok()?, *dir)))
        .collect();
    if known.len() < 3 {
        return None;
    }
    let plausible = |t: &[u8], i: usize| match loc(t, i) {
        0 => names[i] == "linuxrc",
        d => d <= 4,
    };
    let table = bin.windows(len).find(|t| {
        known.iter().all(|&(i, dir)| loc(t, i) == dir) && (0..names.len()).all(|i| plausible(t, i))
    })?;
    Some(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let dir = INSTALL_DIRS[usize::from(loc(table, i))];
                (format!("{dir}{n}"), "/bin/busybox")
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake binary laid out as busybox does: install nibbles, then names.
    fn fake(names: &[&str], dirs: &[u8]) -> Vec<u8> {
        let mut bin = b"\x7fELF some code \x11\x22 more".to_vec();
        for pair in dirs.chunks(2) {
            bin.push(pair[0] | pair.get(1).map_or(0, |d| d << 4));
        }
        bin.extend_from_slice(b"\0\0\0\0");
        for n in names {
            bin.extend_from_slice(n.as_bytes());
            bin.push(0);
        }
        bin.extend_from_slice(b"\0/proc/self/exe\0");
        bin
    }

    const NAMES: &[&str] =
        &["[", "[[", "awk", "cat", "chroot", "env", "linuxrc", "modprobe", "mount", "sh"];
    const DIRS: &[u8] = &[3, 3, 3, 1, 4, 3, 0, 2, 1, 1];

    #[test]
    fn reads_names_and_dirs() {
        let links = applet_links(&fake(NAMES, DIRS)).unwrap();
        assert_eq!(links.len(), NAMES.len());
        assert!(links.contains(&("usr/bin/[".into(), "/bin/busybox")));
        assert!(links.contains(&("sbin/modprobe".into(), "/bin/busybox")));
        assert!(links.contains(&("usr/sbin/chroot".into(), "/bin/busybox")));
        assert!(links.contains(&("bin/cat".into(), "/bin/busybox")));
        assert!(links.contains(&("linuxrc".into(), "/bin/busybox")));
    }

    #[test]
    fn refuses_what_does_not_check_out() {
        // sh in /usr/sbin contradicts busybox's sources: no table found.
        let mut dirs = DIRS.to_vec();
        dirs[9] = 4;
        assert!(applet_links(&fake(NAMES, &dirs)).is_none());
        // Unsorted names are not the applet table.
        let mut names = NAMES.to_vec();
        names.swap(3, 4);
        assert!(applet_links(&fake(&names, DIRS)).is_none());
        // Only linuxrc lives in the root.
        let mut dirs = DIRS.to_vec();
        dirs[3] = 0;
        assert!(applet_links(&fake(NAMES, &dirs)).is_none());
        assert!(applet_links(b"no busybox here").is_none());
    }
}
