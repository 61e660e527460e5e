//! The flattened device tree (DTB) the guest boots with, describing the board exactly as
//! QEMU's `virt` machine does, so a stock kernel finds its devices where it expects them.
//!
//! Structure and properties follow the Devicetree Specification v0.4 (§3 "Device Node
//! Requirements", §2.3 standard properties, §2.4 interrupt mapping) and the Linux bindings for
//! each device (`Documentation/devicetree/bindings/riscv/cpus.yaml`, `.../riscv/extensions.yaml`,
//! `.../interrupt-controller/sifive,plic-1.0.0.yaml`, `.../timer/sifive,clint.yaml`,
//! `.../power/reset/syscon-poweroff.yaml`, `.../rtc/trivial-rtc.yaml`).

use std::ops::Range;

use keel_devices::{aclint, plic, rtc, syscon, uart, TIMEBASE_HZ};
use thiserror::Error;
use vm_fdt::FdtWriter;

/// The board's memory map: QEMU `virt` addresses (see `shared/riscv-platform.md`).
pub const SYSCON_BASE: u64 = 0x0010_0000;
pub const RTC_BASE: u64 = 0x0010_1000;
pub const RTC_IRQ: u32 = 11;
pub const CLINT_BASE: u64 = 0x0200_0000;
pub const PLIC_BASE: u64 = 0x0c00_0000;
pub const UART_BASE: u64 = 0x1000_0000;
pub const UART_IRQ: u32 = 10;
/// A second 16550 (the guest's ttyS1), keel's channel to a guest agent: after a restore the
/// VMM writes the VM's identity there (see `crate::agent`). Free in QEMU `virt`'s map.
pub const AGENT_UART_BASE: u64 = 0x0010_2000;
pub const AGENT_UART_IRQ: u32 = 12;
pub const VIRTIO_BASE: u64 = 0x1000_1000;
pub const VIRTIO_SIZE: u64 = 0x1000;
/// virtio-mmio slots: slot n is at `VIRTIO_BASE + n * VIRTIO_SIZE` with PLIC source `n + 1`.
pub const VIRTIO_SLOTS: u32 = 8;
pub const RAM_BASE: u64 = 0x8000_0000;
/// Harts the PLIC layout has contexts for (two per hart), as on QEMU `virt`.
pub const MAX_HARTS: u32 = (plic::MAX_CONTEXTS / 2) as u32;

/// Local interrupt numbers on each hart's `riscv,cpu-intc` (privileged spec §3.1.9, `mip`).
const IRQ_M_SOFT: u32 = 3;
const IRQ_M_TIMER: u32 = 7;
const IRQ_S_EXT: u32 = 9;
const IRQ_M_EXT: u32 = 11;

/// Bytes of `/chosen/rng-seed`: Linux credits them to its RNG at boot (`add_bootloader_randomness`).
const RNG_SEED_LEN: usize = 64;

/// One virtio-mmio device's window and interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioSlot {
    pub base: u64,
    pub irq: u32,
}

impl VirtioSlot {
    /// Slot `index` of the QEMU `virt` layout, if it exists (0..8).
    pub fn qemu_virt(index: u32) -> Option<VirtioSlot> {
        (index < VIRTIO_SLOTS).then(|| VirtioSlot {
            base: VIRTIO_BASE + u64::from(index) * VIRTIO_SIZE,
            irq: index + 1,
        })
    }
}

/// Everything the machine decides about the device tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdtConfig {
    /// The root `model` (e.g. "keel,virt").
    pub model: String,
    pub num_harts: u32,
    pub memory_base: u64,
    pub memory_size: u64,
    /// Kernel command line (`/chosen/bootargs`).
    pub cmdline: String,
    /// Guest-physical range of the initrd, end exclusive (`linux,initrd-start/end`).
    pub initrd: Option<Range<u64>>,
    /// `riscv,isa`, e.g. "rv64imafdc_zicntr_zicsr_zifencei_zihpm_sstc" (deprecated binding,
    /// still read by older kernels and OpenSBI).
    pub isa: String,
    /// `riscv,isa-extensions`, e.g. ["i", "m", "a", "f", "d", "c", "zicntr", ...]; Linux 6.12
    /// prefers it (with `riscv,isa-base`) over `riscv,isa`.
    pub isa_extensions: Vec<String>,
    /// `mmu-type`, e.g. "riscv,sv48".
    pub mmu_type: String,
    /// virtio-mmio devices to announce (see [`VirtioSlot::qemu_virt`]).
    pub virtio: Vec<VirtioSlot>,
}

