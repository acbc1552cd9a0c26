//! Which kernel modules the guest needs, in load order, read from the
//! installed kernel's `modules.dep` rather than hard-coded, so another
//! kernel version with other dependencies still boots.

use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules the agent needs: the virtio-mmio transport (microvm's
/// devices), virtio-serial (the channel), 9p over virtio (the shared
/// bundle), overlayfs (a writable rootfs that never changes host files) and
/// virtio-net (the engine's network, through a tap on the host).
pub const WANTED: &[&str] = &[
    "virtio_mmio",
    "virtio_console",
    "virtio_net",
    "9pnet_virtio",
    "9p",
    "overlay",
];

/// Modules taken when the kernel has them: virtio-fs (a faster share than
/// 9p; without it the share falls back to 9p).
pub const OPTIONAL: &[&str] = &["virtiofs"];

/// Does kernel `kver` under `root` have module `name` (as a module or built in)?
pub fn has(root: &Path, kver: &str, name: &str) -> bool {
    let dir = root.join(kver);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    parse_dep(&read("modules.dep")).contains_key(name)
        || read("modules.builtin").lines().any(|l| name_of(l) == name)
}

/// A module to put in the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Normalised name (dashes as underscores).
    pub name: String,
    /// Path of the .ko file on the host.
    pub path: PathBuf,
}

fn name_of(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// Parse `modules.dep` text: module name → (relative path, dependency names).
pub fn parse_dep(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let deps = deps.split_whitespace().map(name_of).collect();
        m.insert(name_of(path), (path.trim().to_string(), deps));
    }
    m
}

/// Resolve `wanted` into a load order: every module after its dependencies.
/// Modules listed in `builtin` (modules.builtin) are skipped.
pub fn resolve(
    dep: &BTreeMap<String, (String, Vec<String>)>,
    builtin: &BTreeSet<String>,
    wanted: &[&str],
) -> Result<Vec<String>, String> {
    fn visit(
        n: &str,
        dep: &BTreeMap<String, (String, Vec<String>)>,
        builtin: &BTreeSet<String>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), String> {
        if seen.contains(n) || builtin.contains(n) {
            return Ok(());
        }
        if depth > 64 {
            return Err(format!("dependency loop at module {n}"));
        }
        let (_, deps) = dep
            .get(n)
            .ok_or_else(|| format!("module {n} is neither in modules.dep nor built in"))?;
        // modules.dep lists the closure with the deepest dependency last.
        for d in deps.iter().rev() {
            visit(d, dep, builtin, seen, out, depth + 1)?;
        }
        seen.insert(n.to_string());
        out.push(n.to_string());
        Ok(())
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for w in wanted {
        visit(&w.replace('-', "_"), dep, builtin, &mut seen, &mut out, 0)?;
    }
    Ok(out)
}

/// The modules of kernel `kver` under `root` (normally /lib/modules), in load order.
pub fn for_kernel(root: &Path, kver: &str) -> Result<Vec<Module>> {
    let dir = root.join(kver);
    let dep_file = dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_file).map_err(|e| Error::KernelMissing {
        what: format!(
            "cannot read {} ({e}); the modules of kernel {kver} are not installed",
            dep_file.display()
        ),
    })?;
    let dep = parse_dep(&text);
    let builtin: BTreeSet<String> = std::fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(name_of)
        .collect();
    let mut wanted = WANTED.to_vec();
    wanted.extend(
        OPTIONAL
            .iter()
            .filter(|m| dep.contains_key(**m) || builtin.contains(**m)),
    );
    let order = resolve(&dep, &builtin, &wanted).map_err(|e| Error::KernelMissing {
        what: format!("kernel {kver}: {e} ({})", dep_file.display()),
    })?;
    let mut out = Vec::new();
    for n in order {
        let rel = &dep[&n].0;
        if !rel.ends_with(".ko") {
            return Err(Error::KernelMissing {
                what: format!(
                    "kernel {kver}: module {rel} is compressed; only plain .ko modules are supported"
                ),
            });
        }
        out.push(Module {
            name: n,
            path: dir.join(rel),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/fs/overlayfs/overlay.ko:
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/net/9p/9pnet.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
";

    #[test]
    fn order_puts_dependencies_first() {
        let dep = parse_dep(DEP);
        let order = resolve(&dep, &BTreeSet::new(), WANTED).unwrap();
        assert_eq!(
            order,
            [
                "virtio_ring",
                "virtio",
                "virtio_mmio",
                "virtio_console",
                "failover",
                "net_failover",
                "virtio_net",
                "9pnet",
                "9pnet_virtio",
                "netfs",
                "fscache",
                "9p",
                "overlay"
            ]
        );
        let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
        for (m, (_, deps)) in &dep {
            if let Some(p) = order.iter().position(|x| x == m) {
                for d in deps {
                    assert!(pos(d) < p, "{d} must load before {m}");
                }
            }
        }
    }

    #[test]
    fn builtin_and_missing() {
        let dep = parse_dep(DEP);
        let builtin: BTreeSet<String> = ["virtio".to_string(), "virtio_ring".to_string()].into();
        let order = resolve(&dep, &builtin, &["virtio_mmio"]).unwrap();
        assert_eq!(order, ["virtio_mmio"]);
        let e = resolve(&dep, &BTreeSet::new(), &["vsock"]).unwrap_err();
        assert!(e.contains("vsock"), "{e}");
    }
}
