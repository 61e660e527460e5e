//! The entropy device (virtio 1.2 §5.4): the guest reads random bytes from the host's
//! `getrandom`.

use std::sync::Arc;

use keel_memory::GuestRam;
use virtio_queue::Queue;

use super::metrics::{Counter, DeviceMetrics};
use super::{
    device_type, drain_queue, features, ActivateError, Activation, Interrupt, VirtioDevice,
};

/// Queue size: the driver keeps only a request or two in flight.
const QUEUE_SIZE: u16 = 64;
/// The most bytes one request gets, so a huge buffer can't make the device spin.
const MAX_REQUEST: usize = 64 * 1024;

#[derive(Default)]
pub struct Rng {
    active: Option<(Queue, Arc<GuestRam>, Arc<Interrupt>)>,
    metrics: Arc<RngMetrics>,
}

/// Random bytes handed to the guest, and the requests they answered.
#[derive(Debug, Default)]
struct RngMetrics {
    bytes: Counter,
    requests: Counter,
}

impl DeviceMetrics for RngMetrics {
    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        vec![("bytes", self.bytes.get()), ("requests", self.requests.get())]
    }
}

impl Rng {
    pub fn new() -> Rng {
        Rng::default()
    }

    fn process(&mut self) {
        let Some((queue, ram, interrupt)) = self.active.as_mut() else { return };
        let metrics = &self.metrics;
        let notify = drain_queue(queue, ram, |chain| {
            let mut written = 0usize;
            for desc in chain.writable() {
                let len = (desc.len() as usize).min(MAX_REQUEST - written);
                let mut bytes = vec![0u8; len];
                if getrandom::fill(&mut bytes).is_err()
                    || ram.write_slice(desc.addr().0, &bytes).is_err()
                {
                    break;
                }
                written += len;
                if written >= MAX_REQUEST {
                    break;
                }
            }
            metrics.requests.inc();
            metrics.bytes.add(written as u64);
            Some(written as u32)
        });
        if notify {
            interrupt.signal_used();
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_type::ENTROPY
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn device_features(&self) -> u64 {
        features::VERSION_1 | features::RING_EVENT_IDX | features::RING_INDIRECT_DESC
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        // The entropy device has no configuration space (§5.4.4).
        data.fill(0);
    }

    fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
        let queue = a.queues.into_iter().next().ok_or(ActivateError::BadQueue(0))?;
        self.active = Some((queue, a.ram, a.interrupt));
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        if index == 0 {
            self.process();
        }
    }

    fn reset(&mut self) {
        self.active = None;
    }

    fn metrics(&self) -> Option<Arc<dyn DeviceMetrics>> {
        Some(self.metrics.clone())
    }

    // Stateless beyond its queue: the default device state.
    fn active_queues(&self) -> Vec<Option<&Queue>> {
        self.active.iter().map(|(q, _, _)| Some(q)).collect()
    }
}
