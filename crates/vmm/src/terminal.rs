//! Raw mode for the host terminal while an interactive guest owns it, restored on every way
//! out: normal return, error, panic, and the signals that end a process.

use std::os::fd::AsFd;
use std::sync::Mutex;

use nix::sys::termios::{self, SetArg, Termios};

/// The settings to put back, while raw mode is on.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Raw mode lasts as long as this guard.
pub struct RawMode(());

impl RawMode {
    /// Puts stdin's terminal in raw mode. Fails if stdin is not a terminal.
    pub fn enable() -> nix::Result<RawMode> {
        let stdin = std::io::stdin();
        let original = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = original.clone();
        termios::cfmakeraw(&mut raw);
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(original);
        install_safety_nets();
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as it was, if raw mode is on. Safe to call more than once.
pub fn restore() {
    if let Some(t) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &t);
    }
}

/// A panic hook and a signal thread that restore the terminal before the process dies.
fn install_safety_nets() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
        if let Ok(mut signals) =
            signal_hook::iterator::Signals::new([SIGHUP, SIGINT, SIGQUIT, SIGTERM])
        {
            std::thread::Builder::new()
                .name("keel-signals".into())
                .spawn(move || {
                    if let Some(sig) = signals.forever().next() {
                        restore();
                        eprintln!("\r\nkeel: stopped by signal {sig}");
                        std::process::exit(128 + sig);
                    }
                })
                .ok();
        }
    });
}
