//! `events`: statistics in runc's JSON shape (`--stats` prints once), or a
//! stream of statistics every `--interval` plus an `oom` event each time the
//! OOM killer acts in the container, until the container stops.

use crate::backend::Backend;
use crate::cli::EventsArgs;
use crate::report::Globals;
use sandbox::cgroups::{OomRead, Stats};
use sandbox::state::Status;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Parse a Go-style duration: 5s, 500ms, 1m, 1m30s.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow::anyhow!("invalid interval {s:?}: use a duration such as 5s or 500ms");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..u_end];
        rest = &rest[u_end..];
        total += n * match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
    }
    if total <= 0.0 {
        anyhow::bail!("invalid interval {s:?}: must be positive");
    }
    Ok(Duration::from_secs_f64(total))
}

/// Print one line; false when stdout is gone (a closed pipe ends the stream,
/// as SIGPIPE ends runc's).
fn emit(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
}

/// One event line, as runc's `types.Event` encodes it.
fn event(typ: &str, id: &str, data: Option<&Stats>) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    match data.and_then(|d| serde_json::to_string(d).ok()) {
        Some(d) => format!("{{\"type\":{},\"id\":{},\"data\":{d}}}", q(typ), q(id)),
        None => format!("{{\"type\":{},\"id\":{}}}", q(typ), q(id)),
    }
}

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: EventsArgs) -> anyhow::Result<i32> {
    let rt = g.runtime();
    let interval = parse_duration(&a.interval)?;
    let (st, status) = rt.load(&a.id)?;
    if status == Status::Stopped {
        anyhow::bail!("container with id {} is not running", a.id);
    }
    let b = Backend::for_id(g, &a.id);
    let first = b.stats(&st)?;
    if !emit(&event("stats", &a.id, Some(&first))) || a.stats {
        return Ok(0);
    }
    let mut oom = b.oom_watcher(&st);
    loop {
        let deadline = Instant::now() + interval;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Wake at least every second to notice that the container stopped.
            let wait = left.min(Duration::from_secs(1));
            match &mut oom {
                Some(w) => {
                    let mut p = libc::pollfd {
                        fd: w.fd().as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: poll one pollfd that lives for the call.
                    let n = unsafe { libc::poll(&mut p, 1, wait.as_millis() as i32) };
                    if n > 0 {
                        match w.read() {
                            OomRead::Oom(k) => {
                                for _ in 0..k {
                                    if !emit(&event("oom", &a.id, None)) {
                                        return Ok(0);
                                    }
                                }
                            }
                            OomRead::Gone => oom = None,
                            OomRead::Nothing => {}
                        }
                    }
                }
                None => std::thread::sleep(wait),
            }
            if !running(&rt, &a.id) {
                return Ok(0);
            }
        }
        match b.stats(&st) {
            Ok(s) => {
                if !emit(&event("stats", &a.id, Some(&s))) {
                    return Ok(0);
                }
            }
            Err(e) => sandbox::logging::log(sandbox::logging::Level::Error, || {
                format!("stats of {}: {e}", a.id)
            }),
        }
    }
}

fn running(rt: &sandbox::container::Runtime, id: &str) -> bool {
    rt.load(id).is_ok_and(|(_, s)| s != Status::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn event_lines() {
        assert_eq!(event("oom", "c1", None), r#"{"type":"oom","id":"c1"}"#);
        let v: serde_json::Value =
            serde_json::from_str(&event("stats", "c1", Some(&Stats::default()))).unwrap();
        assert_eq!(v["type"], "stats");
        assert_eq!(v["data"]["network_interfaces"], serde_json::Value::Null);
    }
}
