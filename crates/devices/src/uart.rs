//! The 16550A UART (`ns16550a`, one-byte registers at offsets 0..=7, `reg-shift = 0`), built
//! on `vm_superio::Serial` for the registers, divisor latch, loopback, line status, receive
//! FIFO and transmit path.
//!
//! # Interrupt output
//! On a 16550 the INTR pin is a level: it is high while any enabled interrupt condition is
//! pending (16550D datasheet, "Interrupt Identification Register" table and INTR pin). Linux's
//! 8250 driver is written for such a line, so this device drives a *level* PLIC source and
//! ignores `vm-superio`'s `Trigger` (which only reports new events, and whose IIR read clears
//! every condition at once, also the receive one while data is still waiting). Instead the
//! interrupt conditions are derived here from the register state after every access:
//!
//! * receive (RDA): IER bit 0 set and the FIFO holds data (LSR.DR). It stays asserted until
//!   the FIFO is drained, like the real part's RDA + character-timeout pair, so input can
//!   never sit unnoticed: not after an IIR read, not after IER is masked and restored (the
//!   8250 console does that around every printk), not when more than one FIFO-full arrives.
//! * transmit (THRE): set when THR is written or IER is written with bit 1 set (the
//!   transmitter is always idle here, so THR is empty again at once), cleared by an IIR read
//!   that reports it (datasheet: "reading the IIR, if THRE is the interrupt source"). Linux's
//!   start-up THRE test (write IER.THRI, read IIR, twice) thus sees THRE both times.
//!
//! IIR is computed from those two conditions, highest priority first (RDA, then THRE).
//! With the PLIC's level gateway, a condition still pending at completion re-pends, so the
//! driver's "read at most 256 bytes per interrupt" loop cannot stall.
//!
//! # Input
//! [`Uart::push_input`] queues host bytes without limit; they move into the 64-byte FIFO as
//! it drains (after each RBR or LSR read, and on push), so no byte is ever dropped. Bytes
//! move only while the guest has the receive interrupt enabled (IER bit 0): that keeps
//! typed-ahead input away from the driver's start-up, which reads RBR to clear it, and it
//! turns Linux's throttling (which clears IER bit 0 when the tty buffer is full) into flow
//! control, as RTS/CTS would on a real line. A guest that only polls never sees input. FCR
//! writes, FIFO resets included, are ignored (as `vm-superio` does).
//!
//! # Break
//! [`Uart::send_break`] queues a BREAK condition in line with the host input, as a host's
//! serial line does when its sender holds the line low (what `tcsendbreak` or a terminal
//! server's "send break" does). Per the 16550D datasheet ("Line Status Register", bit 4 and
//! "FIFO Interrupt Mode Operation"), a break puts one zero character into the receive FIFO
//! and BI (LSR bit 4) is revealed when that character reaches the top of the FIFO; BI is
//! cleared by the LSR read that reports it, the zero character by the RBR read. With
//! ELSI (IER bit 2) set, BI raises the receiver line status interrupt (IIR id 0x6, the
//! highest priority). keel keeps the break character in front of `vm-superio`'s FIFO: a break
//! enters only when the FIFO is empty (so it is at the top) and input after it follows into
//! the FIFO behind it. Linux's 8250 driver reads LSR then RBR, sees BI, and on the console
//! port treats the break and the next character as a magic SysRq key
//! (`uart_handle_break`, `uart_prepare_sysrq_char`).
//!
//! # Output
//! Bytes written to THR go to the sink given at construction; `vm-superio` writes and flushes
//! each byte, so interactive consoles see output at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};
use vm_superio::serial::{NoEvents, SerialState};
use vm_superio::{Serial, Trigger};

use crate::{lock, IrqLine, MmioDevice, StateError};

/// Size of the UART's MMIO window on QEMU `virt`.
pub const UART_SIZE: u64 = 0x100;
/// The input clock the device tree announces (`clock-frequency`), as on QEMU `virt`.
pub const UART_CLOCK_HZ: u32 = 3_686_400;

