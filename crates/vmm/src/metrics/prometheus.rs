//! [`Metrics`] in the Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>): one `# HELP` and one
//! `# TYPE` line per metric family, then its samples, one per line, all together; counters end
//! in `_total`; label values are quoted with `\`, `"` and newlines escaped.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::Metrics;

/// A sample's value.
#[derive(Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Renders the metrics in the Prometheus text format (served as
/// `text/plain; version=0.0.4`).
pub fn to_prometheus(m: &Metrics) -> String {
    let mut out = Out(String::new());
    out.family("keel_uptime_seconds", Kind::Gauge, "Seconds since the VM started.", |f| {
        f.sample(&[], Value::Float(m.uptime_s))
    });
    out.family("keel_memory_guest_bytes", Kind::Gauge, "Guest RAM size in bytes.", |f| {
        f.sample(&[], Value::Int(m.memory.guest_bytes))
    });
    out.family(
        "keel_memory_rss_bytes",
        Kind::Gauge,
        "Resident set size of the VMM process in bytes (touched guest RAM included).",
        |f| f.sample(&[], Value::Int(m.memory.rss_bytes)),
    );

    type Field = fn(&super::VcpuMetrics) -> Value;
    let per_vcpu: [(&str, &str, Field); 14] = [
        ("keel_vcpu_instructions_total", "Instructions the vCPU retired.", |c| {
            Value::Int(c.instructions)
        }),
        ("keel_vcpu_interrupts_taken_total", "Interrupts the guest took on the vCPU.", |c| {
            Value::Int(c.interrupts_taken)
        }),
        (
            "keel_vcpu_tlb_flushes_total",
            "Whole-TLB flushes (satp writes, SFENCE.VMA without an address).",
            |c| Value::Int(c.tlb_flushes),
        ),
        ("keel_vcpu_tlb_address_flushes_total", "TLB flushes of one address.", |c| {
            Value::Int(c.tlb_address_flushes)
        }),
        ("keel_vcpu_sleep_seconds_total", "Seconds the vCPU slept in WFI.", |c| {
            Value::Float(c.slept_ns as f64 / 1e9)
        }),
        ("keel_vcpu_blocks_decoded_total", "Blocks of guest code the interpreter decoded.", |c| {
            Value::Int(c.blocks_decoded)
        }),
        ("keel_vcpu_page_walks_total", "Guest page-table walks.", |c| Value::Int(c.page_walks)),
        (
            "keel_vcpu_code_pages_invalidated_total",
            "Pages of decoded code dropped because the guest overwrote them.",
            |c| Value::Int(c.code_pages_invalidated),
        ),
        (
            "keel_vcpu_blocks_translated_total",
            "Blocks of guest code the translator made host code for (0 on the interpreter).",
            |c| Value::Int(c.blocks_translated),
        ),
        ("keel_vcpu_translated_bytes_total", "Bytes of host code the translator made.", |c| {
            Value::Int(c.translated_bytes)
        }),
        ("keel_vcpu_translate_seconds_total", "Seconds spent translating guest code.", |c| {
            Value::Float(c.translate_ns as f64 / 1e9)
        }),
        (
            "keel_vcpu_translation_flushes_total",
            "Times the translated-code cache was emptied (full, or code reset).",
            |c| Value::Int(c.translation_flushes),
        ),
        (
            "keel_vcpu_blocks_chained_total",
            "Direct jumps patched to go from one translated block straight to the next.",
            |c| Value::Int(c.blocks_chained),
        ),
        (
            "keel_vcpu_native_exits_total",
            "Returns from translated code to keel's run loop (lookups, service checks, the interpreter).",
            |c| Value::Int(c.native_exits),
        ),
    ];
    for (name, help, field) in per_vcpu {
        out.family(name, Kind::Counter, help, |f| {
            for c in &m.vcpus {
                f.sample(&[("vcpu", &c.id.to_string())], field(c));
            }
        });
    }
    out.family(
        "keel_vcpu_exits_total",
        Kind::Counter,
        "vCPU exits to the hypervisor by cause.",
        |f| {
            for c in &m.vcpus {
                let e = &c.exits;
                let id = c.id.to_string();
                let causes = [
                    ("sbi", e.sbi),
                    ("mmio", e.mmio),
                    ("wfi", e.wfi),
                    ("interrupts", e.interrupts),
                    ("exceptions", e.exceptions),
                ];
                for (cause, n) in causes {
                    f.sample(&[("vcpu", &id), ("cause", cause)], Value::Int(n));
                }
            }
        },
    );
    out.family("keel_vcpu_sbi_calls_total", Kind::Counter, "SBI calls by extension.", |f| {
        for c in &m.vcpus {
            let id = c.id.to_string();
            for (ext, &n) in &c.sbi_calls {
                f.sample(&[("vcpu", &id), ("extension", ext)], Value::Int(n));
            }
        }
    });

    // One family per device counter, with a sample for each device that has it.
    let mut by_counter: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for (device, counters) in &m.devices {
        for (counter, &n) in counters {
            by_counter.entry(counter).or_default().push((device, n));
        }
    }
    for (counter, samples) in by_counter {
        let name = format!("keel_device_{}_total", metric_name_part(counter));
        let help = device_counter_help(counter)
            .map_or_else(|| format!("Virtio device counter {counter}."), str::to_string);
        out.family(&name, Kind::Counter, &help, |f| {
            for (device, n) in samples {
                f.sample(&[("device", device)], Value::Int(n));
            }
        });
    }
    out.0
}

