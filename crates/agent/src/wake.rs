//! The first thing a VM restored from a template does: stop sharing the
//! template's secrets. Every clone resumes with the random-number state
//! and the clock of the moment the template was saved, so before anything
//! runs the agent credits fresh host entropy to the kernel's pool, forces
//! the CRNG to reseed from it (which also invalidates the per-CPU batches
//! of `get_random_u32`), and sets CLOCK_REALTIME to the host's time.

use std::os::fd::AsRawFd;

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG`: `_IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Mix `entropy` into the guest's pool (credited in full: it comes from
/// the host's getrandom), reseed the CRNG, and set the clock.
pub fn wake(w: &vm_protocol::Wake) -> Result<(), String> {
    if w.entropy.len() < 32 {
        return Err(format!(
            "wake: {} bytes of entropy; the host must send at least 32",
            w.entropy.len()
        ));
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(|e| format!("open /dev/urandom: {e}"))?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + w.entropy.len());
    info.extend_from_slice(&((w.entropy.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(w.entropy.len() as i32).to_ne_bytes());
    info.extend_from_slice(&w.entropy);
    // SAFETY: RNDADDENTROPY reads a rand_pool_info of buf_size bytes of
    // payload from this buffer, which holds exactly that and lives for the call.
    if unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) } != 0 {
        return Err(format!(
            "RNDADDENTROPY on /dev/urandom: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    if unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG, 0) } != 0 {
        return Err(format!(
            "RNDRESEEDCRNG on /dev/urandom: {}",
            std::io::Error::last_os_error()
        ));
    }
    let ts = libc::timespec {
        tv_sec: w.realtime_secs as libc::time_t,
        tv_nsec: w.realtime_nanos as libc::c_long,
    };
    // SAFETY: clock_settime reads the timespec, which lives for the call.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
        return Err(format!(
            "clock_settime(CLOCK_REALTIME, {}): {}",
            w.realtime_secs,
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