#[derive(Debug, Error)]
pub enum FdtError {
    #[error("the board supports 1 to {MAX_HARTS} harts, got {0}")]
    HartCount(u32),
    #[error("guest memory {base:#x}+{size:#x} is empty or wraps around the address space")]
    Memory { base: u64, size: u64 },
    #[error("initrd range {start:#x}..{end:#x} ends before it starts")]
    Initrd { start: u64, end: u64 },
    #[error("virtio-mmio device at {base:#x} has IRQ {irq}, outside 1..={max}", max = plic::NUM_SOURCES)]
    VirtioIrq { base: u64, irq: u32 },
    #[error("two virtio-mmio devices at {0:#x}")]
    VirtioDuplicate(u64),
    #[error("the ISA description is empty (riscv,isa and riscv,isa-extensions are required)")]
    EmptyIsa,
    #[error("could not get random bytes for rng-seed from the host: {0}")]
    Random(getrandom::Error),
    #[error("writing the device tree failed: {0}")]
    Write(#[from] vm_fdt::Error),
}

/// Phandles, assigned in order; 0 is not a valid phandle (DT spec §2.3.3).
struct Phandles {
    cpu: Vec<u32>,
    intc: Vec<u32>,
    plic: u32,
    test: u32,
}

impl Phandles {
    fn new(harts: u32) -> Self {
        let cpu = (0..harts).map(|h| 1 + 2 * h).collect();
        let intc = (0..harts).map(|h| 2 + 2 * h).collect();
        Phandles { cpu, intc, plic: 2 * harts + 1, test: 2 * harts + 2 }
    }
}

fn check(cfg: &FdtConfig) -> Result<(), FdtError> {
    if cfg.num_harts == 0 || cfg.num_harts > MAX_HARTS {
        return Err(FdtError::HartCount(cfg.num_harts));
    }
    if cfg.memory_size == 0 || cfg.memory_base.checked_add(cfg.memory_size).is_none() {
        return Err(FdtError::Memory { base: cfg.memory_base, size: cfg.memory_size });
    }
    if let Some(r) = &cfg.initrd {
        if r.end < r.start {
            return Err(FdtError::Initrd { start: r.start, end: r.end });
        }
    }
    for (i, v) in cfg.virtio.iter().enumerate() {
        if v.irq == 0 || v.irq > plic::NUM_SOURCES {
            return Err(FdtError::VirtioIrq { base: v.base, irq: v.irq });
        }
        if cfg.virtio[..i].iter().any(|o| o.base == v.base) {
            return Err(FdtError::VirtioDuplicate(v.base));
        }
    }
    if cfg.isa.is_empty() || cfg.isa_extensions.is_empty() {
        return Err(FdtError::EmptyIsa);
    }
    Ok(())
}

/// Builds the DTB for `cfg`.
pub fn build_fdt(cfg: &FdtConfig) -> Result<Vec<u8>, FdtError> {
    check(cfg)?;
    let ph = Phandles::new(cfg.num_harts);
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    // Two cells for addresses and sizes: RAM and devices may live above 4 GiB.
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "riscv-virtio")?;
    fdt.property_string("model", &cfg.model)?;

    write_chosen(&mut fdt, cfg)?;
    let aliases = fdt.begin_node("aliases")?;
    fdt.property_string("serial0", &uart_path())?;
    fdt.property_string("serial1", &format!("/soc/serial@{AGENT_UART_BASE:x}"))?;
    fdt.end_node(aliases)?;

    let mem = fdt.begin_node(&format!("memory@{:x}", cfg.memory_base))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[cfg.memory_base, cfg.memory_size])?;
    fdt.end_node(mem)?;

    write_cpus(&mut fdt, cfg, &ph)?;
    write_soc(&mut fdt, cfg, &ph)?;
    // syscon-poweroff / syscon-reboot: Linux writes `value` to `offset` of the `regmap` node.
    for (name, value) in [("poweroff", syscon::FINISHER_PASS), ("reboot", syscon::FINISHER_RESET)] {
        let n = fdt.begin_node(name)?;
        fdt.property_string("compatible", &format!("syscon-{name}"))?;
        fdt.property_u32("regmap", ph.test)?;
        fdt.property_u32("offset", 0)?;
        fdt.property_u32("value", value)?;
        fdt.end_node(n)?;
    }
    fdt.end_node(root)?;
    Ok(fdt.finish()?)
}

