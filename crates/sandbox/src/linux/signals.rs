//! Signal names and numbers as `kill` accepts them: `KILL`, `SIGKILL`, `9`.

use crate::error::{Error, Result};

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Parse a signal given as a name (with or without SIG) or a number. 0 is
/// taken, as runc takes it: kill(2)'s check that the process exists (and
/// may be signalled), with nothing sent.
pub fn parse(s: &str) -> Result<i32> {
    let bad = || {
        Err(Error::msg(format!(
            "invalid signal {s:?}: give a name such as TERM or KILL, or a number from 1 to 64 (0 only checks that the container runs)"
        )))
    };
    if let Ok(n) = s.parse::<i32>() {
        return if (0..=64).contains(&n) { Ok(n) } else { bad() };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some((_, n)) = NAMES.iter().find(|(k, _)| *k == name) {
        return Ok(*n);
    }
    let rtmin = libc::SIGRTMIN();
    let rtmax = libc::SIGRTMAX();
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('+').parse().unwrap_or(-1)
        };
        if off >= 0 && rtmin + off <= rtmax {
            return Ok(rtmin + off);
        }
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.trim_start_matches('-').parse().unwrap_or(-1)
        };
        if off >= 0 && rtmax - off >= rtmin {
            return Ok(rtmax - off);
        }
    }
    bad()
}

/// The name of a signal number (SIGTERM), or the number.
pub fn name(n: i32) -> String {
    NAMES
        .iter()
        .find(|(_, v)| *v == n)
        .map(|(k, _)| format!("SIG{k}"))
        .unwrap_or_else(|| n.to_string())
}

/// Give every signal its default action and unblock them all, as a freshly
/// exec'd program expects. Handled signals are reset by execve itself, but
/// ignored ones and the mask survive it: a runtime started in the
/// background of a shell (SIGINT and SIGQUIT ignored) or under `nohup`
/// (SIGHUP), and Rust's own SIG_IGN for SIGPIPE, would otherwise leak into
/// the container, where ^C would no longer interrupt anything.
pub fn reset_for_exec() {
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // Cannot fail for a valid signal other than KILL and STOP.
            let _ = super::syscall::rt_sigaction_default(sig);
        }
    }
    // SAFETY: an empty set, initialised by sigemptyset, for SIG_SETMASK.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("SIGTERM").unwrap(), 15);
        assert_eq!(parse("sigusr1").unwrap(), 10);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert_eq!(parse("0").unwrap(), 0);
        assert!(parse("65").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("NOPE").is_err());
        assert_eq!(name(15), "SIGTERM");
    }
}
