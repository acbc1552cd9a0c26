//! The engine's network inside the VM, host side.
//!
//! Engines (Podman, Docker, the CRI) make a network namespace, put a veth
//! (usually `eth0`) with the container's MAC, addresses and routes in it,
//! and name it in `linux.namespaces`. In VM mode the monitor joins that
//! namespace (so QEMU runs there too), creates one tap per interface, and
//! joins tap and interface with a tc `mirred` redirect in each direction on
//! their ingress qdiscs, as Kata's default `tcfilter` model does: every
//! frame that reaches the veth from the engine's bridge leaves through the
//! tap into the guest's virtio-net card, and every frame from the guest
//! leaves through the veth. The guest's card has the veth's MAC, and the
//! agent gives it the veth's addresses, routes and MTU.
//!
//! The veth keeps its addresses in the namespace, as with Kata: nothing in
//! the namespace uses them (the ingress redirect takes every frame before
//! the namespace's own stack sees it), and engines may read them there.
//!
//! The tap goes away with QEMU and the monitor (it is not persistent). The
//! ingress qdisc on the veth would outlive them in a namespace that the
//! engine keeps until its pod is torn down, so what was put there is
//! recorded in [`RECORD`] and removed by the monitor as it exits and again
//! by `delete`.

use crate::error::{Error, Result};
use sandbox::linux::netlink::{self, mac_string, Link, Msg, Socket};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use vm_protocol::{NetInterface, Network};

/// The state-directory file recording the namespace and the links that
/// got an ingress qdisc.
pub const RECORD: &str = "net.json";

/// tc's ingress qdisc: handle ffff:, parent TC_H_INGRESS.
const INGRESS_HANDLE: u32 = 0xffff_0000;
const TC_H_INGRESS: u32 = 0xffff_fff1;
// linux/pkt_cls.h, linux/tc_act/tc_mirred.h.
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_U32_SEL: u16 = 5;
const TCA_U32_ACT: u16 = 7;
const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_MIRRED_PARMS: u16 = 2;
const TC_U32_TERMINAL: u8 = 1;
const TC_ACT_STOLEN: i32 = 4;
const TCA_EGRESS_REDIR: i32 = 1;
const ETH_P_ALL: u16 = 0x0003;
const ARPHRD_ETHER: u16 = 1;

/// Which network the config gives the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// No network namespace entry: the host's own stack (`--network host`).
    Host,
    /// A new namespace (no path): only loopback, inside the guest.
    Private,
    /// The engine's namespace at this path.
    Join(PathBuf),
}

/// The network a config asks for.
pub fn mode(spec: &oci_spec::runtime::Spec) -> NetMode {
    let ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|v| {
            v.iter()
                .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
                .cloned()
        });
    match ns {
        None => NetMode::Host,
        Some(n) => match n.path() {
            Some(p) => NetMode::Join(p.clone()),
            None => NetMode::Private,
        },
    }
}

/// Refuse a config that shares the host's network stack: a VM has its own
/// kernel, so it cannot.
///
/// Docker's `--network host` names the host's namespace by path (its
/// sandbox key, a bind mount of it) rather than leaving the entry out as
/// Podman does: joining it would put the host's own links behind taps.
pub fn check(spec: &oci_spec::runtime::Spec) -> Result<()> {
    let why = match mode(spec) {
        NetMode::Host => "linux.namespaces has no \"network\" entry".to_string(),
        NetMode::Join(p) if is_hosts(&p) => format!(
            "the network namespace path {} in linux.namespaces is the host's own",
            p.display()
        ),
        _ => return Ok(()),
    };
    Err(Error::Msg(format!(
        "VM mode cannot share the host's network stack: {why} (as with --network host). A VM \
         has its own kernel and network stack: give it a network namespace (an engine's bridge \
         network, or --network none), or use --mode=container"
    )))
}

/// Is the namespace at `p` the host's: the runtime's own (engines run it
/// in the host's), or PID 1's where that can be read?
fn is_hosts(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(a) = std::fs::metadata(p) else {
        return false;
    };
    ["/proc/self/ns/net", "/proc/1/ns/net"]
        .iter()
        .filter_map(|h| std::fs::metadata(h).ok())
        .any(|b| a.dev() == b.dev() && a.ino() == b.ino())
}

