//! nk-agent: PID 1 of a nano-sandbox VM.
//!
//! It mounts /proc, /sys, /dev and the cgroup2 hierarchy, loads the kernel
//! modules listed in the initramfs, opens the two virtio-serial ports (found
//! by name, there is no udev), greets the host, and then serves requests in a
//! single-threaded poll loop: containers are created, started, signalled,
//! exec'd into, paused and measured with the project's own `sandbox`
//! library, so the guest enforces the config's cgroup v2 limits itself. It
//! reaps every child, forwards stdio, and powers the VM off when told to.
//! A VM restored from a template snapshot first gets [`wake`]: fresh
//! entropy and the clock, before it runs anything.
//!
//! The binary is static: the initramfs has no libraries. The library re-runs
//! it (from a sealed memfd) as `nk-agent init` for the container side of
//! clone, exactly as nk-runtime does on a host.

mod cp;
mod criu;
mod dns;
mod guest;
mod hooks;
mod net;
mod pid1;
mod procs;
mod serve;
mod wake;

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "init") {
        sandbox::process::init::main();
    }
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == hooks::WRAPPER) {
        std::process::exit(hooks::main(&args[2..]));
    }
    if args
        .first()
        .is_some_and(|a| a.rsplit('/').next() == Some("cp"))
    {
        std::process::exit(cp::main(&args[1..]));
    }
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        eprintln!(
            "nk-agent is the init of a nano-sandbox VM (PID 1 in the guest); it is not run by hand"
        );
        std::process::exit(2);
    }
    pid1::main();
}
