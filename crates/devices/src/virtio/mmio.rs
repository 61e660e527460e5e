//! The virtio-mmio transport, version 2 ("modern", virtio 1.2 §4.2.2): the registers a driver
//! uses to discover a device, negotiate features, set up queues and exchange notifications.
//! Saving and restoring them for snapshots is in `mmio_state.rs`.

use std::sync::{Arc, Mutex, Weak};

use keel_memory::GuestRam;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::EventSet;

use super::metrics::{Counter, DeviceMetrics};
use super::{features, ActivateError, Activation, Interrupt, VirtioDevice};
use crate::event::{EventHandler, EventLoop};
use crate::{IrqLine, MmioDevice};

/// Size of one virtio-mmio window.
pub const MMIO_SIZE: u64 = 0x1000;

/// "virt" in little-endian ASCII (§4.2.2).
const MAGIC: u32 = 0x7472_6976;
const VERSION: u32 = 2;
/// keel's vendor ID: "keel" in ASCII, as virtio leaves vendor IDs to the implementation.
const VENDOR: u32 = 0x6b65_656c;

// Register offsets (§4.2.2, table "MMIO Device Register Layout").
const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_DRIVER_LOW: u64 = 0x090;
const REG_QUEUE_DRIVER_HIGH: u64 = 0x094;
const REG_QUEUE_DEVICE_LOW: u64 = 0x0a0;
const REG_QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const REG_SHM_LEN_LOW: u64 = 0x0b0;
const REG_SHM_LEN_HIGH: u64 = 0x0b4;
const REG_SHM_BASE_LOW: u64 = 0x0b8;
const REG_SHM_BASE_HIGH: u64 = 0x0bc;
const REG_CONFIG_GENERATION: u64 = 0x0fc;
const REG_CONFIG: u64 = 0x100;

// Device status bits (§2.1).
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const STATUS_DEVICE_NEEDS_RESET: u32 = 64;
const STATUS_FAILED: u32 = 128;

struct State {
    device: Box<dyn VirtioDevice>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: Vec<Queue>,
    activated: bool,
    /// The queues as they were handed to the device at activation (the device moves their
    /// ring positions on; see `save_state`).
    activated_queues: Vec<virtio_queue::QueueState>,
    config_generation: u32,
}

/// A virtio device behind its virtio-mmio registers.
pub struct MmioTransport {
    state: Mutex<State>,
    /// Fixed for the device's life; kept outside the lock for the metrics.
    device_type: u32,
    device_metrics: Option<Arc<dyn DeviceMetrics>>,
    /// QueueNotify writes: the driver telling the device about new buffers.
    notifications: Counter,
    interrupt: Arc<Interrupt>,
    ram: Arc<GuestRam>,
    events: Arc<EventLoop>,
    this: Weak<MmioTransport>,
}

impl MmioTransport {
    pub fn new(
        device: Box<dyn VirtioDevice>,
        ram: Arc<GuestRam>,
        irq: Arc<dyn IrqLine>,
        events: Arc<EventLoop>,
    ) -> Arc<MmioTransport> {
        let queues = Self::fresh_queues(device.as_ref());
        let (device_type, device_metrics) = (device.device_type(), device.metrics());
        Arc::new_cyclic(|this| MmioTransport {
            state: Mutex::new(State {
                device,
                status: 0,
                device_features_sel: 0,
                driver_features_sel: 0,
                driver_features: 0,
                queue_sel: 0,
                queues,
                activated: false,
                activated_queues: Vec::new(),
                config_generation: 0,
            }),
            device_type,
            device_metrics,
            notifications: Counter::default(),
            interrupt: Arc::new(Interrupt::new(irq)),
            ram,
            events,
            this: this.clone(),
        })
    }

