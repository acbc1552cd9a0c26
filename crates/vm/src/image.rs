//! The guest image: an uncompressed kernel and an initramfs, built once and
//! cached under /var/lib/nano-sandbox/vm/.
//!
//! * The kernel is Debian's bzImage. Its payload is an XZ stream; booting the
//!   decompressed ELF `vmlinux` directly (PVH) saves the guest about 2 s of
//!   decompression under TCG. It is cached per kernel version, and redone
//!   when the bzImage changes (size and mtime are recorded).
//! * The initramfs holds the static agent as `/init`, the modules it needs
//!   and their load order. It is keyed by kernel version and agent hash, so
//!   a new agent build gets a new image and never a stale one.

use crate::cache::CacheLock;
pub use crate::cache::{cache_dir, DEFAULT_CACHE};
use crate::cpio::Archive;
use crate::error::{Error, Result};
use crate::modules;
use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where modules go inside the initramfs, and the file listing their order.
pub const GUEST_MODULE_DIR: &str = "lib/modules";
pub const GUEST_MODULE_ORDER: &str = "lib/modules/load-order";

/// Progress of a long step, for `vm-image build`.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A step begins.
    Step(String),
    /// Part of a step is done: (done, total) in bytes.
    Bytes(u64, u64),
    /// A step finished, with a summary.
    Done(String),
}

/// The guest kernel on the host.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The compressed bzImage.
    pub bzimage: PathBuf,
    /// Its release, e.g. 6.1.0-56-amd64.
    pub version: String,
    /// /lib/modules (its `version` subdirectory holds the modules).
    pub modules_root: PathBuf,
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0))
        .collect()
}

/// Find the guest kernel: `NK_VM_KERNEL` (a bzImage path), else the newest
/// `/boot/vmlinuz-*` whose modules are installed.
pub fn find_kernel() -> Result<Kernel> {
    let modules_root = std::env::var_os("NK_VM_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/lib/modules"));
    if let Some(k) = std::env::var_os("NK_VM_KERNEL").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(k);
        if !p.is_file() {
            return Err(Error::KernelMissing {
                what: format!("{} (from NK_VM_KERNEL) does not exist", p.display()),
            });
        }
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let version = std::env::var("NK_VM_KVER")
            .ok()
            .or_else(|| name.strip_prefix("vmlinuz-").map(String::from))
            .ok_or_else(|| Error::KernelMissing {
                what: format!(
                    "cannot tell the version of {}: name it vmlinuz-<version> or set NK_VM_KVER",
                    p.display()
                ),
            })?;
        return Ok(Kernel {
            bzimage: p,
            version,
            modules_root,
        });
    }
    let mut found: Vec<(Vec<u64>, String, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/boot") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(v) = name.strip_prefix("vmlinuz-") {
                if modules_root.join(v).join("modules.dep").exists() {
                    found.push((version_key(v), v.to_string(), e.path()));
                }
            }
        }
    }
    found.sort();
    let (_, version, bzimage) = found.pop().ok_or_else(|| Error::KernelMissing {
        what: "no /boot/vmlinuz-* with its modules in /lib/modules was found".into(),
    })?;
    Ok(Kernel {
        bzimage,
        version,
        modules_root,
    })
}

/// Locate the XZ payload inside a bzImage: from the setup header's
/// payload_offset/payload_length when they point at an XZ stream, else by
/// searching for the XZ magic.
pub fn xz_payload(bz: &[u8]) -> std::result::Result<&[u8], String> {
    const MAGIC: &[u8] = b"\xfd7zXZ\x00";
    if bz.len() > 0x250 && &bz[0x202..0x206] == b"HdrS" {
        let setup_sects = if bz[0x1f1] == 0 {
            4
        } else {
            bz[0x1f1] as usize
        };
        let pm = (setup_sects + 1) * 512;
        let off = u32::from_le_bytes(bz[0x248..0x24c].try_into().expect("4 bytes")) as usize;
        let len = u32::from_le_bytes(bz[0x24c..0x250].try_into().expect("4 bytes")) as usize;
        let start = pm + off;
        if start + len <= bz.len() && bz[start..].starts_with(MAGIC) {
            return Ok(&bz[start..start + len]);
        }
        if start < bz.len() && !bz[start..].starts_with(MAGIC) {
            let head = &bz[start..(start + 6).min(bz.len())];
            if head.starts_with(b"\x1f\x8b") || head.starts_with(b"\x28\xb5\x2f\xfd") {
                return Err(
                    "the kernel payload is gzip or zstd compressed; only XZ (Debian's) is supported"
                        .into(),
                );
            }
        }
    }
    let at = bz
        .windows(MAGIC.len())
        .position(|w| w == MAGIC)
        .ok_or("no XZ stream inside; is this a bzImage?")?;
    Ok(&bz[at..])
}

