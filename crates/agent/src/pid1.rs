//! PID 1 duties: the early mounts, module loading, finding the ports, and
//! powering off (an exiting PID 1 would panic the kernel).

use crate::guest::console;
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), String> {
    let _ = std::fs::create_dir_all(target);
    let flags = nix::mount::MsFlags::from_bits_retain(flags);
    if let Err(e) = nix::mount::mount(Some(src), target, Some(fstype), flags, Some(data)) {
        return Err(format!("mount {fstype} on {target}: {e}"));
    }
    Ok(())
}

/// Mount what a Linux system and the sandbox library need.
fn early_mounts() {
    let nosuid = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    for (src, target, fs, flags, data) in [
        ("proc", "/proc", "proc", nosuid, ""),
        ("sysfs", "/sys", "sysfs", nosuid, ""),
        ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "gid=5,mode=0620,ptmxmode=0666",
        ),
        ("shm", "/dev/shm", "tmpfs", nosuid, "mode=1777"),
        (
            "run",
            "/run",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=0755",
        ),
        (
            "tmp",
            "/tmp",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=1777",
        ),
        ("cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid, "nsdelegate"),
    ] {
        if let Err(e) = mount(src, target, fs, flags, data) {
            console(&e);
        }
    }
}

/// finit_module every module in the initramfs's load order.
fn load_modules() {
    let order = std::fs::read_to_string("/lib/modules/load-order").unwrap_or_default();
    for name in order.lines().filter(|l| !l.is_empty()) {
        let path = format!("/lib/modules/{name}");
        let Ok(f) = std::fs::File::open(&path) else {
            console(&format!("module {path} is missing"));
            continue;
        };
        match sandbox::linux::syscall::finit_module(std::os::fd::AsFd::as_fd(&f)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => console(&format!("load module {name}: {e}")),
        }
    }
}

/// Open the virtio-serial port named `name` (read/write, non-blocking).
fn open_port(name: &str, deadline: Instant) -> Result<OwnedFd, String> {
    loop {
        if let Ok(rd) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in rd.flatten() {
                let n = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if n.trim() == name {
                    let dev = format!("/dev/{}", e.file_name().to_string_lossy());
                    let c = CString::new(dev.clone()).unwrap_or_default();
                    // SAFETY: open(2) with a NUL-terminated path.
                    let fd = unsafe {
                        libc::open(
                            c.as_ptr(),
                            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
                        )
                    };
                    if fd >= 0 {
                        // SAFETY: a new descriptor that we own.
                        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                    }
                    let err = std::io::Error::last_os_error();
                    if Instant::now() > deadline {
                        return Err(format!("open {dev} (port {name}): {err}"));
                    }
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no virtio-serial port named {name} appeared"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sync and power off. Never returns.
pub fn power_off() -> ! {
    // SAFETY: sync and reboot(2) take no pointers; we are PID 1 with CAP_SYS_BOOT.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    // reboot only returns on failure; an exiting PID 1 panics, which with
    // panic=-1 and -no-reboot also ends the VM.
    std::process::exit(1);
}

/// Move from the initramfs to a tmpfs root, as switch_root does: the
/// initial rootfs has no parent mount, so pivot_root (which the library uses
/// for every container) fails on it with EINVAL.
fn leave_initramfs() {
    if let Err(e) = mount("sysroot", "/sysroot", "tmpfs", 0, "mode=0755") {
        console(&format!("{e}; containers will need --no-pivot"));
        return;
    }
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let (dot, slash, sysroot) = (c("."), c("/"), c("/sysroot"));
    // SAFETY: chdir, mount(MS_MOVE) and chroot with NUL-terminated paths.
    unsafe {
        if libc::chdir(sysroot.as_ptr()) != 0
            || libc::mount(
                dot.as_ptr(),
                slash.as_ptr(),
                std::ptr::null(),
                libc::MS_MOVE,
                std::ptr::null(),
            ) != 0
            || libc::chroot(dot.as_ptr()) != 0
            || libc::chdir(slash.as_ptr()) != 0
        {
            console(&format!(
                "switch to the tmpfs root: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    for d in ["dev", "proc", "sys", "run", "tmp"] {
        let _ = std::fs::create_dir_all(format!("/{d}"));
    }
}

pub fn main() -> ! {
    load_modules();
    leave_initramfs();
    early_mounts();
    // A test knob: a silent agent, to exercise the host's timeouts.
    if std::env::var("nk_silent").is_ok_and(|v| v == "1") {
        console("nk_silent=1: not answering the host");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let ports = open_port(vm_protocol::CONTROL_PORT, deadline)
        .and_then(|c| open_port(vm_protocol::STDIO_PORT, deadline).map(|s| (c, s)));
    let (ctl, sio) = match ports {
        Ok(p) => p,
        Err(e) => {
            console(&format!("{e}; powering off"));
            power_off();
        }
    };
    if let Err(e) = crate::serve::serve(ctl, sio) {
        console(&format!("{e}; powering off"));
    }
    power_off();
}
