//! One vsock stream connection between a guest socket and a host Unix socket: its state, the
//! credit-based flow control of virtio 1.2 §5.10.6.3 in both directions, and the packets it
//! owes the guest.
//!
//! The Unix socket is non-blocking and registered edge-triggered: `readable` remembers that
//! epoll said so until a read hits `WouldBlock`, and writes that hit it are retried on the
//! next EPOLLOUT.
//! Nothing is read from the host until the guest has room for it (credit and an rx buffer),
//! so the host side never needs a receive buffer of our own; what the guest sends is written
//! straight on, and only what the host is not ready for is kept, up to our advertised
//! `buf_alloc`, which a well-behaved driver never exceeds.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::muxer::Registration;
use super::packet::{op, shutdown, Header, HOST_CID, TYPE_STREAM};

/// The receive buffer each connection advertises (`buf_alloc`): guest bytes the host has not
/// taken yet are kept up to this much. Linux's default socket buffer size is the same.
pub const CONN_BUF_SIZE: u32 = 256 * 1024;
/// Tell the guest about freed space once its idea of our free space drops below this.
const CREDIT_UPDATE_THRESHOLD: u32 = CONN_BUF_SIZE / 2;

/// Flow-control counters of one connection (§5.10.6.3). All counters are free-running `u32`s
/// that wrap, so differences use wrapping arithmetic.
#[derive(Debug, Clone, Default)]
pub struct Credit {
    // Guest to host: what we advertise.
    /// Payload bytes received from the guest.
    rx_cnt: u32,
    /// Of those, bytes handed on to the Unix socket (`fwd_cnt` in our headers).
    fwd_cnt: u32,
    /// The `fwd_cnt` the guest last heard from us.
    fwd_cnt_told: u32,
    // Host to guest: what the guest advertises.
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// Payload bytes sent to the guest.
    tx_cnt: u32,
}

impl Credit {
    /// The guest's `buf_alloc`/`fwd_cnt`, which every packet it sends carries.
    pub fn update_peer(&mut self, hdr: &Header) {
        self.peer_buf_alloc = hdr.buf_alloc;
        self.peer_fwd_cnt = hdr.fwd_cnt;
    }

