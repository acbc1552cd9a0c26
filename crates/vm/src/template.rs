//! Template snapshots: boot a guest once to "agent ready", save it, and
//! start every later VM of the same shape from that save instead of
//! booting a kernel (Kata Containers calls this VM templating).
//!
//! The template VM's memory is a file (`memory-backend-file,share=on`), so
//! when QEMU's migration saves the VM with the capability
//! `x-ignore-shared`, the stream holds only the device state (a few
//! hundred KB) and the memory stays in the file. A clone starts QEMU with
//! the same machine and devices, maps the same file copy-on-write
//! (`share=off`: MAP_PRIVATE, so no clone ever writes the template and no
//! memory is copied up front), and loads the device state
//! (`-incoming defer`, then `migrate-incoming`). The guest resumes where
//! the template stopped: its agent waiting for the host's first request.
//!
//! The share: QEMU 7.2 cannot migrate vhost-user-fs (virtio-fs), and
//! virtio-9p refuses migration only while the guest has it mounted. The
//! template has a 9p device (tag [`vm_protocol::SHARE_TAG`]) on an empty
//! directory that its agent never mounts; a clone's command line points
//! the same device at the container's share, and the agent mounts it when
//! the container is created. Templated VMs therefore use 9p.
//!
//! Network cards: a template has as many virtio-net cards as the VMs that
//! restore from it (the number is part of the shape, hence of the key;
//! QEMU loads a device state only into the same device set). At its build
//! they are backed by throwaway taps in a network namespace of their own
//! ([`crate::net::throwaway_taps`]) and carry fixed MACs
//! ([`vm_protocol::template_mac`]); its guest never brings them up. A
//! clone's command line gives each card its tap in the container's
//! namespace and the veth's MAC, but the device state loaded over it
//! brings the template's MAC back, in QEMU's device as in the guest's
//! driver: the agent sets the real one when it configures the network
//! (crates/agent/src/net.rs), which the driver passes on to QEMU's device.
//!
//! Secrets: every clone resumes with the template's random-number state
//! and clock, so the host's first request ([`vm_protocol::Request::Wake`])
//! carries fresh entropy and the time, and the agent reseeds and sets the
//! clock before it runs anything.
//!
//! A template is keyed by everything that shapes the machine: QEMU's
//! arguments (kernel, initramfs, hence the agent, memory size, vCPUs,
//! accelerator, the kernel command line, the device set) and QEMU's binary.
//! It lives in the cache directory as `template-<kernel>-<key>/`, and is
//! never changed once made: a rebuild writes a new directory and renames
//! it into place, so clones still mapping the old memory file keep the
//! old inode.

use crate::cache::CacheLock;
use crate::error::{Error, Result};
use crate::qemu::{Accel, NicSpec, Snapshot, Vm, VmSpec};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Annotation that picks how a VM starts: `template` (the default) or `cold`.
pub const ANNOTATION: &str = "org.nano-sandbox.vm.boot";
/// Files of a template directory.
const MEMORY: &str = "memory";
const STATE: &str = "state";
const META: &str = "template.json";
const EMPTY: &str = "empty";
/// How long after a failed build creates boot cold without trying again.
const RETRY_AFTER: Duration = Duration::from_secs(600);

/// How a VM starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Boot {
    /// Restore from a template snapshot (made on first use).
    Template,
    /// Boot the kernel.
    Cold,
}

impl Boot {
    /// Parse `template` or `cold`; `what` names where the value came from.
    pub fn parse(v: &str, what: &str) -> Result<Boot> {
        match v {
            "template" => Ok(Boot::Template),
            "cold" => Ok(Boot::Cold),
            _ => Err(Error::Msg(format!(
                "{what} {v:?}: use template (start from a snapshot of a booted guest) or cold (boot the kernel)"
            ))),
        }
    }
}

/// The boot asked for: the flag, else the annotation, else a template;
/// with the reason, for `-E`.
pub fn requested(flag: Option<Boot>, cfg: &oci_spec::runtime::Spec) -> Result<(Boot, String)> {
    if let Some(b) = flag {
        let name = if b == Boot::Cold { "cold" } else { "template" };
        return Ok((b, format!("--vm-boot={name}")));
    }
    match cfg.annotations().as_ref().and_then(|a| a.get(ANNOTATION)) {
        Some(v) => Ok((
            Boot::parse(v, &format!("annotation {ANNOTATION}"))?,
            format!("{ANNOTATION}={v}"),
        )),
        None => Ok((Boot::Template, "the default".into())),
    }
}