/// Put the calling thread (the monitor, before its hooks and QEMU) in the
/// container's network namespace on the host: the engine's (`Join`), or a
/// new one (`Private`). A new one matters as much: the hooks get the
/// monitor's pid, and Docker's prestart hook (libnetwork-setkey) moves the
/// container's veth into `/proc/<pid>/ns/net` and configures it there. In
/// the host's namespace it would configure the host. Returns the
/// namespace's path, for the record and the log.
pub fn enter(mode: &NetMode) -> Result<PathBuf> {
    match mode {
        NetMode::Join(p) => {
            let f = std::fs::File::open(p).map_err(|e| Error::io("open", p, e))?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                Error::sys(
                    format!(
                        "setns into the network namespace {} (linux.namespaces)",
                        p.display()
                    ),
                    e,
                )
            })?;
            Ok(p.clone())
        }
        NetMode::Private => {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                Error::sys(
                    "unshare(CLONE_NEWNET) for the container's network namespace on the host",
                    e,
                )
            })?;
            Ok(PathBuf::from(format!("/proc/{}/ns/net", std::process::id())))
        }
        NetMode::Host => Err(Error::Msg(
            "VM mode cannot share the host's network stack (linux.namespaces has no \"network\" entry)"
                .into(),
        )),
    }
}

/// A tap device for one interface; QEMU gets `tap` as `-netdev tap,fd=`.
#[derive(Debug)]
pub struct Nic {
    pub tap: OwnedFd,
    pub tap_name: String,
    pub mac: String,
}

/// The name the kernel numbers our taps from (`nktap0`, `nktap1`...).
const TAP_PREFIX: &str = "nktap";

/// What [`attach`] made.
#[derive(Debug, Default)]
pub struct Attached {
    pub nics: Vec<Nic>,
    pub network: Network,
    /// Loopback is up in the namespace (the engine brought it up), so the
    /// guest brings the container's up too; a new namespace's is down.
    pub lo_up: bool,
}

impl Attached {
    /// One line for the log and `-E`.
    pub fn summary(&self, netns: &Path) -> String {
        if self.nics.is_empty() {
            return format!(
                "{}: loopback only, {}",
                netns.display(),
                if self.lo_up {
                    "up, as the engine left it"
                } else {
                    "down, as in a new namespace"
                }
            );
        }
        let each: Vec<String> = self
            .nics
            .iter()
            .zip(&self.network.interfaces)
            .map(|(n, i)| {
                let a: Vec<String> = i.addresses.iter().map(|a| a.to_string()).collect();
                let r: Vec<String> = i.routes.iter().map(|r| r.to_string()).collect();
                format!(
                    "{} ({}, mtu {}) <-tc mirred-> {} -> guest {} [{}] routes [{}]",
                    i.name,
                    i.mac,
                    i.mtu,
                    n.tap_name,
                    i.name,
                    a.join(", "),
                    r.join(", ")
                )
            })
            .collect();
        let dns = if self.network.dns_relay {
            format!(
                "; DNS: the guest's {0}:53 relayed to {0}:53 in this namespace (Docker's resolver)",
                vm_protocol::DOCKER_DNS
            )
        } else {
            String::new()
        };
        format!("{}: {}{dns}", netns.display(), each.join("; "))
    }
}

impl Attached {
    /// What the guest is told to set up: None leaves the container's
    /// loopback down, as a new namespace's is.
    pub fn guest_network(&self) -> Option<Network> {
        (!self.nics.is_empty() || self.lo_up).then(|| self.network.clone())
    }
}

/// What `delete` needs to undo: the links that got an ingress qdisc.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetRecord {
    pub netns: PathBuf,
    pub links: Vec<String>,
}

fn net_err(what: String, e: std::io::Error) -> Error {
    Error::Msg(format!("{what}: {e}"))
}

