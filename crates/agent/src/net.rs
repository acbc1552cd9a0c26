//! The engine's network inside the guest: each virtio-net card (found by
//! the MAC the host gave it, the veth's) moves into the container's network
//! namespace under the veth's name, and gets the veth's MTU, addresses and
//! routes there; loopback comes up, as in the engine's namespace.
//!
//! A VM restored from a template resumes with the template's cards, which
//! have the template's MACs (`card_mac`): the agent finds each by that
//! one and gives it the veth's MAC first, so that from then on a clone's
//! card is what a booted guest's is. The template never brought its cards
//! up, so they hold no addresses and no neighbour entries learned under
//! the template's MAC; a card found up is taken down before the change,
//! which flushes its neighbours.
//!
//! The container keeps a network namespace of its own, created by the
//! library as on a host, rather than sharing the guest's root namespace:
//! the config's network sysctls then apply to it alone, and the agent's
//! namespace stays out of the container's reach.

use sandbox::linux::netlink::{mac_bytes, mac_string, Socket};
use vm_protocol::Network;

/// Configure `net` in the network namespace of guest process `pid` (the
/// container's init, created and waiting for `start`).
pub fn configure(pid: i32, net: &Network) -> Result<(), String> {
    let nspath = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&nspath).map_err(|e| format!("open {nspath}: {e}"))?;
    let mut root = Socket::open().map_err(|e| format!("netlink socket: {e}"))?;
    let links = root
        .links()
        .map_err(|e| format!("list the guest's links: {e}"))?;
    let up = libc::IFF_UP as u32;
    for i in &net.interfaces {
        let want = i.mac.to_ascii_lowercase();
        let card = i
            .card_mac
            .as_deref()
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| want.clone());
        let Some(l) = links.iter().find(|l| mac_string(&l.mac) == card) else {
            let seen: Vec<String> = links
                .iter()
                .map(|l| format!("{} {}", l.name, mac_string(&l.mac)))
                .collect();
            return Err(format!(
                "no guest network card has the MAC {card} of {} (the guest has: {}); is virtio_net in the initramfs?",
                i.name,
                seen.join(", ")
            ));
        };
        if card != want {
            let mac = mac_bytes(&want).ok_or_else(|| {
                format!("{}: the MAC {:?} is not aa:bb:cc:dd:ee:ff", i.name, i.mac)
            })?;
            if l.flags & up != 0 {
                root.set_link(l.index, 0, up, None)
                    .map_err(|e| format!("take {} down before its MAC changes: {e}", l.name))?;
            }
            root.set_address(l.index, &mac).map_err(|e| {
                format!(
                    "set the MAC of {} (the template's {card}) to {want} for {}: {e}",
                    l.name, i.name
                )
            })?;
        }
        root.move_link(l.index, &ns, &i.name).map_err(|e| {
            format!(
                "move {} into the container's network namespace as {}: {e}",
                l.name, i.name
            )
        })?;
    }
    let mut s = Socket::open_in(std::path::Path::new(&nspath))
        .map_err(|e| format!("netlink socket in {nspath}: {e}"))?;
    let links = s
        .links()
        .map_err(|e| format!("list the container's links: {e}"))?;
    if let Some(lo) = links.iter().find(|l| l.name == "lo") {
        s.set_link(lo.index, up, up, None)
            .map_err(|e| format!("bring lo up: {e}"))?;
    }
    for i in &net.interfaces {
        let l = links.iter().find(|l| l.name == i.name).ok_or_else(|| {
            format!(
                "{} is not in the container's namespace after the move",
                i.name
            )
        })?;
        s.set_link(l.index, up, up, Some(i.mtu))
            .map_err(|e| format!("bring {} up with mtu {}: {e}", i.name, i.mtu))?;
        for a in &i.addresses {
            s.add_address(l.index, a)
                .map_err(|e| format!("add address {a} to {}: {e}", i.name))?;
        }
        for r in &i.routes {
            s.add_route(l.index, r)
                .map_err(|e| format!("add route {r} on {}: {e}", i.name))?;
        }
    }
    Ok(())
}