/// A template on disk, ready to be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    pub dir: PathBuf,
    pub key: String,
}

impl Template {
    pub fn memory(&self) -> PathBuf {
        self.dir.join(MEMORY)
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join(STATE)
    }
}

/// What `template.json` records: enough to check the files before a
/// restore trusts them, and to say what the template is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub key: String,
    pub kernel: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub accel: Accel,
    pub state_len: u64,
    pub state_sha256: String,
    /// Network cards.
    #[serde(default)]
    pub nics: usize,
    /// How long the template's guest took to reach its agent.
    pub boot_ms: u64,
    /// QEMU's arguments (for the curious: the clone's are the same but
    /// for the share's path, `share=off` and `-incoming defer`).
    pub args: Vec<String>,
}

/// The machine a template is made for: the spec of a VM of this shape,
/// without a share path, snapshot or run directory of its own.
#[derive(Debug, Clone)]
pub struct Shape {
    pub kernel: String,
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    pub append: Vec<String>,
    /// Network cards (virtio-net on a tap each).
    pub nics: usize,
}

impl Shape {
    /// The spec a clone (`restore`) or the template itself runs with.
    pub fn spec(&self, share: &Path, run_dir: &Path, snapshot: Snapshot) -> VmSpec {
        VmSpec {
            vmlinux: self.vmlinux.clone(),
            initramfs: self.initramfs.clone(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            share: Some(share.to_path_buf()),
            virtiofs: None,
            append: self.append.clone(),
            run_dir: run_dir.to_path_buf(),
            accel: self.accel,
            // The template's cards; a clone puts its own taps and MACs in
            // their places (the descriptor here is never used).
            nics: (0..self.nics)
                .map(|i| NicSpec {
                    tap_fd: -1,
                    mac: vm_protocol::template_mac(i),
                })
                .collect(),
            snapshot: Some(snapshot),
        }
    }

    /// The key: a hash of QEMU's arguments for this shape (with fixed
    /// paths for what differs between template and clones, and without
    /// the host TSC frequency, which only steadies the first boot), of the
    /// kernel and initramfs files' identities, and of QEMU's binary.
    pub fn key(&self) -> Result<String> {
        let spec = self.spec(
            Path::new("/share"),
            Path::new("/run"),
            Snapshot {
                memory: "/memory".into(),
                restore: false,
            },
        );
        let mut h = sha2::Sha256::new();
        for a in crate::qemu::qemu_args(&spec) {
            let a: Vec<&str> = a
                .split(' ')
                .filter(|w| !w.starts_with("tsc_early_khz="))
                .collect();
            h.update(a.join(" ").as_bytes());
            h.update([0]);
        }
        let qemu = crate::qemu::find_qemu()?;
        for p in [&qemu, &self.vmlinux, &self.initramfs] {
            h.update(identity(p).as_bytes());
            h.update([0]);
        }
        Ok(hex(&h.finalize())[..16].to_string())
    }

    /// Where this shape's template lives in `cache`.
    pub fn dir(&self, cache: &Path) -> Result<PathBuf> {
        Ok(cache.join(format!("template-{}-{}", self.kernel, self.key()?)))
    }
}

fn identity(p: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p)
        .map(|m| {
            format!(
                "{} {} {} {} {}",
                p.display(),
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime()
            )
        })
        .unwrap_or_else(|_| p.display().to_string())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha256_file(p: &Path) -> Result<(u64, String)> {
    let data = std::fs::read(p).map_err(|e| Error::io("read", p, e))?;
    Ok((data.len() as u64, hex(&sha2::Sha256::digest(&data))))
}

/// Check a template directory before trusting it: its record, the size
/// and hash of the device state, and the size of the memory file (QEMU
/// would grow a short one, writing the template). An error says what is
/// wrong, for the fallback's message.
pub fn validate(dir: &Path, shape: &Shape) -> Result<Template> {
    let metap = dir.join(META);
    let raw = std::fs::read(&metap).map_err(|e| Error::io("read", &metap, e))?;
    let meta: Meta = serde_json::from_slice(&raw)
        .map_err(|e| Error::Msg(format!("{}: {e}", metap.display())))?;
    let t = Template {
        dir: dir.to_path_buf(),
        key: meta.key.clone(),
    };
    let (len, sum) = sha256_file(&t.state())?;
    if len != meta.state_len || sum != meta.state_sha256 {
        return Err(Error::Msg(format!(
            "{}: {len} bytes with sha256 {sum}, but {} recorded {} bytes with sha256 {} (truncated or corrupted)",
            t.state().display(),
            metap.display(),
            meta.state_len,
            meta.state_sha256
        )));
    }
    let want = u64::from(shape.memory_mib) << 20;
    let mem = std::fs::metadata(t.memory()).map_err(|e| Error::io("stat", t.memory(), e))?;
    if mem.len() != want || meta.memory_mib != shape.memory_mib {
        return Err(Error::Msg(format!(
            "{}: {} bytes, but a {} MiB guest needs {want} (truncated)",
            t.memory().display(),
            mem.len(),
            shape.memory_mib
        )));
    }
    Ok(t)
}

/// Move a template directory out of the way and remove it (clones that
/// map its memory keep the inode until they end).
pub fn discard(dir: &Path) {
    crate::cache::remove_aside(dir);
}

/// What [`ensure`] did.
pub enum Ensured {
    /// The cached template was valid.
    Cached(Template),
    /// It was built now; the guest booted in this many ms.
    Built(Template, u64),
}

/// The template for `shape` in the cache, built when there is none (a key
/// change means a new directory). An invalid one (corrupted, truncated)
/// is discarded with an error saying so: the caller boots cold this time,
/// and the next VM of this shape builds a fresh one. The template's guest
/// gets `timeout` to reach its agent; a failed build is not tried again
/// for [`RETRY_AFTER`]. `progress` hears about a build.
pub fn ensure(shape: &Shape, timeout: Duration, progress: &dyn Fn(String)) -> Result<Ensured> {
    let cache = crate::cache::cache_dir();
    let dir = shape.dir(&cache)?;
    if let Ok(t) = validate(&dir, shape) {
        // Used now: pruning keeps it.
        crate::cache::touch(&dir);
        return Ok(Ensured::Cached(t));
    }
    let name = dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let _lock = CacheLock::take_named(&cache, &format!(".{name}.lock"))?;
    match validate(&dir, shape) {
        Ok(t) => {
            crate::cache::touch(&dir);
            return Ok(Ensured::Cached(t));
        }
        Err(e) if dir.exists() => {
            discard(&dir);
            return Err(Error::Msg(format!(
                "the VM template {} is unusable ({e}); it was removed, and the next VM of this shape builds a new one",
                dir.display()
            )));
        }
        Err(_) => {}
    }
    // A build that failed lately is not tried at every create (each try
    // costs up to a ready timeout): cold boots until the pause is over.
    let failed = cache.join(format!(".{name}.failed"));
    if let Some(age) = std::fs::metadata(&failed)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .filter(|a| *a < RETRY_AFTER)
    {
        let why = std::fs::read_to_string(&failed).unwrap_or_default();
        return Err(Error::Msg(format!(
            "building it failed {} s ago ({}); the next create tries again after {} s (remove {} to try at once)",
            age.as_secs(),
            why.trim(),
            RETRY_AFTER.as_secs(),
            failed.display()
        )));
    }
    // What a killed build of this key left (we hold its lock).
    if let Ok(rd) = std::fs::read_dir(&cache) {
        let prefix = format!(".{name}.tmp-");
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    progress(format!(
        "building the VM template {} (one boot; every VM of this kernel, agent, size and number of network cards then restores from it)",
        dir.display()
    ));
    let tmp = cache.join(format!(".{name}.tmp-{}", std::process::id()));
    let boot_ms = match build(shape, &tmp, timeout) {
        Ok(ms) => ms,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            let _ = sandbox::files::replace(&failed, e.to_string().as_bytes(), 0o644);
            return Err(e);
        }
    };
    let _ = std::fs::remove_file(&failed);
    std::fs::rename(&tmp, &dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        Error::io("rename into place", &dir, e)
    })?;
    let t = validate(&dir, shape)?;
    drop(_lock);
    // Templates of other shapes and older builds not used for a day.
    if let Ok(_cache_lock) = CacheLock::take(&cache) {
        for p in crate::cache::prune(&cache, "template-", &dir, crate::cache::KEEP_UNUSED) {
            progress(format!(
                "removed the VM template {}, not used for a day",
                p.display()
            ));
        }
    }
    Ok(Ensured::Built(t, boot_ms))
}

