//! What a hart did, for metrics and tuning.
//!
//! The hart counts in plain fields of [`HartStats`], and only on slow paths (traps, SBI calls,
//! device accesses, block decoding): the per-instruction paths count nothing but `instret`.
//! Other threads can't read those fields while the hart runs, so the hart copies them now and
//! then into a [`PublishedStats`] of relaxed atomics that lives in its `HartSignals` (see
//! `Hart::publish_stats` for when). A reader gets each counter as of the last publication; the
//! counters of one snapshot may come from two publications, which is fine for metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// The SBI extensions calls are counted by (SBI spec v2.0, §3-§12), and what else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbiExtension {
    Base = 0,
    Time,
    Ipi,
    Rfence,
    Hsm,
    Srst,
    Dbcn,
    /// The legacy extensions (EIDs 0x00-0x0F, SBI spec §5).
    Legacy,
    /// Anything else (keel answers NOT_SUPPORTED).
    Other,
}

/// The number of [`SbiExtension`] values.
pub const SBI_EXTENSIONS: usize = 9;

impl SbiExtension {
    pub const ALL: [SbiExtension; SBI_EXTENSIONS] = [
        SbiExtension::Base,
        SbiExtension::Time,
        SbiExtension::Ipi,
        SbiExtension::Rfence,
        SbiExtension::Hsm,
        SbiExtension::Srst,
        SbiExtension::Dbcn,
        SbiExtension::Legacy,
        SbiExtension::Other,
    ];

    /// The extension an `ecall` with `a7 = eid` calls.
    pub fn from_eid(eid: u64) -> SbiExtension {
        match eid {
            0x10 => SbiExtension::Base,
            0x5449_4d45 => SbiExtension::Time,
            0x0073_5049 => SbiExtension::Ipi,
            0x5246_4e43 => SbiExtension::Rfence,
            0x0048_534d => SbiExtension::Hsm,
            0x5352_5354 => SbiExtension::Srst,
            0x4442_434e => SbiExtension::Dbcn,
            0x00..=0x0f => SbiExtension::Legacy,
            _ => SbiExtension::Other,
        }
    }

    /// Its name in metrics (lower case, as the SBI spec abbreviates it).
    pub fn name(self) -> &'static str {
        match self {
            SbiExtension::Base => "base",
            SbiExtension::Time => "time",
            SbiExtension::Ipi => "ipi",
            SbiExtension::Rfence => "rfence",
            SbiExtension::Hsm => "hsm",
            SbiExtension::Srst => "srst",
            SbiExtension::Dbcn => "dbcn",
            SbiExtension::Legacy => "legacy",
            SbiExtension::Other => "other",
        }
    }
}

/// Declares [`HartStats`] and its atomic mirror [`PublishedStats`] from one list of counters,
/// so the two can't drift apart.
macro_rules! hart_stats {
    ($($(#[$doc:meta])* $field:ident,)*) => {
        /// Counters of what a hart did since it was built (they survive hart resets).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct HartStats {
            $($(#[$doc])* pub $field: u64,)*
            /// SBI calls by extension, indexed by [`SbiExtension`] (they add up to `sbi_calls`).
            pub sbi_by_extension: [u64; SBI_EXTENSIONS],
        }

        /// The last [`HartStats`] the hart published, readable from any thread.
        #[derive(Debug, Default)]
        pub struct PublishedStats {
            $($field: AtomicU64,)*
            sbi_by_extension: [AtomicU64; SBI_EXTENSIONS],
        }

        impl PublishedStats {
            pub(crate) fn store(&self, s: &HartStats) {
                $(self.$field.store(s.$field, Ordering::Relaxed);)*
                for (a, v) in self.sbi_by_extension.iter().zip(s.sbi_by_extension) {
                    a.store(v, Ordering::Relaxed);
                }
            }

            pub fn load(&self) -> HartStats {
                HartStats {
                    $($field: self.$field.load(Ordering::Relaxed),)*
                    sbi_by_extension: std::array::from_fn(|i| {
                        self.sbi_by_extension[i].load(Ordering::Relaxed)
                    }),
                }
            }
        }
    };
}

hart_stats! {
    /// Instructions retired. Kept apart from `minstret`, which resets with the hart and which
    /// M-mode software may write.
    instructions,
    /// Exceptions taken (page faults, ecalls from U-mode, illegal instructions, ...).
    exceptions,
    /// Interrupts taken.
    interrupts,
    /// Interrupts the platform signalled to the hart: rising edges of its timer, external and
    /// software interrupt inputs, and SBI IPIs received.
    interrupts_signalled,
    /// Calls into the hypervisor (SBI), of any extension.
    sbi_calls,
    /// Loads and stores that reached a device (or a watched RAM page) through the bus.
    mmio_accesses,
    /// WFI instructions that stopped the hart, the times it slept in them, and for how long.
    wfi,
    sleeps,
    slept_ns,
    /// Blocks decoded and page-table walks done.
    blocks_decoded,
    page_walks,
    /// Jump-cache lookups that missed, and pages of decoded code dropped after a write.
    block_lookups_missed,
    code_pages_invalidated,
    /// TLB flushes: whole (satp writes, SFENCE.VMA without address) and by address.
    tlb_flushes,
    tlb_address_flushes,
    /// The translator: blocks translated, bytes of host code made for them and nanoseconds
    /// spent making it; times the code cache was emptied (full, or code reset); direct jumps
    /// patched to chain one native block to the next; and entries into native code from the
    /// run loop (each one a return to the run loop before it: chained blocks don't count).
    blocks_translated,
    translated_bytes,
    translate_ns,
    translation_flushes,
    blocks_chained,
    native_entries,
}

impl HartStats {
    /// SBI calls to one extension.
    pub fn sbi(&self, ext: SbiExtension) -> u64 {
        self.sbi_by_extension[ext as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_by_eid() {
        assert_eq!(SbiExtension::from_eid(0x5449_4d45), SbiExtension::Time);
        assert_eq!(SbiExtension::from_eid(0x10), SbiExtension::Base);
        assert_eq!(SbiExtension::from_eid(0x08), SbiExtension::Legacy);
        assert_eq!(SbiExtension::from_eid(0x4442_434e), SbiExtension::Dbcn);
        assert_eq!(SbiExtension::from_eid(0x1234_5678), SbiExtension::Other);
        for (i, e) in SbiExtension::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
    }

    #[test]
    fn published_stats_round_trip() {
        let mut s = HartStats { instructions: 7, tlb_address_flushes: 3, ..Default::default() };
        s.sbi_by_extension[SbiExtension::Hsm as usize] = 2;
        let p = PublishedStats::default();
        assert_eq!(p.load(), HartStats::default());
        p.store(&s);
        assert_eq!(p.load(), s);
        assert_eq!(p.load().sbi(SbiExtension::Hsm), 2);
    }
}
