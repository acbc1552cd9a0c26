//! `update`: change resource limits of a created, running or paused
//! container, from a JSON `linux.resources` document (`--resources FILE`,
//! or `-` for stdin, in runc's shape) and/or flags. Flags override the
//! document. Every OCI resource can be updated; values left out stay as
//! they are.

use crate::backend::Backend;
use crate::cli::UpdateArgs;
use crate::report::Globals;
use oci_spec::runtime::LinuxResources;

/// Parse a size as runc does (go-units RAMInBytes): 67108864, 64m, 64MiB,
/// 1.5g, or -1 for unlimited.
pub fn parse_size(s: &str) -> anyhow::Result<i64> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let bad = || anyhow::anyhow!("invalid size {s:?}: use bytes or a k, m, g or t suffix");
    let lower = t.to_ascii_lowercase();
    let mut rest = lower.strip_suffix('b').unwrap_or(&lower);
    rest = rest.strip_suffix('i').unwrap_or(rest);
    let (num, shift) = match rest.chars().last() {
        Some('k') => (&rest[..rest.len() - 1], 10),
        Some('m') => (&rest[..rest.len() - 1], 20),
        Some('g') => (&rest[..rest.len() - 1], 30),
        Some('t') => (&rest[..rest.len() - 1], 40),
        Some('p') => (&rest[..rest.len() - 1], 50),
        _ => (rest, 0),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok((n * (1u64 << shift) as f64) as i64)
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
    if let Some(x) = a.cpu_idle {
        set(&["cpu", "idle"], x.into());
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

/// Decode merged resources; an error names the JSON path of the bad field.
fn parse_resources(v: &serde_json::Value) -> anyhow::Result<LinuxResources> {
    // Compact JSON is one line: serde's column is the byte offset.
    let raw = serde_json::to_vec(v)?;
    serde_json::from_slice(&raw).map_err(|e| {
        let path = sandbox::spec::json_path_at(&raw, e.column().saturating_sub(1));
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        anyhow::anyhow!("resources: field {path}: {msg}")
    })
}

/// Read the `--resources` document.
fn read_doc(src: &str) -> anyhow::Result<serde_json::Value> {
    let max = sandbox::spec::MAX_CONFIG_BYTES;
    let (raw, name) = if src == "-" {
        // Engines pipe the document in (containerd does): any stdin, but
        // no more than a config's size.
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(std::io::stdin(), max + 1), &mut s)?;
        if s.len() as u64 > max {
            anyhow::bail!("--resources -: standard input is larger than the {max}-byte limit");
        }
        (s, "standard input".to_string())
    } else {
        // A named file must be a regular one: a FIFO or /dev/zero is
        // refused at once.
        let raw = sandbox::linux::fs::read_path(std::path::Path::new(src), max)
            .map_err(|e| anyhow::anyhow!("--resources {src}: {e}"))?;
        (raw, src.to_string())
    };
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(&raw)
        .map_err(|e| anyhow::anyhow!("--resources {name}: invalid JSON: {e}"))
}

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: UpdateArgs) -> anyhow::Result<i32> {
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        anyhow::bail!(
            "Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported by nk-runtime"
        );
    }
    let base = match a.resources.as_deref() {
        None => serde_json::json!({}),
        Some(src) => read_doc(src)?,
    };
    let mut merged = merge(base, &a)?;
    drop_unset(&mut merged);
    let res = parse_resources(&merged)?;
    sandbox::cgroups::validate_resources(&res)
        .map_err(|e| anyhow::anyhow!("resources.{}: {}", e.field, e.reason))?;
    let (st, status) = g.runtime().load(&a.id)?;
    if status == sandbox::state::Status::Stopped {
        anyhow::bail!("container {} is stopped: cannot update its resources", a.id);
    }
    Backend::for_id(g, &a.id).update(&st, res)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("x").is_err());
        assert!(parse_size("-5").is_err());
    }

    #[test]
    fn flags_override_the_document() {
        let cli = crate::cli::Cli::try_parse_from([
            "nk",
            "update",
            "--memory",
            "32m",
            "--cpu-share",
            "512",
            "--cpu-quota",
            "-1",
            "--pids-limit",
            "10",
            "--cpu-idle",
            "1",
            "c1",
        ])
        .unwrap();
        let Some(crate::cli::Command::Update(a)) = cli.command else {
            panic!("not update")
        };
        let v = merge(
            serde_json::json!({"memory": {"limit": 1, "swap": -1}, "blockIO": {"weight": 10}}),
            &a,
        )
        .unwrap();
        assert_eq!(v["memory"]["limit"], 32 << 20);
        assert_eq!(v["memory"]["swap"], -1);
        assert_eq!(v["cpu"]["shares"], 512);
        assert_eq!(v["cpu"]["quota"], -1);
        assert_eq!(v["cpu"]["idle"], 1);
        assert_eq!(v["pids"]["limit"], 10);
        assert_eq!(v["blockIO"]["weight"], 10);
        let r = parse_resources(&v).unwrap();
        assert_eq!(r.memory().unwrap().limit(), Some(32 << 20));
        let e = parse_resources(&serde_json::json!({"cpu": {"shares": "many"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cpu.shares"), "{e}");
    }
}
