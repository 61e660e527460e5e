//! Just enough ELF64 (little-endian, relocatable) for kernel modules: find a
//! section, and drop the assembler's local labels from the symbol table.
//!
//! Why drop them: Debian's riscv64 modules are stripped of debug info only,
//! and keep every `.L` label the assembler made for linker relaxation and
//! DWARF (ext4.ko: 212,000 of its 216,000 symbols, 5 of its 7 MB). The kernel
//! needs just the few that relocations name. Without the rest, the modules
//! in the initramfs shrink to about a third, which every boot pays for when
//! the kernel unpacks the initramfs on keel's software CPU, and module loading
//! walks far fewer symbols.

use std::collections::BTreeSet;

const SHT_SYMTAB: u32 = 2;
const SHT_RELA: u32 = 4;
const SHT_NOBITS: u32 = 8;
const SHT_REL: u32 = 9;
const SHT_GROUP: u32 = 17;
const SHT_SYMTAB_SHNDX: u32 = 18;
const ET_REL: u16 = 1;
const SYM_SIZE: usize = 24;
const SHDR_SIZE: usize = 64;
const STB_LOCAL: u8 = 0;
const STT_SECTION: u8 = 3;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// One section header, with the fields we read or rewrite.
#[derive(Debug, Clone)]
struct Shdr {
    raw: [u8; SHDR_SIZE],
    name: u32,
    kind: u32,
    offset: usize,
    size: usize,
    link: u32,
    info: u32,
    align: usize,
}

impl Shdr {
    fn parse(b: &[u8]) -> Option<Self> {
        let raw: [u8; SHDR_SIZE] = b.get(..SHDR_SIZE)?.try_into().ok()?;
        Some(Shdr {
            raw,
            name: u32_at(b, 0)?,
            kind: u32_at(b, 4)?,
            offset: usize::try_from(u64_at(b, 0x18)?).ok()?,
            size: usize::try_from(u64_at(b, 0x20)?).ok()?,
            link: u32_at(b, 0x28)?,
            info: u32_at(b, 0x2c)?,
            align: usize::try_from(u64_at(b, 0x30)?).ok()?.max(1),
        })
    }
    fn data<'a>(&self, elf: &'a [u8]) -> Option<&'a [u8]> {
        if self.kind == SHT_NOBITS {
            return Some(&[]);
        }
        elf.get(self.offset..self.offset.checked_add(self.size)?)
    }
}

/// The section headers of a little-endian ELF64 file, and its shstrndx.
fn sections(elf: &[u8]) -> Result<(Vec<Shdr>, usize), String> {
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err("not a little-endian 64-bit ELF file".into());
    }
    let bad = || "malformed ELF section table".to_string();
    let shoff = usize::try_from(u64_at(elf, 0x28).ok_or_else(bad)?).map_err(|_| bad())?;
    let shentsize = u16_at(elf, 0x3a).ok_or_else(bad)? as usize;
    let shnum = u16_at(elf, 0x3c).ok_or_else(bad)? as usize;
    let shstrndx = u16_at(elf, 0x3e).ok_or_else(bad)? as usize;
    if shentsize != SHDR_SIZE || shstrndx >= shnum {
        return Err(bad());
    }
    let table =
        elf.get(shoff..shoff.checked_add(shnum * SHDR_SIZE).ok_or_else(bad)?).ok_or_else(bad)?;
    let shdrs =
        table.chunks(SHDR_SIZE).map(Shdr::parse).collect::<Option<Vec<_>>>().ok_or_else(bad)?;
    Ok((shdrs, shstrndx))
}

fn c_str(table: &[u8], at: usize) -> &[u8] {
    let s = table.get(at..).unwrap_or(&[]);
    &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
}

/// Returns the contents of the named section.
pub fn section<'a>(elf: &'a [u8], wanted: &str) -> Result<&'a [u8], String> {
    let (shdrs, shstrndx) = sections(elf)?;
    let names = shdrs[shstrndx].data(elf).ok_or("bad .shstrtab")?;
    shdrs
        .iter()
        .find(|s| c_str(names, s.name as usize) == wanted.as_bytes())
        .and_then(|s| s.data(elf))
        .ok_or_else(|| format!("no {wanted} section"))
}

