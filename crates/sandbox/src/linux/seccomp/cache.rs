//! The cache of compiled seccomp filters. libseccomp takes milliseconds to
//! compile an engine's default profile (about 12 ms for Podman's 434
//! names), and engines send the same profile to every container: the
//! compiled program is kept under the state root and reused.
//!
//! Safety rests on four things:
//! * **The key names everything the program depends on**: a SHA-256 of the
//!   profile as parsed (so JSON spacing and key order do not matter; the
//!   listener's path and metadata, which only the load uses, are left out),
//!   this runtime binary's GNU build id (a new build, a new libseccomp
//!   linked in, a changed compiler: a new key), libseccomp's version and
//!   API level (what it found the kernel supports), the kernel's release
//!   and version, and libseccomp's native architecture. A binary without a
//!   build id does not use the cache at all.
//! * **Only the runtime's user can write it**: [`default_dir`] (as root
//!   `/var/cache/nano-sandbox/seccomp`), mode 0700, owned by the caller. No
//!   container mounts it, and a directory or entry owned by someone else,
//!   writable by others, or a symlink is not used. It is not under the state
//!   root: a root holds containers only, as runc's does, so an engine or a
//!   user who finds it empty after the last delete is right (Docker's and
//!   containerd's own checks look).
//! * **Every entry is checked before use**: a header with a magic, a
//!   format version, the key itself (an entry copied under another name is
//!   refused), the lengths, and a SHA-256 of the rest; the program is a
//!   whole number of instructions and within the kernel's limit. Anything
//!   else is compiled afresh and the entry replaced. The kernel checks the
//!   program again when it is loaded.
//! * **Writes are atomic**: a new entry is written under a random name
//!   (O_CREAT|O_EXCL|O_NOFOLLOW) and renamed into place ([`crate::files`]),
//!   so a reader sees a whole entry or none; two runtimes that miss at once
//!   both write the same bytes.
//!
//! The cache holds at most [`MAX_ENTRIES`] programs: each miss removes the
//! least recently used beyond that (a hit refreshes its entry's time).

use super::{assemble, check_size, compile, warn_unknown, Compiled, Prepared, INSN, MAX_INSNS};
use crate::error::Result;
use crate::explain::{self, catalog};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Programs kept; a miss beyond this evicts the least recently used.
pub const MAX_ENTRIES: usize = 64;

const MAGIC: &[u8; 8] = b"NKSECBPF";
/// The entry layout's version: bump it when [`encode`] changes.
const FORMAT: u32 = 1;
/// magic, format, key, rules, unknown-names length, program length, digest.
const HEADER: usize = 8 + 4 + 32 + 4 + 4 + 4 + 32;
/// Longest list of unknown syscall names kept (comma separated).
const MAX_UNKNOWN: usize = 64 << 10;
const MAX_FILE: usize = HEADER + MAX_UNKNOWN + MAX_INSNS * INSN;
/// A temporary file this old was left by a writer that died.
const STALE_TMP_SECS: i64 = 60;

/// Where the cache lives unless `--seccomp-cache DIR` says otherwise:
/// `/var/cache/nano-sandbox/seccomp` for root (kept across reboots: the key
/// names the kernel, so entries of another kernel are never hit and age
/// out), otherwise `$XDG_CACHE_HOME/nano-sandbox/seccomp` or
/// `~/.cache/nano-sandbox/seccomp`; `None` (no cache) with neither.
pub fn default_dir() -> Option<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/var/cache/nano-sandbox/seccomp"));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(x) if Path::new(&x).is_absolute() => PathBuf::from(x),
        _ => match std::env::var_os("HOME") {
            Some(h) if Path::new(&h).is_absolute() => PathBuf::from(h).join(".cache"),
            _ => return None,
        },
    };
    Some(base.join("nano-sandbox").join("seccomp"))
}

