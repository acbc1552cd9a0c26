//! CRIU (Checkpoint/Restore In Userspace), the mechanism behind
//! `checkpoint` and `restore` in container mode. The runtime does not
//! freeze, dump or rebuild processes itself: it asks Debian's `criu`
//! binary to, over CRIU's RPC interface, as runc does ([`swrk`] starts one
//! `criu swrk` per request; [`rpc`] is the message format). What to ask
//! for (the container's root, its mounts and namespaces, its cgroup) is
//! decided by `container::checkpoint`.

pub mod rpc;
pub mod swrk;

use std::path::{Path, PathBuf};

/// The oldest CRIU the runtime accepts (as runc: 3.0).
pub const MIN_VERSION: i64 = 30000;

impl From<CriuError> for crate::error::Error {
    fn from(e: CriuError) -> Self {
        crate::error::Error::Criu(Box::new(e))
    }
}

/// What went wrong talking to CRIU.
#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    /// No criu binary.
    #[error(
        "criu not found ({tried}): install it (apt-get install criu) or name it with --criu PATH"
    )]
    NotFound { tried: String },

    /// criu could not be started.
    #[error("start {path}: {cause}")]
    Spawn {
        path: PathBuf,
        cause: std::io::Error,
    },

    /// A system call of the conversation failed.
    #[error("{op}")]
    Io { op: String },

    /// CRIU answered, but not in protobuf.
    #[error(transparent)]
    Decode(rpc::DecodeError),

    /// CRIU refused or failed the request. The first line is runc's.
    #[error("criu failed: type {typ} errno {errno}{}{}{}",
        errmsg.as_deref().map(|m| format!(" ({m})")).unwrap_or_default(),
        log_line(log),
        quote(excerpt))]
    Failed {
        typ: String,
        errno: i32,
        errmsg: Option<String>,
        log: Option<PathBuf>,
        excerpt: Vec<String>,
    },

    /// CRIU exited before it answered.
    #[error(
        "criu exited ({status}) without answering the {typ} request{}{}",
        log_line(log),
        quote(excerpt)
    )]
    NoAnswer {
        typ: String,
        status: String,
        log: Option<PathBuf>,
        excerpt: Vec<String>,
    },

    /// CRIU answered success, then exited with a failure.
    #[error(
        "criu failed: {status} after the {typ} request{}{}",
        log_line(log),
        quote(excerpt)
    )]
    Exit {
        typ: String,
        status: String,
        log: Option<PathBuf>,
        excerpt: Vec<String>,
    },

    /// The runtime's own work at a notification failed (a hook, the
    /// console socket, the state record); CRIU was told and gave up.
    #[error("at CRIU's {script} notification: {cause}")]
    Notify {
        script: String,
        cause: Box<crate::Error>,
    },

    /// Preparing the request once CRIU ran failed (its cgroup).
    #[error("{0}")]
    Setup(Box<crate::Error>),

    /// CRIU said something this runtime does not expect.
    #[error("unexpected answer from criu: {0}")]
    Unexpected(String),
}

/// runc's second line, naming the log.
fn log_line(log: &Option<PathBuf>) -> String {
    log.as_deref()
        .map(|p| format!("\nlog file: {}", p.display()))
        .unwrap_or_default()
}

/// The excerpt of a CRIU log, as lines under the error.
fn quote(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nCRIU's log says:");
    for l in lines {
        s.push_str("\n  ");
        s.push_str(l);
    }
    s
}

/// The criu binary: `explicit` (the global --criu), else `criu` on PATH,
/// else the sbin directories a non-login PATH may lack.
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, CriuError> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(p) = explicit {
        if p.components().count() > 1 {
            return if is_exec(p) {
                Ok(p.to_path_buf())
            } else {
                Err(CriuError::NotFound {
                    tried: format!("--criu {}", p.display()),
                })
            };
        }
    }
    let name = explicit.unwrap_or(Path::new("criu"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .collect();
    for d in &dirs {
        let p = d.join(name);
        if is_exec(&p) {
            return Ok(p);
        }
    }
    Err(CriuError::NotFound {
        tried: format!(
            "{} in $PATH, /usr/local/sbin, /usr/sbin, /sbin",
            name.display()
        ),
    })
}

/// CRIU's version, asked over RPC (the VERSION request).
pub fn version(criu: &Path) -> Result<rpc::Version, CriuError> {
    let r = swrk::Swrk::new(criu).run(
        rpc::Req::new(rpc::ReqType::Version, None),
        swrk::Stdio3::Null,
        None,
        |_, _| Ok(()),
        |_, _| Ok(()),
    )?;
    r.version
        .ok_or_else(|| CriuError::Unexpected("a VERSION answer without a version".into()))
}

/// Refuse a CRIU older than [`MIN_VERSION`] (runc's words).
pub fn check_version(criu: &Path) -> Result<rpc::Version, CriuError> {
    let v = version(criu)?;
    if v.number() < MIN_VERSION {
        return Err(CriuError::Unexpected(format!(
            "CRIU version {v} must be 3.0 or higher"
        )));
    }
    Ok(v)
}

/// Ask CRIU whether it (and the kernel) can do what `want` names.
pub fn features(criu: &Path, want: rpc::Features) -> Result<rpc::Features, CriuError> {
    let mut req = rpc::Req::new(rpc::ReqType::FeatureCheck, None);
    req.features = Some(want);
    let r =
        swrk::Swrk::new(criu).run(req, swrk::Stdio3::Null, None, |_, _| Ok(()), |_, _| Ok(()))?;
    Ok(r.features.unwrap_or_default())
}

/// Whether CRIU works on this host: `criu check` (its own probe of every
/// kernel feature a dump needs), with CRIU's error lines when it does not.
pub fn host_check(criu: &Path) -> Result<(), Vec<String>> {
    let out = std::process::Command::new(criu)
        .arg("check")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| vec![format!("start {}: {e}", criu.display())])?;
    if out.status.success() {
        return Ok(());
    }
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.contains("Error"))
        .map(String::from)
        .collect();
    if lines.is_empty() {
        lines = text.lines().map(String::from).take(5).collect();
    }
    if lines.is_empty() {
        lines.push(format!("criu check exited {}", out.status));
    }
    Err(lines)
}
