//! `keel logs NAME [--console] [-f]`: a VM's keel.log (the VMM's own log) or console.log
//! (what the guest printed), optionally followed as it grows.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::time::Duration;

use super::store::VmDir;

/// How often `-f` looks for more.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

pub fn show(vm: &VmDir, console: bool, follow: bool) -> anyhow::Result<()> {
    let path = if console { vm.console_log() } else { vm.keel_log() };
    let mut stdout = io::stdout().lock();
    let mut pos = 0u64;
    loop {
        match File::open(&path) {
            Ok(mut file) => {
                // A file that shrank was started afresh: show it from the top.
                if file.metadata()?.len() < pos {
                    pos = 0;
                }
                file.seek(io::SeekFrom::Start(pos))?;
                match io::copy(&mut file, &mut stdout).and_then(|n| stdout.flush().map(|()| n)) {
                    Ok(n) => pos += n,
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !follow {
                    eprintln!(
                        "keel: VM {} has no {} yet (it has not been started)",
                        vm.name,
                        path.file_name().unwrap_or_default().to_string_lossy()
                    );
                }
            }
            Err(e) => {
                return Err(anyhow::anyhow!("cannot read {}: {e}", path.display()));
            }
        }
        // Following ends with the VM: once its directory is gone there is nothing to wait for.
        if !follow || !vm.path.is_dir() {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_INTERVAL);
    }
}
