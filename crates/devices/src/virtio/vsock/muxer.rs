//! The host side of the vsock device, with Firecracker's "hybrid vsock" conventions so tools
//! written for Firecracker work unchanged:
//!
//! - host-initiated: a program connects to the Unix socket `uds_path` and writes
//!   `CONNECT <port>\n`; keel opens a stream to the guest's `port` from a fresh host port and,
//!   once the guest accepts, answers `OK <host port>\n`; then bytes flow both ways. A refusal,
//!   a timeout or a malformed line closes the Unix connection.
//! - guest-initiated: a guest connect to CID 2 port P becomes a connect to the Unix socket
//!   `<uds_path>_P`; the guest gets RESPONSE if a program listens there, RST otherwise.
//!
//! The muxer routes guest packets to connections by (host port, guest port), and picks which
//! connection fills each rx buffer the guest offers, round-robin. All sockets are
//! non-blocking; the event loop says when they are ready.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use keel_memory::GuestRam;
use virtio_queue::Queue;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use super::connection::{Connection, State, Verdict, CONN_BUF_SIZE};
use super::packet::{op, read_tx, write_rx, Header, Segments, HDR_SIZE, HOST_CID, TYPE_STREAM};
use super::sys;
use super::VsockMetrics;
use crate::event::{EventHandler, EventLoop};
use crate::virtio::drain_queue;
use crate::DeviceError;

/// Event-loop tokens: the listener, the timer, then one per host connection.
const TOKEN_LISTENER: u64 = 0;
const TOKEN_TIMER: u64 = 1;
const FIRST_CONN_TOKEN: u64 = 2;

/// Most connections (and pending `CONNECT` handshakes) at once; more are refused.
const MAX_CONNECTIONS: usize = 1024;
/// Most RSTs waiting for an rx buffer before the tx queue is left alone until the guest
/// takes some (each tx packet can cause at most one).
const MAX_REPLIES: usize = 256;
/// The most payload one rx packet carries (Linux never sends or expects more either).
const MAX_PKT_PAYLOAD: usize = 64 * 1024;
/// Host ports for host-initiated connections come from here up (as in Firecracker).
const FIRST_HOST_PORT: u32 = 1 << 30;
/// The longest `CONNECT <port>` line accepted.
const MAX_CONNECT_LINE: usize = 32;
/// How long the guest has to accept a host-initiated connection.
#[cfg(not(test))]
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the guest has to answer our full SHUTDOWN with RST before we reset it.
#[cfg(not(test))]
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
// The unit tests wait for these for real.
#[cfg(test)]
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
#[cfg(test)]
const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(100);

/// A file descriptor registered with the event loop; dropping it unregisters.
pub struct Registration {
    events: Arc<EventLoop>,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.events.remove(self.key);
    }
}

/// A host program that connected to `uds_path` and has not finished its `CONNECT` line.
struct Handshake {
    // Before `stream`, as in `Connection`: unregistered before the fd closes.
    reg: Registration,
    stream: UnixStream,
    line: Vec<u8>,
}

pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    /// The socket file we created (device and inode), so only that one is removed at the end.
    socket_file: (u64, u64),
    timer: TimerFd,
    timer_due: Option<Instant>,
    /// Set while the device is active.
    events: Option<(Arc<EventLoop>, Weak<dyn EventHandler>)>,
    listener_reg: Option<Registration>,
    timer_reg: Option<Registration>,
    handshakes: HashMap<u64, Handshake>,
    conns: HashMap<u64, Connection>,
    /// (host port, guest port) → connection token.
    by_port: HashMap<(u32, u32), u64>,
    /// Connections that may have a packet for the guest, in turn.
    ready: VecDeque<u64>,
    /// RSTs for the guest that belong to no (live) connection.
    replies: VecDeque<Header>,
    tx_stalled: bool,
    /// What went through, for the VMM's metrics.
    pub metrics: Arc<VsockMetrics>,
    next_token: u64,
    next_port: u32,
    scratch: Vec<u8>,
}

fn setup_err(path: &Path, what: impl std::fmt::Display) -> DeviceError {
    DeviceError::Setup(format!("vsock socket {}: {what}", path.display()))
}

