//! The CRIU kit: what a guest needs to run CRIU, assembled once from the
//! host's own `criu` and kept in the VM cache.
//!
//! Checkpoint and restore of a VM-mode container run CRIU inside the guest
//! (QEMU 7.2 cannot migrate a VM with its share mounted; docs/vm-mode.md).
//! The guest image has no CRIU: its binaries, libraries and modules would
//! cost every boot and only these two verbs use them. So the host gathers
//! them here: `bin/` (criu, and the tools it runs: `ip`,
//! `xtables-nft-multi` for its network lock, `tar` and `gzip` for tmpfs
//! contents, `sh`), `lib/` (every library `ldd` lists for them, and the
//! loader), `xtables/` (iptables' extensions) and `mods/` (the guest
//! kernel's socket-diag, nf_tables and conntrack modules with their
//! dependencies, in load order). The monitor mounts the kit read-only into
//! the share only for checkpoint and restore; the agent links it into the
//! guest's root and loads the modules (agent `criu.rs`).
//!
//! The kit's directory is keyed by a hash of its inputs (each file's path,
//! size and modification time, and the guest kernel), and built in a
//! temporary directory renamed into place, as the initramfs and templates
//! are: a host's `apt upgrade criu` gives a new kit.

use crate::cache::{cache_dir, CacheLock};
use crate::error::{Error, Result};
use sha2::Digest;
use std::path::{Path, PathBuf};

/// Bumped when the kit's layout changes.
const FORMAT: u32 = 1;

/// The tools CRIU runs besides itself, by name (found in the sbin and bin
/// directories); a missing one is left out (CRIU then fails only where it
/// needs it, with its own error).
const TOOLS: &[&str] = &["ip", "xtables-nft-multi", "tar", "gzip"];

/// The guest kernel modules CRIU needs: the socket diag modules (it reads
/// sockets through them), nf_tables and what iptables-nft's network lock
/// uses, conntrack's netlink (it dumps a namespace's connection table).
/// crc32c_generic is only a soft dependency of libcrc32c, which nf_tables
/// needs.
pub const MODULES: &[&str] = &[
    "crc32c_generic",
    "inet_diag",
    "tcp_diag",
    "udp_diag",
    "unix_diag",
    "netlink_diag",
    "af_packet_diag",
    "nf_tables",
    "nf_conntrack_netlink",
    "nft_compat",
    "xt_mark",
    "xt_tcpudp",
];

/// The file in `mods/` that lists the modules in load order.
pub const LOAD_ORDER: &str = "load-order";

/// A kit in the cache.
#[derive(Debug, Clone)]
pub struct Kit {
    pub dir: PathBuf,
    /// Assembled by this call (with how long it took), or found cached.
    pub built_ms: Option<u64>,
}

fn sbin_dirs() -> [&'static str; 6] {
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
}

fn find_tool(name: &str) -> Option<PathBuf> {
    sbin_dirs()
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn stamp(p: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p)
        .map(|m| format!("{} {} {}\n", p.display(), m.len(), m.mtime()))
        .unwrap_or_default()
}

/// The host's criu, with the error VM mode gives when there is none.
pub fn host_criu(explicit: Option<&Path>) -> Result<PathBuf> {
    sandbox::criu::find(explicit).map_err(|e| {
        Error::Msg(format!(
            "checkpoint and restore of a VM-mode container run CRIU inside the guest, from the host's criu binary, which is missing: {e} (apt install criu)"
        ))
    })
}

/// Could a kit be assembled here (`check`): the host's criu, and the guest
/// kernel's modules that CRIU needs. Returns the criu binary.
pub fn probe(modules_root: &Path, kver: &str) -> Result<PathBuf> {
    let criu = host_criu(None)?;
    let (dep, builtin) = module_tables(&modules_root.join(kver))?;
    crate::modules::resolve(&dep, &builtin, MODULES).map_err(|e| {
        Error::Msg(format!(
            "the guest kernel {kver} lacks a module CRIU needs: {e}"
        ))
    })?;
    Ok(criu)
}

type DepTable = std::collections::BTreeMap<String, (String, Vec<String>)>;

