//! Users and groups inside the container: switching ids, supplementary
//! groups from the config, HOME from /etc/passwd, and the
//! executable lookup that mirrors Go's exec.LookPath (runc's error texts).

use crate::error::{Error, Result};
use crate::explain::{self, catalog};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The most of the container's /etc/passwd or /etc/group read: 8 MiB holds
/// about 100,000 entries, far beyond any image, while a container that
/// points the file at /dev/zero or fills it cannot make the runtime (which
/// reads it inside the container's memory limit) grow without end.
pub const MAX_DB_BYTES: u64 = 8 << 20;

/// Read the container's /etc/passwd or /etc/group (`name`, absolute) below
/// `root`, bounded (see [`MAX_DB_BYTES`]). A missing or unreadable file is
/// empty, as it always was (ids are then used as given); one that is not a
/// regular file or is too large is an error.
pub fn read_db(root: std::os::fd::BorrowedFd<'_>, name: &str) -> Result<String> {
    match crate::linux::fs::read_in_root(root, Path::new(name), MAX_DB_BYTES) {
        Ok(v) => Ok(String::from_utf8_lossy(&v).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(Error::msg(format!("{name} in the container: {e}")))
        }
        Err(_) => Ok(String::new()),
    }
}

/// A passwd entry: name, uid, gid, home.
#[derive(Debug, Clone, PartialEq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// Parse /etc/passwd text.
pub fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 6 {
                return None;
            }
            Some(Passwd {
                name: f[0].into(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].into(),
            })
        })
        .collect()
}

/// What the process will run as, resolved against the image.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// Resolve the user against the image's passwd file (read from the
/// current root, after pivot_root) for HOME. The supplementary groups are
/// exactly `additional` (process.user.additionalGids): as with runc, the
/// image's /etc/group adds none, since engines resolve it themselves and put
/// the result in the config.
pub fn resolve(uid: u32, gid: u32, additional: &[u32], passwd: &str) -> ExecUser {
    let ent = parse_passwd(passwd).into_iter().find(|p| p.uid == uid);
    // A set, not Vec::contains: tens of thousands of gids must not be quadratic.
    let mut seen = std::collections::HashSet::new();
    let groups = additional
        .iter()
        .copied()
        .filter(|g| seen.insert(*g))
        .collect();
    ExecUser {
        uid,
        gid,
        groups,
        home: ent.map(|p| p.home).unwrap_or_else(|| "/".into()),
    }
}

/// Switch to the user: groups, gid, then uid (keeping capabilities for the
/// capset that follows). `setgroups_allowed` is false in a user namespace
/// where setgroups is denied.
pub fn switch(u: &ExecUser, setgroups_allowed: bool) -> Result<()> {
    explain::step(&catalog::USER, || {
        format!("uid={} gid={} groups={:?}", u.uid, u.gid, u.groups)
    });
    if setgroups_allowed {
        let gs: Vec<nix::unistd::Gid> = u
            .groups
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gs)
            .map_err(|e| Error::sys(format!("setgroups({:?})", u.groups), e))?;
    }
    let g = nix::unistd::Gid::from_raw(u.gid);
    nix::unistd::setresgid(g, g, g).map_err(|e| {
        Error::sys(
            format!(
                "setgid {} (is the gid mapped in the user namespace?)",
                u.gid
            ),
            e,
        )
    })?;
    let id = nix::unistd::Uid::from_raw(u.uid);
    nix::unistd::setresuid(id, id, id).map_err(|e| {
        Error::sys(
            format!(
                "setuid {} (is the uid mapped in the user namespace?)",
                u.uid
            ),
            e,
        )
    })?;
    Ok(())
}