    fn fresh_queues(device: &dyn VirtioDevice) -> Vec<Queue> {
        device
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max).expect("queue sizes are powers of two up to 32768"))
            .collect()
    }

    /// Runs `f` on the device with its lock held (e.g. the balloon target from the VMM).
    pub fn with_device<R>(&self, f: impl FnOnce(&mut dyn VirtioDevice) -> R) -> R {
        f(crate::lock(&self.state).device.as_mut())
    }

    /// The virtio device ID (`device_type::*`).
    pub fn device_type(&self) -> u32 {
        self.device_type
    }

    /// The device's counters, then the transport's: `interrupts` raised and
    /// `queue_notifications` received. Takes no lock, so it never waits for the device.
    pub fn metrics(&self) -> Vec<(&'static str, u64)> {
        let mut m = self.device_metrics.as_ref().map_or_else(Vec::new, |d| d.snapshot());
        m.push(("interrupts", self.interrupt.raised()));
        m.push(("queue_notifications", self.notifications.get()));
        m
    }

    /// The device changed its configuration: tell the driver (config generation and interrupt).
    pub fn config_changed(&self) {
        crate::lock(&self.state).config_generation += 1;
        self.interrupt.signal_config();
    }

    fn reset(&self, s: &mut State) {
        s.device.reset();
        s.status = 0;
        s.driver_features = 0;
        s.device_features_sel = 0;
        s.driver_features_sel = 0;
        s.queue_sel = 0;
        s.queues = Self::fresh_queues(s.device.as_ref());
        s.activated = false;
        s.activated_queues.clear();
        self.interrupt.clear();
    }

    fn write_status(&self, s: &mut State, value: u32) {
        if value == 0 {
            self.reset(s);
            return;
        }
        let mut value = value;
        // FEATURES_OK is only kept if the features are acceptable (§2.2.2, §3.1.1 step 6).
        if value & STATUS_FEATURES_OK != 0 && s.status & STATUS_FEATURES_OK == 0 {
            let offered = s.device.device_features();
            let ok =
                s.driver_features & !offered == 0 && s.driver_features & features::VERSION_1 != 0;
            if !ok {
                value &= !STATUS_FEATURES_OK;
            }
        }
        s.status = value;
        if value & STATUS_DRIVER_OK != 0 && !s.activated {
            self.activate(s);
        }
    }

    fn activate(&self, s: &mut State) {
        if s.status & STATUS_FEATURES_OK == 0 {
            s.status |= STATUS_FAILED;
            return;
        }
        let event_idx = s.driver_features & features::RING_EVENT_IDX != 0;
        for q in s.queues.iter_mut() {
            q.set_event_idx(event_idx);
        }
        let result = match self.invalid_queue(&s.queues) {
            Some(bad) => Err(ActivateError::BadQueue(bad)),
            None => {
                let queues =
                    std::mem::replace(&mut s.queues, Self::fresh_queues(s.device.as_ref()));
                self.start(s, queues)
            }
        };
        if let Err(e) = result {
            log_device_error(s.device.device_type(), &e.to_string());
            s.status |= STATUS_DEVICE_NEEDS_RESET;
            self.interrupt.signal_config();
        }
    }

    /// The first ready queue whose rings are not all in guest RAM.
    fn invalid_queue(&self, queues: &[Queue]) -> Option<usize> {
        let mem = self.ram.memory();
        queues.iter().position(|q| q.ready() && !q.is_valid(mem))
    }

    /// Hands `queues` (checked) to the device and starts it, after DRIVER_OK or on restore.
    fn start(&self, s: &mut State, queues: Vec<Queue>) -> Result<(), ActivateError> {
        s.activated_queues = queues.iter().map(Queue::state).collect();
        let handler: Weak<dyn EventHandler> = self.this.clone();
        let activation = Activation {
            queues,
            features: s.driver_features,
            ram: self.ram.clone(),
            interrupt: self.interrupt.clone(),
            events: self.events.clone(),
            handler,
        };
        s.device.activate(activation)?;
        s.activated = true;
        Ok(())
    }

    fn read32(&self, s: &State, offset: u64) -> u32 {
        let queue = s.queues.get(s.queue_sel as usize);
        match offset {
            REG_MAGIC => MAGIC,
            REG_VERSION => VERSION,
            REG_DEVICE_ID => s.device.device_type(),
            REG_VENDOR_ID => VENDOR,
            REG_DEVICE_FEATURES => {
                let f = s.device.device_features();
                match s.device_features_sel {
                    0 => f as u32,
                    1 => (f >> 32) as u32,
                    _ => 0,
                }
            }
            REG_QUEUE_NUM_MAX => queue.map_or(0, |q| q.max_size() as u32),
            REG_QUEUE_READY => queue.map_or(0, |q| q.ready() as u32),
            REG_INTERRUPT_STATUS => self.interrupt.status(),
            REG_STATUS => s.status,
            // No shared memory regions: length -1 means "no such region" (§4.2.2).
            REG_SHM_LEN_LOW | REG_SHM_LEN_HIGH | REG_SHM_BASE_LOW | REG_SHM_BASE_HIGH => u32::MAX,
            REG_CONFIG_GENERATION => s.config_generation,
            _ => 0,
        }
    }

    fn write32(&self, s: &mut State, offset: u64, value: u32) {
        // Queue registers may only change before the driver is done (§4.2.3.2).
        let configuring = s.status & STATUS_DRIVER_OK == 0;
        let sel = s.queue_sel as usize;
        match offset {
            REG_DEVICE_FEATURES_SEL => s.device_features_sel = value,
            REG_DRIVER_FEATURES_SEL => s.driver_features_sel = value,
            REG_DRIVER_FEATURES if s.status & STATUS_FEATURES_OK == 0 => {
                match s.driver_features_sel {
                    0 => s.driver_features = (s.driver_features & !0xffff_ffff) | value as u64,
                    1 => {
                        s.driver_features = (s.driver_features & 0xffff_ffff) | (value as u64) << 32
                    }
                    _ => {}
                }
            }
            REG_QUEUE_SEL => s.queue_sel = value,
            REG_QUEUE_NOTIFY => {
                self.notifications.inc();
                if s.activated {
                    s.device.queue_notify(value as u16);
                }
            }
            REG_INTERRUPT_ACK => self.interrupt.ack(value),
            REG_STATUS => self.write_status(s, value),
            _ if configuring => {
                let Some(q) = s.queues.get_mut(sel) else { return };
                match offset {
                    REG_QUEUE_NUM => q.set_size(value as u16),
                    REG_QUEUE_READY => q.set_ready(value == 1),
                    REG_QUEUE_DESC_LOW => q.set_desc_table_address(Some(value), None),
                    REG_QUEUE_DESC_HIGH => q.set_desc_table_address(None, Some(value)),
                    REG_QUEUE_DRIVER_LOW => q.set_avail_ring_address(Some(value), None),
                    REG_QUEUE_DRIVER_HIGH => q.set_avail_ring_address(None, Some(value)),
                    REG_QUEUE_DEVICE_LOW => q.set_used_ring_address(Some(value), None),
                    REG_QUEUE_DEVICE_HIGH => q.set_used_ring_address(None, Some(value)),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

fn log_device_error(device_type: u32, what: &str) {
    // The guest sees DEVICE_NEEDS_RESET; the host operator sees why.
    eprintln!("keel: virtio device (type {device_type}): {what}");
}

impl MmioDevice for MmioTransport {
    fn read(&self, offset: u64, size: u8) -> u64 {
        let s = crate::lock(&self.state);
        if offset >= REG_CONFIG {
            let mut buf = [0u8; 8];
            let n = (size as usize).min(8);
            s.device.read_config(offset - REG_CONFIG, &mut buf[..n]);
            return u64::from_le_bytes(buf);
        }
        // Registers are 32 bits wide and must be accessed as such (§4.2.2.2).
        if size != 4 || offset % 4 != 0 {
            return 0;
        }
        self.read32(&s, offset) as u64
    }

    fn write(&self, offset: u64, size: u8, value: u64) {
        let mut s = crate::lock(&self.state);
        if offset >= REG_CONFIG {
            let n = (size as usize).min(8);
            s.device.write_config(offset - REG_CONFIG, &value.to_le_bytes()[..n]);
            return;
        }
        if size != 4 || offset % 4 != 0 {
            return;
        }
        self.write32(&mut s, offset, value as u32);
    }
}

impl EventHandler for MmioTransport {
    fn handle_event(&self, token: u64, events: EventSet) {
        let mut s = crate::lock(&self.state);
        if s.activated {
            s.device.handle_event(token, events);
        }
    }
}

#[path = "mmio_state.rs"]
mod state;

#[cfg(test)]
#[path = "mmio_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "mmio_state_tests.rs"]
mod state_tests;
