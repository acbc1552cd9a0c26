//! What both PID 1's duties and the serve loop use: the console line and
//! the guest's uptime (kept apart so that `pid1` calls `serve` and nothing
//! points back).

/// Print a line on the serial console (the host keeps it in console.log).
pub fn console(msg: &str) {
    let line = format!("nk-agent: {msg}\n");
    // SAFETY: write a live buffer to fd 2, the kernel-provided /dev/console.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// Guest uptime in milliseconds.
pub fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or(0)
}
