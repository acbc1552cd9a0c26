//! nk-runtimetest: what runtime-tools' `runtimetest` checks from inside a
//! container, for tests/oci_validation.rs (which runs the suite's scenarios
//! with this program where the suite runs its own).
//!
//! Usage: `nk-runtimetest [--path=DIR]` (config.json in DIR, default `.`).
//! It compares the process's view with the config, in runtimetest's order
//! and by its rules (cmd/runtimetest/main.go: rootfs, hostname, process,
//! mounts, user, rlimits, capabilities, default symlinks, file systems and
//! devices, linux.devices, args and no_new_privs, masked paths,
//! oom_score_adj, seccomp, read-only paths, rootfs propagation, sysctls, id
//! mappings, mount label, AppArmor profile), and prints TAP: `ok N - what`,
//! `not ok N - what`, `ok N # skip what`, `not ok N # TODO what`. The
//! caller fails a scenario on any `not ok` line that is not a TODO.

use serde_json::Value;
use std::ffi::CString;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// TAP output with runtimetest's three outcomes.
struct Tap(u32);

impl Tap {
    fn ok(&mut self, pass: bool, what: &str) {
        self.0 += 1;
        println!("{}ok {} - {what}", if pass { "" } else { "not " }, self.0);
    }

    fn skip(&mut self, what: &str) {
        self.0 += 1;
        println!("ok {} # skip {what}", self.0);
    }

    fn todo_fail(&mut self, what: &str) {
        self.0 += 1;
        println!("not ok {} # TODO {what}", self.0);
    }

    /// A value the check compared, as runtimetest's YAML diagnostic.
    fn note(&self, what: impl std::fmt::Display) {
        println!("  # {what}");
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// One line of /proc/self/mountinfo.
struct MountInfo {
    root: String,
    mountpoint: String,
    fstype: String,
    source: String,
}

fn unescape(f: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = f.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], octal) {
            out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts() -> Vec<MountInfo> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            Some(MountInfo {
                root: unescape(f.get(3)?),
                mountpoint: unescape(f.get(4)?),
                fstype: p.first()?.to_string(),
                source: unescape(p.get(1)?),
            })
        })
        .collect()
}

/// Lexical clean of a path (Go's filepath.Clean for absolute paths).
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    if p.starts_with('/') {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}

fn base(p: &str) -> String {
    let c = clean(p);
    c.rsplit('/')
        .next()
        .filter(|b| !b.is_empty())
        .unwrap_or("/")
        .to_string()
}