/// Decompress the kernel inside a bzImage to its ELF image.
pub fn extract_vmlinux(
    bz: &[u8],
    progress: &dyn Fn(Progress),
) -> std::result::Result<Vec<u8>, String> {
    let payload = xz_payload(bz)?;
    // The kernel's build appends the uncompressed size after the stream.
    let hint = if payload.len() >= 4 {
        u32::from_le_bytes(payload[payload.len() - 4..].try_into().expect("4 bytes")) as u64
    } else {
        0
    };
    let cap = if (1 << 20..1 << 30).contains(&hint) {
        hint
    } else {
        64 << 20
    };
    let mut r = lzma_rust2::XzReader::new(payload, false);
    let mut out = Vec::with_capacity(cap as usize);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).map_err(|e| format!("XZ decode: {e}"))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        progress(Progress::Bytes(out.len() as u64, cap));
    }
    if !out.starts_with(b"\x7fELF") {
        return Err("the decompressed kernel is not an ELF image".into());
    }
    Ok(out)
}

/// The cached image files for one kernel and agent.
#[derive(Debug, Clone)]
pub struct Image {
    pub kernel_version: String,
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    pub agent: PathBuf,
    pub agent_hash: String,
}

/// Find the static guest agent: `NK_VM_AGENT`, else `nk-agent` next to the
/// running binary, in `../lib/nano-sandbox/`, or in cargo's static target dir.
pub fn find_agent() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("NK_VM_AGENT").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Agent {
                what: format!("{} (from NK_VM_AGENT) does not exist", p.display()),
            })
        };
    }
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let mut tried = Vec::new();
    let mut cands = vec![
        dir.join("nk-agent"),
        dir.join("../lib/nano-sandbox/nk-agent"),
    ];
    // A development tree: target/<profile>/nk-runtime next to
    // target/x86_64-unknown-linux-gnu/<profile>/nk-agent.
    if let (Some(profile), Some(target)) = (dir.file_name(), dir.parent()) {
        cands.push(
            target
                .join("x86_64-unknown-linux-gnu")
                .join(profile)
                .join("nk-agent"),
        );
        cands.push(target.join("x86_64-unknown-linux-gnu/release/nk-agent"));
    }
    for c in cands {
        if c.is_file() {
            return Ok(c);
        }
        // In target/<triple>/release the development candidates are one path.
        let shown = c.display().to_string();
        if !tried.contains(&shown) {
            tried.push(shown);
        }
    }
    Err(Error::Agent {
        what: format!(
            "not found (looked at {}); build it with `make agent` or set NK_VM_AGENT",
            tried.join(", ")
        ),
    })
}

/// True when an ELF executable has no program interpreter (is static).
pub fn is_static_elf(data: &[u8]) -> bool {
    if data.len() < 64 || !data.starts_with(b"\x7fELF") || data[4] != 2 {
        return false;
    }
    let phoff = u64::from_le_bytes(data[32..40].try_into().expect("8 bytes")) as usize;
    let phentsize = u16::from_le_bytes([data[54], data[55]]) as usize;
    let phnum = u16::from_le_bytes([data[56], data[57]]) as usize;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        if at + 4 > data.len() {
            return false;
        }
        if u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) == 3 {
            return false; // PT_INTERP
        }
    }
    true
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    sandbox::files::replace(path, data, 0o644).map_err(|e| Error::Msg(e.to_string()))
}

