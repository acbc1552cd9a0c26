//! `events`: statistics in runc's JSON shape (`--stats` prints once), or a
//! stream every `--interval` until the container stops.

use crate::cli::EventsArgs;
use crate::report::Globals;

/// Parse a Go-style duration: 5s, 500ms, 1m.
pub fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid interval {s:?}: use e.g. 5s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => anyhow::bail!("invalid interval {s:?}: use ms, s, m or h"),
    };
    if secs <= 0.0 {
        anyhow::bail!("invalid interval {s:?}: must be positive");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn stats_event(id: &str, s: &sandbox::cgroups::Stats) -> serde_json::Value {
    serde_json::json!({
        "type": "stats",
        "id": id,
        "data": {
            "cpu": {"usage": {"total": s.cpu_usage_total_ns, "kernel": s.cpu_usage_kernel_ns, "user": s.cpu_usage_user_ns}},
            "memory": {"usage": {"usage": s.memory_usage, "limit": s.memory_limit, "max": s.memory_max_usage, "failcnt": s.memory_failcnt}},
            "pids": {"current": s.pids_current, "limit": s.pids_limit},
        }
    })
}

pub fn run(g: &Globals, a: EventsArgs) -> anyhow::Result<i32> {
    let rt = g.runtime();
    let interval = parse_duration(&a.interval)?;
    loop {
        let (st, status) = rt.load(&a.id)?;
        if status == sandbox::state::Status::Stopped {
            anyhow::bail!("container {} is not running", a.id);
        }
        let s = if st.mode == "vm" {
            super::vm_mode::stats(g, &a.id)?
        } else {
            rt.cgroup_of(&st)
                .ok_or_else(|| anyhow::anyhow!("container {} has no cgroup", a.id))?
                .stats()?
        };
        println!("{}", stats_event(&a.id, &s));
        if a.stats {
            return Ok(0);
        }
        std::thread::sleep(interval);
    }
}