/// What the device counters keel's devices keep mean (the same name may come from several
/// kinds of device).
fn device_counter_help(counter: &str) -> Option<&'static str> {
    Some(match counter {
        "interrupts" => "Interrupts the device raised.",
        "queue_notifications" => "Queue notifications the driver sent the device.",
        "read_bytes" => "Bytes read from the disk by requests that succeeded.",
        "write_bytes" => "Bytes written to the disk by requests that succeeded.",
        "read_ops" => "Disk read requests.",
        "write_ops" => "Disk write requests.",
        "flush_ops" => "Disk flush requests.",
        "discard_ops" => "Disk discard requests.",
        "write_zeroes_ops" => "Disk write-zeroes requests.",
        "errors" => "Requests that failed.",
        "rate_limited" => "Times the rate limiter held requests back.",
        "rx_bytes" => "Payload bytes delivered to the guest (frames or stream data).",
        "tx_bytes" => "Payload bytes the guest sent (frames or stream data).",
        "rx_packets" => "Frames or packets delivered to the guest.",
        "tx_packets" => "Frames or packets the guest sent.",
        "rx_dropped" => "Received frames dropped (too large, or offloads the guest refused).",
        "tx_dropped" => "Frames the guest sent that were malformed and dropped.",
        "tx_errors" => "Frames the host network device refused.",
        "connections" => "Stream connections opened, by the guest or the host.",
        "bytes" => "Random bytes given to the guest.",
        "requests" => "Requests for random bytes served.",
        "inflated_pages" => "4 KiB pages the guest put in the balloon.",
        "deflated_pages" => "4 KiB pages the guest took back from the balloon.",
        "reported_bytes" => "Bytes of free memory the guest reported and the host reclaimed.",
        "stats_updates" => "Memory statistics updates the guest sent.",
        _ => return None,
    })
}

struct Out(String);