fn stamp_of(p: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p)
        .map(|m| format!("{} {} {}", p.display(), m.len(), m.mtime()))
        .unwrap_or_default()
}

/// Paths of the cached kernel for a version.
pub fn vmlinux_path(cache: &Path, kver: &str) -> PathBuf {
    cache.join(format!("kernel-{kver}")).join("vmlinux")
}

/// Make sure the uncompressed kernel is cached; returns its path.
pub fn ensure_vmlinux(cache: &Path, k: &Kernel, progress: &dyn Fn(Progress)) -> Result<PathBuf> {
    let out = vmlinux_path(cache, &k.version);
    let stamp_file = out.with_file_name("source");
    let stamp = stamp_of(&k.bzimage);
    if out.is_file() && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(&stamp) {
        return Ok(out);
    }
    let _lock = CacheLock::take(cache)?;
    if out.is_file() && std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(&stamp) {
        return Ok(out);
    }
    progress(Progress::Step(format!(
        "extracting the kernel from {} to {}",
        k.bzimage.display(),
        out.display()
    )));
    let bz = std::fs::read(&k.bzimage).map_err(|e| Error::io("read", &k.bzimage, e))?;
    let elf = extract_vmlinux(&bz, progress).map_err(|e| Error::KernelMissing {
        what: format!("{}: {e}", k.bzimage.display()),
    })?;
    let dir = out.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    write_atomic(&out, &elf)?;
    write_atomic(&stamp_file, stamp.as_bytes())?;
    progress(Progress::Done(format!(
        "vmlinux: {} MB from {} MB",
        elf.len() >> 20,
        bz.len() >> 20
    )));
    Ok(out)
}

/// The initramfs bytes: the agent as /init, the modules and their order.
pub fn build_initramfs(agent: &[u8], mods: &[modules::Module]) -> Result<Vec<u8>> {
    let mut a = Archive::new();
    for d in ["dev", "proc", "sys", "run", "tmp", "lib", GUEST_MODULE_DIR] {
        a.dir(d, 0o755);
    }
    a.char_dev("dev/console", 0o600, 5, 1);
    a.char_dev("dev/null", 0o666, 1, 3);
    a.file("init", 0o755, agent);
    let mut order = String::new();
    for m in mods {
        let data = std::fs::read(&m.path).map_err(|e| Error::io("read", &m.path, e))?;
        let name = format!("{}.ko", m.name);
        a.file(&format!("{GUEST_MODULE_DIR}/{name}"), 0o644, &data);
        order.push_str(&name);
        order.push('\n');
    }
    a.file(GUEST_MODULE_ORDER, 0o644, order.as_bytes());
    Ok(a.finish())
}

/// Make sure the whole image is cached (kernel and initramfs) and return it.
pub fn ensure(progress: &dyn Fn(Progress)) -> Result<Image> {
    ensure_with(None, progress)
}