const RBR_THR: u64 = 0;
const IER: u64 = 1;
const IIR_FCR: u64 = 2;
const LCR: u64 = 3;
const LSR: u64 = 5;

const IER_RDI: u8 = 0x01;
const IER_THRI: u8 = 0x02;
const IER_RLSI: u8 = 0x04;
const IER_VALID: u8 = 0x0f;
const IIR_NO_INT: u8 = 0x01;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_RLSI: u8 = 0x06;
/// IIR bits 7:6 say "FIFOs enabled"; Linux identifies a 16550A by them.
const IIR_FIFO: u8 = 0xc0;
const LCR_DLAB: u8 = 0x80;
/// The receive FIFO's size (`vm-superio`'s, and the 16550A's).
const FIFO_SIZE: usize = 64;
const LSR_DR: u8 = 0x01;
const LSR_BI: u8 = 0x10;
const MCR: u8 = 4;
const MCR_LOOP: u8 = 0x10;

/// `vm-superio`'s interrupt hook, unused: the level is derived from registers (see above).
struct NoTrigger;

impl Trigger for NoTrigger {
    type E = Infallible;
    fn trigger(&self) -> Result<(), Infallible> {
        Ok(())
    }
}

struct Inner {
    serial: Serial<NoTrigger, NoEvents, Box<dyn Write + Send>>,
    /// Host input not yet in the FIFO.
    input: VecDeque<u8>,
    /// Breaks queued with the input: each is the number of `input` bytes before it (in
    /// ascending order).
    breaks: VecDeque<usize>,
    /// A break's zero character is at the top of the receive FIFO (ahead of `serial`'s).
    break_char: bool,
    /// LSR.BI: reported by the next LSR read, which clears it.
    break_status: bool,
    /// Shadow of IER: `vm-superio` answers offset 1 with the divisor latch while DLAB is set.
    ier: u8,
    /// THRE interrupt condition (see the module docs).
    thre: bool,
    /// The level last driven on the interrupt line.
    level: bool,
}

impl Inner {
    fn dlab(&mut self) -> bool {
        self.serial.read(LCR as u8) & LCR_DLAB != 0
    }

    fn rx_pending(&mut self) -> bool {
        self.ier & IER_RDI != 0 && (self.break_char || self.serial.read(LSR as u8) & LSR_DR != 0)
    }

    fn iir_id(&mut self) -> u8 {
        if self.ier & IER_RLSI != 0 && self.break_status {
            IIR_RLSI
        } else if self.rx_pending() {
            IIR_RDI
        } else if self.ier & IER_THRI != 0 && self.thre {
            IIR_THRI
        } else {
            IIR_NO_INT
        }
    }

    /// Moves queued host input into the FIFO while it has room and the guest listens.
    fn top_up(&mut self) {
        while self.ier & IER_RDI != 0 {
            if self.breaks.front() == Some(&0) {
                // A break character must be at the top of the FIFO: it enters only when
                // nothing is ahead of it. Loopback mode takes no external input, breaks
                // included.
                let fifo_empty = self.serial.fifo_capacity() == FIFO_SIZE;
                let loopback = self.serial.read(MCR) & MCR_LOOP != 0;
                if self.break_char || !fifo_empty || loopback {
                    break;
                }
                self.breaks.pop_front();
                self.break_char = true;
                self.break_status = true;
                continue;
            }
            let before_break = self.breaks.front().copied().unwrap_or(usize::MAX);
            let n = self.input.len().min(self.serial.fifo_capacity()).min(before_break);
            if n == 0 {
                break;
            }
            let chunk = &self.input.make_contiguous()[..n];
            match self.serial.enqueue_raw_bytes(chunk) {
                Ok(k) if k > 0 => {
                    self.input.drain(..k);
                    self.breaks.iter_mut().for_each(|b| *b -= k);
                }
                // Loopback mode accepts no external input: keep it queued for later.
                _ => break,
            }
        }
    }

