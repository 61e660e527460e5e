//! Kernel loading: recognises what the user handed us and says which bytes go where in guest
//! RAM; the machine does the copying.
//!
//! Two formats:
//! * the RISC-V Linux `Image` (Documentation/arch/riscv/boot-image-header.rst), which is what
//!   Debian ships as `/boot/vmlinux-*` (with a PE/EFI "MZ" stub in `code0`): loaded whole at
//!   RAM base + `text_offset`, entered at its first byte (Documentation/arch/riscv/boot.rst);
//! * an ELF64 little-endian RISC-V executable (bare-metal programs, riscv-tests): `PT_LOAD`
//!   segments go to their physical addresses (`p_paddr`), and the HTIF mailboxes `tohost` /
//!   `fromhost` are looked up in the symbol table.
//!
//! Why not `linux-loader`: its PE `Image` loader is compiled only when the *host* is aarch64 or
//! riscv64, and its ELF loader targets x86 guests (PVH notes, x86 checks), so on an x86-64 host
//! it cannot load a RISC-V guest. The `object` crate parses the ELF; the Image header is
//! 64 bytes and read here directly.

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, Sym};
use object::LittleEndian as LE;
use thiserror::Error;

/// RV64 kernels are placed 2 MiB into RAM on a 2 MiB boundary (boot.rst, "Kernel location").
pub const IMAGE_ALIGN: u64 = 2 << 20;
/// `text_offset` assumed when an Image header leaves it 0.
pub const DEFAULT_TEXT_OFFSET: u64 = 2 << 20;
const PAGE: u64 = 4096;
/// The devicetree blob must be 8-byte aligned (Devicetree Specification v0.4, §5.1).
const FDT_MIN_ALIGN: u64 = 8;

/// Image header layout (boot-image-header.rst).
const IMAGE_HEADER_LEN: usize = 64;
const IMAGE_MAGIC: &[u8; 8] = b"RISCV\0\0\0"; // at 48, deprecated since header version 0.2
const IMAGE_MAGIC2: &[u8; 4] = b"RSC\x05"; // at 56
const ARM64_MAGIC: &[u8; 4] = b"ARM\x64"; // at 56 in an arm64 Image: name it in the error
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// RISC-V Linux `Image` (possibly with a PE/EFI stub).
    Image,
    /// ELF64 RISC-V executable.
    Elf,
}

/// One piece of the kernel: `data` goes at guest-physical `addr`, then zeros up to `mem_size`
/// bytes (BSS). `data.len() <= mem_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    pub addr: u64,
    pub data: &'a [u8],
    pub mem_size: u64,
}