/// The samples of one family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl Out {
    fn family(&mut self, name: &str, kind: Kind, help: &str, f: impl FnOnce(&mut Family<'_>)) {
        debug_assert!(kind == Kind::Gauge || name.ends_with("_total"));
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        f(&mut Family { out: &mut self.0, name });
    }
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: Value) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = match value {
            Value::Int(n) => writeln!(self.out, " {n}"),
            Value::Float(x) if x.is_nan() => writeln!(self.out, " NaN"),
            Value::Float(x) if x.is_infinite() => {
                writeln!(self.out, " {}Inf", if x > 0.0 { "+" } else { "-" })
            }
            Value::Float(x) => writeln!(self.out, " {x}"),
        };
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `s` with every character a metric name can't hold turned into `_`.
fn metric_name_part(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::super::{MemoryMetrics, VcpuExits, VcpuMetrics};
    use super::*;

    /// Metrics with a value in every field.
    pub fn sample() -> Metrics {
        let cpu = |id: u32| VcpuMetrics {
            id,
            instructions: 123_456_789_012 + id as u64,
            exits: VcpuExits { sbi: 3, mmio: 9000, wfi: 17, interrupts: 41, exceptions: 555 },
            interrupts_taken: 40,
            sbi_calls: [("time".to_string(), 2), ("hsm".to_string(), 1)].into(),
            tlb_flushes: 8,
            tlb_address_flushes: 80,
            slept_ns: 1_500_000_000,
            blocks_decoded: 1234,
            page_walks: 4321,
            code_pages_invalidated: 6,
            blocks_translated: 77,
            translated_bytes: 65536,
            translate_ns: 2_500_000_000,
            translation_flushes: 2,
            blocks_chained: 60,
            native_exits: 900,
        };
        let counters = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
        };
        Metrics {
            vcpus: vec![cpu(0), cpu(1)],
            devices: [
                ("vda".to_string(), counters(&[("read_bytes", 1 << 20), ("read_ops", 16)])),
                ("vdb".to_string(), counters(&[("read_bytes", 7), ("write_bytes", 512)])),
                ("net0".to_string(), counters(&[("rx_bytes", 99), ("interrupts", 5)])),
            ]
            .into(),
            memory: MemoryMetrics { guest_bytes: 256 << 20, rss_bytes: 77 << 20 },
            uptime_s: 12.5,
        }
    }

    /// One parsed sample: metric name, labels, value.
    type Sample = (String, BTreeMap<String, String>, f64);

    /// A checker for the text format, strict about what keel must produce: every family has
    /// HELP then TYPE before its samples, its samples are together, names are valid, counters
    /// end in `_total`, label values are properly quoted and escaped, values are numbers.
    fn parse(text: &str) -> Vec<Sample> {
        fn valid_name(n: &str) -> bool {
            let mut cs = n.chars();
            cs.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        }
        assert!(text.ends_with('\n'), "the last line ends with a newline");
        let mut samples = Vec::new();
        let mut families_done = HashSet::new();
        let mut current: Option<(String, String)> = None; // (name, type)
        let mut pending_help: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _help) = rest.split_once(' ').expect("HELP has a name and a text");
                assert!(valid_name(name), "{line}");
                if let Some((done, _)) = current.take() {
                    families_done.insert(done);
                }
                assert!(!families_done.contains(name), "family {name} appears twice");
                pending_help = Some(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a name and a type");
                assert_eq!(pending_help.take().as_deref(), Some(name), "HELP before TYPE");
                assert!(["counter", "gauge"].contains(&kind), "{line}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name} ends in _total");
                }
                current = Some((name.to_string(), kind.to_string()));
            } else {
                assert!(!line.starts_with('#') && !line.is_empty(), "stray line {line:?}");
                let (name, labels, value) = parse_sample(line);
                let (family, _) = current.as_ref().expect("a sample after its TYPE line");
                assert_eq!(&name, family, "sample outside its family: {line}");
                samples.push((name, labels, value));
            }
        }
        samples
    }

    fn parse_sample(line: &str) -> Sample {
        let end = line.find(['{', ' ']).expect("a name then labels or a value");
        let name = line[..end].to_string();
        let mut rest = &line[end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let (key, r) = rest.split_once("=\"").expect("label=\"value\"");
                assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                let mut value = String::new();
                let mut chars = r.char_indices();
                let close = loop {
                    match chars.next().expect("closing quote") {
                        (_, '\\') => match chars.next().expect("escape").1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => panic!("bad escape \\{c} in {line}"),
                        },
                        (i, '"') => break i,
                        (_, '\n') => panic!("raw newline in a label value"),
                        (_, c) => value.push(c),
                    }
                };
                assert!(labels.insert(key.to_string(), value).is_none(), "label twice");
                rest = &r[close + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value = rest.strip_prefix(' ').expect("one space before the value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        (name, labels, value)
    }

    fn find(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> =
            labels.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect();
        let hits: Vec<f64> =
            samples.iter().filter(|s| s.0 == name && s.1 == want).map(|s| s.2).collect();
        assert_eq!(hits.len(), 1, "{name} {labels:?} once");
        hits[0]
    }

    #[test]
    fn output_parses_and_matches_the_struct() {
        let m = sample();
        let text = to_prometheus(&m);
        let s = parse(&text);
        assert_eq!(find(&s, "keel_uptime_seconds", &[]), 12.5);
        assert_eq!(find(&s, "keel_memory_guest_bytes", &[]), (256u64 << 20) as f64);
        assert_eq!(find(&s, "keel_memory_rss_bytes", &[]), (77u64 << 20) as f64);
        for c in &m.vcpus {
            let id = c.id.to_string();
            let v = [("vcpu", id.as_str())];
            assert_eq!(find(&s, "keel_vcpu_instructions_total", &v), c.instructions as f64);
            assert_eq!(find(&s, "keel_vcpu_interrupts_taken_total", &v), 40.0);
            assert_eq!(find(&s, "keel_vcpu_sleep_seconds_total", &v), 1.5);
            assert_eq!(find(&s, "keel_vcpu_page_walks_total", &v), 4321.0);
            assert_eq!(find(&s, "keel_vcpu_blocks_translated_total", &v), 77.0);
            assert_eq!(find(&s, "keel_vcpu_translated_bytes_total", &v), 65536.0);
            assert_eq!(find(&s, "keel_vcpu_translate_seconds_total", &v), 2.5);
            assert_eq!(find(&s, "keel_vcpu_translation_flushes_total", &v), 2.0);
            assert_eq!(find(&s, "keel_vcpu_blocks_chained_total", &v), 60.0);
            assert_eq!(find(&s, "keel_vcpu_native_exits_total", &v), 900.0);
            let exit =
                |cause| find(&s, "keel_vcpu_exits_total", &[("vcpu", &id), ("cause", cause)]);
            assert_eq!(exit("sbi"), 3.0);
            assert_eq!(exit("mmio"), 9000.0);
            assert_eq!(exit("wfi"), 17.0);
            assert_eq!(exit("interrupts"), 41.0);
            assert_eq!(exit("exceptions"), 555.0);
            let sbi =
                |ext| find(&s, "keel_vcpu_sbi_calls_total", &[("vcpu", &id), ("extension", ext)]);
            assert_eq!(sbi("time"), 2.0);
            assert_eq!(sbi("hsm"), 1.0);
        }
        let dev = |name, device| find(&s, name, &[("device", device)]);
        assert_eq!(dev("keel_device_read_bytes_total", "vda"), (1u64 << 20) as f64);
        assert_eq!(dev("keel_device_read_bytes_total", "vdb"), 7.0);
        assert_eq!(dev("keel_device_read_ops_total", "vda"), 16.0);
        assert_eq!(dev("keel_device_write_bytes_total", "vdb"), 512.0);
        assert_eq!(dev("keel_device_rx_bytes_total", "net0"), 99.0);
        assert_eq!(dev("keel_device_interrupts_total", "net0"), 5.0);
        // Every number in the struct is there, and nothing else.
        let expected = 3 + m.vcpus.len() * (14 + 5 + 2) + 6;
        assert_eq!(s.len(), expected, "{text}");
    }

    #[test]
    fn exact_text_of_a_family() {
        let text = to_prometheus(&sample());
        assert!(text.starts_with(
            "# HELP keel_uptime_seconds Seconds since the VM started.\n\
             # TYPE keel_uptime_seconds gauge\n\
             keel_uptime_seconds 12.5\n"
        ));
        assert!(text.contains(
            "# TYPE keel_vcpu_exits_total counter\n\
             keel_vcpu_exits_total{vcpu=\"0\",cause=\"sbi\"} 3\n"
        ));
        assert!(text.contains(
            "# HELP keel_device_read_ops_total Disk read requests.\n\
             # TYPE keel_device_read_ops_total counter\n\
             keel_device_read_ops_total{device=\"vda\"} 16\n"
        ));
    }

    #[test]
    fn label_values_and_names_are_escaped() {
        let mut m = sample();
        let odd = "a\"b\\c\nd";
        m.devices.insert(odd.to_string(), [("odd-counter.x".to_string(), 1)].into());
        m.uptime_s = f64::INFINITY;
        let text = to_prometheus(&m);
        assert!(text.contains("{device=\"a\\\"b\\\\c\\nd\"} 1\n"), "{text}");
        let s = parse(&text);
        assert_eq!(find(&s, "keel_device_odd_counter_x_total", &[("device", odd)]), 1.0);
        assert_eq!(find(&s, "keel_uptime_seconds", &[]), f64::INFINITY);
    }
}