/// runtimetest's mountMatch.
fn mount_match(m: &Value, sys: &MountInfo) -> bool {
    if clean(s(&m["destination"])) != sys.mountpoint {
        return false;
    }
    let is_bind = list(&m["options"])
        .iter()
        .any(|o| o == "bind" || o == "rbind");
    let typ = s(&m["type"]);
    if !typ.is_empty() && typ != sys.fstype {
        return false;
    }
    let src = s(&m["source"]);
    if is_bind {
        src.is_empty() || base(src) == base(&sys.root)
    } else {
        src.is_empty() || clean(src) == sys.source
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn read_access(path: &str) -> Result<bool, String> {
    let md = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let ft = md.file_type();
    if ft.is_file() || ft.is_char_device() {
        let Ok(mut f) = std::fs::File::open(path) else {
            return Ok(false);
        };
        let mut b = [0u8; 1];
        return match f.read(&mut b) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(e.to_string()),
        };
    }
    if ft.is_dir() {
        return match std::fs::read_dir(path) {
            Ok(mut rd) => Ok(rd.next().is_some()),
            Err(e) => Err(e.to_string()),
        };
    }
    Err(format!("access: cannot test read access for {path:?}"))
}

fn dir_write_access(path: &str) -> bool {
    let name = Path::new(path).join(format!("Test{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&name)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&name);
            true
        }
        Err(_) => false,
    }
}

fn write_access(path: &str) -> Result<bool, String> {
    let md = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let ft = md.file_type();
    if ft.is_file() || ft.is_char_device() {
        return Ok(std::fs::write(path, b"a").is_ok());
    }
    if ft.is_dir() {
        return Ok(dir_write_access(path));
    }
    Err(format!("access: cannot test write access for {path:?}"))
}

fn check_rootfs(t: &mut Tap, c: &Value) {
    if c["root"].is_null() {
        return t.skip("root not set");
    }
    let writable = dir_write_access("/");
    if c["root"]["readonly"] == true {
        t.ok(!writable, "root filesystem is readonly");
    } else if !writable {
        t.skip("root.readonly is false but the root filesystem is still not writable");
    }
}

fn check_hostname(t: &mut Tap, c: &Value) {
    let want = s(&c["hostname"]);
    if want.is_empty() {
        return t.skip("hostname not set");
    }
    let got = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    t.ok(got.trim() == want, "has expected hostname");
    t.note(format!("expected {want:?}, actual {:?}", got.trim()));
}

fn check_process(t: &mut Tap, c: &Value) -> Result<(), String> {
    let p = &c["process"];
    if p.is_null() {
        t.skip("process not set");
        return Ok(());
    }
    let cwd = s(&p["cwd"]);
    if cwd.is_empty() {
        t.skip("process.cwd not set");
    } else {
        // An error of getcwd ends the run, as runtimetest's os.Getwd does.
        let got = std::env::current_dir()
            .map(|d| d.display().to_string())
            .map_err(|e| format!("getwd: {e}"))?;
        t.ok(got == cwd, "has expected working directory");
        t.note(format!("expected {cwd:?}, actual {got:?}"));
    }
    for e in list(&p["env"]) {
        let e = s(&e);
        let mut parts = e.split('=');
        let key = parts.next().unwrap_or("");
        let want = parts.next().unwrap_or("");
        let got = std::env::var(key).unwrap_or_default();
        t.ok(
            want == got,
            &format!("has expected environment variable {key}"),
        );
    }
    Ok(())
}

fn check_posix_mounts(t: &mut Tap, c: &Value) {
    let Some(cfg) = c["mounts"].as_array() else {
        return t.skip("mounts not set");
    };
    let sys = mounts();
    let mut consumed = vec![false; sys.len()];
    let mut j = 0;
    for (i, m) in cfg.iter().enumerate() {
        let typ = s(&m["type"]);
        if typ == "bind" || typ == "rbind" {
            t.todo_fail("we need an (r)bind spec to test against");
            continue;
        }
        let mut in_order = false;
        if let Some(k) = sys[j..].iter().position(|x| mount_match(m, x)) {
            in_order = true;
            j += k + 1;
            consumed[j - 1] = true;
        }
        let out_of_order = !in_order
            && j > 0
            && sys[..j - 1]
                .iter()
                .enumerate()
                .any(|(k, x)| !consumed[k] && mount_match(m, x));
        let dest = s(&m["destination"]);
        if !in_order && !out_of_order {
            t.ok(false, &format!("mounts[{i}] ({dest}) found"));
        } else {
            t.ok(in_order, &format!("mounts[{i}] ({dest}) found in order"));
        }
    }
}

fn check_user(t: &mut Tap, c: &Value) {
    let p = &c["process"];
    if p.is_null() {
        return;
    }
    // SAFETY: getuid, getgid and getgroups take no pointers but the buffer below.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let want_uid = p["user"]["uid"].as_u64().unwrap_or(0);
    let want_gid = p["user"]["gid"].as_u64().unwrap_or(0);
    t.ok(uid as u64 == want_uid, "has expected user ID");
    t.note(format!("expected {want_uid}, actual {uid}"));
    t.ok(gid as u64 == want_gid, "has expected group ID");
    t.note(format!("expected {want_gid}, actual {gid}"));
    let mut groups = vec![0 as libc::gid_t; 65536];
    // SAFETY: getgroups writes at most `len` gids into the buffer.
    let n = unsafe { libc::getgroups(groups.len() as i32, groups.as_mut_ptr()) };
    groups.truncate(n.max(0) as usize);
    for g in list(&p["user"]["additionalGids"]) {
        let g = g.as_u64().unwrap_or(u64::MAX);
        t.ok(
            groups.iter().any(|x| *x as u64 == g),
            &format!("has expected additional group ID {g}"),
        );
    }
}

const RLIMITS: [(&str, u32); 16] = [
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
];

fn check_rlimits(t: &mut Tap, c: &Value) -> Result<(), String> {
    let p = &c["process"];
    if p.is_null() {
        t.skip("process.rlimits not set");
        return Ok(());
    }
    for r in list(&p["rlimits"]) {
        let typ = s(&r["type"]);
        let Some((_, res)) = RLIMITS.iter().find(|(n, _)| *n == typ) else {
            return Err(format!("wrong rlimit value: {typ}"));
        };
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct that lives for the call.
        if unsafe { libc::getrlimit(*res, &mut rl) } != 0 {
            return Err(format!("getrlimit {typ}: errno {}", errno()));
        }
        let soft = r["soft"].as_u64().unwrap_or(0);
        let hard = r["hard"].as_u64().unwrap_or(0);
        t.ok(rl.rlim_cur == soft, &format!("has expected soft {typ}"));
        t.note(format!("expected {soft}, actual {}", rl.rlim_cur));
        t.ok(rl.rlim_max == hard, &format!("has expected hard {typ}"));
        t.note(format!("expected {hard}, actual {}", rl.rlim_max));
    }
    Ok(())
}

/// The capability names runtimetest's gocapability list knows, by number.
const CAP_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

fn status_mask(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

fn check_capabilities(t: &mut Tap, c: &Value) {
    let caps = &c["process"]["capabilities"];
    if caps.is_null() {
        return t.skip("process.capabilities not set");
    }
    let last: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(CAP_NAMES.len() - 1);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for (set, field, name) in [
        ("bounding", "CapBnd:", "bounding"),
        ("effective", "CapEff:", "effective"),
        ("inheritable", "CapInh:", "inheritable"),
        ("permitted", "CapPrm:", "permitted"),
        ("ambient", "CapAmb:", "ambient"),
    ] {
        let want: Vec<String> = list(&caps[set]).iter().map(|v| s(v).to_string()).collect();
        let mask = status_mask(&status, field);
        for (n, cap) in CAP_NAMES.iter().enumerate().take(last + 1) {
            let key = format!("CAP_{cap}");
            let is_set = mask & (1u64 << n) != 0;
            if want.contains(&key) {
                t.ok(is_set, &format!("expected {name} capability {key} set"));
            } else {
                t.ok(
                    !is_set,
                    &format!("unexpected {name} capability {key} not set"),
                );
            }
        }
    }
}

const DEFAULT_SYMLINKS: [(&str, &str); 5] = [
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/ptmx", "pts/ptmx"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

fn check_default_symlinks(t: &mut Tap) {
    for (link, dest) in DEFAULT_SYMLINKS {
        let md = std::fs::symlink_metadata(link);
        t.ok(
            md.is_ok(),
            &format!("has a file at default symlink path {link:?}"),
        );
        let Ok(md) = md else { continue };
        let is_link = md.file_type().is_symlink();
        t.ok(
            is_link,
            &format!("file at default symlink path {link:?} is a symlink"),
        );
        if !is_link {
            continue;
        }
        let got = std::fs::read_link(link)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        t.ok(
            got == dest,
            &format!("symlink at default symlink path {link:?} has the expected target"),
        );
    }
}

fn check_default_fs(t: &mut Tap) {
    let sys = mounts();
    for (fs, typ) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
    ] {
        // runtimetest keeps the last entry of each mount point.
        let got = sys
            .iter()
            .rev()
            .find(|m| m.mountpoint == fs)
            .map(|m| m.fstype.as_str())
            .unwrap_or("");
        t.ok(got == typ, &format!("mount {fs} has expected type"));
        t.note(format!("expected {typ}, actual {got:?}"));
    }
}

/// runtimetest's validateDevice: type, numbers, mode and owner as given.
fn check_device(t: &mut Tap, d: &Value, what: &str) -> Result<(), String> {
    let path = s(&d["path"]);
    let md = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("stat {path}: {e}")),
    };
    t.ok(md.is_some(), &format!("has a file at {what}"));
    let Some(md) = md else { return Ok(()) };
    let want = match s(&d["type"]) {
        "u" => "c",
        x => x,
    };
    let ft = md.file_type();
    let got = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else if ft.is_fifo() {
        "p"
    } else {
        "unmatched"
    };
    t.ok(got == want, &format!("{what} has the expected type"));
    if got != want {
        return Ok(());
    }
    if got != "p" {
        let dev = md.rdev();
        let major = (dev >> 8) & 0xfff;
        let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
        t.ok(
            Some(major as i64) == d["major"].as_i64(),
            &format!("{what} has the expected major ID"),
        );
        t.ok(
            Some(minor as i64) == d["minor"].as_i64(),
            &format!("{what} has the expected minor ID"),
        );
    }
    match d["fileMode"].as_u64() {
        None => t.skip(&format!("{what} has unconfigured permissions")),
        Some(m) => {
            let got = md.permissions().mode() & 0o777;
            t.ok(
                got as u64 == m & 0o777,
                &format!("{what} has the expected permissions"),
            );
        }
    }
    if what == "/dev/console (default device)" {
        t.todo_fail("we need the major/minor from the controlling TTY");
        return Ok(());
    }
    match d["uid"].as_u64() {
        None => t.skip(&format!("{what} has an unconfigured user ID")),
        Some(u) => t.ok(
            md.uid() as u64 == u,
            &format!("{what} has the expected user ID"),
        ),
    }
    match d["gid"].as_u64() {
        None => t.skip(&format!("{what} has an unconfigured group ID")),
        Some(g) => t.ok(
            md.gid() as u64 == g,
            &format!("{what} has the expected group ID"),
        ),
    }
    Ok(())
}

