//! Checkpoint and restore inside the guest: the host's CRIU kit (vm
//! `criu_kit`), shared read-only under the share, is linked into the
//! guest's root where a Debian system has those files (the loader, the
//! library directory, /usr/sbin, /bin/sh, iptables' extensions), and its
//! kernel modules are loaded. Then the library's own checkpoint and restore
//! (CRIU over RPC) run as on any CRIU host.

use sandbox::container::CriuFlags;
use std::path::{Path, PathBuf};

/// Where the kit's tools go on the guest's PATH.
const SBIN: &str = "/usr/sbin";
const LIBDIR: &str = "/lib/x86_64-linux-gnu";
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
const XTABLES: &str = "/usr/lib/x86_64-linux-gnu/xtables";

fn link(target: &Path, at: &Path) -> Result<(), String> {
    if let Some(d) = at.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    let _ = std::fs::remove_file(at);
    std::os::unix::fs::symlink(target, at)
        .map_err(|e| format!("symlink {} -> {}: {e}", at.display(), target.display()))
}

/// Link the kit at `kit` (in the share) into the guest and load its
/// modules; returns the criu binary. Done again for each request: the
/// links are cheap, and a module already loaded is skipped.
pub fn install(kit: &Path) -> Result<PathBuf, String> {
    let lib = kit.join("lib");
    let rd = |d: &Path| {
        std::fs::read_dir(d).map_err(|e| {
            format!(
                "read the CRIU kit at {}: {e} (the host shares it for checkpoint and restore)",
                d.display()
            )
        })
    };
    for e in rd(&lib)?.flatten() {
        let name = e.file_name();
        link(&e.path(), &Path::new(LIBDIR).join(&name))?;
        if name == "ld-linux-x86-64.so.2" {
            link(&e.path(), Path::new(LOADER))?;
        }
    }
    for e in rd(&kit.join("bin"))?.flatten() {
        let name = e.file_name();
        if name == "sh" {
            // tar starts gzip through /bin/sh.
            if !Path::new("/bin/sh").exists() {
                link(&e.path(), Path::new("/bin/sh"))?;
            }
            continue;
        }
        link(&e.path(), &Path::new(SBIN).join(&name))?;
        if name == "xtables-nft-multi" {
            for t in ["iptables", "ip6tables"] {
                for s in ["", "-restore", "-save"] {
                    link(&e.path(), &Path::new(SBIN).join(format!("{t}{s}")))?;
                }
            }
        }
    }
    if kit.join("xtables").is_dir() {
        link(&kit.join("xtables"), Path::new(XTABLES))?;
    }
    // CRIU runs its helpers (iptables-restore, tar) through PATH.
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let mods = kit.join("mods");
    let order = std::fs::read_to_string(mods.join("load-order")).unwrap_or_default();
    for name in order.lines().filter(|l| !l.is_empty()) {
        let p = mods.join(name);
        let f = std::fs::File::open(&p).map_err(|e| format!("open {}: {e}", p.display()))?;
        match sandbox::linux::syscall::finit_module(std::os::fd::AsFd::as_fd(&f)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => sandbox::logging::warn(|| format!("load module {name}: {e}")),
        }
    }
    // CRIU probes TCP repair over the guest's own loopback at start.
    loopback_up()?;
    let criu = Path::new(SBIN).join("criu");
    if !criu.exists() {
        return Err(format!("the CRIU kit at {} has no bin/criu", kit.display()));
    }
    Ok(criu)
}

/// The archive of the container's rootfs writes in the image directory.
pub const UPPER_ARCHIVE: &str = "nk-rootfs-upper.tar";

/// Run the kit's tar; its error output names what failed.
fn tar(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let o = std::process::Command::new(Path::new(SBIN).join("tar"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("run tar from the CRIU kit: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "tar {:?}: {}: {}",
            args,
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(())
}

/// tar in an upper layer, keeping owners by number and the overlay's
/// trusted.* xattrs (whiteouts, opaque directories), then `rest`.
fn upper_tar(upper: &Path, rest: &[&std::ffi::OsStr]) -> Result<(), String> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--numeric-owner".as_ref(),
        "--xattrs".as_ref(),
        "--xattrs-include=trusted.*".as_ref(),
        "-C".as_ref(),
        upper.as_os_str(),
    ];
    args.extend_from_slice(rest);
    tar(&args)
}

/// Keep the container's rootfs writes: its overlay's upper layer (a
/// tmpfs that ends with the VM) goes into the image directory as a tar,
/// whiteouts and overlay xattrs included. CRIU's image has no rootfs:
/// on a host the rootfs stays, here its writes would not.
pub fn save_upper(upper: &Path, images: &Path) -> Result<(), String> {
    let out = images.join(UPPER_ARCHIVE);
    upper_tar(upper, &["-cf".as_ref(), out.as_os_str(), ".".as_ref()])
}

/// Put the saved rootfs writes into a new upper layer (before the overlay
/// is mounted on it); an image without them leaves it empty.
pub fn load_upper(images: &Path, upper: &Path) -> Result<(), String> {
    let a = images.join(UPPER_ARCHIVE);
    if !a.exists() {
        return Ok(());
    }
    upper_tar(upper, &["-xf".as_ref(), a.as_os_str()])
}

/// Bring the guest's loopback up (the agent's own network namespace).
fn loopback_up() -> Result<(), String> {
    use sandbox::linux::netlink::Socket;
    let mut s = Socket::open().map_err(|e| format!("netlink socket: {e}"))?;
    let links = s
        .links()
        .map_err(|e| format!("list the guest's links: {e}"))?;
    let up = libc::IFF_UP as u32;
    if let Some(lo) = links.iter().find(|l| l.name == "lo") {
        s.set_link(lo.index, up, up, None)
            .map_err(|e| format!("bring the guest's lo up: {e}"))?;
    }
    Ok(())
}

/// The library's CRIU flags for a request: the kit's criu, the image
/// directory in the share (CRIU's log goes there, where the host reads it).
pub fn flags(criu: PathBuf, images: PathBuf, o: &vm_protocol::CriuOptions) -> CriuFlags {
    CriuFlags {
        criu: Some(criu),
        image_path: images,
        work_path: None,
        tcp_established: false,
        ext_unix_sk: o.ext_unix_sk,
        shell_job: o.shell_job,
        file_locks: o.file_locks,
        manage_cgroups_mode: o.manage_cgroups_mode.clone(),
        empty_ns: o.empty_ns.clone(),
        auto_dedup: o.auto_dedup,
        lazy_pages: false,
    }
}
