//! Loading and validating the bundle's `config.json`.
//!
//! A parse error names the JSON field (`linux.namespaces[2].type`): serde_json
//! reports a line and column, and [`json_path_at`] walks the document up to
//! that point. Validation names the field and value it refuses. Nothing on the host is touched here, which is what lets a bad
//! config fail before any state, cgroup or mount exists.

use crate::error::{Checked, Error, FieldError, Result};
use crate::linux::namespaces::{self, Asked};
use oci_spec::runtime::Spec;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The largest config.json accepted. Real configs are a few KiB; a 10 MB one is
/// an attack on the parser or on the state directory, not a container.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// A parsed bundle: where it is, the raw bytes (kept for the state directory
/// and the child), and the typed spec.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// Absolute path of config.json.
    pub config_path: PathBuf,
    /// The bytes of config.json as read.
    pub raw: Vec<u8>,
    /// The typed spec.
    pub spec: Spec,
}

impl Bundle {
    /// Absolute path of the rootfs (root.path, relative to the bundle when relative).
    pub fn rootfs(&self) -> PathBuf {
        let p = self
            .spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| PathBuf::from("rootfs"));
        if p.is_absolute() {
            p
        } else {
            self.dir.join(p)
        }
    }

    /// Annotations, empty when absent.
    pub fn annotations(&self) -> std::collections::HashMap<String, String> {
        self.spec.annotations().clone().unwrap_or_default()
    }
}

/// Read and parse `<dir>/config.json`. The error names the file and, for a
/// type error, the JSON path of the bad field.
pub fn load(dir: &Path) -> Result<Bundle> {
    let dir = match std::fs::canonicalize(dir) {
        Ok(d) => d,
        Err(e) => {
            return Err(Error::Bundle {
                path: dir.to_path_buf(),
                reason: format!("{e}: give an existing bundle directory with --bundle"),
            })
        }
    };
    let meta = std::fs::metadata(&dir).map_err(|e| Error::Bundle {
        path: dir.clone(),
        reason: format!("{e}: give an existing bundle directory with --bundle"),
    })?;
    if !meta.is_dir() {
        return Err(Error::Bundle {
            path: dir,
            reason: "not a directory".into(),
        });
    }
    let config_path = dir.join("config.json");
    let raw = read_limited(&config_path)?;
    let p = parse(&raw, &config_path)?;
    Ok(Bundle {
        dir,
        config_path,
        raw,
        spec: p.spec,
    })
}

fn read_limited(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: a FIFO planted as config.json must not hang the runtime.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::Bundle {
            path: path.to_path_buf(),
            reason: format!("cannot open: {e} (create one with `nk-runtime spec`)"),
        })?;
    match f.metadata() {
        Ok(m) if m.is_file() => {}
        _ => {
            return Err(Error::Bundle {
                path: path.to_path_buf(),
                reason: "not a regular file".into(),
            })
        }
    }
    let mut raw = Vec::with_capacity(8192);
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::io("read", path, e))?;
    if raw.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::config(
            path,
            "(file)",
            format!("larger than the {MAX_CONFIG_BYTES}-byte limit"),
        ));
    }
    Ok(raw)
}

/// A parsed config.
#[derive(Debug)]
pub struct Parsed {
    pub spec: Spec,
}

/// process.scheduler.flags the runtime spec spells differently from the
/// `oci-spec` types: (spec name, the name those types parse).
const SCHED_FLAG_NAMES: [(&str, &str); 2] = [
    ("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"),
    ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN"),
];

/// Deserialize `raw` as `T`; an error names the JSON path of the bad value.
pub fn from_slice_named<T: serde::de::DeserializeOwned>(raw: &[u8], file: &Path) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| {
        let field = if e.line() == 0 {
            "(document)".to_string()
        } else {
            let p = json_path_at(raw, offset_of(raw, e.line(), e.column()));
            if p.is_empty() {
                "(document)".to_string()
            } else {
                p
            }
        };
        Error::config(file, field, format!("invalid JSON: {e}"))
    })
}

/// Byte offset of a 1-based line and column.
fn offset_of(raw: &[u8], line: usize, col: usize) -> usize {
    let mut l = 1;
    let mut start = 0;
    for (i, b) in raw.iter().enumerate() {
        if l == line {
            break;
        }
        if *b == b'\n' {
            l += 1;
            start = i + 1;
        }
    }
    (start + col.saturating_sub(1)).min(raw.len())
}

