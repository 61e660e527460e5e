//! keel's instruction and privilege tests: every `tests/isa/*.S` program is assembled with
//! Debian's RISC-V cross compiler and run bare-metal (`keel run --firmware none`) on keel's
//! CPU. A program reports through HTIF `tohost`: status 0 passes, N names its first failing
//! check (see tests/isa/README.md). `selftest-fail` must fail with 7, proving failures show.
//! `smp-*` programs run on 4 harts. Every program runs twice: on the interpreter, and on the
//! translator translating every block on first sight.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use wait_timeout::ChildExt;

const CC: &str = "riscv64-linux-gnu-gcc";

fn isa_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/isa")
}

/// The exit status a program must end with.
fn expected_status(name: &str) -> i32 {
    if name == "selftest-fail" {
        7
    } else {
        0
    }
}

fn build(src: &Path, out: &Path) -> Result<(), Failed> {
    let dir = isa_dir();
    let result = Command::new(CC)
        .args([
            "-march=rv64gc_zicsr_zifencei",
            "-mabi=lp64d",
            "-nostdlib",
            "-nostartfiles",
            "-static",
        ])
        .args(["-Wl,--build-id=none", "-T"])
        .arg(dir.join("link.ld"))
        .arg("-I")
        .arg(&dir)
        .arg("-o")
        .arg(out)
        .arg(src)
        .output();
    match result {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("{CC} failed:\n{}", String::from_utf8_lossy(&o.stderr)).into()),
        Err(e) => Err(format!(
            "cannot run {CC} ({e}); install Debian's gcc-riscv64-linux-gnu (the README's test command does)"
        )
        .into()),
    }
}

/// The VM file of each engine: bare metal, and for the translator, every block translated
/// the first time it runs (these programs run most of their code only once).
const ENGINES: [(&str, &str); 2] = [
    ("interp", "firmware = \"none\"\naccel = \"interp\"\n"),
    ("jit", "firmware = \"none\"\naccel = \"jit\"\n[jit]\nthreshold = 0\n"),
];

fn run_one(engine: &str, vm_file: &str, name: &str, src: &Path) -> Result<(), Failed> {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("isa").join(engine);
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let elf = out_dir.join(format!("{name}.elf"));
    build(src, &elf)?;
    let vm = out_dir.join(format!("{name}.toml"));
    std::fs::write(&vm, vm_file).map_err(|e| e.to_string())?;
    // smp-* programs need several harts; 4 is more than this machine has cores, on purpose.
    let vcpus = if name.starts_with("smp-") { "4" } else { "1" };
    let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("run")
        .arg(&vm)
        .args(["--vcpus", vcpus, "--kernel"])
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start keel: {e}"))?;
    let status = match child.wait_timeout(Duration::from_secs(60)).map_err(|e| e.to_string())? {
        Some(s) => s,
        None => {
            let _ = child.kill();
            return Err(format!("{name} did not finish within 60 s").into());
        }
    };
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let want = expected_status(name);
    match status.code() {
        Some(code) if code == want => Ok(()),
        other => Err(format!(
            "{name}: exit status {other:?}, expected {want} (a number names the first failing check in {}.S)\nstdout: {}\nstderr: {}",
            name,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into()),
    }
}

fn main() {
    let args = Arguments::from_args();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(isa_dir())
        .expect("tests/isa exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "S"))
        .collect();
    sources.sort();
    assert!(sources.len() > 20, "the ISA test programs are missing from {}", isa_dir().display());
    let trials = ENGINES
        .iter()
        .flat_map(|&(engine, vm_file)| {
            sources.iter().map(move |src| {
                let name = src.file_stem().unwrap().to_string_lossy().into_owned();
                let src = src.clone();
                Trial::test(format!("{engine}/{name}"), move || {
                    run_one(engine, vm_file, &name, &src)
                })
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
