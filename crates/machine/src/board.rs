//! Building a machine from its configuration: RAM, devices, harts, and the boot image
//! (kernel, initrd, device tree, optional firmware) loaded the way the Linux RISC-V boot
//! protocol and OpenSBI's `fw_dynamic` expect.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_cpu::consts::{irq, ISA_EXTENSIONS, ISA_STRING};
use keel_cpu::{Accel, Cpu, Hart, HartSignals, JitError, Privilege, SATP_SV48};
use keel_devices::event::EventLoop;
use keel_devices::virtio::config::{BalloonConfig, BlockConfig, NetConfig, VsockConfig};
use keel_devices::virtio::mmio::{self as virtio_mmio, MmioTransport};
use keel_devices::virtio::{self, VirtioDevice};
use keel_devices::{
    Aclint, Clock, DeviceError, HartTimerInputs, IrqLine, MmioDevice, Plic, Rtc, Syscon, Uart,
};
use keel_memory::{CodeObserver, GuestRam, MemoryError};
use thiserror::Error;

use crate::bus::{Htif, PlatformBus, Window};
use crate::fdt::{self, build_fdt, FdtConfig, FdtError};
use crate::hsm::Hsm;
use crate::loader::{self, parse_kernel, KernelImage, LoadError};
use crate::power::PowerLatch;
use crate::sbi::{ConsoleSink, Sbi};
use crate::vcpu::SoftVcpu;

/// The most vCPUs a machine can have (decoded-code tracking keeps a 64-bit hart mask per page).
pub const MAX_VCPUS: u32 = 64;

/// What runs first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    /// keel's built-in SBI: the kernel starts in S-mode.
    Sbi,
    /// Bare metal: the kernel file is a program started in M-mode.
    None,
    /// An M-mode firmware file (e.g. OpenSBI's `fw_dynamic.bin`) started at the start of RAM,
    /// with the kernel loaded for it to jump to.
    Path(PathBuf),
}

/// A paravirtual device on the board (one virtio-mmio slot each, in this order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtioConfig {
    Block(BlockConfig),
    Net(NetConfig),
    /// The entropy device: guest reads of /dev/hwrng get the host's getrandom bytes.
    Rng,
    Vsock(VsockConfig),
    Balloon(BalloonConfig),
}

/// Everything a machine is made of.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub firmware: Firmware,
    pub virtio: Vec<VirtioConfig>,
    /// How the vCPUs run guest code.
    pub accel: Accel,
}

