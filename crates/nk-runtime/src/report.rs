//! Where output goes: log lines (text or JSON, stderr or --log), the error
//! that ends a command, `--explain` narration and the `--trace` table.

use crate::cli::Cli;
use sandbox::explain::{self, render};
use sandbox::logging::{self, Level, Record, Role};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// An error that carries the exit code to use (for example exec's 255).
#[derive(Debug)]
pub struct ExitCode(pub i32, pub anyhow::Error);

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.1)
    }
}

impl std::error::Error for ExitCode {}

/// Settings every command sees.
pub struct Globals {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    /// Where compiled seccomp filters are kept (`None`: off).
    pub seccomp_cache: Option<PathBuf>,
    pub rootless: bool,
    pub explain: bool,
    pub level: Level,
    /// --criu: the criu binary for checkpoint and restore.
    pub criu: Option<PathBuf>,
    json: bool,
    log_file: Option<Arc<Mutex<std::fs::File>>>,
    trace: Option<String>,
    events: Arc<Mutex<Vec<explain::Event>>>,
    /// Monotonic time at start, for the command's total in the trace.
    started: u64,
}

fn format_line(json: bool, rec: &Record) -> String {
    let time = sandbox::time::now_rfc3339();
    if json {
        let v = serde_json::json!({
            "level": rec.level.as_str(),
            "msg": rec.msg,
            "time": time,
            "role": rec.role.as_str(),
        });
        format!("{v}\n")
    } else {
        format!(
            "time=\"{time}\" level={} role={} msg={}\n",
            rec.level.as_str(),
            rec.role.as_str(),
            serde_json::Value::String(rec.msg.clone())
        )
    }
}

/// Set once stderr's reader is gone (EPIPE) or its terminal hung up (EIO).
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Write a log line or narration to stderr, once. A failed write is
/// dropped, never retried: the container must still be waited for and
/// reaped, whoever stopped reading. After EPIPE or EIO nothing more is
/// written there (each write would only fail again, and raise SIGPIPE).
fn to_stderr(bytes: &[u8]) {
    if STDERR_GONE.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = std::io::stderr().write_all(bytes) {
        if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::EIO)) {
            STDERR_GONE.store(true, Ordering::Relaxed);
        }
    }
}

fn bad_flag(msg: String) -> ! {
    eprintln!("nk-runtime: {msg}");
    std::process::exit(1);
}