fn check_default_devices(t: &mut Tap, c: &Value) -> Result<(), String> {
    let mut devs: Vec<Value> = [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
        ("/dev/ptmx", 5, 2),
    ]
    .iter()
    .map(|(p, ma, mi)| serde_json::json!({"path": p, "type": "c", "major": ma, "minor": mi}))
    .collect();
    if c["process"]["terminal"] == true {
        devs.push(serde_json::json!({"path": "/dev/console", "type": "c", "major": 0, "minor": 0}));
    }
    for d in devs {
        check_device(t, &d, &format!("{} (default device)", s(&d["path"])))?;
    }
    Ok(())
}

fn check_linux_devices(t: &mut Tap, c: &Value) -> Result<(), String> {
    let Some(devs) = c["linux"]["devices"].as_array() else {
        t.skip("linux.devices is not set");
        return Ok(());
    };
    for (i, d) in devs.iter().enumerate() {
        check_device(t, d, &format!("{:?} (linux.devices[{i}])", s(&d["path"])))?;
    }
    Ok(())
}

fn check_linux_process(t: &mut Tap, c: &Value) {
    let p = &c["process"];
    if p.is_null() {
        return t.skip("process not set");
    }
    let raw = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    let trimmed: &[u8] = {
        let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
        let end = raw.iter().rposition(|b| *b != 0).map_or(start, |e| e + 1);
        &raw[start..end]
    };
    let args: Vec<String> = trimmed
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let want: Vec<String> = list(&p["args"]).iter().map(|a| s(a).to_string()).collect();
    t.ok(
        args.len() == want.len(),
        "has expected number of process arguments",
    );
    for (i, a) in args.iter().enumerate() {
        t.ok(
            want.get(i) == Some(a),
            &format!("has expected process argument {i}"),
        );
    }
    // SAFETY: prctl(PR_GET_NO_NEW_PRIVS) takes no pointers.
    let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) } == 1;
    t.ok(
        (p["noNewPrivileges"] == true) == nnp,
        "has expected noNewPrivileges",
    );
}

