//! keel's channel to an agent in the guest: a second 16550 UART (the guest's ttyS1).
//!
//! After a restore the VMM writes one line there, the VM's identity as it is now:
//!
//! ```text
//! keel-restored name=NAME seed=HEX64 mac0=aa:bb:cc:dd:ee:ff mac1=...
//! ```
//!
//! `name` is the VM's name (a clone's differs from the saved VM's), `seed` 32 fresh random
//! bytes for the guest's RNG (clones must not share its state), `macN` the address of the
//! N-th network interface. The default image's /init runs an agent that applies them
//! (hostname, RNG, MACs, and the wall clock from the RTC) and answers with a line of its own,
//! which the VMM logs.

use std::io::Write;

/// Longest agent line logged; the rest of a longer one is dropped.
const MAX_LINE: usize = 256;

/// What the guest agent writes, logged a line at a time on the VMM's stderr (its keel.log).
#[derive(Default)]
pub struct AgentLog {
    line: Vec<u8>,
}

impl Write for AgentLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            match b {
                b'\n' => {
                    let text = String::from_utf8_lossy(&self.line);
                    eprintln!("keel: guest agent: {}", text.trim_end_matches('\r'));
                    self.line.clear();
                }
                _ if self.line.len() < MAX_LINE => self.line.push(b),
                _ => {}
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The line that tells the agent the VM was restored and who it is now.
pub fn restored_message(name: &str, macs: &[[u8; 6]]) -> Vec<u8> {
    let mut seed = [0u8; 32];
    // Without host randomness the guest keeps its own RNG state; nothing else depends on it.
    let _ = getrandom::fill(&mut seed);
    let mut line = format!("keel-restored name={name} seed=");
    for b in seed {
        line.push_str(&format!("{b:02x}"));
    }
    for (i, mac) in macs.iter().enumerate() {
        let mac: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
        line.push_str(&format!(" mac{i}={}", mac.join(":")));
    }
    line.push('\n');
    line.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_vm_and_its_interfaces_with_a_fresh_seed() {
        let a = String::from_utf8(restored_message("c1", &[[2, 0x6b, 0x6c, 1, 2, 3]])).unwrap();
        let b = String::from_utf8(restored_message("c1", &[])).unwrap();
        assert!(a.starts_with("keel-restored name=c1 seed="), "{a}");
        assert!(a.ends_with(" mac0=02:6b:6c:01:02:03\n"), "{a}");
        let seed = |m: &str| m.split_whitespace().nth(2).unwrap().to_string();
        assert_eq!(seed(&a).len(), "seed=".len() + 64);
        assert_ne!(seed(&a), seed(&b), "every message has its own seed");
    }
}