/// Boot the template VM in `dir` and save it there. Returns the boot time.
fn build(shape: &Shape, dir: &Path, timeout: Duration) -> Result<u64> {
    use std::os::unix::fs::DirBuilderExt;
    use std::os::unix::fs::OpenOptionsExt;
    // The guest's memory is readable by its owner only (QEMU keeps the
    // mode of a file that exists).
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create", dir, e))?;
    let empty = dir.join(EMPTY);
    std::fs::create_dir_all(&empty).map_err(|e| Error::io("create", &empty, e))?;
    let memory = dir.join(MEMORY);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&memory)
        .map_err(|e| Error::io("create", &memory, e))?;
    let mut spec = shape.spec(
        &empty,
        dir,
        Snapshot {
            memory: memory.clone(),
            restore: false,
        },
    );
    // Held until QEMU has ended: the taps go with the last descriptor.
    let taps = crate::net::throwaway_taps(shape.nics)?;
    for (n, t) in spec.nics.iter_mut().zip(&taps) {
        n.tap_fd = std::os::fd::AsRawFd::as_raw_fd(t);
    }
    let statep = dir.join(STATE);
    let state = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&statep)
        .map_err(|e| Error::io("create", &statep, e))?;
    let t0 = Instant::now();
    let mut vm = Vm::launch(&spec)?;
    vm.wait_ready(timeout)?;
    let boot_ms = t0.elapsed().as_millis() as u64;
    let sock = vm
        .qmp
        .take()
        .ok_or_else(|| Error::Msg("the template VM has no QMP socket".into()))?;
    let saved = (|| {
        let mut q = crate::qmp::Qmp::connect(sock, Duration::from_secs(30))?;
        q.capability("x-ignore-shared")?;
        q.send_fd("state", state.as_fd())?;
        q.execute("migrate", serde_json::json!({ "uri": "fd:state" }))?;
        q.wait_migration(Duration::from_secs(60))?;
        // Ends QEMU; the reply may or may not make it out first.
        let _ = q.execute("quit", serde_json::json!({}));
        Ok::<(), Error>(())
    })();
    if let Err(e) = saved {
        let d = vm.diagnostics();
        vm.kill();
        return Err(Error::Msg(format!("save the template VM: {e}{d}")));
    }
    if vm.wait_timeout(Duration::from_secs(30)).is_none() {
        vm.kill();
        return Err(Error::Msg(
            "the template VM did not quit after its save".into(),
        ));
    }
    drop(taps);
    // On disk before the record says it is complete.
    for p in [&statep, &memory] {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("sync", p, e))?;
    }
    let (state_len, state_sha256) = sha256_file(&statep)?;
    let meta = Meta {
        key: shape.key()?,
        kernel: shape.kernel.clone(),
        memory_mib: shape.memory_mib,
        vcpus: shape.vcpus,
        accel: shape.accel,
        state_len,
        state_sha256,
        nics: shape.nics,
        boot_ms,
        args: crate::qemu::qemu_args(&spec),
    };
    let raw = serde_json::to_vec_pretty(&meta).unwrap_or_default();
    sandbox::files::replace(&dir.join(META), &raw, 0o644).map_err(|e| Error::Msg(e.to_string()))?;
    for f in ["console.log", "qemu.log"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    Ok(boot_ms)
}