fn check_masked_paths(t: &mut Tap, c: &Value) -> Result<(), String> {
    let Some(paths) = c["linux"]["maskedPaths"].as_array() else {
        t.skip("linux.maskedPaths not set");
        return Ok(());
    };
    for p in paths {
        let p = s(p);
        let readable = match read_access(p) {
            Ok(r) => r,
            Err(e) if e.contains("No such file") || e.starts_with("access:") => false,
            Err(e) => return Err(e),
        };
        t.ok(!readable, &format!("cannot read masked path {p:?}"));
    }
    Ok(())
}

fn check_oom_score_adj(t: &mut Tap, c: &Value) {
    let Some(want) = c["process"]["oomScoreAdj"].as_i64() else {
        return t.skip("process.oomScoreAdj not set");
    };
    let got: i64 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(i64::MIN);
    t.ok(got == want, "has expected OOM score adjustment");
    t.note(format!("expected {want}, actual {got}"));
}

fn check_seccomp(t: &mut Tap, c: &Value) {
    let sc = &c["linux"]["seccomp"];
    if sc.is_null() {
        return t.skip("linux.seccomp not set");
    }
    for sys in list(&sc["syscalls"]) {
        if s(&sys["action"]) == "SCMP_ACT_ERRNO" {
            for n in list(&sys["names"]) {
                if n == "getcwd" {
                    if std::env::current_dir().is_ok() {
                        t.skip("getcwd did not return an error");
                    }
                } else {
                    t.skip(&format!("{} syscall returns errno", s(&n)));
                }
            }
        } else {
            t.skip(&format!("syscall action {}", s(&sys["action"])));
        }
    }
}

