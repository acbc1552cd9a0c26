//! Docker's embedded DNS for a container in the guest.
//!
//! On a user-defined network Docker writes `nameserver 127.0.0.11` into the
//! container's resolv.conf and answers there through iptables rules of the
//! container's network namespace, which send the query to a resolver that
//! dockerd runs in that namespace. In a VM the container's 127.0.0.11 is
//! the guest's own loopback, which the engine's rules never see. So the
//! agent listens on 127.0.0.11:53 (UDP) in the container's namespace and
//! hands every query to the host over the control port; the monitor asks
//! 127.0.0.11:53 in the engine's namespace and the answer comes back the
//! same way. A query the host does not answer is dropped after
//! [`FORGET_AFTER`], and the container's resolver times out as it would
//! on a lost packet.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// How long a query waits for its answer.
const FORGET_AFTER: Duration = Duration::from_secs(10);
/// Queries waiting at once; the oldest goes when a new one would pass it.
const MAX_PENDING: usize = 256;
/// The largest DNS message over UDP (EDNS0 may go beyond 512).
const MAX_MSG: usize = 65535;

/// The listening sockets and the queries waiting for the host.
#[derive(Default)]
pub struct Relay {
    socks: Vec<UdpSocket>,
    /// query number → (socket index, the client, when it asked).
    pending: HashMap<u32, (usize, SocketAddr, Instant)>,
    next: u32,
}

impl Relay {
    /// Listen on 127.0.0.11:53 in the network namespace of guest process
    /// `pid` (the container's init). The socket is made there and keeps
    /// working after the agent returns to its own namespace.
    pub fn listen(&mut self, pid: i32) -> Result<(), String> {
        use nix::sched::{setns, CloneFlags};
        let own = std::fs::File::open("/proc/self/ns/net")
            .map_err(|e| format!("open /proc/self/ns/net: {e}"))?;
        let path = format!("/proc/{pid}/ns/net");
        let theirs = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
        setns(&theirs, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns into {path}: {e}"))?;
        let addr = SocketAddrV4::new(vm_protocol::DOCKER_DNS, 53);
        let s = UdpSocket::bind(addr);
        let back = setns(&own, CloneFlags::CLONE_NEWNET);
        if let Err(e) = back {
            // Nothing else the agent does would be right from here on.
            return Err(format!("setns back into the agent's namespace: {e}"));
        }
        let s = s.map_err(|e| {
            format!("bind {addr} (udp) in the container's network namespace for Docker's DNS: {e}")
        })?;
        s.set_nonblocking(true)
            .map_err(|e| format!("make the DNS socket non-blocking: {e}"))?;
        self.socks.push(s);
        Ok(())
    }

    /// The descriptors to poll for queries.
    pub fn fds(&self) -> Vec<RawFd> {
        self.socks.iter().map(|s| s.as_raw_fd()).collect()
    }

    /// Read the queries waiting on socket `i`: (number, payload) each.
    pub fn take_queries(&mut self, i: usize) -> Vec<(u32, Vec<u8>)> {
        let mut got = Vec::new();
        if let Some(s) = self.socks.get(i) {
            let mut buf = vec![0u8; MAX_MSG];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                got.push((from, buf[..n].to_vec()));
            }
        }
        self.pending
            .retain(|_, (_, _, t)| t.elapsed() < FORGET_AFTER);
        let mut out = Vec::new();
        for (from, data) in got {
            if self.pending.len() >= MAX_PENDING {
                if let Some(oldest) = self
                    .pending
                    .iter()
                    .min_by_key(|(_, (_, _, t))| *t)
                    .map(|(q, _)| *q)
                {
                    self.pending.remove(&oldest);
                }
            }
            let q = self.next;
            self.next = self.next.wrapping_add(1);
            self.pending.insert(q, (i, from, Instant::now()));
            out.push((q, data));
        }
        out
    }

    /// Send the host's answer to query `q` back to whoever asked.
    pub fn answer(&mut self, q: u32, data: &[u8]) {
        if let Some((i, to, _)) = self.pending.remove(&q) {
            if let Some(s) = self.socks.get(i) {
                let _ = s.send_to(data, to);
            }
        }
    }
}