/// [`ensure`] with a given agent binary instead of the one [`find_agent`] finds.
pub fn ensure_with(agent: Option<&Path>, progress: &dyn Fn(Progress)) -> Result<Image> {
    let cache = cache_dir();
    let k = find_kernel()?;
    let vmlinux = ensure_vmlinux(&cache, &k, progress)?;
    let agent = match agent {
        Some(a) if a.is_file() => a.to_path_buf(),
        Some(a) => {
            return Err(Error::Agent {
                what: format!("{} does not exist", a.display()),
            })
        }
        None => find_agent()?,
    };
    let data = std::fs::read(&agent).map_err(|e| Error::io("read", &agent, e))?;
    if !is_static_elf(&data) {
        return Err(Error::Agent {
            what: format!(
                "{} is not a static executable; build it with `make agent` (RUSTFLAGS=\"-C target-feature=+crt-static\")",
                agent.display()
            ),
        });
    }
    let agent_hash = hex(&sha2::Sha256::digest(&data))[..16].to_string();
    let initramfs = cache.join(format!("initramfs-{}-{agent_hash}.cpio", k.version));
    if !initramfs.is_file() {
        let _lock = CacheLock::take(&cache)?;
        if !initramfs.is_file() {
            progress(Progress::Step(format!(
                "building the initramfs {} (agent {}, kernel {} modules)",
                initramfs.display(),
                agent.display(),
                k.version
            )));
            let mods = modules::for_kernel(&k.modules_root, &k.version)?;
            let bytes = build_initramfs(&data, &mods)?;
            write_atomic(&initramfs, &bytes)?;
            progress(Progress::Done(format!(
                "initramfs: {} KB, modules {}",
                bytes.len() >> 10,
                mods.iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
            for p in
                crate::cache::prune(&cache, "initramfs-", &initramfs, crate::cache::KEEP_UNUSED)
            {
                progress(Progress::Step(format!(
                    "removed {}, not used for a day",
                    p.display()
                )));
            }
        }
    }
    // Used now: pruning keeps it.
    crate::cache::touch(&initramfs);
    Ok(Image {
        kernel_version: k.version,
        vmlinux,
        initramfs,
        agent,
        agent_hash,
    })
}

/// What is cached, for `vm-image status`.
pub fn status() -> serde_json::Value {
    let cache = cache_dir();
    let kernel = find_kernel();
    let agent = find_agent();
    let mut v = serde_json::json!({ "cache": cache });
    match &kernel {
        Ok(k) => {
            let vml = vmlinux_path(&cache, &k.version);
            v["kernel"] = serde_json::json!({
                "bzimage": k.bzimage, "version": k.version,
                "vmlinux": if vml.is_file() { serde_json::json!(vml) } else { serde_json::Value::Null },
            });
        }
        Err(e) => v["kernel"] = serde_json::json!({ "error": e.to_string() }),
    }
    match &agent {
        Ok(a) => {
            let data = std::fs::read(a).unwrap_or_default();
            let h = hex(&sha2::Sha256::digest(&data))[..16].to_string();
            v["agent"] =
                serde_json::json!({ "path": a, "hash": h, "static": is_static_elf(&data) });
            if let Ok(k) = &kernel {
                let p = cache.join(format!("initramfs-{}-{h}.cpio", k.version));
                v["initramfs"] = if p.is_file() {
                    serde_json::json!(p)
                } else {
                    serde_json::Value::Null
                };
            }
        }
        Err(e) => v["agent"] = serde_json::json!({ "error": e.to_string() }),
    }
    let mut files = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&cache) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with('.') {
                files.push(n);
            }
        }
    }
    files.sort();
    v["cached"] = serde_json::json!(files);
    v["accel"] = serde_json::to_value(crate::cache::cached_accel(&cache)).unwrap_or_default();
    v
}

/// Remove everything cached; returns the bytes freed.
pub fn clean() -> Result<u64> {
    let cache = cache_dir();
    let _lock = CacheLock::take(&cache)?;
    let mut freed = 0;
    let rd = match std::fs::read_dir(&cache) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("read", &cache, e)),
    };
    for e in rd.flatten() {
        if e.file_name() == ".lock" {
            continue;
        }
        let p = e.path();
        freed += du(&p);
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|e| Error::io("remove", &p, e))?;
    }
    Ok(freed)
}

fn du(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if m.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
            .unwrap_or(0)
    } else {
        m.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_elf_detection() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        // Test binaries are dynamic on this target.
        assert!(!is_static_elf(&exe));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }

    #[test]
    fn payload_requires_xz() {
        assert!(xz_payload(b"not a kernel").is_err());
        let mut fake = vec![0u8; 100];
        fake.extend_from_slice(b"\xfd7zXZ\x00rest");
        assert_eq!(xz_payload(&fake).unwrap()[..6], *b"\xfd7zXZ\x00");
    }

    #[test]
    fn versions_sort_numerically() {
        assert!(version_key("6.10.0-1-amd64") > version_key("6.9.0-3-amd64"));
    }
}