fn check_ro_paths(t: &mut Tap, c: &Value) -> Result<(), String> {
    let Some(paths) = c["linux"]["readonlyPaths"].as_array() else {
        t.skip("linux.readonlyPaths not set");
        return Ok(());
    };
    for (i, p) in paths.iter().enumerate() {
        let p = s(p);
        let readable = match read_access(p) {
            Ok(r) => r,
            Err(e) if e.starts_with("access:") => false,
            Err(e) => return Err(e),
        };
        if !readable {
            t.skip(&format!("{p:?} (linux.readonlyPaths[{i}]) is not readable"));
        }
        let writable = match write_access(p) {
            Ok(w) => w,
            Err(e) if e.contains("No such file") || e.starts_with("access:") => false,
            Err(e) => return Err(e),
        };
        t.ok(
            !writable,
            &format!("{p:?} (linux.readonlyPaths[{i}]) is not writable"),
        );
    }
    Ok(())
}

fn mount(src: &str, dst: &str, flags: libc::c_ulong) -> i32 {
    let (s, d) = (CString::new(src).unwrap(), CString::new(dst).unwrap());
    // SAFETY: mount reads two NUL-terminated paths that live for the call.
    if unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    } == 0
    {
        0
    } else {
        errno()
    }
}

fn umount(dst: &str) {
    let d = CString::new(dst).unwrap();
    // SAFETY: umount2 reads a NUL-terminated path.
    unsafe { libc::umount2(d.as_ptr(), libc::MNT_DETACH) };
}

fn temp_dir(prefix: &str) -> Result<String, String> {
    let p = format!("/{prefix}{}", std::process::id());
    std::fs::create_dir(&p).map_err(|e| format!("mkdir {p}: {e}"))?;
    Ok(p)
}

fn check_rootfs_propagation(t: &mut Tap, c: &Value) -> Result<(), String> {
    let prop = s(&c["linux"]["rootfsPropagation"]);
    if prop.is_empty() {
        t.skip("linux.rootfsPropagation not set");
        return Ok(());
    }
    let target = temp_dir("target")?;
    let rec = (libc::MS_BIND | libc::MS_REC) as libc::c_ulong;
    let err = mount("/", &target, rec);
    let result = (|| {
        if err == libc::EPERM {
            t.skip("unable to perform mount (test requires CAP_SYS_ADMIN)");
            return Ok(());
        }
        match prop {
            "shared" | "slave" | "private" => {
                if err != 0 {
                    return Err(format!("bind-mount / {target}: errno {err}"));
                }
                let mnt = temp_dir("mount")?;
                let test = temp_dir("test")?;
                let file = format!("{test}/example");
                std::fs::write(&file, b"").map_err(|e| e.to_string())?;
                let e = mount(&test, &mnt, rec);
                if e != 0 {
                    return Err(format!("bind-mount {test} {mnt}: errno {e}"));
                }
                let seen = format!("{target}{mnt}/example");
                let exposed = Path::new(&seen).exists();
                umount(&mnt);
                let _ = std::fs::remove_dir_all(&test);
                let _ = std::fs::remove_dir(&mnt);
                if prop == "shared" {
                    t.ok(
                        exposed,
                        &format!("shared root propagation exposes {seen:?}"),
                    );
                } else {
                    t.ok(
                        !exposed,
                        &format!("{prop} root propagation does not expose {seen:?}"),
                    );
                }
                Ok(())
            }
            "unbindable" => {
                if err == libc::EINVAL {
                    t.ok(true, "root propagation is unbindable");
                    return Ok(());
                } else if err != 0 {
                    return Err(format!("bind-mount / {target}: errno {err}"));
                }
                t.ok(false, "root propagation is unbindable");
                Ok(())
            }
            _ => {
                t.skip(&format!("unrecognized linux.rootfsPropagation {prop}"));
                Ok(())
            }
        }
    })();
    if err == 0 {
        umount(&target);
    }
    let _ = std::fs::remove_dir(&target);
    result
}

fn check_sysctls(t: &mut Tap, c: &Value) -> Result<(), String> {
    let Some(map) = c["linux"]["sysctl"].as_object() else {
        t.skip("linux.sysctl not set");
        return Ok(());
    };
    for (k, v) in map {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        let got = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let got = got.trim_matches('\0').trim().to_string();
        t.ok(got == s(v), &format!("has expected sysctl {k}"));
        t.note(format!("expected {:?}, actual {got:?}", s(v)));
    }
    Ok(())
}