impl Globals {
    /// Read the global flags and install the log, explain and trace sinks.
    pub fn setup(cli: &Cli) -> Globals {
        if cli.version {
            print_version();
            std::process::exit(0);
        }
        let started = sandbox::time::monotonic_ns();
        let json = match cli.log_format.as_str() {
            "json" => true,
            "text" => false,
            other => bad_flag(format!("--log-format {other:?}: use text or json")),
        };
        let flag_level = cli.log_level.as_deref().map(|s| {
            Level::parse(s).unwrap_or_else(|| {
                bad_flag(format!("--log-level {s:?}: use debug, info, warn or error"))
            })
        });
        // NK_LOG_LEVEL is a convenience: a bad value is ignored, not fatal.
        let env_level = std::env::var("NK_LOG_LEVEL")
            .ok()
            .and_then(|s| Level::parse(&s));
        let level = if cli.debug {
            Level::Debug
        } else if let Some(l) = flag_level {
            l
        } else if cli.quiet {
            Level::Error
        } else if let Some(l) = env_level {
            l
        } else if json {
            // Engines parse the log file as one JSON object: only the error.
            Level::Error
        } else {
            Level::Warn
        };
        logging::set_level(level);
        logging::set_role(Role::Host);
        let log_file = cli.log.as_ref().map(|p| {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                Ok(f) => Arc::new(Mutex::new(f)),
                Err(e) => bad_flag(format!("--log {}: {e}", p.display())),
            }
        });
        let lf = log_file.clone();
        logging::set_sink(move |rec| {
            let line = format_line(json, rec);
            match &lf {
                Some(f) => {
                    if let Ok(mut f) = f.lock() {
                        let _ = f.write_all(line.as_bytes());
                    }
                }
                None => to_stderr(line.as_bytes()),
            }
        });
        let explain_on =
            cli.explain || std::env::var("NK_EXPLAIN").is_ok_and(|v| v == "1" || v == "true");
        let trace = cli
            .trace
            .clone()
            .or_else(|| std::env::var("NK_TRACE").ok().filter(|v| !v.is_empty()));
        let trace = trace.map(|t| match t.as_str() {
            "table" | "1" | "true" => "table".to_string(),
            "json" | "chrome" => t,
            f if f.strip_prefix("chrome:").is_some_and(|p| !p.is_empty()) => t,
            other => bad_flag(format!(
                "--trace={other}: use --trace, --trace=json or --trace=chrome[:FILE]"
            )),
        });
        // The timeline shows each narrated step too, so keep them.
        let keep_steps = trace.as_deref().is_some_and(|t| t.starts_with("chrome"));
        explain::configure(explain_on, trace.is_some(), level);
        let events = Arc::new(Mutex::new(Vec::new()));
        if explain_on || trace.is_some() {
            let narr = Mutex::new(render::Narration::default());
            let ev = events.clone();
            explain::set_sink(move |e| {
                if let explain::Event::Step { .. } = &e {
                    if let Ok(mut n) = narr.lock() {
                        to_stderr(n.render(&e).as_bytes());
                    }
                    if !keep_steps {
                        return;
                    }
                }
                if let Ok(mut v) = ev.lock() {
                    v.push(e);
                }
            });
        }
        logging::info(|| {
            let argv: Vec<String> = std::env::args().collect();
            format!("command line: {}", argv.join(" "))
        });
        let rootless = match cli.rootless.as_deref() {
            Some("true") => true,
            Some("false") => false,
            _ => !nix::unistd::geteuid().is_root(),
        };
        Globals {
            root: cli
                .root
                .clone()
                .unwrap_or_else(sandbox::state::default_root),
            systemd_cgroup: cli.systemd_cgroup,
            seccomp_cache: match (cli.no_seccomp_cache, &cli.seccomp_cache) {
                (true, _) => None,
                (false, Some(d)) => Some(d.clone()),
                (false, None) => sandbox::linux::seccomp::cache::default_dir(),
            },
            criu: cli.criu.as_ref().map(PathBuf::from),
            rootless,
            explain: explain_on,
            level,
            json,
            log_file,
            trace,
            events,
            started,
        }
    }

    /// The library's runtime handle configured from the globals.
    pub fn runtime(&self) -> sandbox::container::Runtime {
        let mut rt = sandbox::container::Runtime::new(self.root.clone());
        rt.systemd_cgroup = self.systemd_cgroup;
        rt.seccomp_cache = self.seccomp_cache.clone();
        rt.rootless = self.rootless;
        rt.explain = self.explain;
        rt.trace = explain::tracing();
        rt.log_level = self.level;
        rt
    }

    /// Report the error that ends the command; returns the exit code.
    pub fn fail(&self, e: &anyhow::Error) -> i32 {
        let (code, msg) = match e.downcast_ref::<ExitCode>() {
            Some(ExitCode(c, inner)) => (*c, format!("{inner:#}")),
            None => (1, format!("{e:#}")),
        };
        let rec = Record {
            level: Level::Error,
            role: Role::Host,
            msg: msg.clone(),
        };
        let line = format_line(self.json, &rec);
        match &self.log_file {
            Some(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
                // runc prints the bare message on stderr too.
                to_stderr(format!("{msg}\n").as_bytes());
            }
            None => to_stderr(line.as_bytes()),
        }
        code
    }

    /// Print the trace, if asked for, and log the command's duration.
    pub fn finish(&self) {
        let total_ms = (sandbox::time::monotonic_ns() - self.started) as f64 / 1e6;
        logging::info(|| format!("done in {total_ms:.3} ms"));
        let Some(fmt) = &self.trace else { return };
        let events = self.events.lock().map(|v| v.clone()).unwrap_or_default();
        if let Some(dest) = fmt.strip_prefix("chrome") {
            let argv: Vec<String> = std::env::args().collect();
            let json = render::trace_chrome(&events, self.started, total_ms, &argv.join(" "));
            match dest.strip_prefix(':') {
                None => eprintln!("{json}"),
                Some(path) => {
                    if let Err(e) = write_atomically(Path::new(path), json.as_bytes()) {
                        eprintln!("nk-runtime: --trace=chrome:{path}: {e}");
                    }
                }
            }
            return;
        }
        let rows = render::trace_rows(&events);
        if fmt == "json" {
            to_stderr(format!("{}\n", render::trace_json(&rows, total_ms)).as_bytes());
        } else {
            to_stderr(render::trace_table(&rows, total_ms).as_bytes());
        }
    }
}

/// Write a file under a temporary name and rename it into place, so a
/// reader (a trace viewer) never sees half of it.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// `--version` in runc's shape.
pub fn print_version() {
    println!("nk-runtime version {}", env!("CARGO_PKG_VERSION"));
    println!(
        "commit: {}",
        option_env!("NK_GIT_COMMIT").unwrap_or("unknown")
    );
    println!("spec: {}", sandbox::state::OCI_VERSION);
    println!("libseccomp: {}", sandbox::linux::seccomp::library_version());
}
