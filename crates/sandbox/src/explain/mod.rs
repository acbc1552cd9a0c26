//! The narrator. Every layer reports its steps here; the CLI decides whether
//! they become `-E/--explain` prose, a `--trace` table of phase durations, or
//! nothing. With both off, a step costs one relaxed atomic load: the detail
//! string is never built.
//!
//! The child side of a clone installs a sink that forwards events to the
//! parent over the sync channel, so nothing is lost when the child execs.

pub mod catalog;
pub mod render;

use crate::logging::{self, Role};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

pub use catalog::{Phase, StepDef};

static EXPLAIN: AtomicBool = AtomicBool::new(false);
static TRACE: AtomicBool = AtomicBool::new(false);

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
    },
    /// A phase ended after `dur_ns` nanoseconds.
    Phase {
        phase: Phase,
        role: Role,
        dur_ns: u64,
    },
}

type Sink = Box<dyn Fn(Event) + Send + Sync>;
static SINK: OnceLock<Sink> = OnceLock::new();

/// Turn narration on or off for this process.
pub fn set_explain(on: bool) {
    EXPLAIN.store(on, Ordering::Relaxed);
}

/// Turn phase timing on or off for this process.
pub fn set_trace(on: bool) {
    TRACE.store(on, Ordering::Relaxed);
}

/// Is narration on?
#[inline]
pub fn explaining() -> bool {
    EXPLAIN.load(Ordering::Relaxed)
}

/// Is phase timing on?
#[inline]
pub fn tracing() -> bool {
    TRACE.load(Ordering::Relaxed)
}

/// Install the receiver of events (renderer in the CLI, socket in the child).
pub fn set_sink(sink: impl Fn(Event) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// Deliver an event that was produced elsewhere (a child's, read from the channel).
pub fn deliver(ev: Event) {
    if let Some(s) = SINK.get() {
        s(ev);
    }
}

/// Narrate a step. `detail` runs only when narration is on.
#[inline]
pub fn step(def: &'static StepDef, detail: impl FnOnce() -> String) {
    if explaining() {
        deliver(Event::Step {
            key: def.key.to_string(),
            role: logging::role(),
            detail: detail(),
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

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        deliver(Event::Phase {
            phase: self.phase,
            role: logging::role(),
            dur_ns: crate::time::monotonic_ns().saturating_sub(self.start),
        });
    }
}
