//! Picks kernel modules out of Debian's `linux-image` package for the
//! initramfs: the requested modules plus everything they depend on, read from
//! each module's own `.modinfo` ELF section (`depends=`, `softdep=pre:`,
//! `alias=`), decompressed on the host, with a `modules.dep` and
//! `modules.alias` that busybox `modprobe` reads.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::BufReader;
use std::path::Path;

use crate::elf;

/// The modules the guest may need for virtio devices, by module name.
/// `crc32c_generic` is here because ext4 and jbd2 only name it as a softdep
/// through the alias `crypto-crc32c`: it is found by alias among the modules
/// already picked, and without it mounting ext4 fails.
pub const WANTED: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_balloon",
    "virtio_rng",
    "vmw_vsock_virtio_transport",
    "ext4",
    "crc32c_generic",
];

/// What a module's `.modinfo` says about it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModInfo {
    pub name: Option<String>,
    pub depends: Vec<String>,
    /// `softdep=pre: a b` names: modules (or aliases) to load first.
    pub softdep_pre: Vec<String>,
    pub aliases: Vec<String>,
}

/// One picked module, decompressed.
#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    /// Path below `lib/modules/<version>/`, e.g. `kernel/fs/ext4/ext4.ko`.
    pub rel_path: String,
    pub data: Vec<u8>,
    pub info: ModInfo,
}

/// The result: modules sorted by path, plus the two index files.
#[derive(Debug)]
pub struct ModuleSet {
    pub modules: Vec<Module>,
    pub modules_dep: String,
    pub modules_alias: String,
    /// Softdeps that named nothing in the set (not an error: they are soft).
    pub unresolved_softdeps: Vec<String>,
}

