//! The narrator. Every layer reports its steps here; the CLI decides whether
//! they become `-E/--explain` prose, a `--trace` table of phase durations,
//! debug log lines, or nothing. All switches live in one atomic byte, so with
//! everything off a step or a phase costs one relaxed load and a branch: the
//! detail string is never built and no clock is read.
//!
//! Where events go depends on the process:
//! - in the CLI, a sink installed by the CLI renders them;
//! - in the container's init before the exec barrier, a sink forwards them to
//!   the parent over the sync channel;
//! - in the init after the barrier (when `create` may have exited), they are
//!   written as JSON lines into the exec fifo, which `start` reads to its end
//!   ([`redirect_to_fd`], [`decode_lines`]).

pub mod catalog;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod render;

use crate::logging::{self, Role};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};
use std::sync::OnceLock;

pub use catalog::{Phase, StepDef};

const EXPLAIN: u8 = 1;
const TRACE: u8 = 2;
const LOG_STEPS: u8 = 4;

static FLAGS: AtomicU8 = AtomicU8::new(0);
static REDIRECT: AtomicI32 = AtomicI32::new(-1);

/// One narrated occurrence: a catalog step with this container's values, or a
/// phase that just ended with its duration.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum Event {
    /// A step of the catalog happened. `detail` holds the concrete values.
    Step {
        key: String,
        role: Role,
        detail: String,
        /// When it happened (CLOCK_MONOTONIC, shared by every process of
        /// the host), for `--trace=chrome`'s timeline.
        #[serde(default)]
        at_ns: u64,
    },
    /// A phase ended after `dur_ns` nanoseconds.
    Phase {
        phase: Phase,
        role: Role,
        dur_ns: u64,
        /// When it began (CLOCK_MONOTONIC).
        #[serde(default)]
        start_ns: u64,
    },
}

type Sink = Box<dyn Fn(Event) + Send + Sync>;
static SINK: OnceLock<Sink> = OnceLock::new();

fn set_flag(bit: u8, on: bool) {
    if on {
        FLAGS.fetch_or(bit, Ordering::Relaxed);
    } else {
        FLAGS.fetch_and(!bit, Ordering::Relaxed);
    }
}

/// Turn narration on or off for this process.
pub fn set_explain(on: bool) {
    set_flag(EXPLAIN, on);
}

/// Turn phase timing on or off for this process.
pub fn set_trace(on: bool) {
    set_flag(TRACE, on);
}

/// Also write every step as a debug log line (`--log-level debug`).
pub fn set_log_steps(on: bool) {
    set_flag(LOG_STEPS, on);
}

/// Set all three switches at once (the child receives them from the parent).
pub fn configure(explain: bool, trace: bool, log_level: logging::Level) {
    set_explain(explain);
    set_trace(trace);
    set_log_steps(log_level >= logging::Level::Debug);
}

/// Is narration on?
#[inline]
pub fn explaining() -> bool {
    FLAGS.load(Ordering::Relaxed) & EXPLAIN != 0
}

/// Is phase timing on?
#[inline]
pub fn tracing() -> bool {
    FLAGS.load(Ordering::Relaxed) & TRACE != 0
}

