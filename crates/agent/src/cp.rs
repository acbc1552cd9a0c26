//! A minimal `cp -a SRC/. DST/`, for the library's tmpcopyup (it runs
//! cp(1), and the guest has no coreutils). The agent binary answers to the
//! name `cp` through /bin/cp, installed only when a config asks for tmpcopyup.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

fn copy_entry(src: &Path, dst: &Path) -> std::io::Result<()> {
    let m = std::fs::symlink_metadata(src)?;
    let ft = m.file_type();
    if ft.is_symlink() {
        let t = std::fs::read_link(src)?;
        let _ = std::fs::remove_file(dst);
        std::os::unix::fs::symlink(t, dst)?;
        std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))?;
        return Ok(());
    }
    if ft.is_dir() {
        if !dst.is_dir() {
            std::fs::create_dir(dst)?;
        }
        for e in std::fs::read_dir(src)? {
            let e = e?;
            copy_entry(&e.path(), &dst.join(e.file_name()))?;
        }
    } else if ft.is_file() {
        std::fs::copy(src, dst)?;
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
        let c = std::ffi::CString::new(dst.as_os_str().as_encoded_bytes()).unwrap_or_default();
        // SAFETY: mknod with a NUL-terminated path and the source's mode and device.
        if unsafe { libc::mknod(c.as_ptr(), m.mode(), m.rdev()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    } else {
        return Ok(()); // sockets are not copied, as cp -a does not
    }
    std::os::unix::fs::chown(dst, Some(m.uid()), Some(m.gid()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    Ok(())
}

/// `cp -a SRC/. DST/`: exit status 0 on success.
pub fn main(args: &[String]) -> i32 {
    let (src, dst) = match args {
        [flag, s, d] if flag == "-a" => (s, d),
        _ => {
            eprintln!("cp (nk-agent): only `cp -a SRC/. DST/` is supported");
            return 2;
        }
    };
    let src = Path::new(src.trim_end_matches("/."));
    let dst = Path::new(dst.trim_end_matches('/'));
    let r = std::fs::read_dir(src).and_then(|rd| {
        for e in rd {
            let e = e?;
            copy_entry(&e.path(), &dst.join(e.file_name()))?;
        }
        Ok(())
    });
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cp: {} -> {}: {e}", src.display(), dst.display());
            1
        }
    }
}

/// Install /bin/cp (a copy of the agent) once.
pub fn install() -> std::io::Result<()> {
    if Path::new("/bin/cp").exists() {
        return Ok(());
    }
    crate::guest::install_self()?;
    std::os::unix::fs::symlink("nk-agent", "/bin/cp")
}
