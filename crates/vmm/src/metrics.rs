//! A running VM's metrics: what each vCPU and device did, memory, uptime. [`collect`] reads
//! them from a [`Machine`] from any thread while its vCPUs run (they come from the harts'
//! published statistics and the devices' atomic counters, so collecting never stops the VM);
//! [`Metrics`] serialises to the API's JSON and [`to_prometheus`] renders the same numbers
//! in Prometheus' text format.

mod prometheus;

use std::collections::BTreeMap;
use std::time::Instant;

use keel_machine::{HartStats, Machine, SbiExtension};
use serde::{Deserialize, Serialize};

pub use prometheus::to_prometheus;

/// Everything `GET /metrics` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// By vCPU id.
    pub vcpus: Vec<VcpuMetrics>,
    /// By device name (`vda`, `net0`, `vsock`, `rng`, `balloon`, ...): counter → value.
    pub devices: BTreeMap<String, BTreeMap<String, u64>>,
    pub memory: MemoryMetrics,
    /// Seconds since the VM started.
    pub uptime_s: f64,
}

/// One vCPU. Counters run from the machine's start (a guest reboot builds a new machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuMetrics {
    pub id: u32,
    /// Instructions retired.
    pub instructions: u64,
    /// Times the vCPU left straight-line guest code for the hypervisor's attention.
    pub exits: VcpuExits,
    /// Interrupts the guest took (trap entries).
    pub interrupts_taken: u64,
    /// SBI calls by extension (`base`, `time`, `ipi`, `rfence`, `hsm`, `srst`, `dbcn`,
    /// `legacy`, `other`); they add up to `exits.sbi`.
    pub sbi_calls: BTreeMap<String, u64>,
    /// Whole-TLB flushes (satp writes, SFENCE.VMA without an address) and flushes of one
    /// address.
    pub tlb_flushes: u64,
    pub tlb_address_flushes: u64,
    /// Nanoseconds the vCPU slept in WFI.
    pub slept_ns: u64,
    /// Interpreter work: blocks of guest code decoded, page-table walks, pages of decoded
    /// code dropped because the guest overwrote them.
    pub blocks_decoded: u64,
    pub page_walks: u64,
    pub code_pages_invalidated: u64,
    /// Translator work: blocks of guest code translated to host code (0 on the
    /// interpreter), bytes of host code made for them and nanoseconds spent making it,
    /// times the code cache was emptied, direct jumps patched to chain one native block to
    /// the next, and returns from native code to the run loop (to the interpreter, a lookup,
    /// or a service check).
    #[serde(default)]
    pub blocks_translated: u64,
    #[serde(default)]
    pub translated_bytes: u64,
    #[serde(default)]
    pub translate_ns: u64,
    #[serde(default)]
    pub translation_flushes: u64,
    #[serde(default)]
    pub blocks_chained: u64,
    #[serde(default)]
    pub native_exits: u64,
}

/// Exits by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuExits {
    /// SBI calls (`ecall` from S-mode into keel).
    pub sbi: u64,
    /// Loads and stores that reached a device register.
    pub mmio: u64,
    /// WFI instructions that stopped the vCPU until an interrupt.
    pub wfi: u64,
    /// Interrupts the platform signalled to the vCPU (timer, external, IPI edges).
    pub interrupts: u64,
    /// Exceptions the guest took (page faults, system calls, illegal instructions, ...).
    pub exceptions: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryMetrics {
    /// The guest's RAM size (host memory is only used for what it touched).
    pub guest_bytes: u64,
    /// The whole VMM process' resident set size now (guest RAM it touched included).
    pub rss_bytes: u64,
}

impl VcpuMetrics {
    pub fn new(id: u32, s: &HartStats) -> VcpuMetrics {
        VcpuMetrics {
            id,
            instructions: s.instructions,
            exits: VcpuExits {
                sbi: s.sbi_calls,
                mmio: s.mmio_accesses,
                wfi: s.wfi,
                interrupts: s.interrupts_signalled,
                exceptions: s.exceptions,
            },
            interrupts_taken: s.interrupts,
            sbi_calls: SbiExtension::ALL
                .iter()
                .map(|&e| (e.name().to_string(), s.sbi(e)))
                .collect(),
            tlb_flushes: s.tlb_flushes,
            tlb_address_flushes: s.tlb_address_flushes,
            slept_ns: s.slept_ns,
            blocks_decoded: s.blocks_decoded,
            page_walks: s.page_walks,
            code_pages_invalidated: s.code_pages_invalidated,
            blocks_translated: s.blocks_translated,
            translated_bytes: s.translated_bytes,
            translate_ns: s.translate_ns,
            translation_flushes: s.translation_flushes,
            blocks_chained: s.blocks_chained,
            native_exits: s.native_entries,
        }
    }
}