/// Prepare `s` through the cache in `dir` (`None`: compile, no cache).
/// Any problem with the cache falls back to compiling; only a profile that
/// does not compile is an error. Narrated as `seccomp.compile`.
pub fn prepare(s: &LinuxSeccomp, dir: Option<&Path>) -> Result<Prepared> {
    let Some(dir) = dir else {
        return compiled(
            s,
            "cache off (--no-seccomp-cache, or no cache directory for this user: set HOME or XDG_CACHE_HOME)",
        );
    };
    let Some(key) = key(s) else {
        return compiled(
            s,
            "no cache: this runtime binary has no GNU build id to tell builds apart",
        );
    };
    let dfd = match open_dir(dir) {
        Ok(d) => d,
        Err(why) => return compiled(s, &format!("no cache: {why}")),
    };
    let name = super::hex::encode(&key);
    let path = dir.join(&name);
    let why = match read_entry(&dfd, &name, &key) {
        Ok(c) => {
            explain::step(&catalog::SECCOMP_COMPILE, || {
                format!(
                    "cache hit: {} ({} instructions, {} rules)",
                    path.display(),
                    c.bpf.len() / INSN,
                    c.rules
                )
            });
            warn_unknown(&c.unknown);
            return Ok(assemble(s, c));
        }
        Err(why) => why,
    };
    let c = compile(s)?;
    warn_unknown(&c.unknown);
    let stored = match crate::files::replace(&path, &encode(&key, &c), 0o600) {
        Ok(()) => {
            evict(dir);
            format!("stored as {}", path.display())
        }
        Err(e) => format!("not stored: {e}"),
    };
    explain::step(&catalog::SECCOMP_COMPILE, || {
        format!(
            "cache miss ({why}): compiled {} rules into {} instructions, {stored}",
            c.rules,
            c.bpf.len() / INSN
        )
    });
    Ok(assemble(s, c))
}

/// Compile without the cache, saying why.
fn compiled(s: &LinuxSeccomp, why: &str) -> Result<Prepared> {
    let c = compile(s)?;
    warn_unknown(&c.unknown);
    explain::step(&catalog::SECCOMP_COMPILE, || {
        format!(
            "{why}: compiled {} rules into {} instructions",
            c.rules,
            c.bpf.len() / INSN
        )
    });
    Ok(assemble(s, c))
}

/// The key of a profile on this host and build (see the module's comment),
/// or `None` when the binary has no build id.
pub fn key(s: &LinuxSeccomp) -> Option<[u8; 32]> {
    let build = build_id()?;
    let mut p = s.clone();
    p.set_listener_path(None).set_listener_metadata(None);
    let profile = serde_json::to_vec(&p).ok()?;
    let lib = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let api = libseccomp::get_api().to_string();
    let native = format!("{:?}", libseccomp::ScmpArch::native());
    let u = nix::sys::utsname::uname().ok()?;
    let mut h = Sha256::new();
    for part in [
        b"nano-sandbox seccomp cache".as_slice(),
        &FORMAT.to_le_bytes(),
        build,
        env!("CARGO_PKG_VERSION").as_bytes(),
        lib.as_bytes(),
        api.as_bytes(),
        native.as_bytes(),
        u.sysname().as_encoded_bytes(),
        u.release().as_encoded_bytes(),
        u.version().as_encoded_bytes(),
        u.machine().as_encoded_bytes(),
        &profile,
    ] {
        // Length-prefixed, so no two different inputs run together alike.
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    Some(h.finalize().into())
}

/// The GNU build id of the running binary (its PT_NOTE, read from memory
/// through dl_iterate_phdr: no file is opened).
pub fn build_id() -> Option<&'static [u8]> {
    static ID: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    ID.get_or_init(read_build_id).as_deref()
}

fn read_build_id() -> Option<Vec<u8>> {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the main program
        // first, whose headers describe its mapped segments; `data` is the
        // Option below, alive for the call.
        unsafe {
            let info = &*info;
            let out = &mut *(data as *mut Option<Vec<u8>>);
            for i in 0..info.dlpi_phnum as usize {
                let ph = &*info.dlpi_phdr.add(i);
                if ph.p_type != libc::PT_NOTE {
                    continue;
                }
                let start = (info.dlpi_addr + ph.p_vaddr) as *const u8;
                let notes = std::slice::from_raw_parts(start, ph.p_memsz as usize);
                if let Some(id) = gnu_build_id(notes) {
                    *out = Some(id.to_vec());
                    break;
                }
            }
        }
        1 // the main program only
    }
    let mut out: Option<Vec<u8>> = None;
    // SAFETY: the callback only reads the program headers it is given and
    // writes `out`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(first), &mut out as *mut _ as *mut libc::c_void) };
    out.filter(|id| !id.is_empty())
}

/// The NT_GNU_BUILD_ID descriptor among ELF notes.
fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let align = |n: usize| (n + 3) & !3;
    let u32_at = |b: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
    };
    while notes.len() >= 12 {
        let namesz = u32_at(notes, 0)? as usize;
        let descsz = u32_at(notes, 4)? as usize;
        let ty = u32_at(notes, 8)?;
        let name = notes.get(12..12 + namesz)?;
        let desc_at = 12 + align(namesz);
        let desc = notes.get(desc_at..desc_at + descsz)?;
        if ty == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(desc_at + align(descsz)..)?;
    }
    None
}