/// Install the receiver of events (renderer in the CLI, socket in the child).
pub fn set_sink(sink: impl Fn(Event) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// From now on, write events as JSON lines into `fd` instead of the sink.
/// The init calls this once it has passed the exec barrier: the process
/// that created it may be gone, but `start` is reading the fifo.
pub fn redirect_to_fd(fd: RawFd) {
    REDIRECT.store(fd, Ordering::Relaxed);
}

/// Decode events written by a redirected init (one JSON object per line;
/// anything else is skipped).
pub fn decode_lines(bytes: &[u8]) -> Vec<Event> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

/// Deliver an event: to the redirect descriptor when set, else to the sink.
/// Also used for events produced elsewhere (a child's, read from the channel).
pub fn deliver(ev: Event) {
    let fd = REDIRECT.load(Ordering::Relaxed);
    if fd >= 0 {
        if let Ok(mut line) = serde_json::to_vec(&ev) {
            line.push(b'\n');
            // A reader that went away loses the event, nothing more: the
            // program must still run.
            // SAFETY: write(2) from a live buffer to a descriptor we hold.
            let _ = unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
        }
        return;
    }
    if let Some(s) = SINK.get() {
        s(ev);
    }
}

/// Narrate a step. `detail` runs only when narration or step logging is on.
#[inline]
pub fn step(def: &'static StepDef, detail: impl FnOnce() -> String) {
    #[cfg(feature = "fault-injection")]
    fault::before(def.key);
    let flags = FLAGS.load(Ordering::Relaxed);
    if flags & (EXPLAIN | LOG_STEPS) != 0 {
        step_slow(flags, def, detail());
    }
}

/// Narrate a step done by another role than this process's: the parent
/// tells what the child did before it could speak for itself (between
/// clone3 and its exec), so the tag names who acted.
#[inline]
pub fn step_by(role: Role, def: &'static StepDef, detail: impl FnOnce() -> String) {
    let flags = FLAGS.load(Ordering::Relaxed);
    if flags & (EXPLAIN | LOG_STEPS) != 0 {
        step_slow_as(flags, role, def, detail());
    }
}

#[cold]
fn step_slow(flags: u8, def: &'static StepDef, detail: String) {
    step_slow_as(flags, logging::role(), def, detail)
}

fn step_slow_as(flags: u8, role: Role, def: &'static StepDef, detail: String) {
    if flags & LOG_STEPS != 0 {
        logging::log(logging::Level::Debug, || {
            if detail.is_empty() {
                format!("step {}", def.key)
            } else {
                format!("step {}: {detail}", def.key)
            }
        });
    }
    if flags & EXPLAIN != 0 {
        deliver(Event::Step {
            key: def.key.to_string(),
            role,
            detail,
            at_ns: crate::time::monotonic_ns(),
        });
    }
}

/// A cgroup join the parent did not write itself, told with who did it:
/// the parent's clone3(CLONE_INTO_CGROUP) started the child in its cgroup2
/// directory, and/or the child writes itself into its v1 hierarchies.
pub fn cgroup_join(into_cgroup2: bool, v1_tasks: usize) {
    cgroup_join_when(into_cgroup2, v1_tasks, "before it execs")
}

/// [`cgroup_join`] for an init that writes its tasks files at its start,
/// the cgroup having been made while it exec'd.
pub fn cgroup_join_after_exec(v1_tasks: usize) {
    cgroup_join_when(false, v1_tasks, "first thing after its exec")
}

fn cgroup_join_when(into_cgroup2: bool, v1_tasks: usize, when: &str) {
    if into_cgroup2 {
        step_by(Role::Parent, &catalog::CGROUP_JOIN, || {
            "clone3(CLONE_INTO_CGROUP) started the child in its cgroup2 directory".to_string()
        });
    }
    if v1_tasks > 0 {
        step_by(Role::Child, &catalog::CGROUP_JOIN, || {
            format!("the child writes 0 to {v1_tasks} v1 tasks files {when}")
        });
    }
}

/// Times a phase from creation to drop when tracing is on.
#[must_use = "the phase ends when the guard is dropped"]
pub struct PhaseGuard {
    phase: Phase,
    start: u64,
}

/// Start timing a phase; the returned guard reports its duration when dropped.
#[inline]
pub fn phase(phase: Phase) -> Option<PhaseGuard> {
    if tracing() {
        Some(PhaseGuard {
            phase,
            start: crate::time::monotonic_ns(),
        })
    } else {
        None
    }
}

/// Report a phase timed before tracing was configured (the init's own
/// unshare, done before its request says whether to trace).
pub fn phase_span(phase: Phase, start_ns: u64, end_ns: u64) {
    if tracing() {
        deliver(Event::Phase {
            phase,
            role: logging::role(),
            dur_ns: end_ns.saturating_sub(start_ns),
            start_ns,
        });
    }
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        deliver(Event::Phase {
            phase: self.phase,
            role: logging::role(),
            dur_ns: crate::time::monotonic_ns().saturating_sub(self.start),
            start_ns: self.start,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_skips_garbage() {
        let ev = Event::Step {
            key: "exec".into(),
            role: Role::Child,
            detail: "x".into(),
            at_ns: 7,
        };
        let mut bytes = serde_json::to_vec(&ev).unwrap();
        bytes.extend_from_slice(b"\nnot json\n\n");
        assert_eq!(decode_lines(&bytes), vec![ev]);
    }
}
