//! The sending side of a live migration (see the module docs of [`super`]).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_machine::Machine;
use keel_memory::{DirtyPages, GuestRam};

use super::protocol::{self, Channel, Commit, Config, Kind, Round, PAGES_PER_FRAME, PAGE_SIZE};
use super::{auth, MigrationError, Progress, Token};
use crate::control::{ControlError, Detached, VmController, VmState};

/// How a migration is to be made.
#[derive(Debug, Clone)]
pub struct Options {
    /// The receiver, `HOST:PORT`.
    pub destination: String,
    pub token: Token,
    /// Bytes per second the pre-copy rounds may send at most (the stop-and-copy is never
    /// held back); `None`: as fast as the network goes.
    pub max_bandwidth: Option<u64>,
    /// Pre-copy stops once the dirty pages left would take less than this to send.
    pub downtime_target: Duration,
    /// Pre-copy rounds at most (round 0 included): a guest that dirties memory faster than
    /// it can be sent is stopped after these.
    pub max_rounds: u32,
    /// How long to wait for the receiver at any step.
    pub timeout: Duration,
}

impl Options {
    pub fn new(destination: String, token: Token) -> Options {
        Options {
            destination,
            token,
            max_bandwidth: None,
            downtime_target: Duration::from_millis(50),
            max_rounds: 30,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What a migration did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Rounds sent, the stop-and-copy included.
    pub rounds: u32,
    /// Bytes of guest memory sent (zero pages count nothing).
    pub memory_bytes: u64,
    /// Bytes sent in all.
    pub sent_bytes: u64,
    pub total: Duration,
    /// From the pause on this side to the receiver's word that the guest runs there.
    pub downtime: Duration,
    /// False when the receiver's `Done` never came but it holds the disks, so it runs the
    /// guest (see the module docs).
    pub confirmed: bool,
}

/// Migrates the VM `controller` runs (running or paused) to `opts.destination`. `vm_file`
/// describes its machine (see [`crate::VmFile::describing`]). On success the VM has ended
/// here ([`crate::Outcome::Migrated`]); on failure it runs here as before (or stays paused,
/// if it was).
pub fn migrate(
    controller: &VmController,
    vm_file: String,
    opts: &Options,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report, MigrationError> {
    let started = Instant::now();
    let was_running = match controller.state() {
        VmState::Running => true,
        VmState::Paused => false,
        other => {
            return Err(ControlError::WrongState { action: "migrate", state: other.name() }.into())
        }
    };
    let ram = controller
        .machine()
        .ok_or(ControlError::WrongState { action: "migrate", state: "rebooting" })?
        .ram
        .clone();
    let mut state = Progress { phase: "connecting", ram_bytes: ram.size(), ..Progress::default() };
    progress(&state);
    let mut ch = connect(&opts.destination, opts.timeout)?;
    auth::as_sender(&mut ch, &opts.token)?;
    ch.send_value(Kind::Config, &Config { vm_file, ram_size: ram.size() })?;
    ch.flush()?;
    ch.expect(Kind::ConfigOk)?;

    let mut pages = PageSender::new(ch, opts.max_bandwidth);
    ram.start_dirty_tracking();
    let last = match precopy(&ram, &mut pages, opts, &mut state, progress) {
        Ok(dirty) => dirty,
        Err(e) => {
            ram.stop_dirty_tracking();
            let _ = pages.ch.send_error(&format!("the sender gave up: {e}"));
            return Err(e);
        }
    };

    // Stop-and-copy: from here the guest stands still until it runs on the receiver.
    state.phase = "stop-and-copy";
    progress(&state);
    let paused_at = Instant::now();
    let detached = match controller.pause().and_then(|()| controller.detach()) {
        Ok(d) => d,
        Err(e) => {
            ram.stop_dirty_tracking();
            if was_running {
                let _ = controller.resume();
            }
            let _ = pages.ch.send_error("the sender gave up: it could not stop the VM");
            return Err(e.into());
        }
    };
    pages.max_bandwidth = None;
    let outcome = hand_over(&detached, &ram, last, was_running, &mut pages, &mut state, progress);
    let rounds = state.round + 1;
    match outcome {
        Ok(()) => {
            let downtime = paused_at.elapsed();
            controller.finish_migrated()?;
            state.phase = "done";
            progress(&state);
            Ok(Report {
                rounds,
                memory_bytes: pages.memory_bytes,
                sent_bytes: pages.ch.sent,
                total: started.elapsed(),
                downtime,
                confirmed: true,
            })
        }
        Err((e, committed)) => {
            // The receiver must see the connection end before the disks can come back.
            let sent_bytes = pages.ch.sent;
            let _ = pages.ch.send_error(&format!("the sender gave up: {e}"));
            let _ = pages.ch.stream().shutdown(std::net::Shutdown::Both);
            drop(pages);
            match take_back(controller, detached, was_running, committed)? {
                TakenBack::Here => Err(e),
                TakenBack::ReceiverRuns => Ok(Report {
                    rounds,
                    memory_bytes: 0,
                    sent_bytes,
                    total: started.elapsed(),
                    downtime: paused_at.elapsed(),
                    confirmed: false,
                }),
            }
        }
    }
}

fn connect(destination: &str, timeout: Duration) -> Result<Channel, MigrationError> {
    let addrs: Vec<SocketAddr> = destination
        .to_socket_addrs()
        .map_err(|e| MigrationError::Refuse(format!("{destination}: {e}")))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                let set = |s: &TcpStream| {
                    s.set_read_timeout(Some(timeout))?;
                    s.set_write_timeout(Some(timeout))
                };
                set(&stream).map_err(|e| MigrationError::from_io("connection", e))?;
                return Channel::open(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => MigrationError::Refuse(format!("cannot connect to {destination}: {e}")),
        None => MigrationError::Refuse(format!("{destination}: no address")),
    })
}

/// The pre-copy rounds; returns the pages dirtied during the last one, for the
/// stop-and-copy.
fn precopy(
    ram: &GuestRam,
    pages: &mut PageSender,
    opts: &Options,
    state: &mut Progress,
    progress: &mut dyn FnMut(&Progress),
) -> Result<DirtyPages, MigrationError> {
    let total_pages = ram.size() / PAGE_SIZE as u64;
    let mut all = DirtyPages::new(ram.base(), total_pages);
    (0..total_pages).for_each(|p| all.insert(p));
    state.phase = "pre-copy";
    let (mut busy, mut sent) = (Duration::ZERO, 0u64);
    let mut round_pages = all;
    loop {
        let t = Instant::now();
        let before = pages.ch.sent;
        pages.round(ram, state.round, &round_pages, false, state, progress)?;
        busy += t.elapsed();
        sent += pages.ch.sent - before;
        let dirty = ram.take_dirty_pages();
        // The rate this connection has shown so far (scanning and zero pages included).
        let rate = sent as f64 / busy.as_secs_f64().max(1e-6);
        let eta = Duration::from_secs_f64(dirty.len() as f64 * PAGE_SIZE as f64 / rate.max(1.0));
        state.dirty_pages = dirty.len();
        progress(state);
        if eta <= opts.downtime_target || state.round + 1 >= opts.max_rounds.max(1) {
            return Ok(dirty);
        }
        state.round += 1;
        round_pages = dirty;
    }
}

/// The stop-and-copy and the hand-over; the error says whether `Commit` had been sent.
fn hand_over(
    detached: &Detached,
    ram: &Arc<GuestRam>,
    mut last: DirtyPages,
    was_running: bool,
    pages: &mut PageSender,
    state: &mut Progress,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), (MigrationError, bool)> {
    let fail = |e| (e, false);
    if !Arc::ptr_eq(&detached.ram, ram) {
        return Err(fail(MigrationError::Refuse(
            "the guest rebooted during the migration; try again".into(),
        )));
    }
    // Nothing writes guest RAM any more: the machine is gone.
    last.union_with(&ram.take_dirty_pages());
    state.round += 1;
    pages.round(ram, state.round, &last, true, state, progress).map_err(fail)?;
    let machine = postcard::to_stdvec(&detached.state)
        .map_err(|e| fail(MigrationError::Malformed(format!("cannot encode the state: {e}"))))?;
    pages.ch.send(Kind::State, &machine).map_err(fail)?;
    pages.ch.flush().map_err(fail)?;
    state.phase = "handing over";
    state.dirty_pages = 0;
    progress(state);
    pages.ch.expect(Kind::Ready).map_err(fail)?;
    let commit = pages
        .ch
        .send_value(Kind::Commit, &Commit { resume: was_running })
        .and_then(|()| pages.ch.flush());
    // From here on the receiver may run the guest.
    commit.map_err(|e| (e, true))?;
    pages.ch.expect(Kind::Done).map_err(|e| (e, true))?;
    Ok(())
}

enum TakenBack {
    /// The VM runs here again.
    Here,
    /// The receiver holds the disks: it runs the guest, and the VM here has ended.
    ReceiverRuns,
}

/// After a failed hand-over: a machine rebuilt from the detached RAM and state takes over
/// (it reopens the disks, which a receiver that gave up has released). If `committed` and
/// the disks stay taken, the receiver runs the guest: the VM here ends as migrated.
fn take_back(
    controller: &VmController,
    detached: Detached,
    was_running: bool,
    committed: bool,
) -> Result<TakenBack, MigrationError> {
    let wait = if committed { Duration::from_secs(10) } else { Duration::from_secs(60) };
    let deadline = Instant::now() + wait;
    detached.ram.stop_dirty_tracking();
    loop {
        let sink = controller.console().sink();
        match Machine::restore(controller.config(), sink, detached.ram.clone(), &detached.state) {
            Ok(machine) => {
                controller.reattach(machine, !was_running)?;
                eprintln!(
                    "keel: the hand-over failed; the machine was rebuilt here from the RAM and \
                     state kept for it"
                );
                return Ok(TakenBack::Here);
            }
            Err(e) if Instant::now() >= deadline => {
                if committed {
                    controller.finish_migrated()?;
                    return Ok(TakenBack::ReceiverRuns);
                }
                // The VM cannot run anywhere: its disks are held by something else.
                let _ = controller.kill();
                return Err(MigrationError::Refuse(format!(
                    "the migration failed and the VM cannot be taken back: {e}"
                )));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Sends pages in `Pages` frames, keeping to a bandwidth limit.
struct PageSender {
    ch: Channel,
    max_bandwidth: Option<u64>,
    /// Bytes of guest memory sent.
    memory_bytes: u64,
    buf: Vec<u8>,
    frame: Vec<u8>,
    limit_from: (Instant, u64),
}

impl PageSender {
    fn new(ch: Channel, max_bandwidth: Option<u64>) -> PageSender {
        let sent = ch.sent;
        PageSender {
            ch,
            max_bandwidth,
            memory_bytes: 0,
            buf: Vec::new(),
            frame: Vec::with_capacity(PAGES_PER_FRAME * protocol::PAGE_ENTRY + 8),
            limit_from: (Instant::now(), sent),
        }
    }

    /// Sends one round: a `Round` frame, then `set`'s pages, read from `ram` run by run
    /// (the guest may be running: a page it changes meanwhile is dirty again and goes in the
    /// next round). In round 0 zero pages are skipped (the receiver's RAM starts zeroed).
    fn round(
        &mut self,
        ram: &GuestRam,
        round: u32,
        set: &DirtyPages,
        last: bool,
        state: &mut Progress,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(), MigrationError> {
        let count = set.len();
        self.ch.send_value(Kind::Round, &Round { round, pages: count, last })?;
        state.round = round;
        state.dirty_pages = count;
        let mut last_report = Instant::now();
        let mut entries = 0;
        self.frame.clear();
        for (first, n) in set.runs() {
            let mut page = first;
            while page < first + n {
                let chunk = (first + n - page).min(64);
                let len = chunk as usize * PAGE_SIZE;
                let mut buf = std::mem::take(&mut self.buf);
                buf.resize(len, 0);
                ram.read_slice(ram.base() + page * PAGE_SIZE as u64, &mut buf)
                    .map_err(|e| MigrationError::Refuse(format!("cannot read guest RAM: {e}")))?;
                for (i, data) in buf.chunks_exact(PAGE_SIZE).enumerate() {
                    let zero = protocol::is_zero(data);
                    if !(zero && round == 0) {
                        protocol::put_page(
                            &mut self.frame,
                            page + i as u64,
                            (!zero).then_some(data),
                        );
                        entries += 1;
                        if !zero {
                            self.memory_bytes += PAGE_SIZE as u64;
                        }
                    }
                    if entries == PAGES_PER_FRAME {
                        self.send_frame()?;
                        entries = 0;
                    }
                }
                self.buf = buf;
                page += chunk;
                state.dirty_pages -= chunk;
                if last_report.elapsed() >= Duration::from_millis(100) {
                    state.memory_bytes = self.memory_bytes;
                    progress(state);
                    last_report = Instant::now();
                }
            }
        }
        if entries > 0 {
            self.send_frame()?;
        }
        self.ch.flush()?;
        state.memory_bytes = self.memory_bytes;
        progress(state);
        Ok(())
    }

    fn send_frame(&mut self) -> Result<(), MigrationError> {
        self.ch.send(Kind::Pages, &self.frame)?;
        self.frame.clear();
        if let Some(limit) = self.max_bandwidth.filter(|&l| l > 0) {
            let (since, base) = self.limit_from;
            let due = Duration::from_secs_f64((self.ch.sent - base) as f64 / limit as f64);
            if let Some(wait) = due.checked_sub(since.elapsed()) {
                self.ch.flush()?;
                std::thread::sleep(wait);
            }
        }
        Ok(())
    }
}
