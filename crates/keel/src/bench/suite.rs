//! `keel bench suite`: small CPU-bound C programs (tests/bench/*.c) run inside the guest, under
//! keel and under QEMU, each timing its own work by the guest clock. Boot time stays out of
//! the figures, so they compare the CPU models on kinds of work (compression, an interpreter
//! loop, floating point, pointer chasing, system calls) rather than on one hashing loop.
//!
//! The programs are built at bench time with Debian's RISC-V cross compiler, statically, and
//! added to the default initramfs as /bench/NAME by appending a second newc archive (Linux
//! unpacks concatenated archives in order). keel and QEMU boot the same kernel, initrd and
//! command line. Every program prints a checksum of its results: a CPU model that computes
//! something else than QEMU does fails the bench instead of being timed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use keel_guest::GuestImage;

use super::{median, run_to_success, tail, which, Scratch, MEMORY_MIB, QEMU};
use crate::run::DEFAULT_CMDLINE;

/// The cross compiler; Debian's gcc-riscv64-linux-gnu package.
const CC: &str = "riscv64-linux-gnu-gcc";

/// One guest program of the suite. The sources are built into keel, so the bench also runs
/// away from a checkout.
struct Program {
    name: &'static str,
    source: &'static str,
}

const PROGRAMS: &[Program] = &[
    Program { name: "compress", source: include_str!("../../../../tests/bench/compress.c") },
    Program { name: "interp", source: include_str!("../../../../tests/bench/interp.c") },
    Program { name: "fp", source: include_str!("../../../../tests/bench/fp.c") },
    Program { name: "pointer", source: include_str!("../../../../tests/bench/pointer.c") },
    Program { name: "syscall", source: include_str!("../../../../tests/bench/syscall.c") },
];

#[derive(Debug, thiserror::Error, PartialEq)]
enum SuiteError {
    #[error("unknown program {name:?} in --only (the suite has: {known})")]
    UnknownProgram { name: String, known: String },
    #[error("{0} not found in PATH: install Debian's gcc-riscv64-linux-gnu (and libc6-dev-riscv64-cross for static builds)")]
    NoCompiler(&'static str),
    #[error(
        "{program}: {engine} printed checksum {got:?}, but {reference} printed {expected:?}: \
         one of the CPU models computes wrong results"
    )]
    ChecksumMismatch {
        program: String,
        engine: String,
        got: String,
        reference: String,
        expected: String,
    },
}

/// What one run of a program printed: its `checksum ...` line (the words after `checksum`)
/// and the seconds of its `elapsed` line.
#[derive(Debug, PartialEq)]
struct Outcome {
    checksum: String,
    seconds: f64,
}

/// Reads a program's `checksum ...` and `elapsed SECONDS` lines from the guest's output
/// (QEMU's also holds OpenSBI's banner, and serial lines end in \r\n).
fn parse_outcome(out: &str) -> Result<Outcome> {
    let find = |key: &str| out.lines().find_map(|l| l.trim().strip_prefix(key).map(str::trim));
    let checksum = find("checksum ").context("no `checksum` line")?;
    let elapsed = find("elapsed ").context("no `elapsed` line")?;
    let seconds: f64 =
        elapsed.parse().with_context(|| format!("malformed `elapsed` line: {elapsed}"))?;
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("implausible `elapsed` figure: {elapsed}");
    }
    Ok(Outcome { checksum: checksum.to_string(), seconds })
}

/// Holds every run of `program` to the checksum of its first run: `reference` is None before
/// it, then (engine, checksum) of that run.
fn check_checksum(
    program: &str,
    reference: &mut Option<(String, String)>,
    engine: &str,
    got: &str,
) -> Result<(), SuiteError> {
    match reference {
        None => {
            *reference = Some((engine.to_string(), got.to_string()));
            Ok(())
        }
        Some((first, expected)) if expected != got => Err(SuiteError::ChecksumMismatch {
            program: program.to_string(),
            engine: engine.to_string(),
            got: got.to_string(),
            reference: first.clone(),
            expected: expected.clone(),
        }),
        Some(_) => Ok(()),
    }
}

