//! A host TAP device opened for virtio-net: the `/dev/net/tun` open and the TUN ioctls live
//! here, so this is the only `unsafe` of the network device.
//!
//! keel never creates or configures host interfaces: it attaches to a TAP device the host's
//! administrator made (`ip tuntap add dev tap0 mode tap`), and every error says what to do.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::DeviceError;

/// An open, non-blocking TAP device that reads and writes Ethernet frames, each preceded by a
/// virtio-net header of the size given to [`Tap::open`].
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

/// Offloads the TAP may use for frames it gives us (TUNSETOFFLOAD): the guest accepted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    pub csum: bool,
    pub tso4: bool,
    pub tso6: bool,
    pub tso_ecn: bool,
}

impl Tap {
    /// Attaches to the existing TAP device `name`, without packet information, with virtio-net
    /// headers of `vnet_hdr_len` bytes, non-blocking.
    pub fn open(name: &str, vnet_hdr_len: usize) -> Result<Tap, DeviceError> {
        let setup = |what: String| DeviceError::Setup(format!("TAP device {name}: {what}"));
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(setup(format!("a name has 1 to {} characters", libc::IFNAMSIZ - 1)));
        }
        let cname = CString::new(name).map_err(|_| setup("the name contains a NUL byte".into()))?;
        // TUNSETIFF would create a missing device (given CAP_NET_ADMIN); keel must not create
        // host interfaces, so a missing one is an error found first.
        // SAFETY: if_nametoindex reads the NUL-terminated string and nothing else.
        if unsafe { libc::if_nametoindex(cname.as_ptr()) } == 0 {
            return Err(DeviceError::Setup(format!(
                "TAP device {name} does not exist: create it with `ip tuntap add dev {name} mode \
                 tap` (add `user $USER` to let keel run unprivileged), give it an address and \
                 `ip link set {name} up`"
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => DeviceError::Setup(format!(
                    "/dev/net/tun does not exist (needed for TAP device {name}): load the tun \
                     module (`modprobe tun`)"
                )),
                io::ErrorKind::PermissionDenied => DeviceError::Setup(format!(
                    "cannot open /dev/net/tun for TAP device {name}: permission denied; run keel \
                     as a user who may open it (it is usually mode 0666)"
                )),
                _ => setup(format!("cannot open /dev/net/tun: {e}")),
            })?;
        let fd = file.as_raw_fd();

        // SAFETY: an all-zero ifreq is a valid value (a C struct of integers and arrays).
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which `ifr` is, on an fd we own.
        if unsafe { libc::ioctl(fd, libc::TUNSETIFF as _, &mut ifr) } < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => DeviceError::Setup(format!(
                    "permission denied attaching to TAP device {name}: it belongs to another \
                     user; recreate it for this one (`ip tuntap add dev {name} mode tap user \
                     $USER`) or run keel with CAP_NET_ADMIN"
                )),
                Some(libc::EBUSY) => DeviceError::Setup(format!(
                    "TAP device {name} is in use by another program (another VM?): give each \
                     VM its own TAP device"
                )),
                Some(libc::EINVAL) => DeviceError::Setup(format!(
                    "{name} is not a single-queue TAP device (a TUN device, a multi-queue TAP \
                     or another kind of interface): create one with `ip tuntap add dev {name} \
                     mode tap`"
                )),
                _ => setup(format!("cannot attach (TUNSETIFF): {e}")),
            });
        }
        let hdr_len = vnet_hdr_len as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which points to one.
        if unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ as _, &hdr_len) } < 0 {
            return Err(setup(format!(
                "cannot set the virtio-net header size (TUNSETVNETHDRSZ): {}",
                io::Error::last_os_error()
            )));
        }
        // virtio 1.x headers are little-endian (§5.1.6); the TAP uses the host's order unless
        // told otherwise, so say it (a no-op on little-endian hosts).
        let le: libc::c_int = 1;
        // SAFETY: TUNSETVNETLE reads one int through the pointer, which points to one.
        if unsafe { libc::ioctl(fd, libc::TUNSETVNETLE as _, &le) } < 0
            && cfg!(target_endian = "big")
        {
            return Err(setup(format!(
                "cannot make virtio-net headers little-endian (TUNSETVNETLE): {}",
                io::Error::last_os_error()
            )));
        }
        let tap = Tap { file, name: name.to_owned() };
        tap.set_offloads(Offloads::default())
            .map_err(|e| setup(format!("cannot turn offloads off (TUNSETOFFLOAD): {e}")))?;
        Ok(tap)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tells the TAP which offloads the guest takes: with none, the host finishes checksums
    /// and segments large packets before handing them over.
    pub fn set_offloads(&self, o: Offloads) -> io::Result<()> {
        let mut flags: libc::c_uint = 0;
        if o.csum {
            flags |= libc::TUN_F_CSUM;
            // The TAP refuses segmentation offloads without checksum offload.
            if o.tso4 {
                flags |= libc::TUN_F_TSO4;
            }
            if o.tso6 {
                flags |= libc::TUN_F_TSO6;
            }
            if (o.tso4 || o.tso6) && o.tso_ecn {
                flags |= libc::TUN_F_TSO_ECN;
            }
        }
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
        if unsafe {
            libc::ioctl(self.file.as_raw_fd(), libc::TUNSETOFFLOAD as _, flags as libc::c_ulong)
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads one frame (header first). `WouldBlock` when none is waiting.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut &self.file, buf)
    }

    /// Writes one frame (header first).
    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        io::Write::write(&mut &self.file, frame)
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
