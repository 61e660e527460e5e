//! The crate's only `unsafe`: thin wrappers over the Linux calls that std does not offer
//! (fallocate, open file description locks). Each takes a `&File`, so the descriptor is open
//! for the duration of the call.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `fallocate(2)` modes used by the images.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fallocate {
    /// Deallocates the range; it reads as zeroes afterwards; the file size is kept.
    PunchHole,
    /// Makes the range read as zeroes, preferably without writing (the file size is kept).
    ZeroRange,
}

pub(crate) fn fallocate(file: &File, mode: Fallocate, offset: u64, len: u64) -> io::Result<()> {
    let mode = match mode {
        Fallocate::PunchHole => libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        Fallocate::ZeroRange => libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
    };
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: fallocate only reads its integer arguments; the descriptor is valid because `file`
    // is borrowed for the call.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), mode, off, len) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Kind of an open file description (OFD) byte-range lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    Shared,
    Exclusive,
}

fn flock_struct(kind: Option<LockKind>, start: u64, len: u64) -> libc::flock {
    // SAFETY: `libc::flock` is a plain C struct of integers, for which all-zeroes is valid.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = match kind {
        Some(LockKind::Shared) => libc::F_RDLCK,
        Some(LockKind::Exclusive) => libc::F_WRLCK,
        None => libc::F_UNLCK,
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    // OFD lock commands require l_pid == 0 (fcntl(2)); zeroed() already did that.
    fl
}

/// Takes an OFD lock on `len` bytes at `start` without waiting (`F_OFD_SETLK`). OFD locks
/// belong to the open file description, so they conflict between two opens of the same file in
/// one process too, and they go away when the file is closed.
/// `kind` None releases the range.
pub(crate) fn ofd_lock(
    file: &File,
    kind: Option<LockKind>,
    start: u64,
    len: u64,
) -> io::Result<()> {
    let fl = flock_struct(kind, start, len);
    // SAFETY: F_OFD_SETLK reads the flock struct we pass by pointer, which lives across the call.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether some other open file description holds a lock that would conflict with an exclusive
/// lock on `len` bytes at `start` (`F_OFD_GETLK`).
pub(crate) fn ofd_locked_by_other(file: &File, start: u64, len: u64) -> io::Result<bool> {
    let mut fl = flock_struct(Some(LockKind::Exclusive), start, len);
    // SAFETY: F_OFD_GETLK reads and overwrites the flock struct we pass, which we own.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if r == 0 {
        Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
    } else {
        Err(io::Error::last_os_error())
    }
}