    /// Host input not yet taken by the guest, breaks counted as one each.
    fn queued(&self) -> usize {
        self.input.len() + self.breaks.len()
    }

    fn update_irq(&mut self, line: &dyn IrqLine) {
        let level = self.iir_id() != IIR_NO_INT;
        if level != self.level {
            self.level = level;
            line.set_level(level);
        }
    }

    fn read(&mut self, offset: u64) -> u8 {
        match offset {
            RBR_THR if !self.dlab() => {
                let b = if self.break_char {
                    // The break's character: zero, and its BI goes with it.
                    self.break_char = false;
                    self.break_status = false;
                    0
                } else {
                    self.serial.read(RBR_THR as u8)
                };
                self.top_up();
                b
            }
            IER if !self.dlab() => self.ier,
            IIR_FCR => {
                let id = self.iir_id();
                if id == IIR_THRI {
                    self.thre = false;
                }
                IIR_FIFO | id
            }
            LSR => {
                self.top_up();
                let mut lsr = self.serial.read(LSR as u8);
                if self.break_char {
                    lsr |= LSR_DR;
                }
                if std::mem::take(&mut self.break_status) {
                    lsr |= LSR_BI;
                }
                lsr
            }
            0..=7 => self.serial.read(offset as u8),
            _ => 0,
        }
    }

    fn write(&mut self, offset: u64, value: u8) {
        match offset {
            RBR_THR if !self.dlab() => {
                // A lost byte (sink error) is not the guest's problem: the transmitter still
                // empties, as on a UART whose cable is unplugged.
                let _ = self.serial.write(RBR_THR as u8, value);
                self.thre = true;
            }
            IER if !self.dlab() => {
                self.ier = value & IER_VALID;
                let _ = self.serial.write(IER as u8, value);
                self.thre = self.ier & IER_THRI != 0;
                self.top_up();
            }
            0..=7 => {
                let _ = self.serial.write(offset as u8, value);
                // Leaving loopback mode lets queued host input flow again.
                self.top_up();
            }
            _ => {}
        }
    }
}

/// The UART's guest-visible state: the 16550 registers, the receive FIFO, and keel's own
/// interrupt and break conditions (see the module docs).
///
/// Host input still queued outside the FIFO (and breaks queued with it) is not saved: it was
/// typed at the host's end of the line, not received by the guest, and a restored VM has a new
/// console whose input starts afresh. Output has no state: every byte is written at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UartState {
    pub divisor_low: u8,
    pub divisor_high: u8,
    /// IER as `vm-superio` holds it (keel's shadow, `ier`, is what the guest reads).
    pub interrupt_enable: u8,
    pub interrupt_identification: u8,
    pub line_control: u8,
    pub line_status: u8,
    pub modem_control: u8,
    pub modem_status: u8,
    pub scratch: u8,
    /// The receive FIFO, oldest byte first (at most 64).
    pub rx_fifo: Vec<u8>,
    pub ier: u8,
    /// A break's zero character is at the top of the FIFO, ahead of `rx_fifo`.
    pub break_char: bool,
    /// LSR.BI, for the next LSR read.
    pub break_status: bool,
    /// The THRE interrupt condition.
    pub thre: bool,
}

/// The UART. Its interrupt output is a level line (see the module docs).
pub struct Uart {
    inner: Mutex<Inner>,
    irq: Arc<dyn IrqLine>,
    /// Signalled when the guest takes input, for [`Uart::wait_for_room`].
    room: Condvar,
}

impl Uart {
    /// A UART in its reset state writing guest output to `out` and driving `irq`.
    pub fn new(irq: Arc<dyn IrqLine>, out: Box<dyn Write + Send>) -> Self {
        Uart {
            inner: Mutex::new(Inner {
                serial: Serial::new(NoTrigger, out),
                input: VecDeque::new(),
                breaks: VecDeque::new(),
                break_char: false,
                break_status: false,
                ier: 0,
                thre: false,
                level: false,
            }),
            irq,
            room: Condvar::new(),
        }
    }

