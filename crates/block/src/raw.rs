//! Raw images: the file (or block device) is the disk, byte for byte.

use crate::file::ImageFile;
use crate::{check_range, BlockError, DiskImage, QCOW2_MAGIC};

pub(crate) struct RawImage {
    file: ImageFile,
    size: u64,
    read_only: bool,
    /// The format was guessed from the content rather than given: the guest must then not be
    /// able to write a qcow2 header into sector 0, or the next open would treat the disk as
    /// qcow2 and let the guest name any host file as its backing file (QEMU refuses the same).
    probed: bool,
}

impl RawImage {
    pub(crate) fn from_file(
        file: ImageFile,
        read_only: bool,
        probed: bool,
    ) -> Result<Self, BlockError> {
        let size = file.len()?;
        Ok(RawImage { file, size, read_only, probed })
    }

    fn writable(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly { path: self.file.path.clone() });
        }
        check_range(&self.file.path, offset, len, self.size)
    }

    /// Refuses a write that would make the start of a probed raw image look like qcow2.
    fn check_probe_safety(&self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        if !self.probed || offset >= 4 || buf.is_empty() {
            return Ok(());
        }
        let mut head = [0u8; 4];
        self.file.read_zero_fill(&mut head, 0)?;
        for (i, b) in buf.iter().take(4 - offset as usize).enumerate() {
            head[offset as usize + i] = *b;
        }
        if head == QCOW2_MAGIC {
            return Err(BlockError::unsupported(
                &self.file.path,
                "a write of a qcow2 header into sector 0 of an image whose format was detected as \
                 raw",
                "give the format (raw) explicitly when opening the image to allow it",
            ));
        }
        Ok(())
    }
}

impl DiskImage for RawImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(&self.file.path, offset, buf.len() as u64, self.size)?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.writable(offset, buf.len() as u64)?;
        self.check_probe_safety(offset, buf)?;
        self.file.write_all_at(buf, offset)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync()
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.writable(offset, len)?;
        // Discard is a hint: a file system that cannot punch holes just keeps the blocks.
        self.file.punch_hole(offset, len)?;
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.writable(offset, len)?;
        if self.file.zero_range(offset, len)? || self.file.punch_hole(offset, len)? {
            return Ok(());
        }
        self.file.write_zeroes(offset, len)
    }
}

impl Drop for RawImage {
    fn drop(&mut self) {
        if !self.read_only {
            // Like qcow2 images, a closed image is durable; there is no one to report to.
            let _ = self.file.sync();
        }
    }
}