/// Reads the machine's metrics now; `started` is when the VM started (for `uptime_s`).
pub fn collect(machine: &Machine, started: Instant) -> Metrics {
    let vcpus = machine
        .vcpu_stats()
        .iter()
        .enumerate()
        .map(|(id, s)| VcpuMetrics::new(id as u32, s))
        .collect();
    let devices = machine
        .device_counters()
        .into_iter()
        .map(|d| {
            let counters = d.counters.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            (d.name, counters)
        })
        .collect();
    Metrics {
        vcpus,
        devices,
        memory: MemoryMetrics {
            guest_bytes: machine.ram.size(),
            rss_bytes: rss_bytes().unwrap_or(0),
        },
        uptime_s: started.elapsed().as_secs_f64(),
    }
}

/// This process' current resident set size (`VmRSS` in /proc/self/status), if it can be read.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// The `VmRSS:   1234 kB` line of a /proc/PID/status text, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut words = line.split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_proc() {
        let status = "Name:\tkeel\nVmHWM:\t  9000 kB\nVmRSS:\t  4321 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(status), Some(4321 * 1024));
        assert_eq!(parse_vm_rss("VmRSS: lots\n"), None);
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        // This test process has touched memory.
        assert!(rss_bytes().unwrap() > 0);
    }

    #[test]
    fn vcpu_metrics_come_from_hart_stats() {
        let mut s = HartStats {
            instructions: 1000,
            exceptions: 7,
            interrupts: 5,
            interrupts_signalled: 6,
            sbi_calls: 3,
            mmio_accesses: 11,
            wfi: 2,
            tlb_flushes: 4,
            blocks_translated: 9,
            translated_bytes: 4096,
            translate_ns: 123_000,
            translation_flushes: 1,
            blocks_chained: 8,
            native_entries: 77,
            ..HartStats::default()
        };
        s.sbi_by_extension[SbiExtension::Time as usize] = 2;
        s.sbi_by_extension[SbiExtension::Hsm as usize] = 1;
        let m = VcpuMetrics::new(1, &s);
        assert_eq!(m.id, 1);
        assert_eq!(m.instructions, 1000);
        assert_eq!(m.exits, VcpuExits { sbi: 3, mmio: 11, wfi: 2, interrupts: 6, exceptions: 7 });
        assert_eq!(m.interrupts_taken, 5);
        assert_eq!(m.sbi_calls["time"], 2);
        assert_eq!(m.sbi_calls["hsm"], 1);
        assert_eq!(m.sbi_calls.values().sum::<u64>(), m.exits.sbi);
        assert_eq!(m.tlb_flushes, 4);
        assert_eq!(m.blocks_translated, 9);
        assert_eq!(m.translated_bytes, 4096);
        assert_eq!(m.translate_ns, 123_000);
        assert_eq!(m.translation_flushes, 1);
        assert_eq!(m.blocks_chained, 8);
        assert_eq!(m.native_exits, 77);
    }

    /// The JSON has the contract's shape: vcpus[].{id, instructions, exits{...},
    /// interrupts_taken}, devices{name{counter}}, memory{guest_bytes, rss_bytes}, uptime_s.
    #[test]
    fn json_has_the_api_shape() {
        let m = prometheus::tests::sample();
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        let cpu = &v["vcpus"][0];
        assert_eq!(cpu["id"], 0);
        assert_eq!(cpu["instructions"], 123_456_789_012u64);
        for cause in ["sbi", "mmio", "wfi", "interrupts", "exceptions"] {
            assert!(cpu["exits"][cause].is_u64(), "exits.{cause}");
        }
        assert_eq!(cpu["interrupts_taken"], 40);
        assert_eq!(v["devices"]["vda"]["read_bytes"], 1 << 20);
        assert_eq!(v["memory"]["guest_bytes"], 256u64 << 20);
        assert!(v["memory"]["rss_bytes"].is_u64());
        assert_eq!(v["uptime_s"], 12.5);
        let back: Metrics = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }
}