    /// Queues host input (keyboard, a pipe) for the guest. Never drops bytes: what does not
    /// fit in the 64-byte FIFO waits here until the guest reads.
    pub fn push_input(&self, bytes: &[u8]) {
        let mut s = lock(&self.inner);
        s.input.extend(bytes);
        s.top_up();
        s.update_irq(&*self.irq);
    }

    /// Queues a BREAK condition after the input queued so far (see the module docs): the
    /// guest sees a zero character with LSR.BI when it reaches the top of the receive FIFO.
    pub fn send_break(&self) {
        self.send_break_then(&[]);
    }

    /// Queues a BREAK followed at once by `bytes`, with no other input between them: a
    /// magic SysRq key on a Linux serial console (`bytes` = the key).
    pub fn send_break_then(&self, bytes: &[u8]) {
        let mut s = lock(&self.inner);
        let at = s.input.len();
        s.breaks.push_back(at);
        s.input.extend(bytes);
        s.top_up();
        s.update_irq(&*self.irq);
    }

    /// Waits (at most `timeout`) until fewer than `limit` bytes wait in the host-side queue,
    /// so a fast producer (a pipe, a file) can't queue without bound. Returns true if there
    /// is room.
    pub fn wait_for_room(&self, limit: usize, timeout: std::time::Duration) -> bool {
        let s = lock(&self.inner);
        let (s, _) = self
            .room
            .wait_timeout_while(s, timeout, |s| s.input.len() >= limit)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.input.len() < limit
    }

    pub fn save_state(&self) -> UartState {
        let s = lock(&self.inner);
        let r = s.serial.state();
        UartState {
            divisor_low: r.baud_divisor_low,
            divisor_high: r.baud_divisor_high,
            interrupt_enable: r.interrupt_enable,
            interrupt_identification: r.interrupt_identification,
            line_control: r.line_control,
            line_status: r.line_status,
            modem_control: r.modem_control,
            modem_status: r.modem_status,
            scratch: r.scratch,
            rx_fifo: r.in_buffer,
            ier: s.ier,
            break_char: s.break_char,
            break_status: s.break_status,
            thre: s.thre,
        }
    }

    /// Puts the registers and the FIFO back and drives the interrupt line to match. Host
    /// input already queued in this device stays queued, behind the restored FIFO.
    pub fn restore_state(&self, state: &UartState) -> Result<(), StateError> {
        if state.rx_fifo.len() > FIFO_SIZE {
            return Err(StateError::Invalid {
                device: "the UART",
                what: format!("{} bytes in its {FIFO_SIZE}-byte FIFO", state.rx_fifo.len()),
            });
        }
        let regs = SerialState {
            baud_divisor_low: state.divisor_low,
            baud_divisor_high: state.divisor_high,
            interrupt_enable: state.interrupt_enable,
            interrupt_identification: state.interrupt_identification,
            line_control: state.line_control,
            line_status: state.line_status,
            modem_control: state.modem_control,
            modem_status: state.modem_status,
            scratch: state.scratch,
            in_buffer: state.rx_fifo.clone(),
        };
        let mut s = lock(&self.inner);
        // The output sink moves from the old `Serial` to the restored one.
        let old =
            std::mem::replace(&mut s.serial, Serial::new(NoTrigger, Box::new(std::io::sink())));
        s.serial = match Serial::from_state(&regs, NoTrigger, NoEvents, old.into_writer()) {
            Ok(serial) => serial,
            // Only a FIFO over 64 bytes fails, and that was checked above.
            Err(_) => unreachable!("vm-superio refused a valid serial state"),
        };
        s.ier = state.ier & IER_VALID;
        s.break_char = state.break_char;
        s.break_status = state.break_status;
        s.thre = state.thre;
        s.top_up();
        s.level = s.iir_id() != IIR_NO_INT;
        // Driven even if unchanged: the line may belong to a freshly built PLIC.
        self.irq.set_level(s.level);
        Ok(())
    }