/// Open (making it and its missing parents, 0700, if missing) the cache
/// directory and check that only this user can write it. Err: why it is
/// not used.
fn open_dir(dir: &Path) -> std::result::Result<OwnedFd, String> {
    let open = || {
        nix::fcntl::open(
            dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let fd = match open() {
        Err(nix::errno::Errno::ENOENT) => {
            if let Some(parent) = dir.parent() {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            match nix::unistd::mkdir(dir, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
            }
            open()
        }
        r => r,
    }
    .map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| format!("stat {}: {e}", dir.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return Err(format!(
            "{} is owned by uid {}, not by this user ({me}): not trusted",
            dir.display(),
            st.st_uid
        ));
    }
    if st.st_mode & 0o077 != 0 {
        return Err(format!(
            "{} has mode {:o}, not 0700: not trusted",
            dir.display(),
            st.st_mode & 0o7777
        ));
    }
    Ok(fd)
}

/// Read and check the entry `name`. Err: why it is not used.
fn read_entry(dir: &OwnedFd, name: &str, key: &[u8; 32]) -> std::result::Result<Compiled, String> {
    let fd = match nix::fcntl::openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Err("no entry yet".into()),
        Err(e) => return Err(format!("entry cannot be opened: {e}")),
    };
    let st = nix::sys::stat::fstat(&fd).map_err(|e| format!("entry cannot be stat'ed: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err("entry is not a regular file".into());
    }
    if st.st_uid != nix::unistd::geteuid().as_raw() || st.st_mode & 0o022 != 0 {
        return Err("entry is owned or writable by another user".into());
    }
    let size = st.st_size as usize;
    if !(HEADER + INSN..=MAX_FILE).contains(&size) {
        return Err(format!("entry has an impossible size ({size} bytes)"));
    }
    let mut buf = vec![0u8; size + 1];
    let mut got = 0;
    while got < buf.len() {
        match nix::unistd::read(&fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("entry cannot be read: {e}")),
        }
    }
    if got != size {
        return Err("entry changed size while read".into());
    }
    buf.truncate(size);
    let c = decode(&buf, key)?;
    // Least recently used goes first: a hit counts as a use.
    let now = nix::sys::time::TimeSpec::UTIME_NOW;
    let _ = nix::sys::stat::futimens(&fd, &now, &now);
    Ok(c)
}

/// The entry's bytes (see [`decode`] for the layout).
fn encode(key: &[u8; 32], c: &Compiled) -> Vec<u8> {
    let unknown = c.unknown.join(",");
    let mut body = Vec::with_capacity(unknown.len() + c.bpf.len());
    body.extend_from_slice(unknown.as_bytes());
    body.extend_from_slice(&c.bpf);
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(c.rules as u32).to_le_bytes());
    out.extend_from_slice(&(unknown.len() as u32).to_le_bytes());
    out.extend_from_slice(&(c.bpf.len() as u32).to_le_bytes());
    let mut h = Sha256::new();
    h.update(&out[8..]);
    h.update(&body);
    out.extend_from_slice(&h.finalize());
    out.extend_from_slice(&body);
    out
}

/// Check and unpack an entry. Layout (little endian): magic, format (u32),
/// key (32 bytes), rules (u32), unknown-names length (u32), program length
/// (u32), digest (32 bytes: SHA-256 of the header fields after the magic
/// and of the body), body (the unknown names, comma separated, then the
/// program).
fn decode(b: &[u8], key: &[u8; 32]) -> std::result::Result<Compiled, String> {
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
    if b.len() < HEADER || &b[..8] != MAGIC {
        return Err("entry is not a compiled filter (bad magic)".into());
    }
    if u32_at(8) != FORMAT {
        return Err(format!("entry has format {}, not {FORMAT}", u32_at(8)));
    }
    if &b[12..44] != key {
        return Err("entry belongs to another profile or build (key differs)".into());
    }
    let rules = u32_at(44) as usize;
    let ulen = u32_at(48) as usize;
    let blen = u32_at(52) as usize;
    if ulen > MAX_UNKNOWN || HEADER + ulen + blen != b.len() {
        return Err("entry's lengths do not add up (truncated or padded)".into());
    }
    if blen == 0 || !blen.is_multiple_of(INSN) {
        return Err(format!(
            "entry's program is {blen} bytes, not a whole number of instructions"
        ));
    }
    let body = &b[HEADER..];
    let mut h = Sha256::new();
    h.update(&b[8..56]);
    h.update(body);
    if h.finalize().as_slice() != &b[56..88] {
        return Err("entry's checksum does not match (corrupted)".into());
    }
    let bpf = body[ulen..].to_vec();
    check_size(&bpf).map_err(|e| e.to_string())?;
    let unknown = std::str::from_utf8(&body[..ulen])
        .map_err(|_| "entry's unknown names are not UTF-8".to_string())?;
    Ok(Compiled {
        bpf,
        rules,
        unknown: unknown
            .split(',')
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// Keep at most [`MAX_ENTRIES`] entries (least recently used go first) and
/// remove temporary files a dead writer left. Best effort.
fn evict(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let now = std::time::SystemTime::now();
    let mut entries = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Ok(m) = e.metadata() else { continue };
        let mtime = m.modified().unwrap_or(now);
        if name.starts_with('.') && name.ends_with(".tmp") {
            let age = now.duration_since(mtime).unwrap_or_default();
            if age.as_secs() as i64 > STALE_TMP_SECS {
                let _ = std::fs::remove_file(e.path());
            }
        } else if name.len() == 64 && name.bytes().all(|c| c.is_ascii_hexdigit()) {
            entries.push((mtime, e.path()));
        }
    }
    if entries.len() > MAX_ENTRIES {
        entries.sort();
        let extra = entries.len() - MAX_ENTRIES;
        for (_, p) in entries.into_iter().take(extra) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What `check` says about the cache in `dir` (`None`: off): its path
/// and number of entries.
pub fn describe(dir: Option<&Path>) -> String {
    let Some(d) = dir else {
        return "nowhere: the cache is off (--no-seccomp-cache, or no cache directory for this user)".to_string();
    };
    let n = std::fs::read_dir(d)
        .map(|rd| rd.flatten().filter(|e| e.file_name().len() == 64).count())
        .ok();
    match (n, build_id()) {
        (_, None) => format!(
            "{}: not used (this binary has no GNU build id)",
            d.display()
        ),
        (Some(n), _) => format!("{} ({n} of at most {MAX_ENTRIES} entries)", d.display()),
        (None, _) => format!("{} (empty; made at the first profile)", d.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nk-sccache-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const P: &str = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],"syscalls":[{"names":["read","write","exit_group","nk_unknown"],"action":"SCMP_ACT_ALLOW"}]}"#;

    #[test]
    fn this_binary_has_a_build_id() {
        assert!(build_id().is_some_and(|b| b.len() >= 16));
    }

    #[test]
    fn a_hit_gives_the_program_libseccomp_compiles() {
        let d = tmpdir("hit");
        let cache = d.join("seccomp");
        let p = profile(P);
        let first = prepare(&p, Some(&cache)).unwrap();
        let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1);
        let second = prepare(&p, Some(&cache)).unwrap();
        assert_eq!(first, second);
        assert_eq!(first, super::super::prepare(&p).unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_key_follows_the_program_not_the_spelling() {
        let a = key(&profile(P)).unwrap();
        let spaced = P.replace(',', " , ");
        assert_eq!(a, key(&profile(&spaced)).unwrap());
        let listener = P.replace(
            r#""syscalls""#,
            r#""listenerPath":"/x","listenerMetadata":"m","syscalls""#,
        );
        assert_eq!(a, key(&profile(&listener)).unwrap());
        for other in [
            P.replace("SCMP_ACT_ERRNO", "SCMP_ACT_KILL"),
            P.replace("\"write\",", ""),
            P.replace("X86_64\"", "X86_64\",\"SCMP_ARCH_X86\""),
        ] {
            assert_ne!(a, key(&profile(&other)).unwrap(), "{other}");
        }
    }

    #[test]
    fn damaged_or_foreign_entries_are_refused() {
        let p = profile(P);
        let k = key(&p).unwrap();
        let c = compile(&p).unwrap();
        let good = encode(&k, &c);
        assert_eq!(decode(&good, &k).unwrap(), c);
        let mut other = k;
        other[0] ^= 1;
        assert!(decode(&good, &other).unwrap_err().contains("key differs"));
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        assert!(decode(&flipped, &k).unwrap_err().contains("checksum"));
        assert!(decode(&good[..good.len() - 8], &k)
            .unwrap_err()
            .contains("lengths"));
        assert!(decode(b"garbage", &k).unwrap_err().contains("magic"));
        let mut fmt = good.clone();
        fmt[8] = 9;
        assert!(decode(&fmt, &k).unwrap_err().contains("format"));
    }

    #[test]
    fn eviction_keeps_the_most_recent_entries() {
        let d = tmpdir("evict");
        for i in 0..MAX_ENTRIES + 3 {
            let p = d.join(format!("{i:064x}"));
            std::fs::write(&p, b"x").unwrap();
            let t =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        evict(&d);
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), MAX_ENTRIES);
        assert_eq!(left[0], format!("{:064x}", 3));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("perm");
        let cache = d.join("seccomp");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(open_dir(&cache).unwrap_err().contains("not 0700"));
        // Still compiles, and writes nothing there.
        prepare(&profile(P), Some(&cache)).unwrap();
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
