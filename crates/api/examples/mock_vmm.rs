//! Serves the tests' mock `VmApi` on a socket, for trying the API by hand or fuzzing it:
//!
//! ```sh
//! cargo run -p keel-api --example mock_vmm -- /tmp/api.sock
//! curl --unix-socket /tmp/api.sock http://localhost/
//! ```
//!
//! It serves until stdin closes (or the process is killed).

#[path = "../tests/common/mock.rs"]
mod mock;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: mock_vmm SOCKET_PATH");
        return ExitCode::from(2);
    };
    let server = match keel_api::serve(&path, Arc::new(mock::MockVm::new())) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("mock_vmm: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("mock_vmm: serving on {}", path.display());
    // Block until stdin reaches EOF; the server runs on its own thread meanwhile.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    server.shutdown();
    ExitCode::SUCCESS
}