/// modules.dep and the built-in modules of a kernel's module directory.
fn module_tables(kdir: &Path) -> Result<(DepTable, std::collections::BTreeSet<String>)> {
    let dep_file = kdir.join("modules.dep");
    let dep = crate::modules::parse_dep(
        &std::fs::read_to_string(&dep_file).map_err(|e| Error::io("read", &dep_file, e))?,
    );
    let builtin = std::fs::read_to_string(kdir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(|b| b.trim_end_matches(".ko").replace('-', "_"))
        .collect();
    Ok((dep, builtin))
}

/// The kit for the guest kernel `kver` (modules under `modules_root`),
/// from the host's criu (`explicit`: the global --criu), built if missing.
pub fn ensure(explicit: Option<&Path>, modules_root: &Path, kver: &str) -> Result<Kit> {
    let criu = host_criu(explicit)?;
    let sh = std::fs::canonicalize("/bin/sh").unwrap_or_else(|_| PathBuf::from("/bin/sh"));
    let tools: Vec<PathBuf> = TOOLS.iter().filter_map(|t| find_tool(t)).collect();
    let kdir = modules_root.join(kver);
    let mut key = format!("format {FORMAT}\nkernel {kver}\n");
    for p in std::iter::once(&criu)
        .chain(&tools)
        .chain(std::iter::once(&sh))
    {
        key.push_str(&stamp(p));
    }
    key.push_str(&stamp(&kdir.join("modules.dep")));
    let hash: String = sha2::Sha256::digest(key.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let cache = cache_dir();
    let dir = cache.join(format!("criu-kit-{kver}-{hash}"));
    if dir.join("inputs").is_file() {
        return Ok(Kit {
            dir,
            built_ms: None,
        });
    }
    let _lock = CacheLock::take_named(&cache, ".criu-kit.lock")?;
    if dir.join("inputs").is_file() {
        return Ok(Kit {
            dir,
            built_ms: None,
        });
    }
    let t0 = std::time::Instant::now();
    let tmp = cache.join(format!(".criu-kit-tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let r = assemble(&tmp, &criu, &tools, &sh, &kdir, &key);
    if let Err(e) = r {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        Error::io("rename", &dir, e)
    })?;
    Ok(Kit {
        dir,
        built_ms: Some(t0.elapsed().as_millis() as u64),
    })
}

fn copy(src: &Path, dst: &Path) -> Result<()> {
    std::fs::copy(src, dst)
        .map(|_| ())
        .map_err(|e| Error::io("copy", src, e))
}

/// The libraries `ldd` lists for a binary (the loader included).
fn libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| {
            Error::Msg(format!(
                "run ldd {}: {e} (apt install libc-bin)",
                bin.display()
            ))
        })?;
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
    // "/lib64/ld-linux-x86-64.so.2 (0x...)"; a static binary has none.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(PathBuf::from)
        .collect())
}

fn assemble(
    tmp: &Path,
    criu: &Path,
    tools: &[PathBuf],
    sh: &Path,
    kdir: &Path,
    key: &str,
) -> Result<()> {
    let (bin, lib, mods) = (tmp.join("bin"), tmp.join("lib"), tmp.join("mods"));
    for d in [&bin, &lib, &mods] {
        std::fs::create_dir_all(d).map_err(|e| Error::io("create", d, e))?;
    }
    let named = std::iter::once((criu, "criu"))
        .chain(tools.iter().map(|t| {
            (
                t.as_path(),
                t.file_name().and_then(|n| n.to_str()).unwrap_or(""),
            )
        }))
        .chain(std::iter::once((sh, "sh")));
    for (src, name) in named {
        copy(src, &bin.join(name))?;
        for l in libraries(src)? {
            let Some(n) = l.file_name() else { continue };
            if !lib.join(n).exists() {
                copy(&l, &lib.join(n))?;
            }
        }
    }
    let xt = Path::new("/usr/lib/x86_64-linux-gnu/xtables");
    if xt.is_dir() {
        let dst = tmp.join("xtables");
        std::fs::create_dir_all(&dst).map_err(|e| Error::io("create", &dst, e))?;
        for e in std::fs::read_dir(xt).map_err(|e| Error::io("read", xt, e))? {
            let e = e.map_err(|e| Error::io("read", xt, e))?;
            copy(&e.path(), &dst.join(e.file_name()))?;
        }
    }
    let (dep, builtin) = module_tables(kdir)?;
    let dep_file = kdir.join("modules.dep");
    let order = crate::modules::resolve(&dep, &builtin, MODULES).map_err(|e| {
        Error::Msg(format!(
            "the CRIU kit's modules: {e} ({})",
            dep_file.display()
        ))
    })?;
    let mut list = String::new();
    for (i, m) in order.iter().enumerate() {
        let name = format!("{i:02}-{m}.ko");
        copy(&kdir.join(&dep[m].0), &mods.join(&name))?;
        list.push_str(&name);
        list.push('\n');
    }
    sandbox::files::replace(&mods.join(LOAD_ORDER), list.as_bytes(), 0o644)?;
    sandbox::files::replace(&tmp.join("inputs"), key.as_bytes(), 0o644)?;
    Ok(())
}