    /// Characters waiting for the guest, in the FIFO and in the host-side queue (a break
    /// counts as one: its zero character).
    pub fn input_backlog(&self) -> usize {
        let s = lock(&self.inner);
        s.queued() + usize::from(s.break_char) + (FIFO_SIZE - s.serial.fifo_capacity())
    }
}

impl MmioDevice for Uart {
    /// Registers are one byte wide; a wider access acts on the register at `offset` with the
    /// low byte (as QEMU's does), so careless bare-metal code still works.
    fn read(&self, offset: u64, _size: u8) -> u64 {
        let mut s = lock(&self.inner);
        let queued = s.queued();
        let v = s.read(offset);
        s.update_irq(&*self.irq);
        if s.queued() < queued {
            self.room.notify_all();
        }
        u64::from(v)
    }

    fn write(&self, offset: u64, _size: u8, value: u64) {
        let mut s = lock(&self.inner);
        s.write(offset, value as u8);
        s.update_irq(&*self.irq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MockLine;

    const MCR: u64 = 4;

    /// A sink the test can look into.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().0.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.lock().unwrap().1 += 1;
            Ok(())
        }
    }

    fn setup() -> (Uart, Arc<MockLine>, Sink) {
        let line = Arc::new(MockLine::default());
        let sink = Sink::default();
        (Uart::new(line.clone(), Box::new(sink.clone())), line, sink)
    }

    fn drain(u: &Uart) -> Vec<u8> {
        let mut got = vec![];
        while u.read(LSR, 1) as u8 & LSR_DR != 0 {
            got.push(u.read(RBR_THR, 1) as u8);
        }
        got
    }

    #[test]
    fn output_reaches_the_sink_and_is_flushed() {
        let (u, line, sink) = setup();
        for &b in b"hello\n" {
            u.write(RBR_THR, 1, b as u64);
        }
        let (bytes, flushes) = sink.0.lock().unwrap().clone();
        assert_eq!(bytes, b"hello\n");
        assert!(flushes >= 1);
        assert!(!line.level(), "no interrupt enabled");
    }

    #[test]
    fn reset_register_values() {
        let (u, _, _) = setup();
        assert_eq!(u.read(IIR_FCR, 1), 0xc1);
        // THRE and TEMT: the transmitter is idle.
        assert_eq!(u.read(LSR, 1), 0x60);
        assert_eq!(u.read(IER, 1), 0);
    }

    #[test]
    fn input_beyond_the_fifo_is_never_dropped() {
        let (u, _, _) = setup();
        u.write(IER, 1, IER_RDI as u64);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        u.push_input(&data[..300]);
        assert_eq!(u.input_backlog(), 300);
        let mut got = vec![];
        // Interleave reads with more input arriving.
        for _ in 0..10 {
            got.push(u.read(RBR_THR, 1) as u8);
        }
        u.push_input(&data[300..]);
        got.extend(drain(&u));
        assert_eq!(got, data);
        assert_eq!(u.input_backlog(), 0);
    }

    #[test]
    fn rx_interrupt_stays_up_until_the_fifo_is_drained() {
        let (u, line, _) = setup();
        u.write(IER, 1, IER_RDI as u64);
        assert!(!line.level());
        u.push_input(&[b'x'; 200]);
        assert!(line.level());
        // Linux's handler: read IIR, then LSR, then up to 256 characters.
        assert_eq!(u.read(IIR_FCR, 1), 0xc4);
        assert_eq!(u.read(IIR_FCR, 1), 0xc4, "an IIR read does not hide waiting data");
        assert_eq!(u.read(LSR, 1) as u8 & LSR_DR, 1);
        for _ in 0..100 {
            u.read(RBR_THR, 1);
        }
        assert!(line.level(), "100 bytes still waiting");
        assert_eq!(drain(&u).len(), 100);
        assert!(!line.level());
        assert_eq!(u.read(IIR_FCR, 1), 0xc1);
    }

