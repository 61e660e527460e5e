//! Saving a virtio-mmio transport and its device, and restoring them into a freshly built
//! transport of the same device and configuration (snapshots, live migration).

use virtio_queue::{Queue, QueueT};

use super::*;
use crate::virtio::state::{device_name, MmioState, SaveError, VirtqueueState};
use crate::virtio::{INT_CONFIG_CHANGE, INT_USED_BUFFER};
use crate::StateError;

impl MmioTransport {
    /// The transport's registers, its queues with the device's ring positions, the
    /// interrupt status and the device's own state, so that a restored transport goes on
    /// exactly from here.
    ///
    /// Take it with the vCPUs stopped and the device I/O thread paused
    /// ([`EventLoop::pause`]), and copy guest memory under the same pause: then nothing
    /// moves the rings between the two. First the device's host files are made to match the
    /// state ([`VirtioDevice::sync`]: a disk image is flushed); that failing fails the save.
    pub fn save_state(&self) -> Result<MmioState, SaveError> {
        let mut s = crate::lock(&self.state);
        s.device.sync()?;
        let queues = if s.activated {
            // The device holds the queues it uses and moves their positions; the rest are as
            // the driver set them up.
            let held = s.device.active_queues();
            s.activated_queues
                .iter()
                .enumerate()
                .map(|(i, handed)| match held.get(i).copied().flatten() {
                    Some(q) => queue_state(&q.state()),
                    None => queue_state(handed),
                })
                .collect()
        } else {
            s.queues.iter().map(|q| queue_state(&q.state())).collect()
        };
        Ok(MmioState {
            device_type: self.device_type,
            status: s.status,
            device_features_sel: s.device_features_sel,
            driver_features_sel: s.driver_features_sel,
            driver_features: s.driver_features,
            queue_sel: s.queue_sel,
            config_generation: s.config_generation,
            interrupt_status: self.interrupt.status(),
            activated: s.activated,
            queues,
            device: s.device.save_device_state(),
        })
    }

    /// Puts this transport and its device into `state`, before any vCPU runs. The transport
    /// must be built like the saved one (the same kind of device, from the same VM file: a
    /// vsock device may have a new CID, see [`crate::virtio::state`]), and guest RAM must
    /// already hold the snapshot's contents.
    ///
    /// A device that was running (DRIVER_OK) is started again with its queues rebuilt from
    /// the state, without the driver doing anything: it registers its host file descriptors
    /// (TAP, sockets, timers) with the event loop again. Then each ready queue gets one
    /// notification, so that buffers the driver had made available and the device had left
    /// (e.g. held back by a rate limiter, whose budget now starts full) are served; a device
    /// may look at its queues at any time. Hold an [`EventLoop::pause`] across the restore
    /// if the I/O thread runs, so it can't act on half-restored devices.
    ///
    /// A state that does not fit (another kind of device, another number or size of queues,
    /// features this device does not offer, a disk of another size...) is a [`StateError`]
    /// naming the device and the field, and leaves a fresh transport as it was. A device that
    /// cannot start again is an error too, and leaves the transport reset.
    pub fn restore_state(&self, state: &MmioState) -> Result<(), StateError> {
        let mut s = crate::lock(&self.state);
        let device = device_name(self.device_type);
        let invalid = |what: String| StateError::Invalid { device, what };
        if state.device_type != self.device_type {
            return Err(invalid(format!(
                "the saved state is of {} (device type {})",
                device_name(state.device_type),
                state.device_type
            )));
        }
        let max_sizes = s.device.queue_max_sizes().to_vec();
        if state.queues.len() != max_sizes.len() {
            return Err(StateError::Shape {
                device,
                what: "queues",
                saved: state.queues.len(),
                here: max_sizes.len(),
            });
        }
        let queues = state
            .queues
            .iter()
            .zip(&max_sizes)
            .enumerate()
            .map(|(i, (q, &max))| rebuild_queue(i, q, max).map_err(&invalid))
            .collect::<Result<Vec<Queue>, StateError>>()?;
        // §2.2.2: a driver can only have accepted features the device offers.
        let offered = s.device.device_features();
        let extra = state.driver_features & !offered;
        if state.status & STATUS_FEATURES_OK != 0 && extra != 0 {
            return Err(invalid(format!(
                "the driver accepted features {extra:#x} that this device does not offer"
            )));
        }
        let running = STATUS_FEATURES_OK | STATUS_DRIVER_OK;
        if state.activated && state.status & running != running {
            return Err(invalid(format!(
                "it was running with status {:#x}, without FEATURES_OK and DRIVER_OK",
                state.status
            )));
        }
        if state.interrupt_status & !(INT_USED_BUFFER | INT_CONFIG_CHANGE) != 0 {
            return Err(invalid(format!(
                "interrupt status {:#x} has bits virtio-mmio doesn't define",
                state.interrupt_status
            )));
        }
        if state.activated {
            if let Some(bad) = self.invalid_queue(&queues) {
                return Err(invalid(format!("queue {bad}'s rings are not in guest RAM")));
            }
        }

        // The state fits. Restore into a reset transport (a fresh one is).
        if s.activated || s.status != 0 {
            self.reset(&mut s);
        }
        s.device.restore_device_state(&state.device)?;
        s.status = state.status;
        s.device_features_sel = state.device_features_sel;
        s.driver_features_sel = state.driver_features_sel;
        s.driver_features = state.driver_features;
        s.queue_sel = state.queue_sel;
        s.config_generation = state.config_generation;
        self.interrupt.restore(state.interrupt_status);
        if !state.activated {
            s.queues = queues;
            return Ok(());
        }
        let ready: Vec<bool> = queues.iter().map(|q| q.ready()).collect();
        if let Err(e) = self.start(&mut s, queues) {
            self.reset(&mut s);
            return Err(invalid(format!("the device cannot start again: {e}")));
        }
        for i in (0..ready.len()).filter(|&i| ready[i]) {
            s.device.queue_notify(i as u16);
        }
        Ok(())
    }
}

fn queue_state(q: &virtio_queue::QueueState) -> VirtqueueState {
    VirtqueueState {
        max_size: q.max_size,
        size: q.size,
        ready: q.ready,
        desc_table: q.desc_table,
        avail_ring: q.avail_ring,
        used_ring: q.used_ring,
        next_avail: q.next_avail,
        next_used: q.next_used,
        event_idx: q.event_idx_enabled,
    }
}

/// Queue `index` from its saved state, checked against the device's maximum size `max`
/// and the alignment rules of §2.7 (table "Virtqueue Part Alignment").
fn rebuild_queue(index: usize, q: &VirtqueueState, max: u16) -> Result<Queue, String> {
    if q.max_size != max {
        return Err(format!(
            "queue {index} had at most {} entries, this device's has {max}",
            q.max_size
        ));
    }
    let saved = virtio_queue::QueueState {
        max_size: max,
        next_avail: q.next_avail,
        next_used: q.next_used,
        event_idx_enabled: q.event_idx,
        size: q.size,
        ready: q.ready,
        desc_table: q.desc_table,
        avail_ring: q.avail_ring,
        used_ring: q.used_ring,
    };
    let queue = Queue::try_from(saved).map_err(|e| {
        format!("queue {index} (size {}, of at most {max}) is not a valid queue: {e}", q.size)
    })?;
    debug_assert_eq!(queue.next_used(), q.next_used);
    Ok(queue)
}