fn uart_path() -> String {
    format!("/soc/serial@{UART_BASE:x}")
}

fn write_chosen(fdt: &mut FdtWriter, cfg: &FdtConfig) -> Result<(), FdtError> {
    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", &cfg.cmdline)?;
    fdt.property_string("stdout-path", &uart_path())?;
    if let Some(r) = &cfg.initrd {
        // Linux reads these with the root's address size; QEMU writes 64-bit values too.
        fdt.property_u64("linux,initrd-start", r.start)?;
        fdt.property_u64("linux,initrd-end", r.end)?;
    }
    let mut seed = [0u8; RNG_SEED_LEN];
    getrandom::fill(&mut seed).map_err(FdtError::Random)?;
    fdt.property("rng-seed", &seed)?;
    fdt.end_node(chosen)?;
    Ok(())
}

fn write_cpus(fdt: &mut FdtWriter, cfg: &FdtConfig, ph: &Phandles) -> Result<(), FdtError> {
    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    fdt.property_u32("timebase-frequency", TIMEBASE_HZ as u32)?;
    for h in 0..cfg.num_harts {
        let i = h as usize;
        let cpu = fdt.begin_node(&format!("cpu@{h:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_u32("reg", h)?;
        fdt.property_string("status", "okay")?;
        fdt.property_string("compatible", "riscv")?;
        fdt.property_string("riscv,isa", &cfg.isa)?;
        fdt.property_string("riscv,isa-base", "rv64i")?;
        fdt.property_string_list("riscv,isa-extensions", cfg.isa_extensions.clone())?;
        fdt.property_string("mmu-type", &cfg.mmu_type)?;
        fdt.property_phandle(ph.cpu[i])?;
        // The hart-local interrupt controller: its inputs are the `mip` bit numbers.
        let intc = fdt.begin_node("interrupt-controller")?;
        // No interrupt-map hangs off it, so no address cells (dtc's interrupt_provider check).
        fdt.property_u32("#address-cells", 0)?;
        fdt.property_u32("#interrupt-cells", 1)?;
        fdt.property_null("interrupt-controller")?;
        fdt.property_string("compatible", "riscv,cpu-intc")?;
        fdt.property_phandle(ph.intc[i])?;
        fdt.end_node(intc)?;
        fdt.end_node(cpu)?;
    }
    // Topology (Documentation/devicetree/bindings/cpu/cpu-topology.txt): one cluster.
    let map = fdt.begin_node("cpu-map")?;
    let cluster = fdt.begin_node("cluster0")?;
    for h in 0..cfg.num_harts {
        let core = fdt.begin_node(&format!("core{h}"))?;
        fdt.property_u32("cpu", ph.cpu[h as usize])?;
        fdt.end_node(core)?;
    }
    fdt.end_node(cluster)?;
    fdt.end_node(map)?;
    fdt.end_node(cpus)?;
    Ok(())
}

/// `interrupts-extended` cells: for each hart, (its intc, `a`), (its intc, `b`).
fn per_hart_irqs(ph: &Phandles, a: u32, b: u32) -> Vec<u32> {
    ph.intc.iter().flat_map(|&p| [p, a, p, b]).collect()
}

fn write_soc(fdt: &mut FdtWriter, cfg: &FdtConfig, ph: &Phandles) -> Result<(), FdtError> {
    let soc = fdt.begin_node("soc")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "simple-bus")?;
    // Empty `ranges`: child addresses are parent addresses (DT spec §2.3.8).
    fdt.property_null("ranges")?;

    let n = fdt.begin_node(&format!("clint@{CLINT_BASE:x}"))?;
    fdt.property_string_list("compatible", vec!["sifive,clint0".into(), "riscv,clint0".into()])?;
    fdt.property_array_u64("reg", &[CLINT_BASE, aclint::ACLINT_SIZE])?;
    let irqs = per_hart_irqs(ph, IRQ_M_SOFT, IRQ_M_TIMER);
    fdt.property_array_u32("interrupts-extended", &irqs)?;
    fdt.end_node(n)?;

    // Context order 2h = M-mode, 2h+1 = S-mode, matching keel_devices::Plic.
    let n = fdt.begin_node(&format!("plic@{PLIC_BASE:x}"))?;
    fdt.property_string_list("compatible", vec!["sifive,plic-1.0.0".into(), "riscv,plic0".into()])?;
    fdt.property_array_u64("reg", &[PLIC_BASE, plic::PLIC_SIZE])?;
    let irqs = per_hart_irqs(ph, IRQ_M_EXT, IRQ_S_EXT);
    fdt.property_array_u32("interrupts-extended", &irqs)?;
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("riscv,ndev", plic::NUM_SOURCES)?;
    fdt.property_phandle(ph.plic)?;
    fdt.end_node(n)?;

    for (base, irq) in [(UART_BASE, UART_IRQ), (AGENT_UART_BASE, AGENT_UART_IRQ)] {
        let n = fdt.begin_node(&format!("serial@{base:x}"))?;
        fdt.property_string("compatible", "ns16550a")?;
        fdt.property_array_u64("reg", &[base, uart::UART_SIZE])?;
        fdt.property_u32("clock-frequency", uart::UART_CLOCK_HZ)?;
        fdt.property_u32("interrupt-parent", ph.plic)?;
        fdt.property_u32("interrupts", irq)?;
        fdt.end_node(n)?;
    }

    let n = fdt.begin_node(&format!("test@{SYSCON_BASE:x}"))?;
    fdt.property_string_list(
        "compatible",
        vec!["sifive,test1".into(), "sifive,test0".into(), "syscon".into()],
    )?;
    fdt.property_array_u64("reg", &[SYSCON_BASE, syscon::SYSCON_SIZE])?;
    fdt.property_phandle(ph.test)?;
    fdt.end_node(n)?;

    let n = fdt.begin_node(&format!("rtc@{RTC_BASE:x}"))?;
    fdt.property_string("compatible", "google,goldfish-rtc")?;
    fdt.property_array_u64("reg", &[RTC_BASE, rtc::RTC_SIZE])?;
    fdt.property_u32("interrupt-parent", ph.plic)?;
    fdt.property_u32("interrupts", RTC_IRQ)?;
    fdt.end_node(n)?;

    for v in &cfg.virtio {
        let n = fdt.begin_node(&format!("virtio_mmio@{:x}", v.base))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &[v.base, VIRTIO_SIZE])?;
        fdt.property_u32("interrupt-parent", ph.plic)?;
        fdt.property_u32("interrupts", v.irq)?;
        fdt.end_node(n)?;
    }
    fdt.end_node(soc)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::fdt::Fdt;

    fn config(harts: u32) -> FdtConfig {
        let exts = "i m a f d c zicntr zicsr zifencei zihpm sstc";
        FdtConfig {
            model: "keel,virt".into(),
            num_harts: harts,
            memory_base: RAM_BASE,
            memory_size: 256 << 20,
            cmdline: "console=ttyS0 quiet".into(),
            initrd: Some(0x8f00_0000..0x8f18_0000),
            isa: "rv64imafdc_zicntr_zicsr_zifencei_zihpm_sstc".into(),
            isa_extensions: exts.split(' ').map(String::from).collect(),
            mmu_type: "riscv,sv48".into(),
            virtio: vec![VirtioSlot::qemu_virt(0).unwrap(), VirtioSlot::qemu_virt(7).unwrap()],
        }
    }

    fn u32_prop(n: ::fdt::node::FdtNode, name: &str) -> u32 {
        let v = n.property(name).unwrap().value;
        u32::from_be_bytes(v.try_into().unwrap())
    }

    fn cells(n: ::fdt::node::FdtNode, name: &str) -> Vec<u32> {
        n.property(name)
            .unwrap()
            .value
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn root_chosen_memory() {
        let blob = build_fdt(&config(1)).unwrap();
        let f = Fdt::new(&blob).unwrap();
        assert_eq!(f.root().model(), "keel,virt");
        assert_eq!(f.root().compatible().first(), "riscv-virtio");
        assert_eq!(f.root().cell_sizes().address_cells, 2);
        let chosen = f.chosen();
        assert_eq!(chosen.bootargs(), Some("console=ttyS0 quiet"));
        assert_eq!(chosen.stdout().unwrap().name, "serial@10000000");
        let cn = f.find_node("/chosen").unwrap();
        let start = cn.property("linux,initrd-start").unwrap().as_usize();
        let end = cn.property("linux,initrd-end").unwrap().as_usize();
        assert_eq!((start, end), (Some(0x8f00_0000), Some(0x8f18_0000)));
        let seed = cn.property("rng-seed").unwrap().value;
        assert_eq!(seed.len(), 64);
        assert!(seed.iter().any(|&b| b != 0));
        let mem: Vec<_> = f.memory().regions().collect();
        assert_eq!(mem.len(), 1);
        assert_eq!(mem[0].starting_address as u64, RAM_BASE);
        assert_eq!(mem[0].size, Some(256 << 20));
        assert!(f.find_node("/memory@80000000").is_some());
    }

    #[test]
    fn no_initrd_no_initrd_properties_and_seeds_differ() {
        let mut c = config(1);
        c.initrd = None;
        let a = build_fdt(&c).unwrap();
        let b = build_fdt(&c).unwrap();
        let fa = Fdt::new(&a).unwrap();
        let cn = fa.find_node("/chosen").unwrap();
        assert!(cn.property("linux,initrd-start").is_none());
        let fb = Fdt::new(&b).unwrap();
        let seed =
            |f: &Fdt| f.find_node("/chosen").unwrap().property("rng-seed").unwrap().value.to_vec();
        assert_ne!(seed(&fa), seed(&fb));
    }

    #[test]
    fn cpus_and_their_interrupt_controllers() {
        let blob = build_fdt(&config(4)).unwrap();
        let f = Fdt::new(&blob).unwrap();
        let cpus: Vec<_> = f.cpus().collect();
        assert_eq!(cpus.len(), 4);
        for (h, cpu) in cpus.iter().enumerate() {
            assert_eq!(cpu.ids().first(), h);
            assert_eq!(cpu.timebase_frequency(), 10_000_000);
        }
        let cpu2 = f.find_node("/cpus/cpu@2").unwrap();
        assert_eq!(cpu2.property("device_type").unwrap().as_str(), Some("cpu"));
        assert_eq!(cpu2.property("status").unwrap().as_str(), Some("okay"));
        assert_eq!(
            cpu2.property("riscv,isa").unwrap().as_str(),
            Some("rv64imafdc_zicntr_zicsr_zifencei_zihpm_sstc")
        );
        assert_eq!(cpu2.property("riscv,isa-base").unwrap().as_str(), Some("rv64i"));
        assert_eq!(cpu2.property("mmu-type").unwrap().as_str(), Some("riscv,sv48"));
        let exts = cpu2.property("riscv,isa-extensions").unwrap().value;
        assert!(exts.starts_with(b"i\0m\0a\0f\0d\0c\0zicntr\0"));
        assert!(exts.ends_with(b"sstc\0"));
        let intc = f.find_node("/cpus/cpu@2/interrupt-controller").unwrap();
        assert_eq!(intc.compatible().unwrap().first(), "riscv,cpu-intc");
        assert_eq!(intc.interrupt_cells(), Some(1));
        assert!(intc.property("interrupt-controller").is_some());
        let core = f.find_node("/cpus/cpu-map/cluster0/core2").unwrap();
        let cpu_ph = u32_prop(core, "cpu");
        assert_eq!(f.find_phandle(cpu_ph).unwrap().name, "cpu@2");
    }

    #[test]
    fn clint_and_plic_wire_every_hart() {
        let blob = build_fdt(&config(2)).unwrap();
        let f = Fdt::new(&blob).unwrap();
        let intc = |h: usize| {
            u32_prop(
                f.find_node(&format!("/cpus/cpu@{h}/interrupt-controller")).unwrap(),
                "phandle",
            )
        };
        let clint = f.find_compatible(&["riscv,clint0"]).unwrap();
        assert_eq!(clint.name, "clint@2000000");
        assert_eq!(
            cells(clint, "interrupts-extended"),
            vec![intc(0), 3, intc(0), 7, intc(1), 3, intc(1), 7]
        );
        let r = clint.reg().unwrap().next().unwrap();
        assert_eq!((r.starting_address as u64, r.size), (CLINT_BASE, Some(0x1_0000)));
        let plic = f.find_compatible(&["riscv,plic0"]).unwrap();
        assert_eq!(plic.name, "plic@c000000");
        assert_eq!(
            cells(plic, "interrupts-extended"),
            vec![intc(0), 11, intc(0), 9, intc(1), 11, intc(1), 9]
        );
        assert_eq!(u32_prop(plic, "riscv,ndev"), 95);
        assert_eq!(u32_prop(plic, "#address-cells"), 0);
        assert_eq!(plic.interrupt_cells(), Some(1));
        assert!(plic.property("interrupt-controller").is_some());
        let r = plic.reg().unwrap().next().unwrap();
        assert_eq!((r.starting_address as u64, r.size), (PLIC_BASE, Some(0x60_0000)));
    }

    #[test]
    fn platform_devices() {
        let blob = build_fdt(&config(1)).unwrap();
        let f = Fdt::new(&blob).unwrap();
        let plic_ph = u32_prop(f.find_node("/soc/plic@c000000").unwrap(), "phandle");
        let soc = f.find_node("/soc").unwrap();
        assert_eq!(soc.compatible().unwrap().first(), "simple-bus");
        assert!(soc.property("ranges").is_some());

        let uart = f.find_node("/soc/serial@10000000").unwrap();
        assert_eq!(uart.compatible().unwrap().first(), "ns16550a");
        assert_eq!(u32_prop(uart, "clock-frequency"), 3_686_400);
        assert_eq!(u32_prop(uart, "interrupt-parent"), plic_ph);
        assert_eq!(uart.interrupts().unwrap().collect::<Vec<_>>(), vec![10]);

        let test = f.find_node("/soc/test@100000").unwrap();
        let compat: Vec<_> = test.compatible().unwrap().all().collect();
        assert_eq!(compat, vec!["sifive,test1", "sifive,test0", "syscon"]);
        let test_ph = u32_prop(test, "phandle");
        for (node, value) in [("/poweroff", 0x5555), ("/reboot", 0x7777)] {
            let n = f.find_node(node).unwrap();
            assert_eq!(u32_prop(n, "regmap"), test_ph);
            assert_eq!(u32_prop(n, "value"), value);
            assert_eq!(u32_prop(n, "offset"), 0);
        }
        let rtc = f.find_node("/soc/rtc@101000").unwrap();
        assert_eq!(rtc.compatible().unwrap().first(), "google,goldfish-rtc");
        assert_eq!(rtc.interrupts().unwrap().collect::<Vec<_>>(), vec![11]);

        let v0 = f.find_node("/soc/virtio_mmio@10001000").unwrap();
        assert_eq!(v0.compatible().unwrap().first(), "virtio,mmio");
        assert_eq!(v0.interrupts().unwrap().collect::<Vec<_>>(), vec![1]);
        let v7 = f.find_node("/soc/virtio_mmio@10008000").unwrap();
        assert_eq!(v7.interrupts().unwrap().collect::<Vec<_>>(), vec![8]);
        let r = v7.reg().unwrap().next().unwrap();
        assert_eq!(r.size, Some(0x1000));
        assert!(f.find_node("/soc/virtio_mmio@10002000").is_none());
        assert_eq!(
            f.find_node("/aliases").unwrap().property("serial0").unwrap().as_str(),
            Some("/soc/serial@10000000")
        );
        assert_eq!(
            f.find_node("/aliases").unwrap().property("serial1").unwrap().as_str(),
            Some("/soc/serial@102000")
        );
    }

    #[test]
    fn bad_configs_are_errors() {
        let mut c = config(0);
        assert!(matches!(build_fdt(&c), Err(FdtError::HartCount(0))));
        c.num_harts = MAX_HARTS + 1;
        assert!(matches!(build_fdt(&c), Err(FdtError::HartCount(_))));
        c = config(1);
        c.memory_size = 0;
        assert!(matches!(build_fdt(&c), Err(FdtError::Memory { .. })));
        c = config(1);
        c.memory_base = u64::MAX;
        assert!(matches!(build_fdt(&c), Err(FdtError::Memory { .. })));
        c = config(1);
        c.initrd = Some(Range { start: 0x9000, end: 0x8000 });
        assert!(matches!(build_fdt(&c), Err(FdtError::Initrd { .. })));
        c = config(1);
        c.virtio.push(VirtioSlot { base: 0x1000_9000, irq: 0 });
        assert!(matches!(build_fdt(&c), Err(FdtError::VirtioIrq { .. })));
        c = config(1);
        c.virtio.push(VirtioSlot::qemu_virt(0).unwrap());
        assert!(matches!(build_fdt(&c), Err(FdtError::VirtioDuplicate(_))));
        c = config(1);
        c.isa_extensions.clear();
        assert!(matches!(build_fdt(&c), Err(FdtError::EmptyIsa)));
        c = config(1);
        c.cmdline = "nul\0inside".into();
        assert!(matches!(build_fdt(&c), Err(FdtError::Write(_))));
        assert!(VirtioSlot::qemu_virt(8).is_none());
    }
}
