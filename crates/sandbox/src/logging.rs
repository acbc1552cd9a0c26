//! Role-tagged logging. The CLI decides where lines go (stderr or `--log`,
//! text or JSON) by installing a sink; library code only says what happened.
//! The container side installs a sink that forwards lines to the parent, so a
//! child's warning is printed by the process that owns the terminal.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Severity, ordered from most to least severe.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    /// The word used in text and JSON output (runc/logrus spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// Parse `debug|info|warn|warning|error`.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" | "trace" => Level::Debug,
            _ => return None,
        })
    }

    fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Error,
            1 => Level::Warn,
            2 => Level::Info,
            _ => Level::Debug,
        }
    }
}

/// Which process wrote a line: the CLI on the host, the parent driving a
/// container, or the child inside the container's namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Host,
    Parent,
    Child,
}

impl Role {
    /// Lower-case name printed in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Parent => "parent",
            Role::Child => "child",
        }
    }
}

/// One log line before formatting.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub level: Level,
    pub role: Role,
    pub msg: String,
}

type Sink = Box<dyn Fn(&Record) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);
static ROLE: AtomicU8 = AtomicU8::new(0);

/// Install where records go. Only the first call takes effect.
pub fn set_sink(sink: impl Fn(&Record) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// Set the most verbose level that is emitted.
pub fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The current maximum level.
pub fn level() -> Level {
    Level::from_u8(MAX_LEVEL.load(Ordering::Relaxed))
}

/// Set this process's role, printed on every line.
pub fn set_role(role: Role) {
    ROLE.store(role as u8, Ordering::Relaxed);
}

/// This process's role.
pub fn role() -> Role {
    match ROLE.load(Ordering::Relaxed) {
        1 => Role::Parent,
        2 => Role::Child,
        _ => Role::Host,
    }
}

/// True when a record of this level would be emitted.
#[inline]
pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Emit a record; the message is built only when the level is enabled.
#[inline]
pub fn log(level: Level, msg: impl FnOnce() -> String) {
    if enabled(level) {
        emit(&Record {
            level,
            role: role(),
            msg: msg(),
        });
    }
}

/// Pass an already-built record (for example one received from a child) to the sink.
pub fn emit(rec: &Record) {
    if let Some(s) = SINK.get() {
        s(rec);
    } else if rec.level <= Level::Warn {
        // Dropped when stderr is gone (eprintln! would panic).
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{}: {}", rec.level.as_str(), rec.msg);
    }
}

/// Log at warning level.
pub fn warn(msg: impl FnOnce() -> String) {
    log(Level::Warn, msg)
}

/// Log at info level.
pub fn info(msg: impl FnOnce() -> String) {
    log(Level::Info, msg)
}

/// Log at debug level.
pub fn debug(msg: impl FnOnce() -> String) {
    log(Level::Debug, msg)
}
