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

/// Where the agent keeps a copy of itself that guest programs can run
/// (the initramfs's /init is gone after the switch to the tmpfs root).
pub const SELF_COPY: &str = "/bin/nk-agent";

/// Copy the agent to [`SELF_COPY`], once.
pub fn install_self() -> std::io::Result<()> {
    if std::path::Path::new(SELF_COPY).exists() {
        return Ok(());
    }
    std::fs::create_dir_all("/bin")?;
    std::fs::copy("/proc/self/exe", SELF_COPY)?;
    Ok(())
}
