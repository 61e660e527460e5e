//! An image file with its path, so every I/O error can name the file.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::sys::{self, Fallocate};
use crate::BlockError;

pub(crate) struct ImageFile {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
}

impl ImageFile {
    /// Opens an existing image and takes keel's (QEMU-compatible) advisory lock on it.
    pub(crate) fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| BlockError::io(path, "opening", e))?;
        crate::lock::lock_image(&file, path, !read_only)?;
        Ok(ImageFile { file, path: path.to_path_buf() })
    }

    /// Creates a new image file; refuses to replace an existing one, which could be a disk
    /// somebody cares about.
    pub(crate) fn create_new(path: &Path) -> Result<Self, BlockError> {
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).open(path).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    BlockError::InvalidArgument {
                        path: path.into(),
                        what: "the file already exists; delete it first or choose another name"
                            .into(),
                    }
                } else {
                    BlockError::io(path, "creating", e)
                }
            })?;
        crate::lock::lock_image(&file, path, true)?;
        Ok(ImageFile { file, path: path.to_path_buf() })
    }

    /// Current length; seeking to the end also works for block devices, whose metadata length
    /// is zero.
    pub(crate) fn len(&self) -> Result<u64, BlockError> {
        (&self.file).seek(SeekFrom::End(0)).map_err(|e| self.err("finding the size", e))
    }

    pub(crate) fn err(&self, op: &'static str, e: io::Error) -> BlockError {
        BlockError::io(&self.path, op, e)
    }

    /// Reads exactly `buf.len()` bytes; a read past the end of the file is an error.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        self.file.read_exact_at(buf, offset).map_err(|e| self.err("reading", e))
    }

    /// Reads `buf.len()` bytes, with zeroes for the part beyond the end of the file: qcow2 lets
    /// the last cluster of an image file be short.
    pub(crate) fn read_zero_fill(&self, buf: &mut [u8], offset: u64) -> Result<(), BlockError> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.err("reading", e)),
            }
        }
        buf[done..].fill(0);
        Ok(())
    }

    pub(crate) fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<(), BlockError> {
        self.file.write_all_at(buf, offset).map_err(|e| self.err("writing", e))
    }

    /// fdatasync: file data and the metadata needed to read it back (the size) are durable.
    pub(crate) fn sync(&self) -> Result<(), BlockError> {
        self.file.sync_data().map_err(|e| self.err("flushing (fdatasync)", e))
    }

    /// Frees the file's blocks for a range; it then reads as zeroes. Returns false where the
    /// file system cannot do it.
    pub(crate) fn punch_hole(&self, offset: u64, len: u64) -> Result<bool, BlockError> {
        self.fallocate(Fallocate::PunchHole, offset, len, "deallocating (fallocate PUNCH_HOLE)")
    }

    /// Makes a range read as zeroes without writing them. Returns false where the file system
    /// cannot do it.
    pub(crate) fn zero_range(&self, offset: u64, len: u64) -> Result<bool, BlockError> {
        self.fallocate(Fallocate::ZeroRange, offset, len, "zeroing (fallocate ZERO_RANGE)")
    }

    fn fallocate(
        &self,
        mode: Fallocate,
        offset: u64,
        len: u64,
        op: &'static str,
    ) -> Result<bool, BlockError> {
        if len == 0 {
            return Ok(true);
        }
        match sys::fallocate(&self.file, mode, offset, len) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL)
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.err(op, e)),
        }
    }

    /// Writes zeroes the slow way, in bounded chunks.
    pub(crate) fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        const CHUNK: u64 = 1 << 20;
        let zeroes = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.write_all_at(&zeroes[..n as usize], offset + done)?;
            done += n;
        }
        Ok(())
    }
}

impl Drop for ImageFile {
    fn drop(&mut self) {
        crate::lock::unlock_image(&self.file);
    }
}