/// The JSON path (`a.b[2].c`) of the value being read at byte `offset`,
/// found by walking the document's structure up to that point.
pub fn json_path_at(raw: &[u8], offset: usize) -> String {
    enum Frame {
        Obj { key: Option<String>, want_key: bool },
        Arr { index: usize },
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let end = offset.min(raw.len());
    while i < end {
        match raw[i] {
            b'{' => stack.push(Frame::Obj {
                key: None,
                want_key: true,
            }),
            b'[' => stack.push(Frame::Arr { index: 0 }),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Arr { index }) => *index += 1,
                Some(Frame::Obj { want_key, .. }) => *want_key = true,
                None => {}
            },
            b':' => {
                if let Some(Frame::Obj { want_key, .. }) = stack.last_mut() {
                    *want_key = false;
                }
            }
            b'"' => {
                let s = i + 1;
                let mut k = s;
                while k < raw.len() && raw[k] != b'"' {
                    if raw[k] == b'\\' {
                        k += 1;
                    }
                    k += 1;
                }
                if let Some(Frame::Obj {
                    key,
                    want_key: true,
                }) = stack.last_mut()
                {
                    *key = Some(String::from_utf8_lossy(&raw[s..k.min(raw.len())]).into_owned());
                }
                i = k;
            }
            _ => {}
        }
        i += 1;
    }
    let mut out = String::new();
    for f in &stack {
        match f {
            Frame::Obj { key: Some(k), .. } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Frame::Obj { key: None, .. } => {}
            Frame::Arr { index } => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// Parse config bytes; `file` is only used in messages.
pub fn parse(raw: &[u8], file: &Path) -> Result<Parsed> {
    if let Some(at) = too_deep(raw) {
        return Err(Error::config(
            file,
            "(document)",
            format!("nested deeper than {MAX_DEPTH} levels (at byte {at}); no config needs that"),
        ));
    }
    let spec: Spec = if SCHED_FLAG_NAMES
        .iter()
        .any(|(n, _)| contains(raw, n.as_bytes()))
    {
        // oci-spec does not know the spec's spelling of two scheduler flags:
        // adjust them and parse the rest (re-serialised, so error paths still
        // work).
        let mut v: serde_json::Value = from_slice_named(raw, file)?;
        if let Some(flags) = v
            .pointer_mut("/process/scheduler/flags")
            .and_then(|f| f.as_array_mut())
        {
            for f in flags.iter_mut() {
                if let Some((_, theirs)) = SCHED_FLAG_NAMES.iter().find(|(n, _)| f == n) {
                    *f = (*theirs).into();
                }
            }
        }
        let again = serde_json::to_vec(&v).unwrap_or_default();
        from_slice_named(&again, file)?
    } else {
        // from_slice refuses anything after the document, too.
        from_slice_named(raw, file)?
    };
    Ok(Parsed { spec })
}

/// The kernel's limit on supplementary groups.
const NGROUPS_MAX: usize = 65536;

/// Deepest nesting of arrays and objects accepted (serde_json's own limit
/// for untyped values, applied to the whole document so fields we ignore are
/// held to it too).
pub const MAX_DEPTH: usize = 128;

/// The offset where the document first nests deeper than MAX_DEPTH, if it
/// does (brackets inside strings do not count).
fn too_deep(raw: &[u8]) -> Option<usize> {
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for (i, &b) in raw.iter().enumerate() {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Only the hooks of the container's own config copy, which is all start
/// (poststart) and delete (poststop) need: serde steps over the rest
/// without building it (an engine's seccomp profile alone is hundreds of
/// strings). `None` when there are none or the file does not parse.
pub fn hooks(raw: &[u8]) -> Option<oci_spec::runtime::Hooks> {
    #[derive(serde::Deserialize)]
    struct HooksOnly {
        #[serde(default)]
        hooks: Option<oci_spec::runtime::Hooks>,
    }
    serde_json::from_slice::<HooksOnly>(raw).ok()?.hooks
}

/// Does `needle` occur in `hay`? A cheap look into a raw config before a
/// full parse. Each position's first byte is checked before the rest is
/// compared: a call to memcmp at every byte of an engine's config (20 KiB
/// with its seccomp profile) cost about 5 % of a `run`'s CPU.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    hay.iter()
        .enumerate()
        .any(|(i, &b)| b == first && hay[i + 1..].starts_with(rest))
}

pub use crate::linux::fs::has_dotdot;

/// What the caller needs validated besides the document itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidateOpts {
    /// A process is required (create, run) rather than optional.
    pub need_process: bool,
    /// Check that the rootfs exists on this host.
    pub check_rootfs: bool,
}

/// One check of config.json: the parts it reads, the namespaces asked for
/// (for checks that depend on them) and the caller's options.
type Check = fn(&Bundle, &Asked, ValidateOpts) -> Checked;

/// Every check, in the order their errors are reported. Each is small and
/// lives beside the mechanism it guards (runc's configs/validate is the
/// model); those of the document itself are below.
const CHECKS: &[Check] = &[
    |b, _, _| check_version(&b.spec),
    |b, _, o| check_root(b, o),
    |b, _, o| check_process_present(&b.spec, o),
    |b, _, _| on_linux(b, namespaces::check),
    |b, a, _| on_linux(b, |l| crate::linux::userns::check_mappings(l, a)),
    |b, a, _| on_linux(b, |l| crate::linux::rootfs::check_without_mountns(l, a)),
    |b, _, _| on_linux(b, crate::linux::rootfs::check_propagation),
    |b, _, _| on_linux(b, crate::linux::rootfs::check_paths),
    |b, _, _| on_linux(b, crate::linux::devices::check),
    |b, a, _| on_linux(b, |l| crate::linux::sysctl::check(l, a)),
    |b, a, _| on_linux(b, |l| crate::linux::netdevices::check(l, a)),
    |b, _, _| on_linux(b, crate::cgroups::check),
    |b, _, _| on_linux(b, crate::linux::procattr::check_personality),
    |b, _, _| on_linux(b, crate::linux::procattr::check_memory_policy),
    |b, _, _| on_linux(b, crate::linux::seccomp::check),
    |b, a, _| on_linux(b, |l| namespaces::check_time_offsets(l, a)),
    |b, a, _| namespaces::check_uts_names(&b.spec, a),
    |b, a, _| {
        b.spec
            .mounts()
            .iter()
            .flatten()
            .enumerate()
            .try_for_each(|(i, m)| crate::linux::mounts::check(i, m, a.userns))
    },
    |b, _, _| {
        b.spec
            .hooks()
            .as_ref()
            .map_or(Ok(()), crate::linux::hooks::check)
    },
];

/// Check the spec against what this runtime can honour, before anything
/// exists on the host. The first check that fails names the file, the
/// field and its value, and says what to do.
pub fn validate(b: &Bundle, opts: ValidateOpts) -> Result<()> {
    let asked = Asked::of(b.spec.linux().as_ref());
    for check in CHECKS {
        check(b, &asked, opts).map_err(|e| e.in_file(&b.config_path))?;
    }
    Ok(())
}

/// Run a check of the linux section, if there is one.
fn on_linux(b: &Bundle, check: impl FnOnce(&oci_spec::runtime::Linux) -> Checked) -> Checked {
    b.spec.linux().as_ref().map_or(Ok(()), check)
}

/// ociVersion: a 1.x runtime-spec version.
fn check_version(spec: &Spec) -> Checked {
    if !spec.version().is_empty() && !spec.version().starts_with("1.") {
        return Err(FieldError::new(
            "ociVersion",
            format!(
                "{:?} is not a 1.x runtime-spec version this runtime understands",
                spec.version()
            ),
        ));
    }
    Ok(())
}

/// root: present, with a path, and (when asked) a directory on this host.
fn check_root(b: &Bundle, opts: ValidateOpts) -> Checked {
    let Some(root) = b.spec.root() else {
        return Err(FieldError::new(
            "root",
            "missing: a container needs a root filesystem",
        ));
    };
    if root.path().as_os_str().is_empty() {
        return Err(FieldError::new("root.path", "empty"));
    }
    if opts.check_rootfs {
        let rootfs = b.rootfs();
        match std::fs::metadata(&rootfs) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(FieldError::new(
                    "root.path",
                    format!("{} is not a directory", rootfs.display()),
                ))
            }
            Err(e) => {
                return Err(FieldError::new(
                    "root.path",
                    format!("{}: {e}", rootfs.display()),
                ))
            }
        }
    }
    Ok(())
}