    #[test]
    fn masking_ier_holds_the_rx_interrupt_and_restoring_raises_it() {
        let (u, line, _) = setup();
        u.write(IER, 1, IER_RDI as u64);
        // The 8250 console write: IER = 0, print, restore IER.
        u.write(IER, 1, 0);
        u.push_input(b"k");
        assert!(!line.level());
        assert_eq!(u.read(IIR_FCR, 1), 0xc1);
        u.write(IER, 1, IER_RDI as u64);
        assert!(line.level());
        assert_eq!(drain(&u), b"k");
        assert!(!line.level());
    }

    #[test]
    fn thre_interrupt_follows_the_16550_rules() {
        let (u, line, sink) = setup();
        // Linux's serial8250_do_startup THRE test: both IIR reads must report THRE.
        u.write(IER, 1, IER_THRI as u64);
        assert!(line.level());
        assert_eq!(u.read(IIR_FCR, 1), 0xc2);
        assert!(!line.level(), "the IIR read acknowledged THRE");
        u.write(IER, 1, 0);
        u.write(IER, 1, IER_THRI as u64);
        assert_eq!(u.read(IIR_FCR, 1), 0xc2);
        assert_eq!(u.read(IIR_FCR, 1), 0xc1);
        // Transmit from the handler: each THR write re-arms THRE.
        u.write(RBR_THR, 1, b'a' as u64);
        assert!(line.level());
        // Stop transmitting: clearing IER.THRI drops the line.
        u.write(IER, 1, IER_RDI as u64);
        assert!(!line.level());
        assert_eq!(sink.0.lock().unwrap().0, b"a");
        // RDA has priority over THRE in IIR.
        u.write(IER, 1, (IER_RDI | IER_THRI) as u64);
        u.push_input(b"z");
        assert_eq!(u.read(IIR_FCR, 1), 0xc4);
        assert_eq!(u.read(RBR_THR, 1), b'z' as u64);
        assert_eq!(u.read(IIR_FCR, 1), 0xc2);
    }

    #[test]
    fn divisor_latch_does_not_disturb_ier() {
        let (u, line, sink) = setup();
        u.write(IER, 1, IER_RDI as u64);
        u.write(LCR, 1, 0x83);
        u.write(RBR_THR, 1, 0x01);
        u.write(IER, 1, 0x00);
        assert_eq!(u.read(RBR_THR, 1), 0x01);
        assert_eq!(u.read(IER, 1), 0x00);
        u.write(LCR, 1, 0x03);
        assert_eq!(u.read(IER, 1), IER_RDI as u64);
        assert!(sink.0.lock().unwrap().0.is_empty(), "divisor writes are not output");
        u.push_input(b"q");
        assert!(line.level());
    }

    /// The Linux 8250 interrupt path end to end through a real PLIC: more input than one
    /// handler run takes (256 bytes) must still all arrive, with the line dropping at the end.
    #[test]
    fn linux_style_rx_through_the_plic_never_stalls() {
        use crate::Plic;
        let (m, s) = (Arc::new(MockLine::default()), Arc::new(MockLine::default()));
        let plic = Arc::new(Plic::new(vec![m.clone(), s.clone()]).unwrap());
        let u = Uart::new(plic.source(10), Box::new(std::io::sink()));
        plic.write(4 * 10, 4, 1); // priority
        plic.write(0x2080, 4, 1 << 10); // enable for hart 0 S-mode
        u.write(IER, 1, IER_RDI as u64);
        let data: Vec<u8> = (0..700u32).map(|i| i as u8).collect();
        u.push_input(&data);
        let mut got = vec![];
        let mut runs = 0;
        while s.level() {
            runs += 1;
            assert!(runs < 10, "interrupt storm");
            let irq = plic.read(0x20_1004, 4) as u32;
            assert_eq!(irq, 10);
            assert_ne!(u.read(IIR_FCR, 1) as u8 & IIR_NO_INT, IIR_NO_INT, "spurious");
            let mut lsr = u.read(LSR, 1) as u8;
            for _ in 0..256 {
                if lsr & LSR_DR == 0 {
                    break;
                }
                got.push(u.read(RBR_THR, 1) as u8);
                lsr = u.read(LSR, 1) as u8;
            }
            plic.write(0x20_1004, 4, irq as u64);
        }
        assert_eq!(got, data);
        assert_eq!(runs, 3);
        assert_eq!(s.rises(), 3);
        assert!(!m.level());
    }