    /// How many more payload bytes the guest can take now. A peer whose counters say it has
    /// more in flight than it has room for (it shrank its buffer) gets nothing.
    pub fn peer_free(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    pub fn sent(&mut self, n: u32) {
        self.tx_cnt = self.tx_cnt.wrapping_add(n);
    }

    /// Bytes from the guest that the host has not taken yet.
    pub fn buffered(&self) -> u32 {
        self.rx_cnt.wrapping_sub(self.fwd_cnt)
    }

    /// Accounts for `n` payload bytes from the guest, or refuses them if they exceed the
    /// space we advertised (the driver broke §5.10.6.3.1).
    pub fn receive(&mut self, n: u32) -> bool {
        if u64::from(self.buffered()) + u64::from(n) > u64::from(CONN_BUF_SIZE) {
            return false;
        }
        self.rx_cnt = self.rx_cnt.wrapping_add(n);
        true
    }

    pub fn forwarded(&mut self, n: u32) {
        self.fwd_cnt = self.fwd_cnt.wrapping_add(n);
    }

    /// Fills in our side of the flow control, as every packet to the guest carries it.
    pub fn stamp(&mut self, hdr: &mut Header) {
        hdr.buf_alloc = CONN_BUF_SIZE;
        hdr.fwd_cnt = self.fwd_cnt;
        self.fwd_cnt_told = self.fwd_cnt;
    }

    /// Whether the guest should hear about space we freed: only when its idea of our free
    /// space got low (it may be waiting), to keep CREDIT_UPDATE traffic down.
    pub fn update_due(&self) -> bool {
        if self.fwd_cnt == self.fwd_cnt_told {
            return false;
        }
        let guest_view_used = self.rx_cnt.wrapping_sub(self.fwd_cnt_told);
        CONN_BUF_SIZE.saturating_sub(guest_view_used) < CREDIT_UPDATE_THRESHOLD
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Host-initiated: our REQUEST is (to be) sent and the guest has not answered.
    Connecting,
    Established,
}

/// Control packets a connection owes the guest (bits).
mod owe {
    pub const REQUEST: u8 = 1;
    pub const RESPONSE: u8 = 2;
    pub const CREDIT_UPDATE: u8 = 4;
}

/// What the muxer must do after a connection handled something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Gone without a word: the guest reset it, or the shutdown handshake completed.
    Drop,
    /// Broken (protocol violation, host socket error): reset the guest side and drop it.
    Reset,
}

pub struct Connection {
    // Declared before `stream`: the event loop forgets the fd before it is closed, so a
    // reused fd number can never be mistaken for this one.
    reg: Option<Registration>,
    stream: UnixStream,
    guest_cid: u64,
    pub local_port: u32,
    pub peer_port: u32,
    pub state: State,
    credit: Credit,
    /// Guest bytes the Unix socket did not take yet.
    to_host: VecDeque<u8>,
    /// How many bytes at the front of `to_host` are our own `OK` line.
    preamble: usize,
    owed: u8,
    /// SHUTDOWN flags we still have to tell the guest.
    shutdown_owed: u32,
    /// SHUTDOWN flags the guest sent.
    guest_shut: u32,
    /// SHUTDOWN flags we sent.
    host_shut: u32,
    readable: bool,
    /// The host side ended its stream (a read returned 0).
    host_eof: bool,
    /// Our write half of the Unix socket is shut down.
    host_write_closed: bool,
    /// A CREDIT_REQUEST is out and unanswered: don't ask again.
    asked_credit: bool,
    /// When the connection gives up waiting (for a RESPONSE, or for the guest's RST after
    /// our full SHUTDOWN).
    pub deadline: Option<Instant>,
    /// In the muxer's list of connections with something for the guest.
    pub queued: bool,
}

impl Connection {
    pub fn new(
        stream: UnixStream,
        guest_cid: u64,
        local_port: u32,
        peer_port: u32,
        state: State,
    ) -> Connection {
        let owed = match state {
            State::Connecting => owe::REQUEST,
            State::Established => owe::RESPONSE,
        };
        Connection {
            reg: None,
            stream,
            guest_cid,
            local_port,
            peer_port,
            state,
            credit: Credit::default(),
            to_host: VecDeque::new(),
            preamble: 0,
            owed,
            shutdown_owed: 0,
            guest_shut: 0,
            host_shut: 0,
            // Edge-triggered: assume data may be waiting until a read says otherwise.
            readable: true,
            host_eof: false,
            host_write_closed: false,
            asked_credit: false,
            deadline: None,
            queued: false,
        }
    }

    pub fn set_registration(&mut self, reg: Registration) {
        self.reg = Some(reg);
    }

    /// A header from us (the host side) to the guest socket.
    fn header(&mut self, op: u16) -> Header {
        let mut h = Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            type_: TYPE_STREAM,
            op,
            ..Header::default()
        };
        self.credit.stamp(&mut h);
        h
    }

    /// The RST that ends this connection on the guest's side.
    pub fn reset_header(&mut self) -> Header {
        self.header(op::RST)
    }