/// Give stdio descriptors to the user the process will run as, so it can
/// reopen /dev/stdout (runc does the same). /dev/null is left alone.
pub fn fix_stdio_owner(uid: u32, gid: u32) {
    for fd in 0..3 {
        let Ok(st) = nix::sys::stat::fstat(unsafe_borrow(fd)) else {
            continue;
        };
        if st.st_uid == uid {
            continue;
        }
        let is_null = st.st_mode & libc::S_IFMT == libc::S_IFCHR
            && st.st_rdev == nix::sys::stat::makedev(1, 3);
        if is_null {
            continue;
        }
        // SAFETY: fchown on a standard descriptor; failure (read-only fs, other owner) is ignored.
        unsafe { libc::fchown(fd, uid, gid) };
    }
}

fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: 0, 1 and 2 stay open in the container's init.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// The value of a variable in an environment list.
pub fn env_get<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
}

/// Go's findExecutable: a directory, like a file without an x bit, is
/// "permission denied" (what execve says too).
fn check_exec(p: &Path) -> std::result::Result<(), std::io::Error> {
    let m = std::fs::metadata(p)?;
    if m.is_dir() || m.permissions().mode() & 0o111 == 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EACCES));
    }
    Ok(())
}

fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "no such file or directory".into(),
        Some(libc::EACCES) => "permission denied".into(),
        Some(libc::ENOTDIR) => "not a directory".into(),
        _ => e.to_string(),
    }
}

/// Find the program like Go's exec.LookPath, with the same error texts that
/// Docker and Podman turn into exit code 127.
pub fn look_path(name: &str, env: &[String]) -> Result<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return match check_exec(&p) {
            Ok(()) => Ok(p),
            Err(e)
                if e.raw_os_error() == Some(libc::ENOENT)
                    || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                Err(Error::msg(format!(
                    "exec: \"{name}\": stat {name}: {}",
                    errno_text(&e)
                )))
            }
            Err(e) => Err(Error::msg(format!("exec: \"{name}\": {}", errno_text(&e)))),
        };
    }
    // As Go's LookPath (runc's): a PATH entry that is not an executable file
    // is skipped, so a name found only as such is "not found" (127 to Docker
    // and Podman), not "permission denied".
    let path = env_get(env, "PATH").unwrap_or("");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let p = Path::new(dir).join(name);
        if check_exec(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(Error::msg(format!(
        "exec: \"{name}\": executable file not found in $PATH"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n";

    #[test]
    fn resolves_groups_and_home() {
        let u = resolve(1000, 1000, &[5, 7, 5], PASSWD);
        assert_eq!(u.groups, vec![5, 7]);
        assert_eq!(u.home, "/home/bob");
        let r = resolve(0, 0, &[], PASSWD);
        assert!(r.groups.is_empty());
        assert_eq!(r.home, "/root");
        let x = resolve(4242, 4242, &[], PASSWD);
        assert_eq!(x.home, "/");
    }

    #[test]
    fn look_path_texts() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(look_path("sh", &env).unwrap(), PathBuf::from("/bin/sh"));
        let e = look_path("no-such-prog-xyz", &env).unwrap_err().to_string();
        assert_eq!(
            e,
            "exec: \"no-such-prog-xyz\": executable file not found in $PATH"
        );
        let e = look_path("/no/such/binary", &env).unwrap_err().to_string();
        assert_eq!(
            e,
            "exec: \"/no/such/binary\": stat /no/such/binary: no such file or directory"
        );
        assert!(look_path("/etc/passwd", &env)
            .unwrap_err()
            .to_string()
            .contains("permission denied"));
        assert_eq!(
            look_path("/tmp", &env).unwrap_err().to_string(),
            "exec: \"/tmp\": permission denied"
        );
        let etc = vec!["PATH=/etc:/".to_string()];
        assert_eq!(
            look_path("passwd", &etc).unwrap_err().to_string(),
            "exec: \"passwd\": executable file not found in $PATH"
        );
        assert!(look_path("tmp", &etc)
            .unwrap_err()
            .to_string()
            .contains("not found in $PATH"));
        assert_eq!(env_get(&["A=1".into(), "A=2".into()], "A"), Some("2"));
    }
}