    #[test]
    fn loopback_keeps_host_input_queued() {
        let (u, _, sink) = setup();
        u.write(IER, 1, IER_RDI as u64);
        u.write(MCR, 1, 0x10);
        u.push_input(b"host");
        u.write(RBR_THR, 1, b'L' as u64);
        assert_eq!(drain(&u), b"L");
        assert!(sink.0.lock().unwrap().0.is_empty());
        u.write(MCR, 1, 0x08);
        assert_eq!(drain(&u), b"host");
    }

    #[test]
    fn input_waits_until_the_guest_enables_the_receive_interrupt() {
        let (u, _, _) = setup();
        u.push_input(b"typed ahead");
        // Linux's 8250 start-up reads RBR with IER = 0 to clear stale data.
        for _ in 0..4 {
            assert_eq!(u.read(RBR_THR, 1), 0);
        }
        assert_eq!(u.read(LSR, 1) as u8 & LSR_DR, 0, "no data shown before IER.RDI");
        u.write(IER, 1, IER_RDI as u64);
        assert_eq!(drain(&u), b"typed ahead");
    }

    #[test]
    fn clearing_the_receive_interrupt_throttles_the_host() {
        let (u, _, _) = setup();
        u.write(IER, 1, IER_RDI as u64);
        u.push_input(&[b'a'; 100]);
        // The 8250 throttle hook clears IER.RDI when the tty buffer is full: what is already
        // in the FIFO can still be read, nothing more arrives until RDI comes back.
        u.write(IER, 1, 0);
        let mut got = 0;
        while u.read(LSR, 1) as u8 & LSR_DR != 0 {
            u.read(RBR_THR, 1);
            got += 1;
        }
        assert_eq!(got, 64, "exactly one FIFO's worth before the throttle holds");
        assert_eq!(u.input_backlog(), 36);
        u.write(IER, 1, IER_RDI as u64);
        assert_eq!(drain(&u).len(), 36);
    }

    const IER_RX_AND_LINE: u64 = (IER_RDI | IER_RLSI) as u64;

    #[test]
    fn a_break_is_a_zero_character_with_bi_at_the_top_of_the_fifo() {
        let (u, line, _) = setup();
        u.write(IER, 1, IER_RX_AND_LINE);
        u.push_input(b"a");
        u.send_break_then(b"s");
        // The break waits behind 'a': BI shows only when its character reaches the top.
        assert_eq!(u.input_backlog(), 3);
        assert_eq!(u.read(IIR_FCR, 1), 0xc4);
        assert_eq!(u.read(LSR, 1) as u8 & (LSR_DR | LSR_BI), LSR_DR);
        assert_eq!(u.read(RBR_THR, 1), b'a' as u64);
        // Now the break is at the top: receiver line status, the highest priority.
        assert!(line.level());
        assert_eq!(u.read(IIR_FCR, 1), 0xc6);
        assert_eq!(u.read(LSR, 1) as u8 & (LSR_DR | LSR_BI), LSR_DR | LSR_BI);
        // The LSR read cleared BI; the zero character is still there to read.
        assert_eq!(u.read(LSR, 1) as u8 & (LSR_DR | LSR_BI), LSR_DR);
        assert_eq!(u.read(IIR_FCR, 1), 0xc4);
        assert_eq!(u.read(RBR_THR, 1), 0);
        assert_eq!(u.read(LSR, 1) as u8 & (LSR_DR | LSR_BI), LSR_DR);
        assert_eq!(u.read(RBR_THR, 1), b's' as u64);
        assert_eq!(u.read(LSR, 1) as u8 & (LSR_DR | LSR_BI), 0);
        assert!(!line.level());
        assert_eq!(u.input_backlog(), 0);
    }

