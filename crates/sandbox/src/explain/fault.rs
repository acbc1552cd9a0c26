//! Fault injection for the crash-safety tests: `NK_FAULT=<step>[:parent|child][@N]`
//! kills this process with SIGKILL just before the N-th (default first)
//! occurrence of a catalog step on that side (default `parent`: the CLI and
//! the parent driving a container; `child`: the container's init or exec
//! process before it execs the program).
//!
//! Only compiled with the `fault-injection` cargo feature, which only the
//! test build of `make test` enables (a separate binary in
//! `target/fault-injection/`); the shipped binary has no trace of it.
//!
//! Every catalog step is a point where the runtime can die, because every
//! step goes through [`super::step`]: the tests crash there and check that
//! `delete -f` leaves nothing behind. To learn which steps a command passes,
//! `NK_FAULT_TRACE=<file>` appends `<side> <step> <pid>` for each to that file (the
//! container's side opens it at its first step, before its root changes),
//! and `<side> <step> fault <pid>` where it dies.

use crate::logging::{self, Role};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The environment variable naming the step to die at.
pub const ENV: &str = "NK_FAULT";
/// The environment variable naming the file that records the steps passed.
pub const TRACE_ENV: &str = "NK_FAULT_TRACE";

struct Fault {
    key: String,
    child: bool,
    nth: u32,
}

static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
static SEEN: AtomicU32 = AtomicU32::new(0);

fn parse(v: &str) -> Option<Fault> {
    let (rest, nth) = match v.rsplit_once('@') {
        Some((r, n)) => (r, n.parse().ok().filter(|n| *n > 0)?),
        None => (v, 1),
    };
    let (key, child) = match rest.rsplit_once(':') {
        Some((k, "child")) => (k, true),
        Some((k, "parent")) => (k, false),
        Some(_) => return None,
        None => (rest, false),
    };
    (!key.is_empty()).then(|| Fault {
        key: key.to_string(),
        child,
        nth,
    })
}

fn fault() -> Option<&'static Fault> {
    FAULT
        .get_or_init(|| std::env::var(ENV).ok().and_then(|v| parse(&v)))
        .as_ref()
}

/// The `NK_FAULT=...` and `NK_FAULT_TRACE=...` entries to hand to a
/// child's environment (those that are set).
pub fn env_entries() -> Vec<String> {
    [ENV, TRACE_ENV]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .collect()
}

static TRACE: OnceLock<Option<std::fs::File>> = OnceLock::new();

fn side() -> &'static str {
    if logging::role() == Role::Child {
        "child"
    } else {
        "parent"
    }
}

fn trace(key: &str) {
    let f = TRACE.get_or_init(|| {
        let p = std::env::var_os(TRACE_ENV)?;
        // O_CLOEXEC (std's default): the container's program never gets it.
        std::fs::OpenOptions::new().append(true).open(p).ok()
    });
    if let Some(mut f) = f.as_ref() {
        use std::io::Write;
        let line = format!("{} {key} {}\n", side(), std::process::id());
        let _ = f.write_all(line.as_bytes());
    }
}

/// Called before every step: record it when tracing, and die here if this
/// is the chosen one.
pub fn before(key: &str) {
    trace(key);
    let Some(f) = fault() else { return };
    if f.key != key || f.child != (logging::role() == Role::Child) {
        return;
    }
    if SEEN.fetch_add(1, Ordering::Relaxed) + 1 != f.nth {
        return;
    }
    let msg = format!("nk-runtime: NK_FAULT: killed before step {key}\n");
    // The trace says so too: a child's stderr may be a terminal nobody reads.
    trace(&format!("{key} fault"));
    // SAFETY: write(2) of a live buffer to stderr; SIGKILL to ourselves. The
    // init of a pid namespace ignores a SIGKILL it sends itself, so
    // _exit (exit_group) follows: the kernel tears the process down the same way,
    // and no destructor or cleanup of ours runs in either case.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::kill(libc::getpid(), libc::SIGKILL);
        libc::_exit(137);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let f = parse("clone").unwrap();
        assert_eq!((f.key.as_str(), f.child, f.nth), ("clone", false, 1));
        let f = parse("mount:child@3").unwrap();
        assert_eq!((f.key.as_str(), f.child, f.nth), ("mount", true, 3));
        let f = parse("cgroup.write:parent@2").unwrap();
        assert_eq!((f.key.as_str(), f.child, f.nth), ("cgroup.write", false, 2));
        assert!(parse("x:sideways").is_none());
        assert!(parse("x@0").is_none());
        assert!(parse("").is_none());
    }
}