/// process: present when something is to run, and valid.
fn check_process_present(spec: &Spec, opts: ValidateOpts) -> Checked {
    match spec.process() {
        None if opts.need_process => Err(FieldError::new("process", "missing: nothing to run")),
        None => Ok(()),
        Some(p) => validate_process(p),
    }
}

/// Checks of a process that do not depend on the rest of the config, shared
/// by create and exec: errors are (field below `process`, reason).
pub fn check_process(p: &oci_spec::runtime::Process) -> crate::error::Checked {
    if let Some(s) = p.scheduler() {
        crate::linux::procattr::check_scheduler(s).map_err(|e| e.under("scheduler"))?;
    }
    if let Some(io) = p.io_priority() {
        if !(0..=7).contains(&io.priority()) {
            return Err(FieldError::of(
                "ioPriority.priority".into(),
                format!("{} is outside 0..7", io.priority()),
            ));
        }
    }
    if p.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty())
        && !crate::linux::lsm::apparmor_enabled()
    {
        return Err(FieldError::of(
            "apparmorProfile".into(),
            "AppArmor is not enabled on this host (no /sys/kernel/security/apparmor); remove the field or enable AppArmor".into(),
        ));
    }
    if p.selinux_label().as_ref().is_some_and(|s| !s.is_empty())
        && !crate::linux::lsm::selinux_enabled()
    {
        return Err(FieldError::of(
            "selinuxLabel".into(),
            "SELinux is not enabled on this host (no /sys/fs/selinux); remove the field or enable SELinux".into(),
        ));
    }
    Ok(())
}