    /// Linux's 8250 receive path (serial8250_handle_irq, serial8250_rx_chars,
    /// serial8250_read_char and the SysRq helpers of serial_core.h), enough to see which
    /// SysRq keys one interrupt hands to handle_sysrq.
    fn linux_rx_interrupt(u: &Uart, sysrq_armed: &mut bool) -> (Vec<u8>, Option<u8>) {
        let (mut chars, mut sysrq_ch) = (vec![], None);
        let mut lsr = u.read(LSR, 1) as u8;
        if lsr & (LSR_DR | LSR_BI) == 0 {
            return (chars, sysrq_ch);
        }
        loop {
            let ch = if lsr & LSR_DR != 0 { u.read(RBR_THR, 1) as u8 } else { 0 };
            if lsr & LSR_BI != 0 && !*sysrq_armed {
                *sysrq_armed = true; // uart_handle_break: the next character is the key
            } else if *sysrq_armed && ch != 0 {
                *sysrq_armed = false; // uart_prepare_sysrq_char: one key per interrupt
                sysrq_ch = Some(ch);
            } else {
                chars.push(ch);
            }
            lsr = u.read(LSR, 1) as u8;
            if lsr & (LSR_DR | LSR_BI) == 0 {
                break;
            }
        }
        (chars, sysrq_ch)
    }

    #[test]
    fn break_then_key_is_a_sysrq_key_for_the_linux_driver() {
        let (u, line, _) = setup();
        u.write(IER, 1, IER_RX_AND_LINE);
        let mut armed = false;
        u.push_input(b"ls\r");
        u.send_break_then(b"s");
        assert!(line.level());
        let (typed, key) = linux_rx_interrupt(&u, &mut armed);
        assert_eq!((typed.as_slice(), key), (&b"ls\r"[..], Some(b's')));
        assert!(!line.level());
        // Keys sent one interrupt apart each arrive.
        for k in *b"uo" {
            u.send_break_then(&[k]);
            assert_eq!(linux_rx_interrupt(&u, &mut armed), (vec![], Some(k)));
        }
        // Input after a key is ordinary input again.
        u.send_break_then(b"o");
        u.push_input(b"x");
        assert_eq!(linux_rx_interrupt(&u, &mut armed), (b"x".to_vec(), Some(b'o')));
    }

    #[test]
    fn breaks_wait_for_the_receive_interrupt_and_leave_loopback_alone() {
        let (u, _, _) = setup();
        u.send_break();
        u.send_break();
        assert_eq!(u.read(LSR, 1) as u8 & (LSR_DR | LSR_BI), 0, "no break before IER.RDI");
        assert_eq!(u.input_backlog(), 2);
        u.write(MCR, 1, 0x10);
        u.write(IER, 1, IER_RDI as u64);
        assert_eq!(u.read(LSR, 1) as u8 & (LSR_DR | LSR_BI), 0, "loopback takes no break");
        u.write(MCR, 1, 0x08);
        // Two breaks are two zero characters, each with BI, one after the other; without
        // IER.ELSI there is no line status interrupt, only received data.
        for _ in 0..2 {
            assert_eq!(u.read(IIR_FCR, 1), 0xc4);
            assert_eq!(u.read(LSR, 1) as u8 & (LSR_DR | LSR_BI), LSR_DR | LSR_BI);
            assert_eq!(u.read(RBR_THR, 1), 0);
        }
        assert_eq!(u.read(LSR, 1) as u8 & (LSR_DR | LSR_BI), 0);
        assert_eq!(u.input_backlog(), 0);
    }
}