fn check_id_mappings(t: &mut Tap, maps: &Value, path: &str, field: &str) -> Result<(), String> {
    let want = list(maps);
    if maps.is_null() || want.is_empty() {
        t.skip(&format!("{field} not set"));
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let got: Vec<[u64; 3]> = text
        .lines()
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            [f[0], f[1], f[2]]
        })
        .collect();
    t.ok(
        got.len() == want.len(),
        &format!("{path} has expected number of mappings"),
    );
    for m in want {
        let key = [
            m["containerID"].as_u64().unwrap_or(0),
            m["hostID"].as_u64().unwrap_or(0),
            m["size"].as_u64().unwrap_or(0),
        ];
        t.ok(
            got.contains(&key),
            &format!("{path} has expected mapping {m}"),
        );
    }
    Ok(())
}

fn check_mount_label(t: &mut Tap, c: &Value) {
    let label = s(&c["linux"]["mountLabel"]);
    if label.is_empty() {
        return t.skip("linux.mountlabel not set");
    }
    for m in list(&c["mounts"]) {
        if !list(&m["options"])
            .iter()
            .any(|o| o == "bind" || o == "rbind")
        {
            continue;
        }
        let d = CString::new(s(&m["destination"])).unwrap();
        let mut buf = vec![0u8; 4096];
        // SAFETY: lgetxattr writes at most buf.len() bytes into buf.
        let n = unsafe {
            libc::lgetxattr(
                d.as_ptr(),
                c"security.selinux".as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        // Without SELinux there is no label: label.FileLabel returns "".
        let got = if n > 0 {
            String::from_utf8_lossy(&buf[..n as usize])
                .trim_end_matches('\0')
                .to_string()
        } else {
            String::new()
        };
        t.ok(got == label, "has expected mountlabel");
        t.note(format!("expected {label:?}, actual {got:?}"));
    }
}

fn check_apparmor(t: &mut Tap, c: &Value) {
    let prof = s(&c["process"]["apparmorProfile"]);
    if prof.is_empty() {
        return t.skip("process.ApparmorProfile not set");
    }
    let path = Path::new(s(&c["root"]["path"]))
        .join("etc/apparmor.d")
        .join(prof);
    t.ok(
        std::fs::metadata(path).is_err(),
        "has expected apparmorProfile",
    );
}

fn main() {
    let dir = std::env::args()
        .find_map(|a| a.strip_prefix("--path=").map(String::from))
        .unwrap_or_else(|| ".".into());
    let path = Path::new(&dir).join("config.json");
    let c: Value = match std::fs::read(&path).map(|b| serde_json::from_slice(&b)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => fail(&format!("{}: {e}", path.display())),
        Err(e) => fail(&format!("{}: {e}", path.display())),
    };
    let mut t = Tap(0);
    println!("TAP version 13");
    let r = (|| -> Result<(), String> {
        check_rootfs(&mut t, &c);
        check_hostname(&mut t, &c);
        check_process(&mut t, &c)?;
        check_posix_mounts(&mut t, &c);
        check_user(&mut t, &c);
        check_rlimits(&mut t, &c)?;
        check_capabilities(&mut t, &c);
        check_default_symlinks(&mut t);
        check_default_fs(&mut t);
        check_default_devices(&mut t, &c)?;
        check_linux_devices(&mut t, &c)?;
        check_linux_process(&mut t, &c);
        check_masked_paths(&mut t, &c)?;
        check_oom_score_adj(&mut t, &c);
        check_seccomp(&mut t, &c);
        check_ro_paths(&mut t, &c)?;
        check_rootfs_propagation(&mut t, &c)?;
        check_sysctls(&mut t, &c)?;
        check_id_mappings(
            &mut t,
            &c["linux"]["uidMappings"],
            "/proc/self/uid_map",
            "linux.uidMappings",
        )?;
        check_id_mappings(
            &mut t,
            &c["linux"]["gidMappings"],
            "/proc/self/gid_map",
            "linux.gidMappings",
        )?;
        check_mount_label(&mut t, &c);
        check_apparmor(&mut t, &c);
        Ok(())
    })();
    if let Err(e) = r {
        fail(&e);
    }
    println!("1..{}", t.0);
}

fn fail(what: &str) -> ! {
    eprintln!("nk-runtimetest: {what}");
    std::process::exit(1);
}