/// The process of a config: what check_process checks, and an argv, an
/// absolute cwd, NAME=value environment entries, groups and limits the
/// kernel takes.
fn validate_process(p: &oci_spec::runtime::Process) -> Checked {
    check_process(p).map_err(|e| e.under("process"))?;
    match p.args() {
        Some(a) if !a.is_empty() && !a[0].is_empty() => {}
        _ => return Err(FieldError::new("process.args", "empty: nothing to execute")),
    }
    if !p.cwd().is_absolute() {
        return Err(FieldError::new(
            "process.cwd",
            format!("{} must be an absolute path", p.cwd().display()),
        ));
    }
    for (i, e) in p.env().iter().flatten().enumerate() {
        if !e.contains('=') || e.starts_with('=') {
            return Err(FieldError::new(
                format!("process.env[{i}]"),
                format!("{e:?} is not of the form NAME=value"),
            ));
        }
        if e.contains('\0') {
            return Err(FieldError::new(
                format!("process.env[{i}]"),
                "contains a NUL byte",
            ));
        }
    }
    let gids = p.user().additional_gids().as_ref().map_or(0, |g| g.len());
    if gids > NGROUPS_MAX {
        return Err(FieldError::new(
            "process.user.additionalGids",
            format!("{gids} groups: the kernel allows at most {NGROUPS_MAX}"),
        ));
    }
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(FieldError::new(
                "process.oomScoreAdj",
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        if !seen.insert(r.typ() as u32) {
            return Err(FieldError::new(
                format!("process.rlimits[{i}].type"),
                format!("{:?} is given twice", r.typ()),
            ));
        }
        if r.soft() > r.hard() {
            return Err(FieldError::new(
                format!("process.rlimits[{i}]"),
                format!("soft limit {} is above hard limit {}", r.soft(), r.hard()),
            ));
        }
    }
    Ok(())
}

/// A bind mount of config.json, by type or by option (`bind`, `rbind`), as
/// runc reads it: the one test checkpoint and VM mode share.
pub fn is_bind(m: &oci_spec::runtime::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_are_read_alone() {
        let raw = br#"{"ociVersion":"1.2.0","process":{"args":["x"],"cwd":"/"},"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW"}},"hooks":{"poststop":[{"path":"/bin/true","args":["true","a"]}]}}"#;
        let h = hooks(raw).unwrap();
        let ps = h.poststop().clone().unwrap();
        assert_eq!(ps[0].path(), Path::new("/bin/true"));
        assert_eq!(ps[0].args().clone().unwrap(), ["true", "a"]);
        assert!(h.poststart().is_none());
        assert!(hooks(br#"{"ociVersion":"1.2.0"}"#).is_none());
        assert!(hooks(b"not json").is_none());
    }

    #[test]
    fn contains_finds_a_needle_anywhere_and_only_whole() {
        let hay = b"{\"flags\":[\"SCHED_FLAG_RESET_ON_FORK\"]}";
        assert!(contains(hay, b"SCHED_FLAG_RESET_ON_FORK"));
        assert!(contains(hay, b"{"));
        assert!(contains(hay, b"]}"));
        assert!(contains(hay, b""));
        assert!(!contains(hay, b"SCHED_FLAG_DL_OVERRUN"));
        assert!(!contains(hay, b"]}x"));
        assert!(!contains(b"", b"x"));
    }
    use oci_spec::runtime::LinuxNamespaceType;

    fn parse_str(s: &str) -> Result<Parsed> {
        parse(s.as_bytes(), Path::new("/b/config.json"))
    }

    #[test]
    fn bad_namespace_names_field() {
        let e = parse_str(
            r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.namespaces[1].type"), "{e}");
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn malformed_json_is_reported() {
        let e = parse_str("{\"ociVersion\": ").unwrap_err().to_string();
        assert!(e.contains("/b/config.json"), "{e}");
        assert!(e.contains("invalid JSON"), "{e}");
    }

    #[test]
    fn trailing_data_refused() {
        let e = parse_str(r#"{"ociVersion":"1.0.2"} {}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("trailing"), "{e}");
        parse_str("{\"ociVersion\":\"1.0.2\"}\n").unwrap();
    }

    #[test]
    fn invalid_utf8_refused() {
        let mut raw = br#"{"ociVersion":"1.0.2","hostname":""#.to_vec();
        raw.extend_from_slice(&[0xff, 0xfe]);
        raw.extend_from_slice(br#""}"#);
        assert!(parse(&raw, Path::new("c")).is_err());
    }

    #[test]
    fn deep_nesting_refused() {
        let s = format!(
            "{{\"ociVersion\":\"1.0.2\",\"annotations\":{}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(parse_str(&s).is_err());
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        let ok = format!(
            "{{\"a\":\"{}\",\"b\":{}{}}}",
            "[".repeat(500),
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(too_deep(ok.as_bytes()), None);
        let bad = format!("{{\"x\":{}{}}}", "{\"a\":".repeat(200), "}".repeat(200));
        assert!(too_deep(bad.as_bytes()).is_some());
        assert!(parse_str(&bad)
            .unwrap_err()
            .to_string()
            .contains("nested deeper"));
        // An escaped quote does not end the string.
        let esc = format!("{{\"a\":\"\\\"{}\"}}", "[".repeat(300));
        assert_eq!(too_deep(esc.as_bytes()), None);
    }

    #[test]
    fn huge_values_refused() {
        let e = parse_str(
            r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":99999999999,"gid":0}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("process.user.uid"), "{e}");
    }

    fn bundle(json: &str) -> Bundle {
        let p = parse_str(json).unwrap();
        Bundle {
            dir: "/b".into(),
            config_path: "/b/config.json".into(),
            raw: json.as_bytes().to_vec(),
            spec: p.spec,
        }
    }

    const BASE: &str = r#""ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}"#;

    #[test]
    fn dotdot_destination_refused() {
        let b = bundle(&format!(
            r#"{{{BASE},"mounts":[{{"destination":"../../etc","type":"tmpfs","source":"tmpfs"}}]}}"#
        ));
        let e = validate(&b, ValidateOpts::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("mounts[0].destination"), "{e}");
    }

    #[test]
    fn hostname_needs_uts() {
        let b = bundle(&format!(
            r#"{{{BASE},"hostname":"x","linux":{{"namespaces":[{{"type":"pid"}}]}}}}"#
        ));
        let e = validate(&b, ValidateOpts::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("hostname"), "{e}");
    }

    #[test]
    fn joining_the_runtimes_own_namespace_gives_nothing_private() {
        // The runtime's own namespaces, named by path: sysctls of those
        // types and a hostname would change the host.
        for (ns, extra, word) in [
            (
                "network",
                r#""sysctl":{"net.ipv4.ip_forward":"1"}"#,
                "host network namespace",
            ),
            ("ipc", r#""sysctl":{"kernel.shmmax":"1"}"#, "ipc namespace"),
            (
                "uts",
                r#""sysctl":{"kernel.domainname":"x"}"#,
                "uts namespace",
            ),
        ] {
            let proc = crate::linux::namespaces::proc_name(match ns {
                "network" => LinuxNamespaceType::Network,
                "ipc" => LinuxNamespaceType::Ipc,
                _ => LinuxNamespaceType::Uts,
            });
            let own = format!("/proc/{}/ns/{proc}", std::process::id());
            let b = bundle(&format!(
                r#"{{{BASE},"linux":{{"namespaces":[{{"type":"{ns}","path":"{own}"}}],{extra}}}}}"#
            ));
            let e = validate(&b, ValidateOpts::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains("linux.sysctl") && e.contains(word), "{e}");
            // A new namespace of the type is the container's own.
            let b = bundle(&format!(
                r#"{{{BASE},"linux":{{"namespaces":[{{"type":"{ns}"}}],{extra}}}}}"#
            ));
            validate(&b, ValidateOpts::default()).unwrap();
        }
        let own = format!("/proc/{}/ns/uts", std::process::id());
        let b = bundle(&format!(
            r#"{{{BASE},"hostname":"x","linux":{{"namespaces":[{{"type":"uts","path":"{own}"}}]}}}}"#
        ));
        let e = validate(&b, ValidateOpts::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hostname") && e.contains("rename the host"),
            "{e}"
        );
    }

    #[test]
    fn no_mount_namespace_is_allowed_without_masks_or_userns() {
        let ok = bundle(&format!(r#"{{{BASE},"linux":{{"namespaces":[]}}}}"#));
        validate(&ok, ValidateOpts::default()).unwrap();
        for (field, extra) in [
            ("linux.maskedPaths", r#""maskedPaths":["/proc/kcore"]"#),
            ("linux.readonlyPaths", r#""readonlyPaths":["/proc/sys"]"#),
        ] {
            let b = bundle(&format!(
                r#"{{{BASE},"linux":{{"namespaces":[{{"type":"pid"}}],{extra}}}}}"#
            ));
            let e = validate(&b, ValidateOpts::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(field) && e.contains("mount namespace"), "{e}");
            // With a mount namespace the same list is fine.
            let b = bundle(&format!(
                r#"{{{BASE},"linux":{{"namespaces":[{{"type":"mount"}}],{extra}}}}}"#
            ));
            validate(&b, ValidateOpts::default()).unwrap();
        }
        let b = bundle(&format!(
            r#"{{{BASE},"linux":{{"namespaces":[{{"type":"user"}}],"uidMappings":[{{"containerID":0,"hostID":1000,"size":1}}],"gidMappings":[{{"containerID":0,"hostID":1000,"size":1}}]}}}}"#
        ));
        let e = validate(&b, ValidateOpts::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux.namespaces") && e.contains("user namespace"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_namespace_refused() {
        let b = bundle(&format!(
            r#"{{{BASE},"linux":{{"namespaces":[{{"type":"pid"}},{{"type":"pid"}}]}}}}"#
        ));
        let e = validate(&b, ValidateOpts::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.namespaces[1].type"), "{e}");
    }

    #[test]
    fn empty_args_refused() {
        let b = bundle(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":[],"user":{"uid":0,"gid":0}}}"#,
        );
        let e = validate(
            &b,
            ValidateOpts {
                need_process: true,
                check_rootfs: false,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("process.args"), "{e}");
    }

    #[test]
    fn rlimit_soft_above_hard() {
        let b = bundle(
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["x"],"user":{"uid":0,"gid":0},"rlimits":[{"type":"RLIMIT_NOFILE","soft":10,"hard":5}]}}"#,
        );
        let e = validate(&b, ValidateOpts::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("process.rlimits[0]"), "{e}");
    }

    #[test]
    fn userns_needs_mappings() {
        let b = bundle(&format!(
            r#"{{{BASE},"linux":{{"namespaces":[{{"type":"user"}}]}}}}"#
        ));
        let e = validate(&b, ValidateOpts::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("uidMappings"), "{e}");
        // uid mappings alone: the gid mappings are named.
        let b = bundle(&format!(
            r#"{{{BASE},"linux":{{"namespaces":[{{"type":"user"}}],"uidMappings":[{{"containerID":0,"hostID":1000,"size":3200}}]}}}}"#
        ));
        let e = validate(&b, ValidateOpts::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("linux.gidMappings"), "{e}");
    }

    #[test]
    fn wait_killable_flag_parses_typed() {
        let p = parse_str(r#"{"ociVersion":"1.0.2","linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}}}"#).unwrap();
        let flags = p
            .spec
            .linux()
            .as_ref()
            .unwrap()
            .seccomp()
            .as_ref()
            .unwrap()
            .flags()
            .clone()
            .unwrap();
        assert_eq!(
            flags,
            [
                oci_spec::runtime::LinuxSeccompFilterFlag::SeccompFilterFlagLog,
                oci_spec::runtime::LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv
            ]
        );
    }

    #[test]
    fn scheduler_flags_in_spec_spelling_parse() {
        let p = parse_str(
            r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0},"scheduler":{"policy":"SCHED_OTHER","flags":["SCHED_FLAG_RESET_ON_FORK","SCHED_FLAG_DL_OVERRUN","SCHED_FLAG_KEEP_POLICY"]}}}"#,
        )
        .unwrap();
        let s = p
            .spec
            .process()
            .as_ref()
            .unwrap()
            .scheduler()
            .clone()
            .unwrap();
        assert_eq!(s.flags().as_ref().unwrap().len(), 3);
    }

    #[test]
    fn process_attributes_are_checked() {
        for (extra, field) in [
            (
                r#""scheduler":{"policy":"SCHED_FIFO"}"#,
                "process.scheduler.priority",
            ),
            (
                r#""scheduler":{"policy":"SCHED_OTHER","priority":3}"#,
                "process.scheduler.priority",
            ),
            (
                r#""scheduler":{"policy":"SCHED_BATCH","nice":40}"#,
                "process.scheduler.nice",
            ),
            (
                r#""scheduler":{"policy":"SCHED_ISO"}"#,
                "process.scheduler.policy",
            ),
            (
                r#""scheduler":{"policy":"SCHED_OTHER","runtime":5}"#,
                "process.scheduler.runtime",
            ),
            (
                r#""scheduler":{"policy":"SCHED_DEADLINE","runtime":50,"deadline":10}"#,
                "process.scheduler.deadline",
            ),
            (
                r#""ioPriority":{"class":"IOPRIO_CLASS_BE","priority":9}"#,
                "process.ioPriority.priority",
            ),
            (r#""apparmorProfile":"p""#, "process.apparmorProfile"),
            (r#""selinuxLabel":"l""#, "process.selinuxLabel"),
        ] {
            let b = bundle(&format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},"process":{{"cwd":"/","args":["x"],"user":{{"uid":0,"gid":0}},{extra}}}}}"#
            ));
            if field.contains("apparmor") && crate::linux::lsm::apparmor_enabled()
                || field.contains("selinux") && crate::linux::lsm::selinux_enabled()
            {
                continue;
            }
            let e = validate(&b, ValidateOpts::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{extra}: {e}");
        }
    }

    #[test]
    fn exec_cpu_affinity_is_validated() {
        // oci-spec checks this field with a regex (served by regex-lite here).
        let ok = r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0},"execCPUAffinity":{"initial":"0-1,3","final":"2"}}}"#;
        assert!(parse_str(ok).is_ok());
        let bad = r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0},"execCPUAffinity":{"initial":"0-x"}}}"#;
        let e = parse_str(bad).unwrap_err().to_string();
        assert!(e.contains("process.execCPUAffinity"), "{e}");
    }

    #[test]
    fn json_paths() {
        let doc = br#"{"a": {"b": [1, {"c": "x", "d": [true, "here"]}]}, "e": 1}"#;
        let at = |needle: &str| {
            let pos = doc
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap();
            json_path_at(doc, pos + 1)
        };
        assert_eq!(at("\"x\""), "a.b[1].c");
        assert_eq!(at("\"here\""), "a.b[1].d[1]");
        assert_eq!(at("1}"), "e");
        assert_eq!(json_path_at(br#"{"k\"q": 5}"#, 9), "k\\\"q");
    }

    #[test]
    fn valid_minimal() {
        let b = bundle(&format!(
            r#"{{{BASE},"hostname":"h","linux":{{"namespaces":[{{"type":"uts"}},{{"type":"mount"}}]}}}}"#
        ));
        validate(&b, ValidateOpts::default()).unwrap();
    }
}