/// Module names treat `-` and `_` alike (`virtio-rng.ko` is `virtio_rng`).
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Parses the NUL-separated `key=value` strings of a `.modinfo` section.
pub fn parse_modinfo(section: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for item in section.split(|&b| b == 0) {
        let Ok(item) = std::str::from_utf8(item) else {
            continue;
        };
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        match key {
            "name" => info.name = Some(value.to_string()),
            "depends" => {
                info.depends.extend(value.split(',').filter(|d| !d.is_empty()).map(normalize))
            }
            "alias" => info.aliases.push(value.to_string()),
            "softdep" => {
                // e.g. "pre: crypto-crc32c post: foo": keep the words after
                // "pre:" up to the next "post:".
                let mut in_pre = false;
                for word in value.split_whitespace() {
                    match word {
                        "pre:" => in_pre = true,
                        "post:" => in_pre = false,
                        w if in_pre => info.softdep_pre.push(w.to_string()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// Reads a module file, decompressing `.ko.xz`.
fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let raw = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "xz") {
        let mut out = Vec::with_capacity(raw.len() * 4);
        lzma_rs::xz_decompress(&mut BufReader::new(raw.as_slice()), &mut out)
            .map_err(|e| format!("{}: xz: {e}", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Maps module name -> path relative to `moddir` (`kernel/...ko[.xz]`).
fn index(moddir: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    let mut stack = vec![moddir.join("kernel")];
    while let Some(dir) = stack.pop() {
        let rd = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for ent in rd {
            let path = ent.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            let stem = file.strip_suffix(".ko.xz").or_else(|| file.strip_suffix(".ko"));
            if let Some(stem) = stem {
                let rel = path.strip_prefix(moddir).map_err(|e| e.to_string())?;
                map.insert(normalize(stem), rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(map)
}

/// Collects `wanted` and their dependencies from `moddir`
/// (`.../lib/modules/<version>`).
pub fn collect(moddir: &Path, wanted: &[&str]) -> Result<ModuleSet, String> {
    let index = index(moddir)?;
    let mut picked: BTreeMap<String, Module> = BTreeMap::new();
    let mut pending: Vec<String> = wanted.iter().map(|w| normalize(w)).collect();
    // Resolved edges: module -> modules to load before it.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut unresolved = BTreeSet::new();
    loop {
        while let Some(name) = pending.pop() {
            if picked.contains_key(&name) {
                continue;
            }
            let rel = index
                .get(&name)
                .ok_or_else(|| format!("module {name} is not in {}", moddir.display()))?;
            let data = read_module(&moddir.join(rel))?;
            let data = elf::strip_local_labels(&data).unwrap_or(data);
            let info =
                parse_modinfo(elf::section(&data, ".modinfo").map_err(|e| format!("{rel}: {e}"))?);
            pending.extend(info.depends.iter().cloned());
            edges.insert(name.clone(), info.depends.iter().cloned().collect());
            let rel_path = rel.strip_suffix(".xz").unwrap_or(rel).to_string();
            picked.insert(name.clone(), Module { name, rel_path, data, info });
        }
        // Softdeps name a module or an alias. Aliases are looked up among the
        // modules picked so far (WANTED lists the providers it needs), since
        // finding any alias would mean decompressing all ~3000 modules.
        let aliases: BTreeMap<&str, &str> = picked
            .values()
            .flat_map(|m| m.info.aliases.iter().map(|a| (a.as_str(), m.name.as_str())))
            .collect();
        let mut added = Vec::new();
        unresolved.clear();
        for m in picked.values() {
            for soft in &m.info.softdep_pre {
                let target = if index.contains_key(&normalize(soft)) {
                    Some(normalize(soft))
                } else {
                    aliases.get(soft.as_str()).map(|t| t.to_string())
                };
                match target {
                    Some(t) if t != m.name => {
                        if edges.get_mut(&m.name).is_some_and(|e| e.insert(t.clone())) {
                            added.push(t);
                        }
                    }
                    Some(_) => {}
                    None => {
                        unresolved.insert(format!("{}: {soft}", m.name));
                    }
                }
            }
        }
        if added.is_empty() {
            break;
        }
        pending.extend(added);
    }

    let mut modules: Vec<Module> = picked.into_values().collect();
    modules.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    let path_of: BTreeMap<&str, &str> =
        modules.iter().map(|m| (m.name.as_str(), m.rel_path.as_str())).collect();
    let mut modules_dep = String::new();
    for m in &modules {
        // modules.dep lists the full closure with the first module to load
        // last: modprobe (kmod's and busybox's) loads the list back to front.
        let mut order = Vec::new();
        load_order(&m.name, &edges, &mut BTreeSet::new(), &mut order);
        order.pop(); // the module itself comes last in load order
        let deps: Vec<&str> = order.iter().rev().map(|n| path_of[n.as_str()]).collect();
        modules_dep.push_str(&format!("{}:", m.rel_path));
        for d in deps {
            modules_dep.push(' ');
            modules_dep.push_str(d);
        }
        modules_dep.push('\n');
    }
    let mut alias_lines: Vec<String> = modules
        .iter()
        .flat_map(|m| m.info.aliases.iter().map(move |a| format!("alias {a} {}\n", m.name)))
        .collect();
    alias_lines.sort();
    Ok(ModuleSet {
        modules,
        modules_dep,
        modules_alias: alias_lines.concat(),
        unresolved_softdeps: unresolved.into_iter().collect(),
    })
}

/// Post-order walk: dependencies before dependents, each once; a cycle (only
/// possible through softdeps) is cut where it closes.
fn load_order(
    name: &str,
    edges: &BTreeMap<String, BTreeSet<String>>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) {
    if !seen.insert(name.to_string()) {
        return;
    }
    for dep in edges.get(name).into_iter().flatten() {
        load_order(dep, edges, seen, order);
    }
    order.push(name.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::tests_support::fake_module;

    fn write_xz(path: &Path, data: &[u8]) {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut BufReader::new(data), &mut out).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, out).unwrap();
    }

    #[test]
    fn modinfo_fields() {
        let info = parse_modinfo(
            b"license=GPL\0softdep=pre: crypto-crc32c foo post: bar\0alias=fs-ext4\0\
              depends=mbcache,jbd2,crc-16\0name=ext4\0",
        );
        assert_eq!(info.name.as_deref(), Some("ext4"));
        assert_eq!(info.depends, ["mbcache", "jbd2", "crc_16"]);
        assert_eq!(info.softdep_pre, ["crypto-crc32c", "foo"]);
        assert_eq!(info.aliases, ["fs-ext4"]);
        assert_eq!(parse_modinfo(b"depends=\0").depends, Vec::<String>::new());
    }

    /// A fake module tree: dependencies, a hyphenated file name, a softdep
    /// through an alias, a softdep on nothing, and a module we don't want.
    #[test]
    fn closure_and_modules_dep() {
        let dir = crate::tests::scratch_dir("modules");
        let m = |rel: &str, info: &str| write_xz(&dir.join(rel), &fake_module(info));
        m(
            "kernel/fs/ext4/ext4.ko.xz",
            "depends=jbd2,mbcache\0softdep=pre: crypto-crc32c\0name=ext4\0",
        );
        m("kernel/fs/jbd2/jbd2.ko.xz", "depends=\0softdep=pre: crypto-crc32c\0");
        m("kernel/fs/mbcache.ko.xz", "depends=\0");
        m("kernel/crypto/crc32c_generic.ko.xz", "alias=crypto-crc32c\0depends=\0");
        m("kernel/drivers/char/virtio-rng.ko.xz", "depends=\0softdep=pre: nothing-here\0");
        m("kernel/drivers/other.ko.xz", "depends=\0");
        let set = collect(&dir, &["ext4", "virtio-rng", "crc32c_generic"]).unwrap();
        let names: Vec<&str> = set.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["crc32c_generic", "virtio_rng", "ext4", "jbd2", "mbcache"]);
        assert_eq!(
            set.modules_dep,
            "kernel/crypto/crc32c_generic.ko:\n\
             kernel/drivers/char/virtio-rng.ko:\n\
             kernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko kernel/crypto/crc32c_generic.ko\n\
             kernel/fs/jbd2/jbd2.ko: kernel/crypto/crc32c_generic.ko\n\
             kernel/fs/mbcache.ko:\n"
        );
        assert_eq!(set.modules_alias, "alias crypto-crc32c crc32c_generic\n");
        assert_eq!(set.unresolved_softdeps, ["virtio_rng: nothing-here"]);
        // Decompressed, not xz.
        assert!(set.modules[0].data.starts_with(b"\x7fELF"));
        assert!(collect(&dir, &["missing"]).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