/// In the network namespace the calling thread is in ([`enter`]; `netns`
/// names it), give each Ethernet link a tap joined to it by tc, and
/// describe them for the guest. What it puts on the namespace's links is
/// recorded in `state_dir` first.
pub fn attach(netns: &Path, state_dir: &Path) -> Result<Attached> {
    let mut s = Socket::open().map_err(|e| net_err("open a netlink socket".into(), e))?;
    let links = s
        .links()
        .map_err(|e| net_err(format!("list the links of {}", netns.display()), e))?;
    let lo_up = links
        .iter()
        .any(|l| l.name == "lo" && l.flags & libc::IFF_UP as u32 != 0);
    // A tap of ours here means another VM carries this namespace. A pod's
    // later containers run in that VM (crate::pod found it by this
    // namespace); one that got here belongs to a VM this state root does
    // not know (another --root): its network cannot be shared from here.
    if let Some(t) = links
        .iter()
        .find(|l| l.kind == "tun" && l.name.starts_with(TAP_PREFIX))
    {
        return Err(Error::Msg(format!(
            "the network namespace {} (linux.namespaces) is already carried into another VM through {}, by a VM-mode container that this state root does not hold: a namespace reaches one VM only, and a pod's containers share their pod's VM only when they are under one --root; use the same --root as the pod's first container, or --mode=container",
            netns.display(),
            t.name
        )));
    }
    let ifaces: Vec<Link> = links
        .into_iter()
        .filter(|l| {
            l.name != "lo" && l.hw_type == ARPHRD_ETHER && l.kind != "tun" && l.mac.len() == 6
        })
        .collect();
    let rec = NetRecord {
        netns: netns.to_path_buf(),
        links: ifaces.iter().map(|l| l.name.clone()).collect(),
    };
    let rpath = state_dir.join(RECORD);
    let json = serde_json::to_vec(&rec).unwrap_or_default();
    std::fs::write(&rpath, json).map_err(|e| Error::io("write", &rpath, e))?;
    let mut out = Attached {
        lo_up,
        ..Attached::default()
    };
    for l in &ifaces {
        let addresses = s
            .addresses(l.index)
            .map_err(|e| net_err(format!("list the addresses of {}", l.name), e))?;
        let routes = s
            .routes(l.index)
            .map_err(|e| net_err(format!("list the routes of {}", l.name), e))?;
        let (tap, tap_name) = create_tap()?;
        let tap_index = s
            .links()
            .map_err(|e| net_err("list links".into(), e))?
            .into_iter()
            .find(|t| t.name == tap_name)
            .map(|t| t.index)
            .ok_or_else(|| Error::Msg(format!("the new tap {tap_name} is not listed")))?;
        s.set_link(
            tap_index,
            libc::IFF_UP as u32,
            libc::IFF_UP as u32,
            Some(l.mtu),
        )
        .map_err(|e| net_err(format!("bring {tap_name} up with mtu {}", l.mtu), e))?;
        redirect(&mut s, l, tap_index, &tap_name)?;
        redirect(
            &mut s,
            &Link {
                index: tap_index,
                name: tap_name.clone(),
                ..l.clone()
            },
            l.index,
            &l.name,
        )?;
        let mac = mac_string(&l.mac);
        out.nics.push(Nic {
            tap,
            tap_name,
            mac: mac.clone(),
        });
        out.network.interfaces.push(NetInterface {
            name: l.name.clone(),
            mac,
            card_mac: None,
            mtu: l.mtu,
            addresses,
            routes,
        });
    }
    Ok(out)
}

/// `n` taps for a template's build, which gives the guest network cards
/// but no network: they are made in a network namespace of their own,
/// entered by a thread that ends at once, so nothing else ever sees them,
/// and they go (with the namespace) when the last descriptor of each
/// closes, that is when the template's QEMU ends and the caller drops
/// these.
pub fn throwaway_taps(n: usize) -> Result<Vec<OwnedFd>> {
    std::thread::spawn(move || {
        // unshare(2) moves only the calling thread: the caller's
        // namespace stays as it was.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            Error::sys(
                "unshare(CLONE_NEWNET) for the VM template's throwaway taps",
                e,
            )
        })?;
        (0..n).map(|_| create_tap().map(|(fd, _)| fd)).collect()
    })
    .join()
    .map_err(|_| Error::Msg("the thread making the VM template's taps panicked".into()))?
}

/// A tap in the current network namespace (IFF_VNET_HDR: QEMU passes the
/// guest's checksum and segmentation offloads through), named by the kernel.
fn create_tap() -> Result<(OwnedFd, String)> {
    // SAFETY: open(2) with a static path.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io(
            "open",
            "/dev/net/tun",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a new descriptor that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed ifreq is valid; the name and flags are set below.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"nktap%d".iter().enumerate() {
        ifr.ifr_name[i] = *b as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF reads and writes the ifreq we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        return Err(Error::sys(
            "ioctl(TUNSETIFF) to create a tap device",
            nix::errno::Errno::last(),
        ));
    }
    let name: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((fd, String::from_utf8_lossy(&name).into_owned()))
}