#[derive(Debug, Error)]
pub enum MachineError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {path}: {source}")]
    Load { what: &'static str, path: PathBuf, source: LoadError },
    #[error("memory = {mib} MiB: {source}")]
    Memory { mib: u64, source: MemoryError },
    #[error("vcpus = {0}: keel supports 1 to {MAX_VCPUS} vCPUs")]
    Vcpus(u32),
    #[error("device tree: {0}")]
    Fdt(#[from] FdtError),
    #[error("devices: {0}")]
    Device(#[from] DeviceError),
    #[error("{0}")]
    Layout(LoadError),
    #[error("{0} virtio devices: the board has {max} virtio-mmio slots", max = fdt::VIRTIO_SLOTS)]
    TooManyDevices(usize),
    #[error("{0}")]
    Accel(JitError),
    #[error("cannot start the device I/O thread: {0}")]
    Io(std::io::Error),
    #[error("firmware {path}: {len} bytes do not fit below the kernel at RAM + 2 MiB")]
    FirmwareTooLarge { path: PathBuf, len: usize },
    #[error("firmware {path}: the file is empty")]
    FirmwareEmpty { path: PathBuf },
    /// A saved machine state that does not fit the machine built from the VM file.
    #[error("cannot restore the {part} state: {detail}")]
    State { part: &'static str, detail: String },
}

/// A built machine, ready to run.
pub struct Machine {
    pub ram: Arc<GuestRam>,
    pub uart: Arc<Uart>,
    /// The guest agent's serial port (see [`crate::agent`]).
    pub agent: Arc<Uart>,
    pub power: Arc<PowerLatch>,
    pub clock: Arc<Clock>,
    /// The virtio devices, in slot order.
    pub virtio: Vec<Arc<MmioTransport>>,
    pub(crate) aclint: Arc<Aclint>,
    pub(crate) plic: Arc<Plic>,
    pub(crate) rtc: Arc<Rtc>,
    pub(crate) syscon: Arc<Syscon>,
    pub(crate) sbi: Arc<Sbi>,
    bus: Arc<PlatformBus>,
    signals: Vec<Arc<HartSignals>>,
    pub(crate) vcpus: Vec<SoftVcpu>,
    pub(crate) events: Arc<EventLoop>,
    io_thread: Option<std::thread::JoinHandle<()>>,
    /// Where the virtio devices sit, for the device tree of a fresh boot.
    slots: Vec<fdt::VirtioSlot>,
}

/// Drives one of a hart's interrupt wires.
struct HartWire {
    signals: Arc<HartSignals>,
    bit: u64,
}

impl IrqLine for HartWire {
    fn set_level(&self, level: bool) {
        self.signals.set_line(self.bit, level);
    }
}

/// Tells harts that code they decoded was overwritten.
struct CodeInvalidator(Vec<Arc<HartSignals>>);

impl CodeObserver for CodeInvalidator {
    fn code_overwritten(&self, page_addr: u64, harts: u64) {
        for (id, s) in self.0.iter().enumerate() {
            if harts & (1 << id) != 0 {
                s.post_overwritten_code(page_addr);
            }
        }
    }
}

/// The CLINT's per-hart outputs.
struct HartTimer(Arc<HartSignals>);

impl HartTimerInputs for HartTimer {
    fn set_msip(&self, level: bool) {
        self.0.set_line(irq::MSIP, level);
    }
    fn set_mtimecmp(&self, value: u64) {
        self.0.set_mtimecmp(value);
    }
}

/// The UART writes to the shared console.
struct ConsoleWriter(ConsoleSink);

impl Write for ConsoleWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// OpenSBI's `struct fw_dynamic_info` (include/sbi/fw_dynamic.h), version 2.
const FW_DYNAMIC_MAGIC: u64 = 0x4942_534f;
const FW_DYNAMIC_VERSION: u64 = 2;
const FW_DYNAMIC_NEXT_MODE_S: u64 = 1;

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, MachineError> {
    std::fs::read(path).map_err(|source| MachineError::Read { what, path: path.to_owned(), source })
}

fn load_segments(ram: &GuestRam, image: &KernelImage<'_>) -> Result<(), MemoryError> {
    for seg in &image.segments {
        ram.write_slice(seg.addr, seg.data)?;
        // RAM starts zeroed, so the part of mem_size beyond the file data needs nothing.
    }
    Ok(())
}

impl Machine {
    /// Builds a machine and loads the boot image: the guest starts from its first
    /// instruction.
    pub fn build(cfg: &MachineConfig, console: ConsoleSink) -> Result<Machine, MachineError> {
        let mem_size = cfg.memory_mib.saturating_mul(1 << 20);
        let ram = GuestRam::new(fdt::RAM_BASE, mem_size)
            .map_err(|source| MachineError::Memory { mib: cfg.memory_mib, source })?;
        let mut machine = Machine::assemble(cfg, console, Arc::new(ram))?;
        machine.load_boot_image(cfg)?;
        Ok(machine)
    }

    /// The machine's RAM, devices and harts, with nothing loaded: a fresh boot loads the
    /// boot image next, a restore puts a snapshot's state in. `ram` must hold
    /// `cfg.memory_mib` MiB at [`fdt::RAM_BASE`].
    pub(crate) fn assemble(
        cfg: &MachineConfig,
        console: ConsoleSink,
        ram: Arc<GuestRam>,
    ) -> Result<Machine, MachineError> {
        if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
            return Err(MachineError::Vcpus(cfg.vcpus));
        }
        let harts = cfg.vcpus as usize;
        let signals: Vec<_> = (0..harts).map(|_| Arc::new(HartSignals::new())).collect();
        let power = Arc::new(PowerLatch::new(signals.clone()));
        ram.set_code_observer(Arc::new(CodeInvalidator(signals.clone())));
        let clock = Arc::new(Clock::new());

        // Interrupt fabric: PLIC context 2h drives hart h's MEIP, 2h+1 its SEIP.
        let mut lines: Vec<Arc<dyn IrqLine>> = Vec::new();
        for s in &signals {
            lines.push(Arc::new(HartWire { signals: s.clone(), bit: irq::MEIP }));
            lines.push(Arc::new(HartWire { signals: s.clone(), bit: irq::SEIP }));
        }
        let plic = Arc::new(Plic::new(lines)?);
        let timers: Vec<Arc<dyn HartTimerInputs>> =
            signals.iter().map(|s| Arc::new(HartTimer(s.clone())) as _).collect();
        let aclint = Arc::new(Aclint::new(clock.clone(), timers)?);
        let uart = Arc::new(Uart::new(
            plic.source(fdt::UART_IRQ),
            Box::new(ConsoleWriter(console.clone())),
        ));
        let agent = Arc::new(Uart::new(
            plic.source(fdt::AGENT_UART_IRQ),
            Box::new(crate::agent::AgentLog::default()),
        ));
        let rtc = Arc::new(Rtc::new(plic.source(fdt::RTC_IRQ)));
        let syscon = Arc::new(Syscon::new(power.clone()));
        let mut windows = vec![
            window(fdt::CLINT_BASE, 0x1_0000, aclint.clone()),
            window(fdt::PLIC_BASE, 0x60_0000, plic.clone()),
            window(fdt::UART_BASE, keel_devices::uart::UART_SIZE, uart.clone()),
            window(fdt::AGENT_UART_BASE, keel_devices::uart::UART_SIZE, agent.clone()),
            window(fdt::SYSCON_BASE, 0x1000, syscon.clone()),
            window(fdt::RTC_BASE, 0x1000, rtc.clone()),
        ];

        // Paravirtual devices, served by one I/O thread for the whole machine.
        if cfg.virtio.len() > fdt::VIRTIO_SLOTS as usize {
            return Err(MachineError::TooManyDevices(cfg.virtio.len()));
        }
        let events = Arc::new(EventLoop::new().map_err(MachineError::Io)?);
        let mut virtio = Vec::new();
        let mut slots = Vec::new();
        for (i, dev) in cfg.virtio.iter().enumerate() {
            let slot = fdt::VirtioSlot::qemu_virt(i as u32).expect("checked against VIRTIO_SLOTS");
            let device: Box<dyn VirtioDevice> = match dev {
                VirtioConfig::Block(c) => virtio::blk::create(c)?,
                VirtioConfig::Net(c) => virtio::net::create(c)?,
                VirtioConfig::Rng => Box::new(virtio::rng::Rng::new()),
                VirtioConfig::Vsock(c) => virtio::vsock::create(c)?,
                VirtioConfig::Balloon(c) => virtio::balloon::create(c)?,
            };
            let t = MmioTransport::new(device, ram.clone(), plic.source(slot.irq), events.clone());
            windows.push(window(slot.base, virtio_mmio::MMIO_SIZE, t.clone()));
            virtio.push(t);
            slots.push(slot);
        }
        let io_thread = {
            let events = events.clone();
            std::thread::Builder::new()
                .name("keel-io".into())
                .spawn(move || events.run())
                .map_err(MachineError::Io)?
        };

        // With keel's SBI, only hart 0 starts; the kernel starts the others through HSM.
        // Firmware and bare-metal programs get every hart at once and sort them out themselves.
        let hsm = Arc::new(Hsm::new(harts, |h| h == 0 || cfg.firmware != Firmware::Sbi));
        let sbi =
            Arc::new(Sbi::new(signals.clone(), hsm, power.clone(), console.clone(), ram.clone()));
        let bus: Arc<PlatformBus> =
            Arc::new(PlatformBus::new(ram.clone(), clock.clone(), windows, power.clone(), console));
        let mut vcpus = Vec::new();
        for (id, s) in signals.iter().enumerate() {
            let hart = Hart::new(id as u64, ram.clone(), bus.clone(), s.clone());
            let mut cpu = Cpu::with_accel(hart, &cfg.accel).map_err(MachineError::Accel)?;
            cpu.hart_mut().set_max_paging_mode(SATP_SV48);
            vcpus.push(SoftVcpu::new(cpu, sbi.clone(), power.clone()));
        }
        Ok(Machine {
            ram,
            uart,
            agent,
            power,
            clock,
            virtio,
            aclint,
            plic,
            rtc,
            syscon,
            sbi,
            bus,
            signals,
            vcpus,
            events,
            io_thread: Some(io_thread),
            slots,
        })
    }

    /// Loads the kernel, initrd, device tree and firmware, and points every hart at the
    /// entry with the Linux boot protocol's registers.
    fn load_boot_image(&mut self, cfg: &MachineConfig) -> Result<(), MachineError> {
        let ram = self.ram.clone();
        let kernel_bytes = read("kernel", &cfg.kernel)?;
        let kernel = parse_kernel(&kernel_bytes, ram.base(), ram.size()).map_err(|source| {
            MachineError::Load { what: "kernel", path: cfg.kernel.clone(), source }
        })?;
        let memory_error = |source| MachineError::Memory { mib: cfg.memory_mib, source };
        load_segments(&ram, &kernel).map_err(memory_error)?;
        if cfg.firmware == Firmware::None {
            if let Some(tohost) = kernel.tohost {
                self.bus.set_htif(Htif { tohost, fromhost: kernel.fromhost });
            }
        }
        let mut reserved_top = kernel.image_end;
        let mut entry = kernel.entry;
        if let Firmware::Path(fw_path) = &cfg.firmware {
            let fw = read("firmware", fw_path)?;
            entry = load_firmware(&ram, &fw, fw_path)?;
            reserved_top = reserved_top.max(entry);
        }

        let initrd = match &cfg.initrd {
            Some(p) => Some(read("initrd", p)?),
            None => None,
        };
        let mut fdt_cfg = FdtConfig {
            model: "keel riscv64".to_string(),
            num_harts: cfg.vcpus,
            memory_base: ram.base(),
            memory_size: ram.size(),
            cmdline: cfg.cmdline.clone(),
            initrd: initrd.as_ref().map(|_| 0..0),
            isa: ISA_STRING.to_string(),
            isa_extensions: ISA_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
            mmu_type: "riscv,sv48".to_string(),
            virtio: self.slots.clone(),
        };
        // The blob's size doesn't depend on the initrd addresses, so size it first.
        let fdt_len = build_fdt(&fdt_cfg)?.len() as u64;
        let initrd_len = initrd.as_ref().map_or(0, |i| i.len() as u64);
        let (initrd_addr, fdt_addr) =
            loader::place_initrd(ram.base(), ram.size(), reserved_top, initrd_len, fdt_len)
                .map_err(MachineError::Layout)?;
        if let Some(data) = &initrd {
            ram.write_slice(initrd_addr, data).map_err(memory_error)?;
            fdt_cfg.initrd = Some(initrd_addr..initrd_addr + initrd_len);
        }
        let blob = build_fdt(&fdt_cfg)?;
        ram.write_slice(fdt_addr, &blob).map_err(memory_error)?;

        let fw_info = match cfg.firmware {
            Firmware::Path(_) => {
                Some(write_fw_dynamic_info(&ram, kernel.entry).map_err(memory_error)?)
            }
            _ => None,
        };
        for (id, vcpu) in self.vcpus.iter_mut().enumerate() {
            let cpu = vcpu.cpu_mut();
            let (prv, sbi_mode) = match cfg.firmware {
                Firmware::Sbi => (Privilege::Supervisor, true),
                _ => (Privilege::Machine, false),
            };
            cpu.reset(entry, prv, sbi_mode);
            let hart = cpu.hart_mut();
            // Linux boot protocol: a0 = hart id, a1 = device tree (Documentation/arch/riscv/boot.rst).
            hart.set_x(10, id as u64);
            hart.set_x(11, fdt_addr);
            if let Some(info) = fw_info {
                hart.set_x(12, info);
            }
        }
        Ok(())
    }

    /// Hands the vCPUs to the VMM's threads.
    pub fn take_vcpus(&mut self) -> Vec<SoftVcpu> {
        std::mem::take(&mut self.vcpus)
    }

    /// Each hart's signals, by hart id: they stay with the machine when the vCPUs go to their
    /// threads, and carry what the harts publish (statistics, see `crate::metrics`).
    pub fn hart_signals(&self) -> &[Arc<HartSignals>] {
        &self.signals
    }

    /// Makes every vCPU return from `run` soon.
    pub fn stop(&self) {
        for s in &self.signals {
            s.request_exit();
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.events.stop();
        if let Some(t) = self.io_thread.take() {
            let _ = t.join();
        }
    }
}

fn window(base: u64, size: u64, device: Arc<dyn MmioDevice>) -> Window {
    Window { base, size, device }
}

/// Loads M-mode firmware: an ELF at its own addresses, or a raw binary at the start of RAM.
/// Returns its entry point.
fn load_firmware(ram: &GuestRam, bytes: &[u8], path: &Path) -> Result<u64, MachineError> {
    let load_err = |source| MachineError::Load { what: "firmware", path: path.to_owned(), source };
    if bytes.starts_with(b"\x7fELF") {
        let image = parse_kernel(bytes, ram.base(), ram.size()).map_err(load_err)?;
        load_segments(ram, &image)
            .map_err(|source| MachineError::Memory { mib: ram.size() >> 20, source })?;
        return Ok(image.entry);
    }
    if bytes.is_empty() {
        return Err(MachineError::FirmwareEmpty { path: path.to_owned() });
    }
    if bytes.len() as u64 > loader::DEFAULT_TEXT_OFFSET - 0x1000 {
        return Err(MachineError::FirmwareTooLarge { path: path.to_owned(), len: bytes.len() });
    }
    ram.write_slice(ram.base(), bytes)
        .map_err(|source| MachineError::Memory { mib: ram.size() >> 20, source })?;
    Ok(ram.base())
}

/// Writes OpenSBI's `fw_dynamic_info` just below the kernel and returns its address.
fn write_fw_dynamic_info(ram: &GuestRam, kernel_entry: u64) -> Result<u64, MemoryError> {
    let addr = ram.base() + loader::DEFAULT_TEXT_OFFSET - 0x1000;
    let words = [FW_DYNAMIC_MAGIC, FW_DYNAMIC_VERSION, kernel_entry, FW_DYNAMIC_NEXT_MODE_S, 0, 0];
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    ram.write_slice(addr, &bytes)?;
    Ok(addr)
}