/// The geometric mean: the average of ratios that treats 2x faster and 2x slower alike.
fn geometric_mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

/// The programs `--only` names, in the suite's order; all of them when it names none.
fn select(only: &[String]) -> Result<Vec<&'static Program>, SuiteError> {
    for name in only {
        if !PROGRAMS.iter().any(|p| p.name == name) {
            let known: Vec<&str> = PROGRAMS.iter().map(|p| p.name).collect();
            return Err(SuiteError::UnknownProgram { name: name.clone(), known: known.join(", ") });
        }
    }
    Ok(PROGRAMS.iter().filter(|p| only.is_empty() || only.iter().any(|n| n == p.name)).collect())
}

/// Compiles `program` into `dir` with the cross compiler; returns the binary's path.
fn compile(dir: &Path, program: &Program) -> Result<PathBuf> {
    let src = dir.join(format!("{}.c", program.name));
    let bin = dir.join(program.name);
    std::fs::write(&src, program.source)
        .with_context(|| format!("cannot write {}", src.display()))?;
    let out = Command::new(CC)
        .args(["-O2", "-static", "-Wall", "-o"])
        .arg(&bin)
        .arg(&src)
        .arg("-lm")
        .output()
        .with_context(|| format!("cannot start {CC}"))?;
    if !out.status.success() {
        bail!(
            "compiling {}.c failed ({}; a static build needs Debian's libc6-dev-riscv64-cross):\n{}",
            program.name,
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(bin)
}

/// One entry of a newc ("070701") cpio archive: a 110-byte ASCII header, the name with its
/// NUL padded to 4 bytes, the data padded to 4 bytes (Linux's buffer-format.rst). The offsets
/// count from the start of `out`, which starts 4-aligned. (keel_guest's writer is private to
/// that crate.)
fn append_newc(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    // nlink 1 but for directories: the kernel takes nlink >= 2 on a file for a hard link.
    let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
    let fields =
        [ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The default initrd followed by an archive holding /bench/NAME for each binary.
fn suite_initrd(base: &[u8], binaries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = base.to_vec();
    // The next archive must start 4-byte aligned; the kernel skips zero padding.
    out.resize(out.len().next_multiple_of(4), 0);
    // Inode numbers apart from the first archive's (which count up from 1).
    let mut ino = 0x7000_0000;
    append_newc(&mut out, ino, "bench", 0o040755, &[]);
    for (name, data) in binaries {
        ino += 1;
        append_newc(&mut out, ino, &format!("bench/{name}"), 0o100755, data);
    }
    append_newc(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

/// A column of the table: keel in one configuration, or QEMU.
struct Engine {
    label: String,
    exe: PathBuf,
    /// Everything but the kernel command line, which differs per program.
    args: Vec<String>,
    /// The option that takes the kernel command line.
    cmdline_flag: &'static str,
}

/// Runs the suite on `image` (the caller checked that QEMU is there).
pub fn bench_suite(image: &GuestImage, runs: usize, only: &[String]) -> Result<ExitCode> {
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let programs = select(only)?;
    which(CC).map_err(|_| SuiteError::NoCompiler(CC))?;

    let dir = Scratch::new("suite")?;
    let mut binaries = Vec::new();
    for p in &programs {
        let bin = compile(&dir.0, p)?;
        binaries.push((p.name, std::fs::read(&bin)?));
    }
    let base = std::fs::read(&image.initrd)
        .with_context(|| format!("cannot read {}", image.initrd.display()))?;
    let initrd = dir.0.join("initrd.img");
    std::fs::write(&initrd, suite_initrd(&base, &binaries))
        .with_context(|| format!("cannot write {}", initrd.display()))?;

    let kernel = image.kernel.to_string_lossy().into_owned();
    let initrd = initrd.to_string_lossy().into_owned();
    let memory = MEMORY_MIB.to_string();
    let keel_exe = std::env::current_exe().context("cannot find keel's own executable")?;
    let mut engines: Vec<Engine> = super::KEEL_ENGINES
        .iter()
        .map(|(label, extra)| Engine {
            label: label.to_string(),
            exe: keel_exe.clone(),
            args: ["run"]
                .iter()
                .chain(extra.iter())
                .chain(&["--kernel", &kernel, "--initrd", &initrd, "--memory", &memory])
                .chain(&["--vcpus", "1"])
                .map(|s| s.to_string())
                .collect(),
            cmdline_flag: "--cmdline",
        })
        .collect();
    engines.push(Engine {
        label: "qemu".into(),
        exe: QEMU.into(),
        args: ["-M", "virt", "-m", &memory, "-smp", "1", "-nographic", "-no-reboot"]
            .iter()
            .chain(&["-kernel", &kernel, "-initrd", &initrd])
            .map(|s| s.to_string())
            .collect(),
        cmdline_flag: "-append",
    });
    let qemu = engines.len() - 1;

    println!(
        "guest: {} (kernel {}), {MEMORY_MIB} MiB, 1 vCPU",
        image.kernel.display(),
        image.kernel_version
    );
    println!("programs: {CC} -O2 -static, run as /bench/NAME; times are the guest's own clock");
    // medians[program][engine]
    let mut medians: Vec<Vec<f64>> = Vec::new();
    for p in &programs {
        let args = vec![format!("/bench/{}", p.name)];
        let cmdline = format!("{DEFAULT_CMDLINE} loglevel=1 {}", keel_guest::command_param(&args));
        let mut times = vec![Vec::new(); engines.len()];
        let mut reference = None;
        // Alternate, so slow drifts of the machine affect every engine alike. QEMU goes first,
        // so its checksum is the one the others are held to.
        for i in 0..runs {
            let mut line = format!("{} run {}:", p.name, i + 1);
            for e in std::iter::once(qemu).chain(0..qemu) {
                let engine = &engines[e];
                let mut cmd = Command::new(&engine.exe);
                cmd.args(&engine.args).args([engine.cmdline_flag, &cmdline]);
                let stdout = run_to_success(&engine.label, &mut cmd)?;
                let outcome = parse_outcome(&stdout).with_context(|| {
                    format!("{} under {}; its output:\n{}", p.name, engine.label, tail(&stdout))
                })?;
                check_checksum(p.name, &mut reference, &engine.label, &outcome.checksum)?;
                line.push_str(&format!(" {} {:.3} s", engine.label, outcome.seconds));
                times[e].push(outcome.seconds);
            }
            println!("{line}");
        }
        medians.push(times.iter_mut().map(|t| median(t)).collect());
    }

    println!();
    // Columns at least as wide as their labels (with two spaces between).
    let width = engines.iter().map(|e| e.label.len() + "/qemu".len() + 2).max().unwrap_or(13);
    print!("{:<10}", "median s");
    for e in &engines {
        print!("{:>width$}", e.label);
    }
    for e in &engines[..qemu] {
        print!("{:>width$}", format!("{}/qemu", e.label));
    }
    println!();
    let mut ratios = vec![Vec::new(); qemu];
    for (p, m) in programs.iter().zip(&medians) {
        print!("{:<10}", p.name);
        for t in m {
            print!("{t:>width$.3}");
        }
        for (k, r) in ratios.iter_mut().enumerate() {
            let ratio = m[k] / m[qemu];
            r.push(ratio);
            print!("{ratio:>width$.2}");
        }
        println!();
    }
    print!("{:<10}{}", "geomean", " ".repeat(width * engines.len()));
    for r in &ratios {
        print!("{:>width$.2}", geometric_mean(r));
    }
    println!();
    println!("checksums: every run of each program printed the same under every engine");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_from_guest_output() {
        let out = "OpenSBI v1.5\r\nchecksum 3d83 8388608\r\nelapsed 1.250000\r\n";
        assert_eq!(
            parse_outcome(out).unwrap(),
            Outcome { checksum: "3d83 8388608".into(), seconds: 1.25 }
        );
        assert!(parse_outcome("elapsed 1.0\n").is_err(), "no checksum");
        assert!(parse_outcome("checksum 1\n").is_err(), "no elapsed");
        assert!(parse_outcome("checksum 1\nelapsed x\n").is_err());
        assert!(parse_outcome("checksum 1\nelapsed 0\n").is_err());
        assert!(parse_outcome("checksum 1\nelapsed NaN\n").is_err());
    }

    #[test]
    fn geometric_mean_of_ratios() {
        assert!((geometric_mean(&[2.0, 8.0]) - 4.0).abs() < 1e-12);
        assert!((geometric_mean(&[0.5, 2.0]) - 1.0).abs() < 1e-12);
        assert!((geometric_mean(&[3.0]) - 3.0).abs() < 1e-12);
        assert!(geometric_mean(&[]).is_nan());
    }

    #[test]
    fn checksums_must_agree() {
        let mut reference = None;
        check_checksum("fp", &mut reference, "keel", "ab 12").unwrap();
        check_checksum("fp", &mut reference, "qemu", "ab 12").unwrap();
        let err = check_checksum("fp", &mut reference, "qemu", "ab 13").unwrap_err();
        assert_eq!(
            err,
            SuiteError::ChecksumMismatch {
                program: "fp".into(),
                engine: "qemu".into(),
                got: "ab 13".into(),
                reference: "keel".into(),
                expected: "ab 12".into(),
            }
        );
        assert!(err.to_string().contains("wrong results"), "{err}");
    }

    #[test]
    fn only_selects_in_suite_order() {
        let names = |only: &[&str]| -> Vec<&str> {
            let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
            select(&only).unwrap().iter().map(|p| p.name).collect()
        };
        assert_eq!(names(&[]), ["compress", "interp", "fp", "pointer", "syscall"]);
        assert_eq!(names(&["syscall", "fp"]), ["fp", "syscall"]);
        let err = select(&["nope".to_string()]).err().unwrap();
        assert!(err.to_string().contains("compress, interp"), "{err}");
    }

    #[test]
    fn appended_archive_is_aligned_newc() {
        let initrd = suite_initrd(b"abcde", &[("fp", b"\x7fELF".to_vec())]);
        assert_eq!(&initrd[..5], b"abcde");
        assert_eq!(&initrd[5..8], [0, 0, 0], "padding to 4 before the second archive");
        assert_eq!(initrd.len() % 4, 0);
        let second = std::str::from_utf8(&initrd[8..8 + 6]).unwrap();
        assert_eq!(second, "070701");
        let text = String::from_utf8_lossy(&initrd);
        assert!(text.contains("bench\0"));
        assert!(text.contains("bench/fp\0"));
        assert!(text.ends_with("TRAILER!!!\0\0\0\0"), "the trailer, its name padded to 4");
        // The file's header: mode 0100755, nlink 1, size 4, namesize 9.
        let at = text.find("bench/fp").unwrap() - 110;
        let header = &text[at..at + 110];
        assert_eq!(&header[14..22], "000081ed");
        assert_eq!(&header[38..46], "00000001");
        assert_eq!(&header[54..62], "00000004");
        assert_eq!(&header[94..102], "00000009");
    }

    #[test]
    fn the_sources_are_the_programs() {
        for p in PROGRAMS {
            assert!(p.source.contains("elapsed %"), "{} prints no elapsed line", p.name);
            assert!(p.source.contains("checksum "), "{} prints no checksum", p.name);
            assert!(p.source.starts_with(&format!("/*\n * {}: ", p.name)), "{}'s header", p.name);
        }
    }
}
