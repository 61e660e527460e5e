//! Advisory image locking that keel and QEMU both honour.
//!
//! QEMU's file driver (block/file-posix.c) expresses "who may do what" with open file description
//! (OFD) locks on single bytes: holding permission bit `i` takes a shared lock on byte `100 + i`;
//! refusing to share permission `i` with others takes a shared lock on byte `200 + i`. Before
//! using a permission it checks that nobody locks `200 + i`, and before refusing one that nobody
//! locks `100 + i`. keel uses the same bytes, so keel and QEMU/qemu-img see each other's locks:
//!
//! - a writer holds "consistent read" (100) and "write" (101) and refuses to share "write" (201);
//! - a reader holds "consistent read" (100) and refuses to share "write" (201), so nobody can
//!   modify an image under it.
//!
//! A writer therefore conflicts with any other user, and readers only conflict with writers.
//! Locks are taken before checking, so two openers racing each other both fail rather than both
//! succeeding. They are released explicitly before the file is closed: closing alone would keep
//! them while a child process forked by another thread still shares the file description
//! (between its fork and exec), making an immediate reopen fail.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::sys::{self, LockKind};
use crate::BlockError;

/// QEMU's `RAW_LOCK_PERM_BASE`: byte holding a permission.
const PERM_BASE: u64 = 100;
/// QEMU's `RAW_LOCK_SHARED_BASE`: byte refusing to share a permission.
const SHARED_BASE: u64 = 200;
/// QEMU's `BLK_PERM_CONSISTENT_READ` bit index.
const PERM_CONSISTENT_READ: u64 = 0;
/// QEMU's `BLK_PERM_WRITE` bit index.
const PERM_WRITE: u64 = 1;

/// Locks `file` for reading (shared with other readers) or writing (exclusive).
pub(crate) fn lock_image(file: &File, path: &Path, write: bool) -> Result<(), BlockError> {
    let mut held = vec![PERM_BASE + PERM_CONSISTENT_READ, SHARED_BASE + PERM_WRITE];
    if write {
        held.push(PERM_BASE + PERM_WRITE);
    }
    for &byte in &held {
        match sys::ofd_lock(file, Some(LockKind::Shared), byte, 1) {
            Ok(()) => {}
            Err(e) if is_conflict(&e) => return Err(BlockError::Locked { path: path.into() }),
            Err(e) => return Err(BlockError::io(path, "locking the image (fcntl F_OFD_SETLK)", e)),
        }
    }
    // Whoever writes holds byte 101; whoever forbids writers holds byte 201.
    let mut conflicts = vec![PERM_BASE + PERM_WRITE];
    if write {
        conflicts.push(SHARED_BASE + PERM_WRITE);
    }
    for &byte in &conflicts {
        match sys::ofd_locked_by_other(file, byte, 1) {
            Ok(false) => {}
            Ok(true) => return Err(BlockError::Locked { path: path.into() }),
            Err(e) => {
                return Err(BlockError::io(path, "checking the image lock (fcntl F_OFD_GETLK)", e))
            }
        }
    }
    Ok(())
}

fn is_conflict(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
}

/// Releases keel's lock bytes (see the module comment for why not just close).
pub(crate) fn unlock_image(file: &File) {
    // Nothing useful to do on failure: closing the file releases the locks too, eventually.
    let _ = sys::ofd_lock(file, None, PERM_BASE, SHARED_BASE + 100 - PERM_BASE);
}