/// Rewrites a relocatable ELF without the local `.L*` symbols that no
/// relocation names, renumbering the relocations' symbol indices, and lays
/// the sections out again without gaps. Anything appended after the ELF
/// data (the module signature, which no longer matches) is dropped.
/// Returns `None` for files it does not handle (then use the original).
pub fn strip_local_labels(elf: &[u8]) -> Option<Vec<u8>> {
    let (shdrs, _) = sections(elf).ok()?;
    if u16_at(elf, 0x10)? != ET_REL || u16_at(elf, 0x38)? != 0 {
        return None;
    }
    // Sections that name symbols by index in ways we don't rewrite.
    if shdrs.iter().any(|s| s.kind == SHT_GROUP || s.kind == SHT_SYMTAB_SHNDX) {
        return None;
    }
    let mut symtabs = shdrs.iter().enumerate().filter(|(_, s)| s.kind == SHT_SYMTAB);
    let (symtab_idx, symtab) = symtabs.next()?;
    if symtabs.next().is_some() || symtab.size % SYM_SIZE != 0 {
        return None;
    }
    let syms = symtab.data(elf)?;
    let strtab = shdrs.get(symtab.link as usize)?.data(elf)?;
    let nsyms = syms.len() / SYM_SIZE;

    // Relocation sections against this symbol table, and their entry size.
    let rel_entry = |s: &Shdr| match s.kind {
        SHT_RELA if s.link as usize == symtab_idx => Some(24),
        SHT_REL if s.link as usize == symtab_idx => Some(16),
        _ => None,
    };
    let mut referenced = BTreeSet::new();
    for s in &shdrs {
        if let Some(entry) = rel_entry(s) {
            for r in s.data(elf)?.chunks(entry) {
                referenced.insert((u64_at(r, 8)? >> 32) as usize);
            }
        }
    }
    // old index -> new index, for the symbols kept.
    let mut map = vec![None; nsyms];
    let mut new_syms = Vec::new();
    let mut new_locals = 0u32;
    for (i, sym) in syms.chunks(SYM_SIZE).enumerate() {
        let info = sym[4];
        let is_label = info >> 4 == STB_LOCAL
            && info & 0xf != STT_SECTION
            && c_str(strtab, u32_at(sym, 0)? as usize).starts_with(b".L");
        if i == 0 || !is_label || referenced.contains(&i) {
            map[i] = Some(u64::try_from(new_syms.len() / SYM_SIZE).ok()?);
            new_syms.extend_from_slice(sym);
            if (i as u32) < symtab.info {
                new_locals += 1;
            }
        }
    }
    if new_syms.len() == syms.len() {
        return None; // nothing to gain
    }

    // New contents per section; None = unchanged.
    let mut contents: Vec<Option<Vec<u8>>> = vec![None; shdrs.len()];
    contents[symtab_idx] = Some(new_syms);
    for (i, s) in shdrs.iter().enumerate() {
        if let Some(entry) = rel_entry(s) {
            let mut data = s.data(elf)?.to_vec();
            for r in data.chunks_mut(entry) {
                let info = u64_at(r, 8)?;
                let sym = map.get((info >> 32) as usize).copied().flatten()?;
                r[8..16].copy_from_slice(&((sym << 32) | (info & 0xffff_ffff)).to_le_bytes());
            }
            contents[i] = Some(data);
        }
    }

    // Lay out: ELF header, sections in their original order of offset, each
    // at its alignment, then the section header table.
    let mut out = elf.get(..64)?.to_vec();
    let mut order: Vec<usize> = (1..shdrs.len()).collect();
    order.sort_by_key(|&i| (shdrs[i].offset, i));
    let mut new_shdrs = shdrs.clone();
    for i in order {
        let s = &shdrs[i];
        let data = match &contents[i] {
            Some(d) => d.as_slice(),
            None => s.data(elf)?,
        };
        if s.kind != SHT_NOBITS {
            out.resize(out.len().next_multiple_of(s.align), 0);
        }
        let ns = &mut new_shdrs[i];
        ns.offset = out.len();
        ns.size = if s.kind == SHT_NOBITS { s.size } else { data.len() };
        if i == symtab_idx {
            ns.info = new_locals;
        }
        out.extend_from_slice(data);
    }
    out.resize(out.len().next_multiple_of(8), 0);
    let shoff = out.len() as u64;
    for s in &new_shdrs {
        let mut raw = s.raw;
        raw[0x18..0x20].copy_from_slice(&(s.offset as u64).to_le_bytes());
        raw[0x20..0x28].copy_from_slice(&(s.size as u64).to_le_bytes());
        raw[0x2c..0x30].copy_from_slice(&s.info.to_le_bytes());
        out.extend_from_slice(&raw);
    }
    out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// Builds a small relocatable ELF64: sections `.modinfo` (given text),
    /// `.text`, `.symtab` (null, local `.L0 ` used by a relocation, local
    /// `.L1` unused, local `f`, global `g`), `.strtab`, `.rela.text` (one
    /// relocation against `.L0 `, one against `g`) and `.shstrtab`.
    pub fn fake_module(modinfo: &str) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.text\0.symtab\0.strtab\0.rela.text\0.shstrtab\0";
        let strtab = b"\0.L0 \0.L1\0f\0g\0";
        let sym = |name: u32, info: u8, value: u64| {
            let mut s = [0u8; 24];
            s[..4].copy_from_slice(&name.to_le_bytes());
            s[4] = info;
            s[6..8].copy_from_slice(&2u16.to_le_bytes()); // in .text
            s[8..16].copy_from_slice(&value.to_le_bytes());
            s
        };
        let symtab: Vec<u8> =
            [sym(0, 0, 0), sym(1, 0, 4), sym(6, 0, 8), sym(10, 2, 0), sym(12, 0x12, 12)].concat();
        let rela = |off: u64, sym: u64, kind: u64| {
            [off.to_le_bytes(), ((sym << 32) | kind).to_le_bytes(), 0u64.to_le_bytes()].concat()
        };
        let relas = [rela(0, 1, 24), rela(4, 4, 19)].concat();
        let text = [0x13u8, 0, 0, 0].repeat(4);
        // (data, [name, type, link, info, align, entsize])
        let secs: Vec<(Vec<u8>, [u64; 6])> = vec![
            (modinfo.as_bytes().to_vec(), [1, 1, 0, 0, 1, 0]),
            (text, [10, 1, 0, 0, 4, 0]),
            (symtab, [16, 2, 4, 4, 8, 24]),
            (strtab.to_vec(), [24, 3, 0, 0, 1, 0]),
            (relas, [32, 4, 3, 2, 8, 24]),
            (shstrtab.to_vec(), [43, 3, 0, 0, 1, 0]),
        ];
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x10] = 1; // ET_REL
        let mut headers = vec![[0u8; 64]];
        for (data, [name, kind, link, info, align, entsize]) in secs {
            elf.resize(elf.len().next_multiple_of(align as usize), 0);
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&(name as u32).to_le_bytes());
            h[4..8].copy_from_slice(&(kind as u32).to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(elf.len() as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(data.len() as u64).to_le_bytes());
            h[0x28..0x2c].copy_from_slice(&(link as u32).to_le_bytes());
            h[0x2c..0x30].copy_from_slice(&(info as u32).to_le_bytes());
            h[0x30..0x38].copy_from_slice(&align.to_le_bytes());
            h[0x38..0x40].copy_from_slice(&entsize.to_le_bytes());
            elf.extend_from_slice(&data);
            headers.push(h);
        }
        elf.resize(elf.len().next_multiple_of(8), 0);
        let shoff = elf.len() as u64;
        elf.extend(headers.concat());
        elf[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&7u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&6u16.to_le_bytes());
        elf
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::fake_module;
    use super::*;

    #[test]
    fn finds_sections() {
        let elf = fake_module("name=x\0");
        assert_eq!(section(&elf, ".modinfo").unwrap(), b"name=x\0");
        assert_eq!(section(&elf, ".text").unwrap().len(), 16);
        assert!(section(&elf, ".data").is_err());
        assert!(section(b"not elf", ".modinfo").is_err());
    }

    #[test]
    fn strips_unused_labels_only() {
        let mut elf = fake_module("name=x\0");
        elf.extend_from_slice(b"signature~Module signature appended~\n");
        let out = strip_local_labels(&elf).expect("something to strip");
        let (shdrs, _) = sections(&out).unwrap();
        let symtab = section(&out, ".symtab").unwrap();
        // null, .L0 (relocated against), f, g: .L1 is gone.
        assert_eq!(symtab.len(), 4 * SYM_SIZE);
        let strtab = section(&out, ".strtab").unwrap();
        let names: Vec<&[u8]> = symtab
            .chunks(SYM_SIZE)
            .map(|s| c_str(strtab, u32_at(s, 0).unwrap() as usize))
            .collect();
        assert_eq!(names, [b"".as_slice(), b".L0 ", b"f", b"g"]);
        // sh_info: first global is now index 3.
        assert_eq!(shdrs[3].info, 3);
        // Relocations point at the same symbols under their new numbers.
        let rela = section(&out, ".rela.text").unwrap();
        let syms: Vec<u64> = rela.chunks(24).map(|r| u64_at(r, 8).unwrap() >> 32).collect();
        assert_eq!(syms, [1, 3]);
        assert_eq!(u64_at(rela, 8).unwrap() & 0xffff_ffff, 24);
        // Other sections unchanged, signature dropped, alignment kept.
        assert_eq!(section(&out, ".modinfo").unwrap(), b"name=x\0");
        assert_eq!(section(&out, ".text").unwrap(), section(&elf, ".text").unwrap());
        assert!(shdrs.iter().all(|s| s.offset % s.align == 0));
        assert!(!out.windows(9).any(|w| w == b"signature"));
        // Nothing left to strip the second time.
        assert!(strip_local_labels(&out).is_none());
    }
}
