//! nk-probe: runs inside test containers (with the host's libraries bound in)
//! to make system calls that busybox cannot, and print what happened.
//!
//! * `syscall NR [A0..A5]`: a raw syscall; prints `ok <ret>` or `err <errno>`
//! * `thread NR`: makes syscall NR in a second thread, then reports from the
//!   main thread: `main alive threads=<n>`
//! * `trap NR`: with a SIGSYS handler installed, makes syscall NR; prints
//!   `sigsys syscall=<nr>` if the signal came
//! * `fds`: lists its open descriptors: `fd <n> -> <target>`
//! * `exe`: tries to open /proc/1/exe for writing and reading

use std::sync::atomic::{AtomicI32, Ordering};

fn num(s: &str) -> u64 {
    if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).expect("hex number")
    } else if let Some(n) = s.strip_prefix('-') {
        (n.parse::<u64>().expect("number") as i64).wrapping_neg() as u64
    } else {
        s.parse().expect("number")
    }
}

fn raw_syscall(nr: i64, a: &[u64]) -> String {
    let g = |i: usize| a.get(i).copied().unwrap_or(0);
    // SAFETY: the tests choose syscalls (getppid, getpid, ...) that ignore or
    // only read their integer arguments.
    let r = unsafe { libc::syscall(nr, g(0), g(1), g(2), g(3), g(4), g(5)) };
    if r < 0 {
        format!(
            "err {}",
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        )
    } else {
        format!("ok {r}")
    }
}

static TRAPPED: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // siginfo for SIGSYS: si_call_addr (pointer), si_syscall (int), si_arch (uint).
    #[repr(C)]
    struct SysInfo {
        signo: i32,
        errno: i32,
        code: i32,
        _pad: i32,
        call_addr: *mut libc::c_void,
        syscall: i32,
        arch: u32,
    }
    // SAFETY: the kernel passes a valid siginfo for SIGSYS, laid out as above.
    let nr = unsafe { (*(info as *const SysInfo)).syscall };
    TRAPPED.store(nr, Ordering::SeqCst);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.first().map(String::as_str) {
        Some("syscall") => {
            let a: Vec<u64> = args[2..].iter().map(|s| num(s)).collect();
            raw_syscall(num(&args[1]) as i64, &a)
        }
        Some("thread") => {
            let nr = num(&args[1]) as i64;
            let (tx, rx) = std::sync::mpsc::channel();
            let t = std::thread::spawn(move || {
                // SAFETY: a syscall with no arguments.
                unsafe { libc::syscall(nr) };
                // Reached only if the syscall did not kill this thread.
                let _ = tx.send(());
                // Stay alive until the process exits, so the count below
                // sees this thread however late the main thread looks.
                loop {
                    std::thread::park();
                }
            });
            // Until the thread has either returned from the syscall (it
            // says so) or been killed by it (only this thread is left).
            let threads = || {
                std::fs::read_dir("/proc/self/task")
                    .map(|d| d.count())
                    .unwrap_or(0)
            };
            let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while rx.try_recv().is_err() && threads() > 1 && std::time::Instant::now() < end {
                // A poll interval: the thread's fate is looked at again.
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let n = threads();
            drop(t);
            format!("main alive threads={n}")
        }
        Some("trap") => {
            // SAFETY: installing a handler with a zeroed, then filled, sigaction.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_sigsys as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO;
                libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
            }
            let r = raw_syscall(num(&args[1]) as i64, &[]);
            match TRAPPED.load(Ordering::SeqCst) {
                -1 => format!("no signal, {r}"),
                nr => format!("sigsys syscall={nr}"),
            }
        }
        Some("fds") => {
            let mut v = Vec::new();
            for e in std::fs::read_dir("/proc/self/fd")
                .expect("read /proc/self/fd")
                .flatten()
            {
                let t = std::fs::read_link(e.path())
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|e| format!("<{e}>"));
                v.push(format!("fd {} -> {t}", e.file_name().to_string_lossy()));
            }
            v.join("\n")
        }
        Some("exe") => {
            let w = std::fs::OpenOptions::new().write(true).open("/proc/1/exe");
            let r = std::fs::File::open("/proc/1/exe");
            let l = std::fs::read_link("/proc/1/exe");
            format!(
                "write={} read={} link={}",
                w.map(|_| "ok".to_string())
                    .unwrap_or_else(|e| e.to_string()),
                r.map(|_| "ok".to_string())
                    .unwrap_or_else(|e| e.to_string()),
                l.map(|p| p.display().to_string())
                    .unwrap_or_else(|e| e.to_string())
            )
        }
        _ => {
            eprintln!("usage: nk-probe syscall|thread|trap|fds|exe ...");
            std::process::exit(2);
        }
    };
    println!("{out}");
}
