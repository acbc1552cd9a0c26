//! Docker's embedded DNS for a VM-mode container, host side.
//!
//! On a user-defined network Docker names `127.0.0.11` in the container's
//! resolv.conf. In the engine's network namespace, iptables rules send
//! what goes to 127.0.0.11:53 to a resolver that dockerd serves there; in
//! the guest, 127.0.0.11 is the guest's own loopback. So the agent listens
//! on 127.0.0.11:53 in the container's namespace and passes each query up
//! the control port ([`vm_protocol::GuestMsg::Dns`]); the monitor, which
//! runs in the engine's namespace, sends it to 127.0.0.11:53 from there,
//! where Docker's rules apply, and passes the answer back down
//! ([`vm_protocol::Request::DnsAnswer`]). The relay is set up only when the
//! bundle's resolv.conf names 127.0.0.11 (see [`wanted`]).

use std::collections::HashMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a query waits for the engine's resolver (Docker's gives up on
/// an external server after a few seconds itself).
const FORGET_AFTER: Duration = Duration::from_secs(10);
/// Queries in flight at once; more are dropped (the client retries).
const MAX_PENDING: usize = 256;

/// Does the bundle's resolv.conf (the bind mount on /etc/resolv.conf that
/// engines add) name Docker's resolver, 127.0.0.11? Only then is the
/// address relayed: anywhere else a loopback nameserver is a server the
/// container runs itself, on its own loopback, which the guest has too.
pub fn wanted(spec: &oci_spec::runtime::Spec, bundle: &Path) -> bool {
    let Some(m) =
        spec.mounts().iter().flatten().find(|m| {
            m.destination() == Path::new("/etc/resolv.conf") && sandbox::spec::is_bind(m)
        })
    else {
        return false;
    };
    let Some(src) = m.source() else {
        return false;
    };
    let src = if src.is_absolute() {
        src.clone()
    } else {
        bundle.join(src)
    };
    std::fs::read_to_string(src).is_ok_and(|t| names_docker_dns(&t))
}

/// A resolv.conf with a `nameserver 127.0.0.11` line.
fn names_docker_dns(text: &str) -> bool {
    let want = vm_protocol::DOCKER_DNS.to_string();
    text.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("nameserver") && w.next() == Some(want.as_str())
    })
}

/// The queries sent on to the engine's resolver, one connected socket each.
#[derive(Debug, Default)]
pub struct Relay {
    pending: HashMap<u32, (UdpSocket, Instant)>,
}

impl Relay {
    /// Send query `q` to 127.0.0.11:53 from the calling thread's network
    /// namespace (the engine's: the monitor joined it). A query that cannot
    /// be sent is dropped, as a lost packet would be; the error is returned
    /// for the log.
    pub fn forward(&mut self, q: u32, data: &[u8]) -> std::io::Result<()> {
        self.pending.retain(|_, (_, t)| t.elapsed() < FORGET_AFTER);
        if self.pending.len() >= MAX_PENDING {
            return Err(std::io::Error::other(format!(
                "{MAX_PENDING} DNS queries already wait for an answer"
            )));
        }
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.connect(SocketAddrV4::new(vm_protocol::DOCKER_DNS, 53))?;
        s.set_nonblocking(true)?;
        s.send(data)?;
        self.pending.insert(q, (s, Instant::now()));
        Ok(())
    }

    /// (query, descriptor) of every query in flight, to poll.
    pub fn fds(&self) -> Vec<(u32, RawFd)> {
        self.pending
            .iter()
            .map(|(q, (s, _))| (*q, s.as_raw_fd()))
            .collect()
    }

    /// The answer to query `q`, once it has come (the query is then done).
    /// A refused send (nothing listens: ICMP port unreachable) ends it too,
    /// without an answer.
    pub fn take_answer(&mut self, q: u32) -> Option<Vec<u8>> {
        let (s, _) = self.pending.get(&q)?;
        let mut buf = vec![0u8; 65535];
        match s.recv(&mut buf) {
            Ok(n) => {
                self.pending.remove(&q);
                buf.truncate(n);
                Some(buf)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(_) => {
                self.pending.remove(&q);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_resolv_conf_naming_dockers_resolver_is_relayed() {
        assert!(names_docker_dns(
            "search x\nnameserver 127.0.0.11\noptions ndots:0\n"
        ));
        assert!(names_docker_dns("nameserver\t127.0.0.11"));
        assert!(!names_docker_dns("nameserver 10.89.0.1\n"));
        assert!(!names_docker_dns("nameserver 127.0.0.1\n"));
        assert!(!names_docker_dns("# nameserver 127.0.0.11\n"));
        assert!(!names_docker_dns("nameserver 127.0.0.110\n"));
    }

    #[test]
    fn the_resolv_conf_is_read_from_its_bind_mount() {
        let d = std::env::temp_dir().join(format!("nk-dns-unit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("resolv.conf"), "nameserver 127.0.0.11\n").unwrap();
        let spec = |m: &str| -> oci_spec::runtime::Spec {
            serde_json::from_str(&format!(r#"{{"ociVersion":"1.0.2","mounts":[{m}]}}"#)).unwrap()
        };
        let bind = spec(
            r#"{"destination":"/etc/resolv.conf","type":"bind","source":"resolv.conf","options":["rbind"]}"#,
        );
        assert!(wanted(&bind, &d));
        let other = spec(
            r#"{"destination":"/etc/hosts","type":"bind","source":"resolv.conf","options":["rbind"]}"#,
        );
        assert!(!wanted(&other, &d));
        let missing = spec(
            r#"{"destination":"/etc/resolv.conf","type":"bind","source":"nope","options":["rbind"]}"#,
        );
        assert!(!wanted(&missing, &d));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