/// Fresh entropy and the host's clock, for a restored guest.
pub fn wake_message() -> Result<vm_protocol::Wake> {
    use std::io::Read;
    let mut entropy = vec![0u8; 64];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut entropy))
        .map_err(|e| Error::io("read", "/dev/urandom", e))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(vm_protocol::Wake {
        entropy,
        realtime_secs: now.as_secs() as i64,
        realtime_nanos: now.subsec_nanos(),
    })
}

/// Start a clone of `t`: QEMU with the template's machine, its memory
/// mapped copy-on-write, `share` on the 9p device, `nics` (the VM's own
/// taps and MACs) in the places of the template's cards, the device state
/// loaded, and the agent woken (entropy, clock). Returns the VM, ready
/// for requests; its cards still have the template's MACs until the agent
/// sets theirs. The caller falls back to a cold boot on error; the VM is
/// killed then (Vm's Drop).
pub fn restore(
    t: &Template,
    shape: &Shape,
    share: &Path,
    run_dir: &Path,
    nics: Vec<NicSpec>,
    timeout: Duration,
) -> Result<Vm> {
    if nics.len() != shape.nics {
        return Err(Error::Msg(format!(
            "the template {} has {} network card(s), the VM {}",
            t.dir.display(),
            shape.nics,
            nics.len()
        )));
    }
    let state = std::fs::File::open(t.state()).map_err(|e| Error::io("open", t.state(), e))?;
    let mut spec = shape.spec(
        share,
        run_dir,
        Snapshot {
            memory: t.memory(),
            restore: true,
        },
    );
    spec.nics = nics;
    let mut vm = Vm::launch(&spec)?;
    sandbox::logging::debug(|| {
        format!(
            "qemu pid {} restores {}: {}",
            vm.pid,
            t.dir.display(),
            crate::qemu::qemu_args(&spec).join(" ")
        )
    });
    let sock = vm
        .qmp
        .take()
        .ok_or_else(|| Error::Msg("the restored VM has no QMP socket".into()))?;
    let loaded = (|| {
        let mut q = crate::qmp::Qmp::connect(sock, timeout)?;
        q.capability("x-ignore-shared")?;
        q.send_fd("state", state.as_fd())?;
        q.execute("migrate-incoming", serde_json::json!({ "uri": "fd:state" }))?;
        Ok::<(), Error>(())
    })();
    if let Err(e) = loaded {
        vm.wait_timeout(Duration::from_secs(2));
        let d = vm.diagnostics();
        return Err(Error::Msg(format!("{e}{d}")));
    }
    // QEMU resumes the guest once the state is in (it exits if the state
    // does not load); the agent answers wake from where the template stopped.
    vm.wake(wake_message()?, timeout)?;
    Ok(vm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            kernel: "6.1.0-test".into(),
            vmlinux: "/nonexistent/vmlinux".into(),
            initramfs: "/nonexistent/initramfs".into(),
            vcpus: 1,
            memory_mib: 256,
            accel: Accel::Tcg,
            append: vec![],
            nics: 0,
        }
    }

    #[test]
    fn validate_checks_the_record_the_state_and_the_memory_size() {
        let d = std::env::temp_dir().join(format!("nk-tpl-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let s = shape();
        let state = b"QEVM device state".to_vec();
        std::fs::write(d.join(STATE), &state).unwrap();
        // Sparse: the size is what is checked.
        let mem = std::fs::File::create(d.join(MEMORY)).unwrap();
        mem.set_len(256 << 20).unwrap();
        let meta = Meta {
            key: "k".into(),
            kernel: s.kernel.clone(),
            memory_mib: 256,
            vcpus: 1,
            accel: Accel::Tcg,
            state_len: state.len() as u64,
            state_sha256: hex(&sha2::Sha256::digest(&state)),
            nics: 0,
            boot_ms: 1,
            args: vec![],
        };
        std::fs::write(d.join(META), serde_json::to_vec(&meta).unwrap()).unwrap();
        assert_eq!(validate(&d, &s).unwrap().dir, d);
        // One byte changed: the hash says so.
        let mut bad = state.clone();
        bad[3] ^= 1;
        std::fs::write(d.join(STATE), &bad).unwrap();
        let e = validate(&d, &s).unwrap_err().to_string();
        assert!(
            e.contains("truncated or corrupted") && e.contains("state"),
            "{e}"
        );
        // Truncated.
        std::fs::write(d.join(STATE), &state[..5]).unwrap();
        assert!(validate(&d, &s).is_err());
        std::fs::write(d.join(STATE), &state).unwrap();
        // A short memory file (QEMU would grow it, writing the template).
        mem.set_len(1 << 20).unwrap();
        let e = validate(&d, &s).unwrap_err().to_string();
        assert!(e.contains("memory") && e.contains("truncated"), "{e}");
        mem.set_len(256 << 20).unwrap();
        // Another size is not this template.
        let e = validate(
            &d,
            &Shape {
                memory_mib: 512,
                ..shape()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("512 MiB"), "{e}");
        // No record: not a template.
        std::fs::remove_file(d.join(META)).unwrap();
        assert!(validate(&d, &s).is_err());
        discard(&d);
        assert!(!d.exists());
    }

    #[test]
    fn boot_values() {
        assert_eq!(Boot::parse("cold", "x").unwrap(), Boot::Cold);
        assert_eq!(Boot::parse("template", "x").unwrap(), Boot::Template);
        let e = Boot::parse("warm", "--vm-boot").unwrap_err().to_string();
        assert!(
            e.contains("--vm-boot \"warm\"") && e.contains("cold"),
            "{e}"
        );
    }

    #[test]
    fn key_follows_what_shapes_the_machine() {
        if crate::qemu::find_qemu().is_err() {
            return;
        }
        let a = shape();
        let k = a.key().unwrap();
        assert_eq!(k, shape().key().unwrap(), "the key is stable");
        for b in [
            Shape {
                memory_mib: 512,
                ..shape()
            },
            Shape {
                vcpus: 2,
                ..shape()
            },
            Shape {
                initramfs: "/nonexistent/other".into(),
                ..shape()
            },
            Shape {
                append: vec!["nk_debug=1".into()],
                ..shape()
            },
            Shape { nics: 1, ..shape() },
            Shape { nics: 2, ..shape() },
        ] {
            assert_ne!(b.key().unwrap(), k, "{b:?}");
        }
    }

    #[test]
    fn clone_args_differ_only_in_share_memory_mode_and_incoming() {
        let s = shape();
        let t = s.spec(
            Path::new("/t/empty"),
            Path::new("/t"),
            Snapshot {
                memory: "/t/memory".into(),
                restore: false,
            },
        );
        let c = s.spec(
            Path::new("/state/share"),
            Path::new("/state"),
            Snapshot {
                memory: "/t/memory".into(),
                restore: true,
            },
        );
        let (ta, ca) = (
            crate::qemu::qemu_args(&t).join(" "),
            crate::qemu::qemu_args(&c).join(" "),
        );
        assert!(
            ta.contains("mem-path=/t/memory,share=on")
                && ca.contains("mem-path=/t/memory,share=off"),
            "{ta}\n{ca}"
        );
        assert!(ca.ends_with("-incoming defer") && !ta.contains("-incoming"));
        assert_eq!(
            ta.replace("/t/empty", "/state/share")
                .replace("share=on", "share=off")
                + " -incoming defer",
            ca
        );
        assert!(ca.contains("mount_tag=nkshare") && !ca.contains("vhost-user-fs"));
    }

    #[test]
    fn a_clone_puts_its_taps_and_macs_in_the_template_cards_places() {
        let s = Shape { nics: 2, ..shape() };
        let snap = |restore| Snapshot {
            memory: "/t/memory".into(),
            restore,
        };
        let t =
            crate::qemu::qemu_args(&s.spec(Path::new("/t/empty"), Path::new("/t"), snap(false)))
                .join(" ");
        for n in 0..2 {
            assert!(
                t.contains(&format!(
                    "netdev=net{n},mac={}",
                    vm_protocol::template_mac(n)
                )),
                "{t}"
            );
        }
        let mut c = s.spec(Path::new("/t/empty"), Path::new("/t"), snap(true));
        c.nics = vec![
            NicSpec {
                tap_fd: 40,
                mac: "0a:58:0a:00:00:02".into(),
            },
            NicSpec {
                tap_fd: 41,
                mac: "0a:58:0a:00:00:03".into(),
            },
        ];
        let ca = crate::qemu::qemu_args(&c).join(" ");
        assert_eq!(
            t.replace(&vm_protocol::template_mac(0), "0a:58:0a:00:00:02")
                .replace(&vm_protocol::template_mac(1), "0a:58:0a:00:00:03")
                .replace("share=on", "share=off")
                + " -incoming defer",
            ca
        );
        assert_ne!(vm_protocol::template_mac(0), vm_protocol::template_mac(1));
    }
}