    /// Handles a packet the guest sent on this connection (addresses already matched).
    pub fn recv(&mut self, hdr: &Header, payload: &[u8]) -> Verdict {
        self.credit.update_peer(hdr);
        if self.credit.peer_free() > 0 {
            // Only news of actual room ends a stall: asking again after an answer that
            // still says "full" would ping-pong CREDIT_REQUEST/UPDATE while the guest is busy.
            self.asked_credit = false;
        }
        if self.state == State::Connecting {
            return match hdr.op {
                op::RESPONSE => {
                    self.state = State::Established;
                    self.deadline = None;
                    // Firecracker's answer to `CONNECT <port>`: the host side's port.
                    let ok = format!("OK {}\n", self.local_port);
                    self.to_host.extend(ok.as_bytes());
                    self.preamble = ok.len();
                    self.flush()
                }
                // Nobody listens there: the host side just sees its connection close.
                op::RST => Verdict::Drop,
                _ => Verdict::Reset,
            };
        }
        match hdr.op {
            op::RW => {
                if self.guest_shut & shutdown::SEND != 0
                    || !self.credit.receive(payload.len() as u32)
                {
                    return Verdict::Reset;
                }
                if self.host_write_closed {
                    // Nobody will read it; count it as taken so the credit stays honest.
                    self.credit.forwarded(payload.len() as u32);
                    return Verdict::Keep;
                }
                self.to_host.extend(payload);
                self.flush()
            }
            op::CREDIT_UPDATE => Verdict::Keep,
            op::CREDIT_REQUEST => {
                self.owed |= owe::CREDIT_UPDATE;
                Verdict::Keep
            }
            op::SHUTDOWN => {
                self.guest_shut |= hdr.flags & shutdown::BOTH;
                self.flush()
            }
            op::RST => Verdict::Drop,
            // A second REQUEST/RESPONSE on a live connection, or an unknown op.
            _ => Verdict::Reset,
        }
    }

