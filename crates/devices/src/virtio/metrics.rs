//! Counters a virtio device keeps for the VMM's metrics.
//!
//! A device counts into relaxed atomics that it shares (through an `Arc`) with its transport,
//! so the VMM reads them from any thread without taking the device's lock, which a vCPU may
//! hold for a long disk request. Counting costs an uncontended atomic add per request or
//! packet, next to the request's own copying.

use std::sync::atomic::{AtomicU64, Ordering};

use super::device_type;

/// One monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A device's counters, readable from any thread.
pub trait DeviceMetrics: Send + Sync {
    /// Every counter as (name, value). Names are snake_case and stable: they are the keys of
    /// the device's object in the metrics JSON and, with `keel_device_` before and `_total`
    /// after, Prometheus metric names.
    fn snapshot(&self) -> Vec<(&'static str, u64)>;
}

/// The names the VMM gives virtio devices in its metrics, in slot order: disks are `vda`,
/// `vdb`, ... in the order they were configured (as Linux names them), network interfaces
/// `net0`, `net1`, ..., and the others by their kind (`rng`, `vsock`, `balloon`; a second one
/// of a kind gets a number: `rng1`).
pub fn device_names(types: impl IntoIterator<Item = u32>) -> Vec<String> {
    let mut seen: Vec<(u32, usize)> = Vec::new();
    types
        .into_iter()
        .map(|t| {
            let n = match seen.iter_mut().find(|(k, _)| *k == t) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((t, 0));
                    0
                }
            };
            let kind = match t {
                device_type::BLOCK => return format!("vd{}", disk_letters(n)),
                device_type::NET => return format!("net{n}"),
                device_type::ENTROPY => "rng",
                device_type::VSOCK => "vsock",
                device_type::BALLOON => "balloon",
                // A kind the board doesn't build: named by its virtio device ID.
                other => return format!("virtio{other}-{n}"),
            };
            if n == 0 {
                kind.to_string()
            } else {
                format!("{kind}{n}")
            }
        })
        .collect()
}

/// Linux's disk suffixes: a..z, then aa..zz, aaa... (`sd_format_disk_name`, which
/// virtio_blk uses too).
fn disk_letters(mut n: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII letters")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_linux_and_configuration_order() {
        use device_type::*;
        let names = device_names([BLOCK, NET, BLOCK, ENTROPY, VSOCK, BALLOON, NET, BLOCK]);
        assert_eq!(names, ["vda", "net0", "vdb", "rng", "vsock", "balloon", "net1", "vdc"]);
        assert_eq!(device_names([ENTROPY, ENTROPY, 42]), ["rng", "rng1", "virtio42-0"]);
    }

    #[test]
    fn disk_letters_go_on_past_z() {
        assert_eq!(disk_letters(0), "a");
        assert_eq!(disk_letters(25), "z");
        assert_eq!(disk_letters(26), "aa");
        assert_eq!(disk_letters(27), "ab");
        assert_eq!(disk_letters(26 + 26 * 26 - 1), "zz");
        assert_eq!(disk_letters(26 + 26 * 26), "aaa");
    }

    #[test]
    fn counters_add_up() {
        let c = Counter::default();
        c.inc();
        c.add(41);
        assert_eq!(c.get(), 42);
    }
}
