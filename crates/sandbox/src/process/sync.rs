//! The parent/child channel. SOCK_SEQPACKET keeps message boundaries, so each
//! JSON message (and the descriptors sent with it) arrives whole.

use crate::error::{Error, Result};
use nix::sys::socket::{
    recv, recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Largest message accepted (an Init request carries the process, which a
/// config of up to 4 MiB may fill).
pub const MAX_MSG: usize = 16 << 20;

/// Messages above this size travel in a memfd: a SEQPACKET datagram cannot
/// exceed the socket's send buffer (about 200 KiB by default).
const INLINE_MAX: usize = 32 << 10;

/// The datagram that announces a message in the first attached memfd.
const IN_MEMFD: &[u8] = b"\0memfd";

/// Most descriptors one message carries: the Init message carries
/// exec.fifo, config.json, a pid namespace, one v1 `tasks` file per
/// hierarchy (a dozen or so) and up to [`MAX_IDMAPPED`] idmapped trees. A
/// message with more is refused, not truncated.
pub const MAX_FDS: usize = 96;

/// Most idmapped mounts one container may have (their trees travel in
/// the Init message, see [`MAX_FDS`]).
pub const MAX_IDMAPPED: usize = 62;

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair (close-on-exec).
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::sys("socketpair for the sync channel", e))?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Wrap a descriptor received from the parent.
    ///
    /// # Safety
    /// `fd` must be an open SEQPACKET socket that nothing else owns.
    pub unsafe fn from_raw(fd: RawFd) -> Channel {
        Channel {
            // SAFETY: upheld by the caller.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        }
    }

    /// The descriptor.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Send a message, with descriptors attached.
    pub fn send_fds<T: Serialize>(&self, msg: &T, fds: &[RawFd]) -> Result<()> {
        if fds.len() > MAX_FDS {
            return Err(Error::msg(format!(
                "sync message with {} descriptors is above the {MAX_FDS}-descriptor limit",
                fds.len()
            )));
        }
        let data =
            serde_json::to_vec(msg).map_err(|e| Error::msg(format!("encode message: {e}")))?;
        if data.len() > MAX_MSG {
            return Err(Error::msg(format!(
                "sync message of {} bytes is above the {MAX_MSG}-byte limit",
                data.len()
            )));
        }
        let memfd;
        let mut all: Vec<RawFd> = Vec::with_capacity(fds.len() + 1);
        let payload: &[u8] = if data.len() > INLINE_MAX {
            memfd =
                nix::sys::memfd::memfd_create(c"nk-sync", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                    .map_err(|e| Error::sys("memfd for a large sync message", e))?;
            let mut f = std::fs::File::from(
                memfd
                    .try_clone()
                    .map_err(|e| Error::msg(format!("dup memfd: {e}")))?,
            );
            std::io::Write::write_all(&mut f, &data)
                .map_err(|e| Error::msg(format!("write a large sync message: {e}")))?;
            all.push(memfd.as_raw_fd());
            IN_MEMFD
        } else {
            &data
        };
        all.extend_from_slice(fds);
        let iov = [IoSlice::new(payload)];
        let cmsg = [ControlMessage::ScmRights(&all)];
        let cm: &[ControlMessage] = if all.is_empty() { &[] } else { &cmsg };
        loop {
            match sendmsg::<()>(self.fd.as_raw_fd(), &iov, cm, MsgFlags::MSG_NOSIGNAL, None) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("send on the sync channel", e)),
            }
        }
    }

    /// Send a message.
    pub fn send<T: Serialize>(&self, msg: &T) -> Result<()> {
        self.send_fds(msg, &[])
    }

    /// Receive a message and any descriptors; None at end of stream.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<Option<(T, Vec<OwnedFd>)>> {
        // Peek the size first: SEQPACKET with MSG_TRUNC reports the whole length.
        let len = loop {
            match recv(
                self.fd.as_raw_fd(),
                &mut [],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::ECONNRESET) => return Ok(None),
                Err(e) => return Err(Error::sys("receive on the sync channel", e)),
            }
        };
        if len == 0 {
            // Either EOF or an empty datagram; consume and report EOF.
            let _ = recv(self.fd.as_raw_fd(), &mut [0u8; 1], MsgFlags::empty());
            return Ok(None);
        }
        let mut buf = vec![0u8; len.min(MAX_MSG)];
        // One more than MAX_FDS: a large message adds its memfd.
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS + 1]);
        let (n, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => {
                    let mut fds = Vec::new();
                    if let Ok(cms) = m.cmsgs() {
                        for c in cms {
                            if let ControlMessageOwned::ScmRights(v) = c {
                                for fd in v {
                                    // SAFETY: descriptors received by SCM_RIGHTS are new and ours.
                                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                                }
                            }
                        }
                    }
                    break (m.bytes, fds);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("receive on the sync channel", e)),
            }
        };
        let mut fds = fds;
        let big;
        let data: &[u8] = if &buf[..n] == IN_MEMFD && !fds.is_empty() {
            use std::io::{Read, Seek};
            let mut f = std::fs::File::from(fds.remove(0));
            let mut v = Vec::new();
            f.seek(std::io::SeekFrom::Start(0))
                .and_then(|_| f.take(MAX_MSG as u64).read_to_end(&mut v))
                .map_err(|e| Error::msg(format!("read a large sync message: {e}")))?;
            big = v;
            &big
        } else {
            &buf[..n]
        };
        let msg = serde_json::from_slice(data)
            .map_err(|e| Error::msg(format!("decode sync message: {e}")))?;
        Ok(Some((msg, fds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::messages::ToParent;

    #[test]
    fn large_messages_travel_in_a_memfd_with_their_descriptors() {
        let (a, b) = Channel::pair().unwrap();
        let big = "x".repeat(3 << 20);
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        a.send_fds(&ToParent::Error(big.clone()), &[f.as_raw_fd()])
            .unwrap();
        let (m, fds) = b.recv::<ToParent>().unwrap().unwrap();
        assert!(matches!(m, ToParent::Error(s) if s == big));
        assert_eq!(fds.len(), 1);
        a.send(&ToParent::Ready).unwrap();
        assert!(matches!(
            b.recv::<ToParent>().unwrap().unwrap().0,
            ToParent::Ready
        ));
    }

    #[test]
    fn every_descriptor_arrives_or_the_send_is_refused() {
        let (a, b) = Channel::pair().unwrap();
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let all = vec![f.as_raw_fd(); MAX_FDS];
        a.send_fds(&ToParent::Ready, &all).unwrap();
        assert_eq!(b.recv::<ToParent>().unwrap().unwrap().1.len(), MAX_FDS);
        let over = vec![f.as_raw_fd(); MAX_FDS + 1];
        let e = a.send_fds(&ToParent::Ready, &over).unwrap_err();
        assert!(e.to_string().contains("descriptor limit"), "{e}");
    }
}