    /// Writes what the guest sent on to the Unix socket, as far as it takes it, and applies
    /// the guest's shutdown once everything before it is out.
    pub fn flush(&mut self) -> Verdict {
        while !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            match self.stream.write(front) {
                Ok(0) => return Verdict::Reset,
                Ok(n) => {
                    self.to_host.drain(..n);
                    // The `OK` line is ours, not guest payload: it uses no credit.
                    let ours = n.min(self.preamble);
                    self.preamble -= ours;
                    self.credit.forwarded((n - ours) as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Verdict::Reset,
            }
        }
        if !self.to_host.is_empty() {
            return Verdict::Keep;
        }
        if self.guest_shut & shutdown::BOTH == shutdown::BOTH {
            // The guest closed and all it sent is delivered: answer with RST (§5.10.6.5: a
            // full SHUTDOWN asks the peer for one; Linux waits for it), and close the Unix side.
            return Verdict::Reset;
        }
        if self.guest_shut & shutdown::SEND != 0 && !self.host_write_closed {
            let _ = self.stream.shutdown(Shutdown::Write);
            self.host_write_closed = true;
        }
        Verdict::Keep
    }

    /// What epoll said about the Unix socket. `hang_up`: both directions of our socket are
    /// shut (the host program closed it, or it shut down writing after we did).
    pub fn host_event(&mut self, readable: bool, writable: bool, hang_up: bool) -> Verdict {
        if hang_up && self.state == State::Connecting {
            // The host program gave up before the guest answered: withdraw the REQUEST.
            return if self.owed & owe::REQUEST != 0 { Verdict::Drop } else { Verdict::Reset };
        }
        if readable || hang_up {
            // Data may still be waiting; a hang-up shows as end-of-file after it.
            self.readable = true;
        }
        if hang_up && self.shutdown_owed & shutdown::RCV == 0 {
            // The host takes nothing more: what the guest sent and is still here is lost,
            // and the guest should stop sending (SHUTDOWN with RCV; SEND follows the
            // end-of-file).
            self.host_write_closed = true;
            let dropped = self.to_host.len() - self.preamble;
            self.credit.forwarded(dropped as u32);
            self.to_host.clear();
            self.preamble = 0;
            self.shutdown_owed |= shutdown::RCV;
        }
        if writable || hang_up {
            return self.flush();
        }
        Verdict::Keep
    }

    #[cfg(test)]
    pub fn credit(&self) -> &Credit {
        &self.credit
    }

    fn may_send_data(&self) -> bool {
        self.state == State::Established
            && !self.host_eof
            && self.guest_shut & shutdown::RCV == 0
            && self.host_shut & shutdown::SEND == 0
    }

    /// Whether the connection has a packet for the guest now (or might, once it reads).
    pub fn has_packet(&self) -> bool {
        if self.owed != 0 || self.shutdown_owed & !self.host_shut != 0 {
            return true;
        }
        if self.state != State::Established {
            return false;
        }
        self.credit.update_due()
            || (self.may_send_data()
                && self.readable
                && (self.credit.peer_free() > 0 || !self.asked_credit))
    }

    /// Produces the next packet for the guest, reading its payload from the Unix socket into
    /// `buf` (at most `buf.len()` bytes: what the guest's rx buffer holds). Returns the header
    /// and payload length, `Ok(None)` when there is nothing to send, or `Err` when the
    /// connection broke.
    pub fn next_packet(&mut self, buf: &mut [u8]) -> Result<Option<(Header, usize)>, ()> {
        if self.owed & owe::REQUEST != 0 {
            self.owed &= !owe::REQUEST;
            return Ok(Some((self.header(op::REQUEST), 0)));
        }
        if self.owed & owe::RESPONSE != 0 {
            self.owed &= !owe::RESPONSE;
            return Ok(Some((self.header(op::RESPONSE), 0)));
        }
        if self.state != State::Established {
            return Ok(None);
        }
        if self.may_send_data() && self.readable && !buf.is_empty() {
            let free = self.credit.peer_free() as usize;
            if free == 0 {
                if !self.asked_credit {
                    self.asked_credit = true;
                    return Ok(Some((self.header(op::CREDIT_REQUEST), 0)));
                }
            } else {
                let want = free.min(buf.len());
                match self.stream.read(&mut buf[..want]) {
                    Ok(0) => {
                        // The host program is done sending (§5.10.6.5: SHUTDOWN with SEND).
                        self.host_eof = true;
                        self.shutdown_owed |= shutdown::SEND;
                    }
                    Ok(n) => {
                        self.credit.sent(n as u32);
                        let h = self.header(op::RW);
                        return Ok(Some((h, n)));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(()),
                }
            }
        }
        if self.owed & owe::CREDIT_UPDATE != 0 || self.credit.update_due() {
            self.owed &= !owe::CREDIT_UPDATE;
            return Ok(Some((self.header(op::CREDIT_UPDATE), 0)));
        }
        let flags = self.shutdown_owed & !self.host_shut;
        if flags != 0 {
            self.host_shut |= flags;
            let mut h = self.header(op::SHUTDOWN);
            h.flags = self.host_shut;
            return Ok(Some((h, 0)));
        }
        Ok(None)
    }

    /// We told the guest both directions are shut: it owes us an RST now.
    pub fn awaiting_guest_reset(&self) -> bool {
        self.host_shut == shutdown::BOTH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest_hdr(op: u16, buf_alloc: u32, fwd_cnt: u32) -> Header {
        Header {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 40000,
            dst_port: 5000,
            type_: TYPE_STREAM,
            op,
            buf_alloc,
            fwd_cnt,
            ..Header::default()
        }
    }

    fn pair() -> (Connection, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (Connection::new(a, 3, 5000, 40000, State::Established), b)
    }

    /// Pops packets until none is left: (op, payload length, flags) of each.
    fn drain(c: &mut Connection, room: usize) -> Vec<(u16, usize, u32)> {
        let mut buf = vec![0u8; room];
        let mut out = Vec::new();
        while let Some((h, n)) = c.next_packet(&mut buf).unwrap() {
            out.push((h.op, n, h.flags));
        }
        out
    }

    #[test]
    fn peer_credit_counts_wrap_around() {
        let mut c = Credit::default();
        c.update_peer(&guest_hdr(op::RW, 1000, u32::MAX - 99));
        c.tx_cnt = u32::MAX - 99;
        assert_eq!(c.peer_free(), 1000);
        c.sent(300); // tx_cnt wraps past zero
        assert_eq!(c.peer_free(), 700);
        c.update_peer(&guest_hdr(op::CREDIT_UPDATE, 1000, 200));
        assert_eq!(c.peer_free(), 1000);
        // A peer that shrank its buffer below what is in flight gets nothing, not u32 junk.
        c.update_peer(&guest_hdr(op::CREDIT_UPDATE, 50, 100));
        assert_eq!(c.peer_free(), 0);
    }

    #[test]
    fn receiving_more_than_advertised_is_refused() {
        let mut c = Credit::default();
        assert!(c.receive(CONN_BUF_SIZE - 10));
        assert!(!c.receive(11));
        assert!(c.receive(10));
        c.forwarded(100);
        assert_eq!(c.buffered(), CONN_BUF_SIZE - 100);
        assert!(c.receive(100));
    }

    #[test]
    fn credit_updates_go_out_only_when_the_guest_runs_low() {
        let mut c = Credit::default();
        let mut h = Header::default();
        assert!(c.receive(1000));
        c.forwarded(1000);
        assert!(!c.update_due(), "the guest still sees plenty of room");
        c.stamp(&mut h);
        assert!(c.receive(CONN_BUF_SIZE));
        assert!(!c.update_due(), "nothing freed since the guest last heard");
        c.forwarded(1000);
        assert!(c.update_due(), "the guest sees a full buffer, and there is room");
        c.stamp(&mut h);
        assert_eq!((h.buf_alloc, h.fwd_cnt), (CONN_BUF_SIZE, 2000));
        assert!(!c.update_due());
    }

    #[test]
    fn data_to_the_guest_never_exceeds_its_credit() {
        let (mut c, mut host) = pair();
        c.recv(&guest_hdr(op::CREDIT_UPDATE, 3000, 0), &[]);
        assert_eq!(drain(&mut c, 4096), vec![(op::RESPONSE, 0, 0)]);
        host.write_all(&[7u8; 10_000]).unwrap();
        c.host_event(true, true, false);
        // 3000 bytes of credit, 4096-byte buffers: one 3000-byte packet, then a request.
        assert_eq!(drain(&mut c, 4096), vec![(op::RW, 3000, 0), (op::CREDIT_REQUEST, 0, 0)]);
        assert!(!c.has_packet(), "asks once, then waits");
        c.recv(&guest_hdr(op::CREDIT_UPDATE, 3000, 0), &[]);
        assert!(!c.has_packet(), "an answer that still says full changes nothing");
        // The guest read 2000 bytes.
        c.recv(&guest_hdr(op::CREDIT_UPDATE, 3000, 2000), &[]);
        assert_eq!(drain(&mut c, 4096), vec![(op::RW, 2000, 0), (op::CREDIT_REQUEST, 0, 0)]);
        c.recv(&guest_hdr(op::CREDIT_UPDATE, 64 * 1024, 5000), &[]);
        assert_eq!(drain(&mut c, 4096), vec![(op::RW, 4096, 0), (op::RW, 904, 0)]);
        assert_eq!(c.credit().tx_cnt, 10_000);
        // The host closes its write side: SHUTDOWN(SEND) follows the data.
        host.shutdown(Shutdown::Write).unwrap();
        c.host_event(true, false, false);
        assert_eq!(drain(&mut c, 4096), vec![(op::SHUTDOWN, 0, shutdown::SEND)]);
    }

    #[test]
    fn guest_data_reaches_the_host_and_overflow_resets() {
        let (mut c, mut host) = pair();
        c.recv(&guest_hdr(op::REQUEST, 4096, 0), &[]);
        assert_eq!(c.recv(&guest_hdr(op::RW, 4096, 0), b"hello"), Verdict::Keep);
        let mut got = [0u8; 5];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        assert_eq!(c.credit().fwd_cnt, 5);
        // Nobody reads on the host: the Unix buffer fills, then our buffer, then the guest
        // oversteps its credit.
        let chunk = vec![1u8; 32 * 1024];
        let mut verdict = Verdict::Keep;
        for _ in 0..1000 {
            verdict = c.recv(&guest_hdr(op::RW, 4096, 0), &chunk);
            if verdict != Verdict::Keep {
                break;
            }
        }
        assert_eq!(verdict, Verdict::Reset);
        assert!(c.credit().buffered() <= CONN_BUF_SIZE);
    }

    #[test]
    fn the_guest_shutdown_closes_the_host_side_after_the_data() {
        let (mut c, mut host) = pair();
        c.recv(&guest_hdr(op::RW, 4096, 0), b"last words");
        let mut h = guest_hdr(op::SHUTDOWN, 4096, 0);
        h.flags = shutdown::SEND;
        assert_eq!(c.recv(&h, &[]), Verdict::Keep);
        let mut got = Vec::new();
        host.set_nonblocking(false).unwrap();
        host.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last words");
        // Data after SHUTDOWN(SEND) breaks the protocol.
        assert_eq!(c.recv(&guest_hdr(op::RW, 4096, 0), b"x"), Verdict::Reset);
        // A full shutdown with nothing pending is answered by RST at once.
        let (mut c, _host) = pair();
        h.flags = shutdown::BOTH;
        assert_eq!(c.recv(&h, &[]), Verdict::Reset);
    }

    #[test]
    fn a_host_initiated_connection_waits_for_the_guest() {
        let (a, mut host) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut c = Connection::new(a, 3, 1 << 30, 1234, State::Connecting);
        host.write_all(b"early data").unwrap();
        assert_eq!(drain(&mut c, 4096), vec![(op::REQUEST, 0, 0)], "no data before RESPONSE");
        let mut resp = guest_hdr(op::RESPONSE, 65536, 0);
        resp.src_port = 1234;
        assert_eq!(c.recv(&resp, &[]), Verdict::Keep);
        let mut ok = [0u8; 14];
        host.read_exact(&mut ok).unwrap();
        assert_eq!(&ok, b"OK 1073741824\n");
        assert_eq!(c.credit().fwd_cnt, 0, "our OK line is not guest data");
        assert_eq!(drain(&mut c, 4096), vec![(op::RW, 10, 0)]);
        // Unknown ops reset; a refused connect just ends.
        assert_eq!(c.recv(&guest_hdr(99, 0, 0), &[]), Verdict::Reset);
        let (a, _host) = UnixStream::pair().unwrap();
        let mut c = Connection::new(a, 3, 1 << 30, 1234, State::Connecting);
        assert_eq!(c.recv(&guest_hdr(op::RST, 0, 0), &[]), Verdict::Drop);
    }

    #[test]
    fn a_host_program_giving_up_early_withdraws_its_request() {
        let (a, _host) = UnixStream::pair().unwrap();
        let mut c = Connection::new(a, 3, 1 << 30, 1234, State::Connecting);
        assert_eq!(c.host_event(true, false, true), Verdict::Drop, "the guest heard nothing");
        let (a, _host) = UnixStream::pair().unwrap();
        let mut c = Connection::new(a, 3, 1 << 30, 1234, State::Connecting);
        drain(&mut c, 4096);
        assert_eq!(c.host_event(true, false, true), Verdict::Reset, "the guest has the REQUEST");
    }

    #[test]
    fn a_credit_request_is_answered() {
        let (mut c, _host) = pair();
        drain(&mut c, 4096);
        c.recv(&guest_hdr(op::CREDIT_REQUEST, 4096, 0), &[]);
        let mut buf = [0u8; 64];
        let (h, n) = c.next_packet(&mut buf).unwrap().unwrap();
        assert_eq!((h.op, n, h.buf_alloc), (op::CREDIT_UPDATE, 0, CONN_BUF_SIZE));
    }
}
