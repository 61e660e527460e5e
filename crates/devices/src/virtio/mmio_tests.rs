//! The transport driven through its registers the way Linux's virtio_mmio does it, with the
//! entropy device behind it and virtio-queue's mock rings as the driver's queue.

use std::sync::Arc;

use keel_memory::GuestRam;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::GuestAddress;

use super::*;
use crate::testutil::MockLine;
use crate::virtio::device_type;
use crate::virtio::rng::Rng;

const BASE: u64 = 0x8000_0000;
const RAM: u64 = 4 << 20;
const DATA: u64 = BASE + (1 << 20);
const Q: u16 = 16;
const F_WRITE: u16 = 2;
const F_NEXT: u16 = 1;

fn w(t: &MmioTransport, reg: u64, value: u32) {
    t.write(reg, 4, value as u64);
}

/// The counters as a map.
fn metrics(t: &MmioTransport) -> std::collections::HashMap<&'static str, u64> {
    t.metrics().into_iter().collect()
}

#[test]
fn metrics_count_the_device_and_the_transport_without_its_lock() {
    let ram = Arc::new(GuestRam::new(BASE, RAM).unwrap());
    let mem: &'static keel_memory::GuestMemoryMmap = Box::leak(Box::new(ram.clone())).memory();
    let mock = MockSplitQueue::create(mem, GuestAddress(BASE), Q);
    let line = Arc::new(MockLine::default());
    let events = Arc::new(EventLoop::new().unwrap());
    let t = MmioTransport::new(Box::new(Rng::new()), ram.clone(), line.clone(), events);
    assert_eq!(t.device_type(), device_type::ENTROPY);
    assert!(metrics(&t).values().all(|&n| n == 0));

    // A notification before the driver is done counts, and does nothing else.
    w(&t, REG_QUEUE_NOTIFY, 0);
    // Initialisation (§3.1.1): ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queue, DRIVER_OK.
    w(&t, REG_STATUS, 1);
    w(&t, REG_STATUS, 3);
    w(&t, REG_DRIVER_FEATURES_SEL, 1);
    w(&t, REG_DRIVER_FEATURES, (features::VERSION_1 >> 32) as u32);
    w(&t, REG_STATUS, 3 | STATUS_FEATURES_OK);
    w(&t, REG_QUEUE_SEL, 0);
    w(&t, REG_QUEUE_NUM, Q as u32);
    let split = |a: GuestAddress| (a.0 as u32, (a.0 >> 32) as u32);
    for (low, addr) in [
        (REG_QUEUE_DESC_LOW, mock.desc_table_addr()),
        (REG_QUEUE_DRIVER_LOW, mock.avail_addr()),
        (REG_QUEUE_DEVICE_LOW, mock.used_addr()),
    ] {
        let (lo, hi) = split(addr);
        w(&t, low, lo);
        w(&t, low + 4, hi);
    }
    w(&t, REG_QUEUE_READY, 1);
    w(&t, REG_STATUS, 3 | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    assert_eq!(t.read(REG_STATUS, 4) as u32 & STATUS_DRIVER_OK, STATUS_DRIVER_OK);

    // Two requests: 100 + 28 bytes in one chain, then 64 bytes.
    let descs = [
        RawDescriptor::from(SplitDescriptor::new(DATA, 100, F_WRITE | F_NEXT, 1)),
        RawDescriptor::from(SplitDescriptor::new(DATA + 0x1000, 28, F_WRITE, 0)),
        RawDescriptor::from(SplitDescriptor::new(DATA + 0x2000, 64, F_WRITE, 0)),
    ];
    mock.add_desc_chains(&descs, 0).unwrap();
    w(&t, REG_QUEUE_NOTIFY, 0);
    assert!(line.level(), "the driver was interrupted");

    // The device lock is not needed to read them: hold it meanwhile.
    let m = t.with_device(|_| metrics(&t));
    assert_eq!(m["bytes"], 192);
    assert_eq!(m["requests"], 2);
    assert_eq!(m["interrupts"], 1);
    assert_eq!(m["queue_notifications"], 2);
    let names: Vec<_> = t.metrics().into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["bytes", "requests", "interrupts", "queue_notifications"]);
}
