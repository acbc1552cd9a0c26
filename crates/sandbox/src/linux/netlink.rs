//! A small rtnetlink client: the few link, address, route and traffic
//! control messages VM mode needs, on the host (the tap and its tc redirect
//! in the engine's network namespace) and in the guest (the interface's
//! addresses and routes). Hand-written rather than a crate: the guest has no
//! `ip` or `tc` to call, the message set is small and synchronous, and the
//! netlink crates bring an async stack or a large generated message model.
//!
//! A socket talks to the network namespace of the thread that opened it,
//! for its whole life: [`Socket::open_in`] opens one in another namespace
//! from a short-lived thread, so the caller's own namespace never changes.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// `struct nlmsghdr` size; messages and attributes align to 4 bytes.
const NLMSG_HDRLEN: usize = 16;
const NLA_HDRLEN: usize = 4;
/// Marks an attribute whose payload is more attributes.
pub const NLA_F_NESTED: u16 = 0x8000;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One request under construction: the netlink header, the family header
/// (ifinfomsg, ifaddrmsg, rtmsg, tcmsg) and attributes, nested as needed.
pub struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    /// A message of type `ty` (RTM_*) with `flags` (NLM_F_REQUEST is added)
    /// and the family header `header`.
    pub fn new(ty: u16, flags: u16, header: &[u8]) -> Msg {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
        buf.extend_from_slice(header);
        buf.resize(align4(buf.len()), 0);
        Msg { buf, nests: vec![] }
    }

    /// Append an attribute.
    pub fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Msg {
        let len = NLA_HDRLEN + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Msg {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// A NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) -> &mut Msg {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.attr(ty, &b)
    }

    /// Open a nested attribute; close it with [`Msg::end`].
    pub fn begin(&mut self, ty: u16) -> &mut Msg {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub fn end(&mut self) -> &mut Msg {
        let at = self.nests.pop().expect("Msg::end without Msg::begin");
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        assert!(self.nests.is_empty(), "unclosed netlink nest");
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// The attributes in `buf` as (type without flags, payload).
pub fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < NLA_HDRLEN {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < NLA_HDRLEN || len > buf.len() {
            return None;
        }
        let data = &buf[NLA_HDRLEN..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((ty, data))
    })
}

/// A u32 attribute payload.
pub fn u32_of(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

/// A NUL-terminated string attribute payload.
pub fn str_of(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A link-layer address as `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `aa:bb:cc:dd:ee:ff` as six bytes; None for anything else.
pub fn mac_bytes(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// A NETLINK_ROUTE socket.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Socket> {
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Socket { fd, seq: 1 })
    }

    /// A socket in the network namespace at `netns` (a /proc/PID/ns/net or a
    /// bind-mounted nsfs file such as /run/netns/NAME). A helper thread
    /// joins the namespace and opens the socket; the caller stays where it is.
    pub fn open_in(netns: &Path) -> io::Result<Socket> {
        let ns = std::fs::File::open(netns)?;
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                Socket::open()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the netns helper thread panicked")))
        })
    }

    fn send(&mut self, m: &mut Msg, extra: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let flags = u16::from_ne_bytes([m.buf[6], m.buf[7]]) | extra;
        m.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        let b = m.finish(seq);
        // SAFETY: sockaddr_nl of zeroes is the kernel; the buffer lives for the call.
        let n = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                b.as_ptr().cast(),
                b.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(seq)
    }

    /// Read replies to `seq`, giving each message (type, payload) to `each`,
    /// until the ACK (or DONE for a dump). A netlink error is the Err.
    fn recv(&mut self, seq: u32, each: &mut dyn FnMut(u16, &[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: recv into a buffer we own, of its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut b = &buf[..n as usize];
            while b.len() >= NLMSG_HDRLEN {
                let len = u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize;
                let ty = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes(b[8..12].try_into().unwrap());
                if len < NLMSG_HDRLEN || len > b.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a truncated netlink message",
                    ));
                }
                let payload = &b[NLMSG_HDRLEN..len];
                b = &b[align4(len).min(b.len())..];
                if mseq != seq {
                    continue;
                }
                match ty as i32 {
                    libc::NLMSG_DONE => return Ok(()),
                    libc::NLMSG_ERROR => {
                        let err = payload
                            .get(..4)
                            .map(|e| i32::from_ne_bytes(e.try_into().unwrap()))
                            .unwrap_or(-libc::EIO);
                        return if err == 0 {
                            Ok(())
                        } else {
                            Err(io::Error::from_raw_os_error(-err))
                        };
                    }
                    _ => each(ty, payload),
                }
            }
        }
    }

    /// Send a request and wait for its acknowledgement.
    pub fn request(&mut self, mut m: Msg) -> io::Result<()> {
        let seq = self.send(&mut m, libc::NLM_F_ACK as u16)?;
        self.recv(seq, &mut |_, _| {})
    }

    /// Send a dump request; every reply message's payload (family header
    /// and attributes).
    pub fn dump(&mut self, mut m: Msg) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.send(&mut m, libc::NLM_F_DUMP as u16)?;
        let mut out = vec![];
        self.recv(seq, &mut |_, p| out.push(p.to_vec()))?;
        Ok(out)
    }
}

/// `struct ifinfomsg`.
pub fn ifinfomsg(family: u8, index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = family;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// `struct ifaddrmsg`.
pub fn ifaddrmsg(family: u8, prefix: u8, flags: u8, scope: u8, index: u32) -> [u8; 8] {
    let mut h = [family, prefix, flags, scope, 0, 0, 0, 0];
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h
}

/// `struct rtmsg` (flags zero).
#[allow(clippy::too_many_arguments)]
pub fn rtmsg(family: u8, dst_len: u8, table: u8, protocol: u8, scope: u8, ty: u8) -> [u8; 12] {
    [
        family, dst_len, 0, 0, table, protocol, scope, ty, 0, 0, 0, 0,
    ]
}

/// `struct tcmsg`.
pub fn tcmsg(index: i32, handle: u32, parent: u32, info: u32) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&handle.to_ne_bytes());
    h[12..16].copy_from_slice(&parent.to_ne_bytes());
    h[16..20].copy_from_slice(&info.to_ne_bytes());
    h
}

/// One network link as RTM_GETLINK reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: i32,
    pub name: String,
    /// ARPHRD_* (1 is Ethernet).
    pub hw_type: u16,
    pub flags: u32,
    pub mac: Vec<u8>,
    pub mtu: u32,
    /// IFLA_INFO_KIND: "veth", "tun", "bridge"... (empty for a plain device).
    pub kind: String,
}

impl Socket {
    /// Every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let m = Msg::new(
            libc::RTM_GETLINK,
            0,
            &ifinfomsg(libc::AF_UNSPEC as u8, 0, 0, 0),
        );
        let mut out = vec![];
        for p in self.dump(m)? {
            if p.len() < 16 {
                continue;
            }
            let mut l = Link {
                index: i32::from_ne_bytes(p[4..8].try_into().unwrap()),
                name: String::new(),
                hw_type: u16::from_ne_bytes([p[2], p[3]]),
                flags: u32::from_ne_bytes(p[8..12].try_into().unwrap()),
                mac: vec![],
                mtu: 0,
                kind: String::new(),
            };
            for (ty, d) in attrs(&p[16..]) {
                match ty {
                    libc::IFLA_IFNAME => l.name = str_of(d),
                    libc::IFLA_ADDRESS => l.mac = d.to_vec(),
                    libc::IFLA_MTU => l.mtu = u32_of(d).unwrap_or(0),
                    libc::IFLA_LINKINFO => {
                        for (t, k) in attrs(d) {
                            if t == libc::IFLA_INFO_KIND {
                                l.kind = str_of(k);
                            }
                        }
                    }
                    _ => {}
                }
            }
            out.push(l);
        }
        Ok(out)
    }

    /// Set a link's flags under `change` (IFF_UP to bring it up) and, when
    /// given, its MTU.
    pub fn set_link(
        &mut self,
        index: i32,
        flags: u32,
        change: u32,
        mtu: Option<u32>,
    ) -> io::Result<()> {
        let mut m = Msg::new(
            libc::RTM_NEWLINK,
            0,
            &ifinfomsg(libc::AF_UNSPEC as u8, index, flags, change),
        );
        if let Some(mtu) = mtu {
            m.attr_u32(libc::IFLA_MTU, mtu);
        }
        self.request(m)
    }
}

/// An address with its prefix length (`10.88.0.5/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A route of the main table through one interface: to `dst` (None: the
/// default route), via `gateway` (None: on the link itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    pub dst: Option<IpNet>,
    pub gateway: Option<IpAddr>,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.dst {
            Some(d) => write!(f, "{d}")?,
            None => write!(f, "default")?,
        }
        if let Some(g) = &self.gateway {
            write!(f, " via {g}")?;
        }
        Ok(())
    }
}

fn family(a: &IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn octets(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn ip_of(fam: u8, b: &[u8]) -> Option<IpAddr> {
    match fam as i32 {
        libc::AF_INET => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        libc::AF_INET6 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

impl Socket {
    /// The addresses of link `index` whose scope is wider than the link
    /// (IPv6 link-local addresses are left out: each side derives its own).
    pub fn addresses(&mut self, index: i32) -> io::Result<Vec<IpNet>> {
        let m = Msg::new(
            libc::RTM_GETADDR,
            0,
            &ifaddrmsg(libc::AF_UNSPEC as u8, 0, 0, 0, 0),
        );
        let mut out = vec![];
        for p in self.dump(m)? {
            if p.len() < 8 || u32::from_ne_bytes(p[4..8].try_into().unwrap()) != index as u32 {
                continue;
            }
            if p[3] >= libc::RT_SCOPE_LINK {
                continue;
            }
            let (fam, prefix) = (p[0], p[1]);
            let mut local = None;
            let mut address = None;
            for (ty, d) in attrs(&p[8..]) {
                match ty {
                    libc::IFA_LOCAL => local = ip_of(fam, d),
                    libc::IFA_ADDRESS => address = ip_of(fam, d),
                    _ => {}
                }
            }
            if let Some(addr) = local.or(address) {
                out.push(IpNet { addr, prefix });
            }
        }
        Ok(out)
    }

    /// The main table's unicast routes out of link `index` that someone
    /// added (not the kernel's own subnet routes, which follow from the
    /// addresses), link routes first so that every gateway is reachable
    /// when the routes are added again in that order.
    pub fn routes(&mut self, index: i32) -> io::Result<Vec<Route>> {
        let m = Msg::new(
            libc::RTM_GETROUTE,
            0,
            &rtmsg(libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0),
        );
        let mut out = vec![];
        for p in self.dump(m)? {
            if p.len() < 12 {
                continue;
            }
            let (fam, dst_len, table, proto, scope, ty) = (p[0], p[1], p[4], p[5], p[6], p[7]);
            if ty != libc::RTN_UNICAST || proto == libc::RTPROT_KERNEL {
                continue;
            }
            let (mut oif, mut tbl, mut dst, mut gw) = (None, table as u32, None, None);
            for (t, d) in attrs(&p[12..]) {
                match t {
                    libc::RTA_OIF => oif = u32_of(d),
                    libc::RTA_TABLE => tbl = u32_of(d).unwrap_or(tbl),
                    libc::RTA_DST => dst = ip_of(fam, d),
                    libc::RTA_GATEWAY => gw = ip_of(fam, d),
                    _ => {}
                }
            }
            if oif != Some(index as u32) || tbl != libc::RT_TABLE_MAIN as u32 {
                continue;
            }
            let dst = dst.map(|addr| IpNet {
                addr,
                prefix: dst_len,
            });
            out.push((scope, Route { dst, gateway: gw }));
        }
        // RT_SCOPE_LINK (253) before RT_SCOPE_UNIVERSE (0).
        out.sort_by_key(|(scope, _)| std::cmp::Reverse(*scope));
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    /// Add an address to link `index` (IPv6 ones without duplicate address
    /// detection: the address is the engine's, already checked on its side).
    pub fn add_address(&mut self, index: i32, a: &IpNet) -> io::Result<()> {
        let fam = family(&a.addr);
        let flags = if fam == libc::AF_INET6 as u8 {
            libc::IFA_F_NODAD as u8
        } else {
            0
        };
        let mut m = Msg::new(
            libc::RTM_NEWADDR,
            (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
            &ifaddrmsg(fam, a.prefix, flags, libc::RT_SCOPE_UNIVERSE, index as u32),
        );
        m.attr(libc::IFA_LOCAL, &octets(&a.addr));
        m.attr(libc::IFA_ADDRESS, &octets(&a.addr));
        self.request(m)
    }

    /// Add a route out of link `index` to the main table.
    pub fn add_route(&mut self, index: i32, r: &Route) -> io::Result<()> {
        let fam_of = r
            .dst
            .map(|d| family(&d.addr))
            .or(r.gateway.as_ref().map(family))
            .unwrap_or(libc::AF_INET as u8);
        let scope = if r.gateway.is_some() {
            libc::RT_SCOPE_UNIVERSE
        } else {
            libc::RT_SCOPE_LINK
        };
        let mut m = Msg::new(
            libc::RTM_NEWROUTE,
            (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
            &rtmsg(
                fam_of,
                r.dst.map(|d| d.prefix).unwrap_or(0),
                libc::RT_TABLE_MAIN,
                libc::RTPROT_BOOT,
                scope,
                libc::RTN_UNICAST,
            ),
        );
        if let Some(d) = &r.dst {
            m.attr(libc::RTA_DST, &octets(&d.addr));
        }
        if let Some(g) = &r.gateway {
            m.attr(libc::RTA_GATEWAY, &octets(g));
        }
        m.attr_u32(libc::RTA_OIF, index as u32);
        self.request(m)
    }

    /// Set link `index`'s link-layer address (`ip link set dev X address`).
    pub fn set_address(&mut self, index: i32, mac: &[u8]) -> io::Result<()> {
        let mut m = Msg::new(
            libc::RTM_NEWLINK,
            0,
            &ifinfomsg(libc::AF_UNSPEC as u8, index, 0, 0),
        );
        m.attr(libc::IFLA_ADDRESS, mac);
        self.request(m)
    }

    /// Move link `index` into the network namespace open as `netns`,
    /// renamed to `name` there.
    pub fn move_link(&mut self, index: i32, netns: &impl AsRawFd, name: &str) -> io::Result<()> {
        let mut m = Msg::new(
            libc::RTM_NEWLINK,
            0,
            &ifinfomsg(libc::AF_UNSPEC as u8, index, 0, 0),
        );
        m.attr_u32(libc::IFLA_NET_NS_FD, netns.as_raw_fd() as u32);
        m.attr_str(libc::IFLA_IFNAME, name);
        self.request(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_round_trip() {
        let mut m = Msg::new(libc::RTM_NEWTFILTER, 0, &tcmsg(2, 0, 0xffff_0000, 0x300));
        m.attr_str(1, "u32").begin(2).attr_u32(5, 7).end();
        let b = m.finish(9).to_vec();
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        let top: Vec<_> = attrs(&b[NLMSG_HDRLEN + 20..]).collect();
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].0, str_of(top[0].1).as_str()), (1, "u32"));
        let inner: Vec<_> = attrs(top[1].1).collect();
        assert_eq!((inner[0].0, u32_of(inner[0].1)), (5, Some(7)));
    }

    #[test]
    fn macs_are_lower_case_hex() {
        assert_eq!(
            mac_string(&[0x0a, 0xbc, 0, 1, 0xff, 0x10]),
            "0a:bc:00:01:ff:10"
        );
        assert_eq!(
            mac_bytes("0A:bc:00:01:ff:10"),
            Some([0x0a, 0xbc, 0, 1, 0xff, 0x10])
        );
        for bad in [
            "",
            "0a:bc:00:01:ff",
            "0a:bc:00:01:ff:10:11",
            "0a:bc:00:01:ff:1",
            "0a:bc:00:01:ff:zz",
        ] {
            assert_eq!(mac_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn loopback_is_listed() {
        // Every network namespace has lo as link 1.
        let Ok(mut s) = Socket::open() else { return };
        let links = s.links().unwrap();
        assert!(links.iter().any(|l| l.name == "lo"), "{links:?}");
    }
}