/// A recognised kernel, checked to fit in RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImage<'a> {
    pub format: KernelFormat,
    /// Where the boot hart starts (S-mode for an Image, `e_entry` for an ELF).
    pub entry: u64,
    pub segments: Vec<Segment<'a>>,
    /// First byte past the highest segment, BSS included: nothing else may go below it.
    pub image_end: u64,
    /// HTIF mailbox addresses, when the ELF's symbol table has them.
    pub tohost: Option<u64>,
    pub fromhost: Option<u64>,
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("the kernel file is empty")]
    Empty,
    #[error("the kernel file is truncated: its {what} needs {need} bytes, the file has {have}")]
    Truncated { what: &'static str, need: usize, have: usize },
    #[error("not a RISC-V Linux Image or ELF executable (the file starts with {head})")]
    UnknownFormat { head: String },
    #[error("not a RISC-V kernel: {0}")]
    NotRiscv(&'static str),
    #[error(
        "the Image header says the kernel is big-endian; RISC-V guests here are little-endian"
    )]
    BigEndianImage,
    #[error("Image would load at {addr:#x}, which is not 2 MiB aligned (RAM base {ram_base:#x} + text_offset)")]
    MisalignedImage { addr: u64, ram_base: u64 },
    #[error("32-bit ELF files are not supported: keel runs RV64 guests")]
    Elf32,
    #[error("unknown ELF class {0:?} (byte 4 of the file; 2 means 64-bit)")]
    ElfClass(Option<u8>),
    #[error("big-endian ELF files are not supported: RISC-V is little-endian")]
    ElfBigEndian,
    #[error("the ELF file is for machine {machine} ({name}), not RISC-V (243)")]
    ElfMachine { machine: u16, name: &'static str },
    #[error("the ELF file is of type {0} ({1}), not an executable (ET_EXEC)")]
    ElfType(u16, &'static str),
    #[error("malformed ELF file: {0}")]
    Elf(#[from] object::read::Error),
    #[error("the ELF file has no loadable (PT_LOAD) segment")]
    NoSegments,
    #[error("ELF segment {index} is malformed: {why}")]
    BadSegment { index: usize, why: &'static str },
    #[error("{what} at {addr:#x}+{size:#x} lies outside guest RAM {ram_base:#x}+{ram_size:#x}")]
    OutsideRam { what: &'static str, addr: u64, size: u64, ram_base: u64, ram_size: u64 },
    #[error("guest RAM {ram_base:#x}+{ram_size:#x} wraps around the address space")]
    BadRam { ram_base: u64, ram_size: u64 },
    #[error("guest RAM of {ram_size} bytes is too small for the kernel (up to {kernel_end:#x}), a {initrd_len}-byte initrd and a {fdt_len}-byte device tree")]
    RamTooSmall { ram_size: u64, kernel_end: u64, initrd_len: u64, fdt_len: u64 },
}

/// Recognises `bytes` as a kernel for a guest whose RAM is `ram_base..ram_base + ram_size`.
pub fn parse_kernel(
    bytes: &[u8],
    ram_base: u64,
    ram_size: u64,
) -> Result<KernelImage<'_>, LoadError> {
    let ram = Ram::new(ram_base, ram_size)?;
    if bytes.is_empty() {
        return Err(LoadError::Empty);
    }
    if bytes.starts_with(ELF_MAGIC) {
        return parse_elf(bytes, ram);
    }
    let has = |at: usize, m: &[u8]| bytes.get(at..at + m.len()) == Some(m);
    if has(48, IMAGE_MAGIC) || has(56, IMAGE_MAGIC2) {
        return parse_image(bytes, ram);
    }
    if bytes.starts_with(b"MZ") {
        if bytes.len() < IMAGE_HEADER_LEN {
            return Err(LoadError::Truncated {
                what: "Image header",
                need: IMAGE_HEADER_LEN,
                have: bytes.len(),
            });
        }
        if has(56, ARM64_MAGIC) {
            return Err(LoadError::NotRiscv("this is an arm64 Linux Image"));
        }
        return Err(LoadError::NotRiscv(
            "a PE/EFI file without the RISC-V Image magic (an x86 kernel or EFI program?)",
        ));
    }
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(LoadError::UnknownFormat { head: head.join(" ") })
}

#[derive(Clone, Copy)]
struct Ram {
    base: u64,
    size: u64,
    end: u64,
}

impl Ram {
    fn new(base: u64, size: u64) -> Result<Ram, LoadError> {
        let end =
            base.checked_add(size).ok_or(LoadError::BadRam { ram_base: base, ram_size: size })?;
        Ok(Ram { base, size, end })
    }

    /// Checks that `addr..addr + size` lies in RAM and returns its end.
    fn check(&self, what: &'static str, addr: u64, size: u64) -> Result<u64, LoadError> {
        let err =
            LoadError::OutsideRam { what, addr, size, ram_base: self.base, ram_size: self.size };
        match addr.checked_add(size) {
            Some(end) if addr >= self.base && end <= self.end => Ok(end),
            _ => Err(err),
        }
    }
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn parse_image(bytes: &[u8], ram: Ram) -> Result<KernelImage<'_>, LoadError> {
    if bytes.len() < IMAGE_HEADER_LEN {
        return Err(LoadError::Truncated {
            what: "Image header",
            need: IMAGE_HEADER_LEN,
            have: bytes.len(),
        });
    }
    let text_offset = match le_u64(bytes, 8) {
        0 => DEFAULT_TEXT_OFFSET,
        t => t,
    };
    let image_size = le_u64(bytes, 16);
    let flags = le_u64(bytes, 24);
    // flags bit 0: kernel endianness, 1 = big-endian (boot-image-header.rst).
    if flags & 1 != 0 {
        return Err(LoadError::BigEndianImage);
    }
    let addr = ram.base.checked_add(text_offset).ok_or(LoadError::OutsideRam {
        what: "the Image",
        addr: ram.base,
        size: text_offset,
        ram_base: ram.base,
        ram_size: ram.size,
    })?;
    if addr % IMAGE_ALIGN != 0 {
        return Err(LoadError::MisalignedImage { addr, ram_base: ram.base });
    }
    // image_size covers BSS; 0 means "unknown" (header version 0.1): use the file size.
    let mem_size = image_size.max(bytes.len() as u64);
    let image_end = ram.check("the Image", addr, mem_size)?;
    Ok(KernelImage {
        format: KernelFormat::Image,
        entry: addr,
        segments: vec![Segment { addr, data: bytes, mem_size }],
        image_end,
        tohost: None,
        fromhost: None,
    })
}

fn machine_name(m: u16) -> &'static str {
    match m {
        elf::EM_386 => "x86",
        elf::EM_X86_64 => "x86-64",
        elf::EM_ARM => "arm",
        elf::EM_AARCH64 => "aarch64",
        _ => "unknown",
    }
}

fn parse_elf(bytes: &[u8], ram: Ram) -> Result<KernelImage<'_>, LoadError> {
    // Check the identification bytes ourselves so the error names the actual problem.
    // e_ident offsets (System V gABI, "ELF Identification").
    const EI_CLASS: usize = 4;
    const EI_DATA: usize = 5;
    const EHDR64_LEN: usize = 64;
    match bytes.get(EI_CLASS) {
        Some(&elf::ELFCLASS32) => return Err(LoadError::Elf32),
        Some(&elf::ELFCLASS64) => {}
        c => return Err(LoadError::ElfClass(c.copied())),
    }
    if bytes.get(EI_DATA) == Some(&elf::ELFDATA2MSB) {
        return Err(LoadError::ElfBigEndian);
    }
    if bytes.len() < EHDR64_LEN {
        return Err(LoadError::Truncated {
            what: "ELF header",
            need: EHDR64_LEN,
            have: bytes.len(),
        });
    }
    let hdr = elf::FileHeader64::<LE>::parse(bytes)?;
    let e = hdr.endian()?;
    let machine = hdr.e_machine(e);
    if machine != elf::EM_RISCV {
        return Err(LoadError::ElfMachine { machine, name: machine_name(machine) });
    }
    match hdr.e_type(e) {
        elf::ET_EXEC => {}
        elf::ET_DYN => return Err(LoadError::ElfType(elf::ET_DYN, "a shared object or PIE")),
        elf::ET_REL => return Err(LoadError::ElfType(elf::ET_REL, "an unlinked object file")),
        t => return Err(LoadError::ElfType(t, "not loadable")),
    }

    let mut segments = Vec::new();
    let mut image_end = 0;
    for (index, ph) in hdr.program_headers(e, bytes)?.iter().enumerate() {
        if ph.p_type(e) != elf::PT_LOAD || ph.p_memsz(e) == 0 {
            continue;
        }
        let (filesz, memsz) = (ph.p_filesz(e), ph.p_memsz(e));
        if filesz > memsz {
            return Err(LoadError::BadSegment { index, why: "p_filesz is larger than p_memsz" });
        }
        let data = ph.data(e, bytes).map_err(|_| LoadError::BadSegment {
            index,
            why: "its file contents extend past the end of the file",
        })?;
        let addr = ph.p_paddr(e);
        image_end = image_end.max(ram.check("an ELF segment", addr, memsz)?);
        segments.push(Segment { addr, data, mem_size: memsz });
    }
    if segments.is_empty() {
        return Err(LoadError::NoSegments);
    }
    let entry = hdr.e_entry(e);
    ram.check("the ELF entry point", entry, 1)?;

    // HTIF: riscv-tests style programs export the mailbox addresses as symbols.
    let symbols = hdr.sections(e, bytes)?.symbols(e, bytes, elf::SHT_SYMTAB)?;
    let (mut tohost, mut fromhost) = (None, None);
    for sym in symbols.iter() {
        match symbols.symbol_name(e, sym)? {
            b"tohost" => tohost = Some(sym.st_value(e)),
            b"fromhost" => fromhost = Some(sym.st_value(e)),
            _ => {}
        }
    }
    Ok(KernelImage { format: KernelFormat::Elf, entry, segments, image_end, tohost, fromhost })
}

fn align_down(v: u64, a: u64) -> u64 {
    v & !(a - 1)
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

/// Chooses where the initrd and the device tree go, as QEMU does: the device tree at the top
/// of RAM, the initrd right below it, both above the kernel. Returns `(initrd_addr, fdt_addr)`.
///
/// The device tree goes on a 2 MiB boundary when that fits (it leaves room above the blob for
/// firmware such as OpenSBI that grows the tree in place, and matches the 2 MiB block Linux
/// maps it with early in boot), else on the devicetree spec's minimum 8 bytes. The initrd is
/// page aligned.
pub fn place_initrd(
    ram_base: u64,
    ram_size: u64,
    kernel_end: u64,
    initrd_len: u64,
    fdt_len: u64,
) -> Result<(u64, u64), LoadError> {
    let ram = Ram::new(ram_base, ram_size)?;
    let too_small = || LoadError::RamTooSmall { ram_size, kernel_end, initrd_len, fdt_len };
    let floor = align_up(kernel_end.max(ram.base), PAGE).ok_or_else(too_small)?;
    let place = |fdt_align: u64| -> Option<(u64, u64)> {
        let fdt = align_down(ram.end.checked_sub(fdt_len)?, fdt_align);
        let initrd = align_down(fdt.checked_sub(initrd_len)?, PAGE);
        (initrd >= floor).then_some((initrd, fdt))
    };
    place(IMAGE_ALIGN).or_else(|| place(FDT_MIN_ALIGN)).ok_or_else(too_small)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: u64 = 0x8000_0000;
    const MIB: u64 = 1 << 20;

    /// A RISC-V Image as boot-image-header.rst lays it out, with the PE "MZ" stub Debian's has.
    fn image(text_offset: u64, image_size: u64, payload: usize) -> Vec<u8> {
        let mut b = vec![0u8; IMAGE_HEADER_LEN + payload];
        b[0..4].copy_from_slice(b"MZ\x6f\x10"); // "MZ" + c.li s4,-13 as in Linux's head.S
        b[8..16].copy_from_slice(&text_offset.to_le_bytes());
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[32..36].copy_from_slice(&2u32.to_le_bytes()); // version 0.2
        b[48..56].copy_from_slice(IMAGE_MAGIC);
        b[56..60].copy_from_slice(IMAGE_MAGIC2);
        for (i, x) in b[IMAGE_HEADER_LEN..].iter_mut().enumerate() {
            *x = i as u8;
        }
        b
    }

    #[test]
    fn image_loads_at_text_offset_and_reserves_bss() {
        let b = image(2 * MIB, 0x10_0000, 0x8000);
        let k = parse_kernel(&b, RAM, 256 * MIB).unwrap();
        assert_eq!(k.format, KernelFormat::Image);
        assert_eq!(k.entry, RAM + 2 * MIB);
        assert_eq!(k.segments.len(), 1);
        let s = &k.segments[0];
        assert_eq!(s.addr, RAM + 2 * MIB);
        assert_eq!(s.data, &b[..], "the whole file, header included");
        assert_eq!(s.mem_size, 0x10_0000);
        assert_eq!(k.image_end, RAM + 2 * MIB + 0x10_0000);
        assert_eq!((k.tohost, k.fromhost), (None, None));
    }

    #[test]
    fn image_defaults_and_either_magic() {
        // text_offset 0 means 2 MiB; image_size 0 means "the file".
        let b = image(0, 0, 100);
        let k = parse_kernel(&b, RAM, 256 * MIB).unwrap();
        assert_eq!(k.entry, RAM + 2 * MIB);
        assert_eq!(k.image_end, RAM + 2 * MIB + b.len() as u64);
        // Only the deprecated magic, or only magic2, is enough; no MZ stub needed.
        let mut old = image(2 * MIB, 0, 16);
        old[56..60].fill(0);
        old[0..2].copy_from_slice(b"\x13\x00");
        assert!(parse_kernel(&old, RAM, 256 * MIB).is_ok());
        let mut new = image(2 * MIB, 0, 16);
        new[48..56].fill(0);
        assert!(parse_kernel(&new, RAM, 256 * MIB).is_ok());
    }

    #[test]
    fn image_errors() {
        let b = image(2 * MIB, 64 * MIB, 16);
        assert!(matches!(parse_kernel(&b, RAM, 32 * MIB), Err(LoadError::OutsideRam { .. })));
        let mut be = image(2 * MIB, 0, 16);
        be[24] = 1;
        assert!(matches!(parse_kernel(&be, RAM, 32 * MIB), Err(LoadError::BigEndianImage)));
        let odd = image(0x1000, 0, 16);
        assert!(matches!(
            parse_kernel(&odd, RAM, 32 * MIB),
            Err(LoadError::MisalignedImage { .. })
        ));
        let mut arm = image(2 * MIB, 0, 16);
        arm[48..56].fill(0);
        arm[56..60].copy_from_slice(ARM64_MAGIC);
        let err = parse_kernel(&arm, RAM, 32 * MIB).unwrap_err();
        assert!(err.to_string().contains("arm64"), "{err}");
        let mut pe = image(2 * MIB, 0, 16);
        pe[48..60].fill(0);
        assert!(matches!(parse_kernel(&pe, RAM, 32 * MIB), Err(LoadError::NotRiscv(_))));
        assert!(matches!(
            parse_kernel(b"MZ\x90\x00", RAM, 32 * MIB),
            Err(LoadError::Truncated { what: "Image header", .. })
        ));
    }

    #[test]
    fn junk_is_rejected_with_a_reason() {
        assert!(matches!(parse_kernel(&[], RAM, MIB), Err(LoadError::Empty)));
        let err = parse_kernel(b"#!/bin/sh\necho hello\n", RAM, MIB).unwrap_err();
        assert!(matches!(err, LoadError::UnknownFormat { .. }));
        assert!(err.to_string().contains("23 21 2f 62"), "{err}");
        assert!(matches!(parse_kernel(&[1, 2, 3], u64::MAX, 2), Err(LoadError::BadRam { .. })));
    }

    struct ElfSeg {
        vaddr: u64,
        paddr: u64,
        data: Vec<u8>,
        memsz: u64,
    }

    /// A minimal ELF64 executable (System V gABI layout): header, program headers, segment
    /// data, then .symtab/.strtab/.shstrtab and the section headers.
    fn elf(machine: u16, etype: u16, entry: u64, segs: &[ElfSeg], syms: &[(&str, u64)]) -> Vec<u8> {
        fn put(b: &mut [u8], at: usize, v: &[u8]) {
            b[at..at + v.len()].copy_from_slice(v);
        }
        let phoff = 64usize;
        let mut out = vec![0u8; phoff + 56 * segs.len()];
        put(&mut out, 0, &[0x7f, b'E', b'L', b'F', 2, 1, 1]);
        put(&mut out, 16, &etype.to_le_bytes());
        put(&mut out, 18, &machine.to_le_bytes());
        put(&mut out, 20, &1u32.to_le_bytes());
        put(&mut out, 24, &entry.to_le_bytes());
        put(&mut out, 32, &(phoff as u64).to_le_bytes());
        put(&mut out, 52, &64u16.to_le_bytes());
        put(&mut out, 54, &56u16.to_le_bytes());
        put(&mut out, 56, &(segs.len() as u16).to_le_bytes());
        for (i, s) in segs.iter().enumerate() {
            let off = out.len() as u64;
            out.extend_from_slice(&s.data);
            let ph = phoff + 56 * i;
            put(&mut out, ph, &elf::PT_LOAD.to_le_bytes());
            put(&mut out, ph + 4, &7u32.to_le_bytes());
            put(&mut out, ph + 8, &off.to_le_bytes());
            put(&mut out, ph + 16, &s.vaddr.to_le_bytes());
            put(&mut out, ph + 24, &s.paddr.to_le_bytes());
            put(&mut out, ph + 32, &(s.data.len() as u64).to_le_bytes());
            put(&mut out, ph + 40, &s.memsz.to_le_bytes());
            put(&mut out, ph + 48, &4096u64.to_le_bytes());
        }
        // Symbol table: the null symbol, then one global object per name.
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24];
        for (name, value) in syms {
            let mut sym = [0u8; 24];
            put(&mut sym, 0, &(strtab.len() as u32).to_le_bytes());
            sym[4] = (elf::STB_GLOBAL << 4) | elf::STT_OBJECT;
            put(&mut sym, 6, &1u16.to_le_bytes());
            put(&mut sym, 8, &value.to_le_bytes());
            symtab.extend_from_slice(&sym);
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
        }
        let shstrtab = b"\0.symtab\0.strtab\0.shstrtab\0".to_vec();
        let (symoff, stroff) = (out.len(), out.len() + symtab.len());
        let shstroff = stroff + strtab.len();
        out.extend_from_slice(&symtab);
        out.extend_from_slice(&strtab);
        out.extend_from_slice(&shstrtab);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        let shoff = out.len();
        out.resize(shoff + 4 * 64, 0);
        // (name offset, type, offset, size, link, info, entsize); section 0 stays null.
        let secs = [
            (1u32, elf::SHT_SYMTAB, symoff, symtab.len(), 2u32, 1u32, 24u64),
            (9, elf::SHT_STRTAB, stroff, strtab.len(), 0, 0, 0),
            (17, elf::SHT_STRTAB, shstroff, shstrtab.len(), 0, 0, 0),
        ];
        for (i, (name, ty, off, size, link, info, entsize)) in secs.into_iter().enumerate() {
            let sh = shoff + 64 * (i + 1);
            put(&mut out, sh, &name.to_le_bytes());
            put(&mut out, sh + 4, &ty.to_le_bytes());
            put(&mut out, sh + 24, &(off as u64).to_le_bytes());
            put(&mut out, sh + 32, &(size as u64).to_le_bytes());
            put(&mut out, sh + 40, &link.to_le_bytes());
            put(&mut out, sh + 44, &info.to_le_bytes());
            put(&mut out, sh + 48, &1u64.to_le_bytes());
            put(&mut out, sh + 56, &entsize.to_le_bytes());
        }
        put(&mut out, 40, &(shoff as u64).to_le_bytes());
        put(&mut out, 58, &64u16.to_le_bytes());
        put(&mut out, 60, &4u16.to_le_bytes());
        put(&mut out, 62, &3u16.to_le_bytes());
        out
    }

    fn test_program() -> Vec<u8> {
        // li a0, 0; ecall; j .
        let text = vec![0x13, 0x05, 0, 0, 0x73, 0, 0, 0, 0x6f, 0, 0, 0];
        let segs = [
            ElfSeg { vaddr: RAM, paddr: RAM, data: text, memsz: 12 },
            // Virtual and physical addresses differ: the loader must use p_paddr.
            ElfSeg {
                vaddr: 0xffff_ffff_8000_1000,
                paddr: RAM + 0x1000,
                data: vec![0xaa; 16],
                memsz: 0x100,
            },
        ];
        let syms = [("_start", RAM), ("tohost", RAM + 0x1000), ("fromhost", RAM + 0x1040)];
        elf(elf::EM_RISCV, elf::ET_EXEC, RAM, &segs, &syms)
    }

    #[test]
    fn elf_segments_entry_and_htif_symbols() {
        let b = test_program();
        let k = parse_kernel(&b, RAM, 16 * MIB).unwrap();
        assert_eq!(k.format, KernelFormat::Elf);
        assert_eq!(k.entry, RAM);
        assert_eq!(k.segments.len(), 2);
        assert_eq!(k.segments[0].addr, RAM);
        assert_eq!(k.segments[0].data, &[0x13, 0x05, 0, 0, 0x73, 0, 0, 0, 0x6f, 0, 0, 0]);
        assert_eq!(k.segments[1].addr, RAM + 0x1000);
        assert_eq!(k.segments[1].data, &[0xaa; 16]);
        assert_eq!(k.segments[1].mem_size, 0x100, "BSS beyond filesz is reserved");
        assert_eq!(k.image_end, RAM + 0x1100);
        assert_eq!(k.tohost, Some(RAM + 0x1000));
        assert_eq!(k.fromhost, Some(RAM + 0x1040));
    }

    #[test]
    fn elf_without_htif_symbols() {
        let segs = [ElfSeg { vaddr: RAM, paddr: RAM, data: vec![0x6f, 0, 0, 0], memsz: 4 }];
        let b = elf(elf::EM_RISCV, elf::ET_EXEC, RAM, &segs, &[("main", RAM)]);
        let k = parse_kernel(&b, RAM, MIB).unwrap();
        assert_eq!((k.tohost, k.fromhost), (None, None));
    }

    #[test]
    fn elf_errors_name_the_problem() {
        let seg = |paddr, data: Vec<u8>, memsz| ElfSeg { vaddr: paddr, paddr, data, memsz };
        let x86 = elf(elf::EM_X86_64, elf::ET_EXEC, RAM, &[seg(RAM, vec![0; 4], 4)], &[]);
        let err = parse_kernel(&x86, RAM, MIB).unwrap_err();
        assert!(matches!(err, LoadError::ElfMachine { machine: 62, .. }));
        assert!(err.to_string().contains("x86-64"), "{err}");

        let mut elf32 = test_program();
        elf32[4] = elf::ELFCLASS32;
        assert!(matches!(parse_kernel(&elf32, RAM, MIB), Err(LoadError::Elf32)));
        let mut be = test_program();
        be[5] = elf::ELFDATA2MSB;
        assert!(matches!(parse_kernel(&be, RAM, MIB), Err(LoadError::ElfBigEndian)));

        let trunc = &test_program()[..40];
        assert!(matches!(
            parse_kernel(trunc, RAM, MIB),
            Err(LoadError::Truncated { what: "ELF header", need: 64, have: 40 })
        ));
        // Program headers cut off.
        let short = &test_program()[..100];
        assert!(matches!(parse_kernel(short, RAM, MIB), Err(LoadError::Elf(_))));

        let low = elf(elf::EM_RISCV, elf::ET_EXEC, RAM, &[seg(0x1000, vec![0; 4], 4)], &[]);
        let err = parse_kernel(&low, RAM, MIB).unwrap_err();
        assert!(matches!(err, LoadError::OutsideRam { addr: 0x1000, .. }), "{err}");
        let past_end = elf(elf::EM_RISCV, elf::ET_EXEC, RAM, &[seg(RAM, vec![0; 4], 2 * MIB)], &[]);
        assert!(matches!(parse_kernel(&past_end, RAM, MIB), Err(LoadError::OutsideRam { .. })));
        let entry_out = elf(elf::EM_RISCV, elf::ET_EXEC, 0x1000, &[seg(RAM, vec![0; 4], 4)], &[]);
        assert!(matches!(
            parse_kernel(&entry_out, RAM, MIB),
            Err(LoadError::OutsideRam { what: "the ELF entry point", .. })
        ));

        let pie = elf(elf::EM_RISCV, elf::ET_DYN, RAM, &[seg(RAM, vec![0; 4], 4)], &[]);
        assert!(matches!(parse_kernel(&pie, RAM, MIB), Err(LoadError::ElfType(3, _))));
        let none = elf(elf::EM_RISCV, elf::ET_EXEC, RAM, &[], &[]);
        assert!(matches!(parse_kernel(&none, RAM, MIB), Err(LoadError::NoSegments)));

        // filesz > memsz, and file contents past the end of the file.
        let mut bad = test_program();
        let ph1 = 64 + 56;
        bad[ph1 + 40..ph1 + 48].copy_from_slice(&1u64.to_le_bytes());
        assert!(matches!(
            parse_kernel(&bad, RAM, MIB),
            Err(LoadError::BadSegment { index: 1, .. })
        ));
        let mut beyond = test_program();
        beyond[ph1 + 8..ph1 + 16].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert!(matches!(
            parse_kernel(&beyond, RAM, MIB),
            Err(LoadError::BadSegment { index: 1, .. })
        ));
    }

    #[test]
    fn initrd_and_fdt_go_at_the_top_of_ram() {
        let kernel_end = RAM + 2 * MIB + 32 * MIB;
        let (initrd, fdt) = place_initrd(RAM, 256 * MIB, kernel_end, 1_616_384, 5000).unwrap();
        let top = RAM + 256 * MIB;
        assert_eq!(fdt, top - 2 * MIB, "2 MiB aligned, as high as it fits");
        assert!(fdt + 5000 <= top);
        assert_eq!(initrd % PAGE, 0);
        assert!(initrd + 1_616_384 <= fdt);
        assert!(fdt - (initrd + 1_616_384) < PAGE, "right below the device tree");
        assert!(initrd >= kernel_end);
        // No initrd: it is empty and sits below the device tree.
        let (i, f) = place_initrd(RAM, 256 * MIB, kernel_end, 0, 5000).unwrap();
        assert_eq!((i, f), (top - 2 * MIB, top - 2 * MIB));
    }

    #[test]
    fn small_ram_falls_back_to_8_byte_alignment_then_fails() {
        // 3 MiB of RAM, kernel up to 2 MiB + 900 KiB: a 2 MiB-aligned FDT would hit the kernel.
        let kernel_end = RAM + 2 * MIB + 900 * 1024;
        let (initrd, fdt) = place_initrd(RAM, 3 * MIB, kernel_end, 64 * 1024, 4000).unwrap();
        assert_eq!(fdt % 8, 0);
        assert!(fdt + 4000 <= RAM + 3 * MIB && fdt > RAM + 2 * MIB);
        assert!(initrd >= kernel_end && initrd + 64 * 1024 <= fdt);
        let err = place_initrd(RAM, 3 * MIB, kernel_end, MIB, 4000).unwrap_err();
        assert!(matches!(err, LoadError::RamTooSmall { .. }), "{err}");
        assert!(place_initrd(RAM, 4096, RAM, 0, 8192).is_err());
        assert!(place_initrd(RAM, 3 * MIB, RAM + 4 * MIB, 0, 100).is_err());
        assert!(matches!(place_initrd(u64::MAX - 5, 100, 0, 0, 0), Err(LoadError::BadRam { .. })));
    }
}