/// Listens on `path`, replacing a stale socket file that nobody listens on any more.
fn listen(path: &Path) -> Result<(UnixListener, (u64, u64)), DeviceError> {
    if path.as_os_str().len() > sys::MAX_SOCKET_PATH {
        return Err(setup_err(
            path,
            format!(
                "the path is longer than the {} bytes a Unix socket path may have; use a shorter uds path",
                sys::MAX_SOCKET_PATH
            ),
        ));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(setup_err(
            path,
            format!("the directory {} does not exist; create it first", parent.display()),
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match sys::connect_nonblocking(path) {
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                std::fs::remove_file(path)
                    .map_err(|e| setup_err(path, format!("cannot remove the stale socket: {e}")))?;
            }
            _ => {
                return Err(setup_err(
                    path,
                    "another program (another keel?) is listening on it; stop it or use another uds path",
                ))
            }
        },
        Ok(_) => {
            return Err(setup_err(
                path,
                "a file that is not a socket is in the way; remove it or use another uds path",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(setup_err(path, e)),
    }
    let listener =
        UnixListener::bind(path).map_err(|e| setup_err(path, format!("cannot listen: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| setup_err(path, e))?;
    let m = std::fs::symlink_metadata(path).map_err(|e| setup_err(path, e))?;
    Ok((listener, (m.dev(), m.ino())))
}

impl Muxer {
    pub fn new(guest_cid: u64, uds_path: &Path) -> Result<Muxer, DeviceError> {
        let (listener, socket_file) = listen(uds_path)?;
        let timer_err = |e: &dyn std::fmt::Display| {
            DeviceError::Setup(format!("vsock: cannot create a timer: {e}"))
        };
        let timer = TimerFd::new().map_err(|e| timer_err(&e))?;
        sys::set_nonblocking(&timer).map_err(|e| timer_err(&e))?;
        Ok(Muxer {
            guest_cid,
            uds_path: uds_path.to_owned(),
            listener,
            socket_file,
            timer,
            timer_due: None,
            events: None,
            listener_reg: None,
            timer_reg: None,
            handshakes: HashMap::new(),
            conns: HashMap::new(),
            by_port: HashMap::new(),
            ready: VecDeque::new(),
            replies: VecDeque::new(),
            tx_stalled: false,
            metrics: Arc::default(),
            next_token: FIRST_CONN_TOKEN,
            next_port: FIRST_HOST_PORT,
            scratch: vec![0; MAX_PKT_PAYLOAD],
        })
    }

    /// The driver is ready: start accepting host connections.
    pub fn activate(
        &mut self,
        events: Arc<EventLoop>,
        handler: Weak<dyn EventHandler>,
    ) -> io::Result<()> {
        self.events = Some((events, handler));
        self.listener_reg =
            Some(self.register(self.listener.as_raw_fd(), EventSet::IN, TOKEN_LISTENER)?);
        self.timer_reg = Some(self.register(self.timer.as_raw_fd(), EventSet::IN, TOKEN_TIMER)?);
        Ok(())
    }

    /// Device reset: every connection ends (their host programs see the socket close), and
    /// host programs wait in the listen backlog until the driver is back.
    pub fn reset(&mut self) {
        self.handshakes.clear();
        self.conns.clear();
        self.by_port.clear();
        self.ready.clear();
        self.replies.clear();
        self.tx_stalled = false;
        self.listener_reg = None;
        self.timer_reg = None;
        let _ = self.timer.clear();
        self.timer_due = None;
        self.events = None;
    }

    fn register(&self, fd: i32, set: EventSet, token: u64) -> io::Result<Registration> {
        let (events, handler) = self.events.as_ref().ok_or(io::ErrorKind::NotConnected)?;
        let key = events.add(fd, set, handler.clone(), token)?;
        Ok(Registration { events: events.clone(), key })
    }

    /// Registers a host connection's socket: edge-triggered, see connection.rs.
    fn register_stream(&self, stream: &UnixStream, token: u64) -> io::Result<Registration> {
        let set = EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED;
        self.register(stream.as_raw_fd(), set, token)
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    pub fn tx_stalled(&self) -> bool {
        self.tx_stalled
    }

    pub fn has_rx_work(&self) -> bool {
        !self.ready.is_empty() || !self.replies.is_empty()
    }

    pub fn replies_have_room(&self) -> bool {
        self.replies.len() < MAX_REPLIES
    }

    // ---- The guest's packets (tx queue) ----

    /// Serves the tx queue. Returns true when the driver must be interrupted.
    pub fn handle_tx(&mut self, queue: &mut Queue, ram: &GuestRam) -> bool {
        self.tx_stalled = false;
        drain_queue(queue, ram, |chain| {
            if !self.replies_have_room() {
                self.tx_stalled = true;
                return None;
            }
            let segs = Segments::of(chain, false);
            match read_tx(ram, &segs, CONN_BUF_SIZE) {
                Ok(p) => {
                    self.metrics.tx_packets.inc();
                    self.metrics.tx_bytes.add(p.payload.len() as u64);
                    self.guest_packet(&p.hdr, &p.payload)
                }
                // A header with an impossible payload: reset what it belongs to.
                Err((Some(hdr), _)) => self.bad_packet(&hdr),
                // Not even a header: there is nobody to answer.
                Err((None, _)) => {}
            }
            Some(0)
        })
    }

    fn reply_rst(&mut self, hdr: &Header) {
        // Never answer an RST with one, or two peers could ping-pong resets forever.
        if hdr.op != op::RST {
            self.replies.push_back(hdr.reset_reply());
        }
    }

    fn bad_packet(&mut self, hdr: &Header) {
        if hdr.src_cid != self.guest_cid {
            return;
        }
        match self.by_port.get(&(hdr.dst_port, hdr.src_port)).copied() {
            Some(token) => self.apply(token, Verdict::Reset),
            None => self.reply_rst(hdr),
        }
    }

    /// Routes one well-formed packet from the guest.
    pub fn guest_packet(&mut self, hdr: &Header, payload: &[u8]) {
        // A packet claiming another source can't be answered: the guest would not match it.
        if hdr.src_cid != self.guest_cid {
            return;
        }
        // Only the host is reachable, and only with stream sockets.
        if hdr.dst_cid != HOST_CID || hdr.type_ != TYPE_STREAM {
            self.reply_rst(hdr);
            return;
        }
        if let Some(token) = self.by_port.get(&(hdr.dst_port, hdr.src_port)).copied() {
            if hdr.op == op::REQUEST {
                // The guest reuses a port pair we still hold (after our SHUTDOWN it may):
                // that connection is over on its side.
                self.remove(token);
            } else {
                let verdict = match self.conns.get_mut(&token) {
                    Some(c) => c.recv(hdr, payload),
                    None => Verdict::Drop,
                };
                self.apply(token, verdict);
                return;
            }
        }
        if hdr.op == op::REQUEST {
            self.guest_connect(hdr);
        } else {
            self.reply_rst(hdr);
        }
    }

    /// A guest socket connects to host port P: connect to `<uds_path>_P`.
    fn guest_connect(&mut self, hdr: &Header) {
        if self.conns.len() + self.handshakes.len() >= MAX_CONNECTIONS {
            self.reply_rst(hdr);
            return;
        }
        let mut path: OsString = self.uds_path.clone().into_os_string();
        path.push(format!("_{}", hdr.dst_port));
        let Ok(stream) = sys::connect_nonblocking(Path::new(&path)) else {
            self.reply_rst(hdr);
            return;
        };
        let token = self.token();
        let Ok(reg) = self.register_stream(&stream, token) else {
            self.reply_rst(hdr);
            return;
        };
        let mut conn =
            Connection::new(stream, self.guest_cid, hdr.dst_port, hdr.src_port, State::Established);
        conn.set_registration(reg);
        // The REQUEST carries the guest's buffer space, like every packet.
        let _ = conn.recv(&Header { op: op::CREDIT_UPDATE, ..*hdr }, &[]);
        self.insert(token, conn);
    }

    fn insert(&mut self, token: u64, conn: Connection) {
        self.metrics.connections.inc();
        self.by_port.insert((conn.local_port, conn.peer_port), token);
        self.conns.insert(token, conn);
        self.apply(token, Verdict::Keep);
    }

    fn remove(&mut self, token: u64) -> Option<Connection> {
        let conn = self.conns.remove(&token)?;
        self.by_port.remove(&(conn.local_port, conn.peer_port));
        Some(conn)
    }

    /// Acts on what a connection said after handling something.
    fn apply(&mut self, token: u64, verdict: Verdict) {
        match verdict {
            Verdict::Keep => {
                let Some(conn) = self.conns.get_mut(&token) else { return };
                if conn.awaiting_guest_reset() && conn.deadline.is_none() {
                    let due = Instant::now() + SHUTDOWN_TIMEOUT;
                    conn.deadline = Some(due);
                    self.arm_timer(due);
                }
                let Some(conn) = self.conns.get_mut(&token) else { return };
                if !conn.queued && conn.has_packet() {
                    conn.queued = true;
                    self.ready.push_back(token);
                }
            }
            Verdict::Drop => {
                self.remove(token);
            }
            Verdict::Reset => {
                if let Some(mut conn) = self.remove(token) {
                    self.replies.push_back(conn.reset_header());
                }
            }
        }
    }

    // ---- Packets for the guest (rx queue) ----

    /// Fills the guest's rx buffers with what is waiting. Returns true when the driver must
    /// be interrupted.
    pub fn fill_rx(&mut self, queue: &mut Queue, ram: &GuestRam) -> bool {
        drain_queue(queue, ram, |chain| {
            let segs = Segments::of(chain, true);
            if segs.len() < HDR_SIZE {
                // Too small for any packet: hand it back empty (the driver drops it).
                return Some(0);
            }
            let room = (segs.len() - HDR_SIZE).min(MAX_PKT_PAYLOAD);
            let (token, hdr, n) = self.next_rx_packet(room)?;
            match write_rx(ram, &segs, &hdr, &self.scratch[..n]) {
                Ok(written) => {
                    self.metrics.rx_packets.inc();
                    self.metrics.rx_bytes.add(n as u64);
                    Some(written)
                }
                Err(_) => {
                    // The buffer points outside RAM: the packet is lost, so the connection
                    // it belonged to can't go on consistently.
                    if let Some(t) = token {
                        self.apply(t, Verdict::Reset);
                    }
                    Some(0)
                }
            }
        })
    }

    /// The next packet for the guest: the connection's token (none for a reply), the header
    /// and the payload length (the payload is in `self.scratch`).
    fn next_rx_packet(&mut self, room: usize) -> Option<(Option<u64>, Header, usize)> {
        if let Some(h) = self.replies.pop_front() {
            return Some((None, h, 0));
        }
        while let Some(token) = self.ready.pop_front() {
            let Some(conn) = self.conns.get_mut(&token) else { continue };
            conn.queued = false;
            match conn.next_packet(&mut self.scratch[..room]) {
                Ok(Some((hdr, n))) => {
                    // Back in line if it has more (round-robin between connections).
                    self.apply(token, Verdict::Keep);
                    return Some((Some(token), hdr, n));
                }
                Ok(None) => {}
                Err(()) => {
                    self.apply(token, Verdict::Reset);
                    if let Some(h) = self.replies.pop_front() {
                        return Some((None, h, 0));
                    }
                }
            }
        }
        None
    }

    // ---- Host events ----

    pub fn handle_event(&mut self, token: u64, set: EventSet) {
        match token {
            TOKEN_LISTENER => self.accept(),
            TOKEN_TIMER => self.timer_fired(),
            _ if self.handshakes.contains_key(&token) => self.read_connect_line(token),
            _ => {
                let Some(conn) = self.conns.get_mut(&token) else { return };
                let hang_up = set.intersects(EventSet::HANG_UP | EventSet::ERROR);
                let verdict = conn.host_event(
                    set.intersects(EventSet::IN | EventSet::READ_HANG_UP),
                    set.contains(EventSet::OUT),
                    hang_up,
                );
                self.apply(token, verdict);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: all taken. Anything else (out of fds): try again next event.
                Err(_) => return,
            };
            if self.conns.len() + self.handshakes.len() >= MAX_CONNECTIONS
                || stream.set_nonblocking(true).is_err()
            {
                continue;
            }
            let token = self.token();
            let Ok(reg) = self.register_stream(&stream, token) else { continue };
            self.handshakes.insert(token, Handshake { reg, stream, line: Vec::new() });
            self.read_connect_line(token);
        }
    }

    /// Reads the `CONNECT <port>\n` line a byte at a time, so nothing after it is taken
    /// from the socket: that is data for the guest.
    fn read_connect_line(&mut self, token: u64) {
        let Some(hs) = self.handshakes.get_mut(&token) else { return };
        let mut byte = [0u8; 1];
        let port = loop {
            match hs.stream.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break parse_connect(&hs.line),
                Ok(1) if hs.line.len() < MAX_CONNECT_LINE => hs.line.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // End of file, an overlong line or an error: close it.
                _ => break None,
            }
        };
        let Some(hs) = self.handshakes.remove(&token) else { return };
        let Some(port) = port else { return };
        let local = self.host_port(port);
        let mut conn = Connection::new(hs.stream, self.guest_cid, local, port, State::Connecting);
        conn.set_registration(hs.reg);
        let due = Instant::now() + CONNECT_TIMEOUT;
        conn.deadline = Some(due);
        self.arm_timer(due);
        self.insert(token, conn);
    }

    /// A host port no connection uses.
    fn host_port(&mut self, peer: u32) -> u32 {
        loop {
            let p = self.next_port;
            self.next_port = if p == u32::MAX { FIRST_HOST_PORT } else { p + 1 };
            if !self.by_port.contains_key(&(p, peer))
                && !self.conns.values().any(|c| c.local_port == p)
            {
                return p;
            }
        }
    }

    fn arm_timer(&mut self, due: Instant) {
        if self.timer_due.is_some_and(|t| t <= due) {
            return;
        }
        let wait = due.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        if self.timer.reset(wait, None).is_ok() {
            self.timer_due = Some(due);
        }
    }

    fn timer_fired(&mut self) {
        // Non-blocking: nothing to read if a re-arm raced with the expiry.
        let _ = self.timer.wait();
        self.timer_due = None;
        let now = Instant::now();
        let expired: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(&t, _)| t)
            .collect();
        for token in expired {
            // Not accepted in time, or no RST after our SHUTDOWN: reset the guest's side and
            // close the host's.
            self.apply(token, Verdict::Reset);
        }
        if let Some(next) = self.conns.values().filter_map(|c| c.deadline).min() {
            self.arm_timer(next);
        }
    }

    #[cfg(test)]
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    #[cfg(test)]
    pub fn tokens(&self) -> Vec<u64> {
        self.handshakes.keys().chain(self.conns.keys()).copied().collect()
    }
}

/// `CONNECT <port>` (the newline already gone), as Firecracker reads it.
fn parse_connect(line: &[u8]) -> Option<u32> {
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.trim_end_matches('\r').split_ascii_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("CONNECT"), Some(port), None) => port.parse().ok(),
        _ => None,
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        // Unregister every descriptor before it is closed (a reused fd number must never be
        // taken for one of ours), and end the connections.
        self.reset();
        // Remove the socket file, but only if it is still the one we created.
        if let Ok(m) = std::fs::symlink_metadata(&self.uds_path) {
            if (m.dev(), m.ino()) == self.socket_file {
                let _ = std::fs::remove_file(&self.uds_path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines() {
        assert_eq!(parse_connect(b"CONNECT 1234"), Some(1234));
        assert_eq!(parse_connect(b"CONNECT 4294967295\r"), Some(u32::MAX));
        assert_eq!(parse_connect(b"CONNECT"), None);
        assert_eq!(parse_connect(b"CONNECT 4294967296"), None);
        assert_eq!(parse_connect(b"CONNECT -1"), None);
        assert_eq!(parse_connect(b"CONNECT 12 34"), None);
        assert_eq!(parse_connect(b"connect 12"), None);
        assert_eq!(parse_connect(b"\xff\xfe"), None);
    }
}