/// `tc qdisc add dev FROM ingress` and `tc filter add dev FROM parent
/// ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev
/// TO` (u32 rather than matchall: some kernels, this host's among them,
/// are built without cls_matchall).
fn redirect(s: &mut Socket, from: &Link, to: i32, to_name: &str) -> Result<()> {
    let mut q = Msg::new(
        libc::RTM_NEWQDISC,
        (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
        &netlink::tcmsg(from.index, INGRESS_HANDLE, TC_H_INGRESS, 0),
    );
    q.attr_str(TCA_KIND, "ingress");
    s.request(q).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::EEXIST) {
            " (it already has an ingress qdisc: another VM-mode container, or a tc setup of \
             the engine's, uses this network namespace)"
        } else {
            ""
        };
        net_err(format!("add an ingress qdisc to {}{hint}", from.name), e)
    })?;
    // struct tc_u32_sel with one all-zero key: every packet matches.
    let mut sel = vec![0u8; 16 + 16];
    sel[0] = TC_U32_TERMINAL;
    sel[2] = 1;
    // struct tc_mirred: index, capab, action, refcnt, bindcnt, eaction, ifindex.
    let mut parms = Vec::with_capacity(28);
    for v in [0i32, 0, TC_ACT_STOLEN, 0, 0, TCA_EGRESS_REDIR, to] {
        parms.extend_from_slice(&v.to_ne_bytes());
    }
    let info = (ETH_P_ALL.to_be() as u32) & 0xffff;
    let mut f = Msg::new(
        libc::RTM_NEWTFILTER,
        (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
        &netlink::tcmsg(from.index, 0, INGRESS_HANDLE, info),
    );
    f.attr_str(TCA_KIND, "u32")
        .begin(TCA_OPTIONS)
        .begin(TCA_U32_ACT)
        .begin(1)
        .attr_str(TCA_ACT_KIND, "mirred")
        .begin(TCA_ACT_OPTIONS)
        .attr(TCA_MIRRED_PARMS, &parms)
        .end()
        .end()
        .end()
        .attr(TCA_U32_SEL, &sel)
        .end();
    s.request(f).map_err(|e| {
        net_err(
            format!(
                "add a tc filter redirecting {}'s ingress to {to_name}",
                from.name
            ),
            e,
        )
    })
}

/// Remove the ingress qdiscs (and with them the redirect filters) that
/// [`attach`] recorded in `state_dir`, if the namespace still exists, then
/// the record. Safe to call more than once.
pub fn detach(state_dir: &Path) -> Result<()> {
    let rpath = state_dir.join(RECORD);
    let rec: NetRecord = match std::fs::read(&rpath) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read", &rpath, e)),
    };
    if !rec.links.is_empty() {
        match Socket::open_in(&rec.netns) {
            Ok(mut s) => {
                let links = s.links().map_err(|e| {
                    net_err(format!("list the links of {}", rec.netns.display()), e)
                })?;
                for l in links.iter().filter(|l| rec.links.contains(&l.name)) {
                    let q = Msg::new(
                        libc::RTM_DELQDISC,
                        0,
                        &netlink::tcmsg(l.index, INGRESS_HANDLE, TC_H_INGRESS, 0),
                    );
                    match s.request(q) {
                        Ok(()) => {}
                        // Already gone (ENOENT; EINVAL from older kernels).
                        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) => {
                        }
                        Err(e) => {
                            return Err(net_err(
                                format!(
                                    "remove the ingress qdisc of {} in {}",
                                    l.name,
                                    rec.netns.display()
                                ),
                                e,
                            ))
                        }
                    }
                }
            }
            // The engine removed the namespace: nothing of ours is left in it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(net_err(
                    format!("open the network namespace {}", rec.netns.display()),
                    e,
                ))
            }
        }
    }
    match std::fs::remove_file(&rpath) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", &rpath, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ns: &str) -> oci_spec::runtime::Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","linux":{{"namespaces":[{{"type":"mount"}}{ns}]}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn the_network_mode_follows_linux_namespaces() {
        assert_eq!(mode(&spec("")), NetMode::Host);
        assert_eq!(mode(&spec(r#",{"type":"network"}"#)), NetMode::Private);
        assert_eq!(
            mode(&spec(r#",{"type":"network","path":"/run/netns/x"}"#)),
            NetMode::Join("/run/netns/x".into())
        );
        let e = check(&spec("")).unwrap_err().to_string();
        assert!(
            e.contains("--network host") && e.contains("\"network\""),
            "{e}"
        );
        // Docker's --network host: the host's namespace by path.
        let e = check(&spec(r#",{"type":"network","path":"/proc/self/ns/net"}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--network host")
                && e.contains("/proc/self/ns/net in linux.namespaces is the host's own"),
            "{e}"
        );
        assert!(check(&spec(r#",{"type":"network"}"#)).is_ok());
    }
}
