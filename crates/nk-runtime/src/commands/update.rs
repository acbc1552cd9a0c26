//! `update`: change resource limits of a running container, from a JSON
//! linux.resources document (file or stdin) and/or flags.

use crate::cli::UpdateArgs;
use crate::report::Globals;
use oci_spec::runtime::LinuxResources;

/// Parse a size such as 67108864, 64m, 1G or -1.
pub fn parse_size(s: &str) -> anyhow::Result<i64> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let lower = t.to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mul) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size {s:?}: use bytes or a k/m/g/t suffix"))?;
    if n < 0.0 {
        anyhow::bail!("invalid size {s:?}: negative");
    }
    Ok((n * mul as f64) as i64)
}

/// Remove the values that mean "leave unchanged" in runc's update: zero
/// numbers and empty cpuset strings. Engines send them for every field they
/// do not change (Docker's `update --memory` sends cpu.period 0, ...).
pub fn drop_unset(v: &mut serde_json::Value) {
    const ZERO_IS_UNSET: &[(&str, &str)] = &[
        ("memory", "limit"),
        ("memory", "reservation"),
        ("memory", "swap"),
        ("memory", "kernel"),
        ("memory", "kernelTCP"),
        ("cpu", "shares"),
        ("cpu", "quota"),
        ("cpu", "period"),
        ("cpu", "burst"),
        ("cpu", "realtimeRuntime"),
        ("cpu", "realtimePeriod"),
        ("pids", "limit"),
        ("blockIO", "weight"),
        ("blockIO", "leafWeight"),
    ];
    for (section, key) in ZERO_IS_UNSET {
        if let Some(obj) = v.get_mut(*section).and_then(|s| s.as_object_mut()) {
            if obj.get(*key).and_then(|x| x.as_f64()) == Some(0.0) {
                obj.remove(*key);
            }
        }
    }
    if let Some(cpu) = v.get_mut("cpu").and_then(|s| s.as_object_mut()) {
        for key in ["cpus", "mems"] {
            if cpu.get(key).and_then(|x| x.as_str()) == Some("") {
                cpu.remove(key);
            }
        }
    }
}

/// Merge the flags over a resources document.
pub fn merge(mut v: serde_json::Value, a: &UpdateArgs) -> anyhow::Result<serde_json::Value> {
    if !v.is_object() {
        v = serde_json::json!({});
    }
    let mut set = |path: &[&str], val: serde_json::Value| {
        let mut cur = &mut v;
        for p in &path[..path.len() - 1] {
            if !cur.get(*p).is_some_and(|x| x.is_object()) {
                cur[*p] = serde_json::json!({});
            }
            cur = &mut cur[*p];
        }
        cur[path[path.len() - 1]] = val;
    };
    if let Some(m) = &a.memory {
        set(&["memory", "limit"], parse_size(m)?.into());
    }
    if let Some(m) = &a.memory_swap {
        set(&["memory", "swap"], parse_size(m)?.into());
    }
    if let Some(m) = &a.memory_reservation {
        set(&["memory", "reservation"], parse_size(m)?.into());
    }
    if let Some(m) = &a.kernel_memory {
        set(&["memory", "kernel"], parse_size(m)?.into());
    }
    if let Some(m) = &a.kernel_memory_tcp {
        set(&["memory", "kernelTCP"], parse_size(m)?.into());
    }
    if let Some(x) = a.cpu_shares {
        set(&["cpu", "shares"], x.into());
    }
    if let Some(x) = a.cpu_quota {
        set(&["cpu", "quota"], x.into());
    }
    if let Some(x) = a.cpu_period {
        set(&["cpu", "period"], x.into());
    }
    if let Some(x) = a.cpu_burst {
        set(&["cpu", "burst"], x.into());
    }
    if let Some(x) = a.cpu_rt_period {
        set(&["cpu", "realtimePeriod"], x.into());
    }
    if let Some(x) = a.cpu_rt_runtime {
        set(&["cpu", "realtimeRuntime"], x.into());
    }
    if let Some(x) = &a.cpuset_cpus {
        set(&["cpu", "cpus"], x.clone().into());
    }
    if let Some(x) = &a.cpuset_mems {
        set(&["cpu", "mems"], x.clone().into());
    }
    if let Some(x) = a.pids_limit {
        set(&["pids", "limit"], x.into());
    }
    if let Some(x) = a.blkio_weight {
        set(&["blockIO", "weight"], x.into());
    }
    Ok(v)
}

pub fn run(g: &Globals, a: UpdateArgs) -> anyhow::Result<i32> {
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        anyhow::bail!(
            "Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported by nk-runtime"
        );
    }
    let base = match a.resources.as_deref() {
        None => serde_json::json!({}),
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            serde_json::from_str(&s)
                .map_err(|e| anyhow::anyhow!("--resources -: invalid JSON: {e}"))?
        }
        Some(f) => {
            let raw = std::fs::read(f).map_err(|e| anyhow::anyhow!("--resources {f}: {e}"))?;
            serde_json::from_slice(&raw)
                .map_err(|e| anyhow::anyhow!("--resources {f}: invalid JSON: {e}"))?
        }
    };
    let mut merged = merge(base, &a)?;
    drop_unset(&mut merged);
    let res: LinuxResources =
        serde_json::from_value(merged).map_err(|e| anyhow::anyhow!("resources: {e}"))?;
    sandbox::cgroups::validate_resources(&res)
        .map_err(|(f, r)| anyhow::anyhow!("resources.{f}: {r}"))?;
    let rt = g.runtime();
    let (st, status) = rt.load(&a.id)?;
    if status == sandbox::state::Status::Stopped {
        anyhow::bail!("container {} is stopped: cannot update its resources", a.id);
    }
    let cg = rt
        .cgroup_of(&st)
        .ok_or_else(|| anyhow::anyhow!("container {} has no cgroup", a.id))?;
    cg.set(&res, true)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_unchanged() {
        let mut v = serde_json::json!({
            "memory": {"limit": 134217728, "reservation": 0, "kernel": 0},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": ""},
            "pids": {"limit": 0},
            "blockIO": {"weight": 0}
        });
        drop_unset(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"memory": {"limit": 134217728}, "cpu": {}, "pids": {}, "blockIO": {}})
        );
        let mut v = serde_json::json!({"pids": {"limit": -1}, "cpu": {"quota": -1}});
        drop_unset(&mut v);
        assert_eq!(v["pids"]["limit"], -1);
        assert_eq!(v["cpu"]["quota"], -1);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("x").is_err());
    }
}
