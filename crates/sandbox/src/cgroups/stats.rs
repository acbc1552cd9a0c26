//! Counters read back from a cgroup, in the JSON shape of runc 1.1's
//! `events --stats` (runc's `types.Stats`): engines and tools decode that
//! shape, so the field names and Go's `omitempty` choices are kept as is.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

fn zero(v: &u64) -> bool {
    *v == 0
}

/// All statistics of one container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// Page size ("2MB", "1GB") → counters.
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: IntelRdt,
    /// runc leaves this null outside of its network statistics.
    pub network_interfaces: Option<Vec<serde_json::Value>>,
}

/// Intel RDT is not supported: always `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntelRdt {}

/// Huge page counters for one page size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hugetlb {
    #[serde(default, skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "zero")]
    pub max: u64,
    #[serde(default)]
    pub failcnt: u64,
}

/// One block I/O counter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlkioEntry {
    #[serde(default, skip_serializing_if = "zero")]
    pub major: u64,
    #[serde(default, skip_serializing_if = "zero")]
    pub minor: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(default, skip_serializing_if = "zero")]
    pub value: u64,
}

/// Block I/O counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        rename = "ioQueueRecursive"
    )]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// Process counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    #[serde(default, skip_serializing_if = "zero")]
    pub current: u64,
    /// 0 when unlimited.
    #[serde(default, skip_serializing_if = "zero")]
    pub limit: u64,
}

/// CFS throttling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(default, skip_serializing_if = "zero")]
    pub periods: u64,
    #[serde(default, skip_serializing_if = "zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "zero")]
    pub throttled_time: u64,
}

/// CPU time, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    #[serde(default, skip_serializing_if = "zero")]
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    #[serde(default)]
    pub kernel: u64,
    #[serde(default)]
    pub user: u64,
}

/// CPU usage and throttling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// cpuset state (v1 files).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    #[serde(default)]
    pub cpu_exclusive: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    #[serde(default)]
    pub mem_hardwall: u64,
    #[serde(default)]
    pub mem_exclusive: u64,
    #[serde(default)]
    pub memory_migrate: u64,
    #[serde(default)]
    pub memory_spread_page: u64,
    #[serde(default)]
    pub memory_spread_slab: u64,
    #[serde(default)]
    pub memory_pressure: u64,
    #[serde(default)]
    pub sched_load_balance: u64,
    #[serde(default)]
    pub sched_relax_domain_level: i64,
}

/// Usage, limit, peak and failures of one memory counter, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    #[serde(default)]
    pub limit: u64,
    #[serde(default, skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "zero")]
    pub max: u64,
    #[serde(default)]
    pub failcnt: u64,
}

/// Memory counters. `swap` is memory+swap, as v1 reports it (v2 figures are
/// added up to match).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    #[serde(default, skip_serializing_if = "zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat, key by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Parse "key value" lines (memory.stat, cpu.stat, memory.events ...).
pub fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// Parse a list such as `0-2,4` into numbers (empty on malformed text).
pub fn parse_list_u16(s: &str) -> Vec<u16> {
    let s = s.trim();
    if s.is_empty() {
        return Vec::new();
    }
    super::parse_cpu_list(s)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| u16::try_from(v).ok())
        .collect()
}

/// Parse a v1 blkio statistics file ("8:0 Read 4096", "8:0 4096",
/// "Total 4096"). None when the file is missing or holds no entries.
pub fn parse_blkio_v1(text: &str) -> Option<Vec<BlkioEntry>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || f[0] == "Total" {
            continue;
        }
        let Some((ma, mi)) = f[0].split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        let (op, value) = match f.len() {
            2 => (String::new(), f[1].parse().unwrap_or(0)),
            3 => (f[1].to_string(), f[2].parse().unwrap_or(0)),
            _ => continue,
        };
        out.push(BlkioEntry {
            major,
            minor,
            op,
            value,
        });
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// Parse v2 io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0").
pub fn parse_io_stat(text: &str) -> Blkio {
    let mut b = Blkio::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let value = v.parse().unwrap_or(0);
            let (table, op) = match k {
                "rbytes" => (&mut b.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut b.io_service_bytes_recursive, "Write"),
                "rios" => (&mut b.io_serviced_recursive, "Read"),
                "wios" => (&mut b.io_serviced_recursive, "Write"),
                _ => continue,
            };
            table.push(BlkioEntry {
                major,
                minor,
                op: op.into(),
                value,
            });
        }
    }
    b
}

/// The huge page sizes this kernel supports, in cgroup file spelling
/// ("2MB", "1GB"), from the `hugepages-<n>kB` directories under `sysfs`
/// (normally /sys/kernel/mm/hugepages).
pub fn hugepage_sizes(sysfs: &Path) -> Vec<String> {
    let mut v: Vec<(u64, String)> = std::fs::read_dir(sysfs)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let kb: u64 = n
                        .strip_prefix("hugepages-")?
                        .strip_suffix("kB")?
                        .parse()
                        .ok()?;
                    Some((kb, size_name(kb * 1024)))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

/// 2097152 → "2MB", as the hugetlb controller names its files.
pub fn size_name(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1024 && v.is_multiple_of(1024) && i < UNITS.len() - 1 {
        v /= 1024;
        i += 1;
    }
    format!("{v}{}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_runc() {
        let mut s = Stats::default();
        s.memory.usage.limit = 67108864;
        s.memory.usage.usage = 4096;
        s.memory.kernel_tcp.limit = 1;
        s.pids.current = 1;
        s.cpu.throttling.periods = 2;
        s.cpuset.sched_relax_domain_level = -1;
        let v = serde_json::to_value(&s).unwrap();
        // The keys runc 1.1.5 prints on this host, with Go's omitempty.
        assert_eq!(v["network_interfaces"], serde_json::Value::Null);
        assert_eq!(v["intel_rdt"], serde_json::json!({}));
        assert_eq!(v["hugetlb"], serde_json::json!({}));
        assert_eq!(v["blkio"], serde_json::json!({}));
        assert_eq!(v["pids"], serde_json::json!({"current": 1}));
        assert_eq!(v["cpu"]["throttling"], serde_json::json!({"periods": 2}));
        assert_eq!(
            v["cpu"]["usage"],
            serde_json::json!({"kernel": 0, "user": 0})
        );
        assert_eq!(
            v["memory"]["usage"],
            serde_json::json!({"limit": 67108864, "usage": 4096, "failcnt": 0})
        );
        assert_eq!(
            v["memory"]["kernelTCP"],
            serde_json::json!({"limit": 1, "failcnt": 0})
        );
        assert!(v["memory"].get("cache").is_none());
        assert!(v["memory"].get("raw").is_none());
        assert_eq!(v["cpuset"]["sched_load_balance"], 0);
        assert!(v["cpuset"].get("cpus").is_none());
        let back: Stats = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn parsers() {
        let k = parse_keyed("cache 10\nrss 20\nbad\n");
        assert_eq!(k["cache"], 10);
        assert_eq!(k.len(), 2);
        assert_eq!(parse_list_u16("0-2,5\n"), vec![0, 1, 2, 5]);
        assert!(parse_list_u16("").is_empty());
        let e = parse_blkio_v1("8:0 Read 4096\n8:0 Write 0\n8:16 100\nTotal 4096\n").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].op, "Read");
        assert_eq!(e[2].op, "");
        assert_eq!(e[2].minor, 16);
        assert!(parse_blkio_v1("Total 0\n").is_none());
        let b = parse_io_stat("254:0 rbytes=512 wbytes=1024 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(b.io_service_bytes_recursive.len(), 2);
        assert_eq!(b.io_service_bytes_recursive[1].value, 1024);
        assert_eq!(b.io_serviced_recursive[0].op, "Read");
        assert_eq!(size_name(2 << 20), "2MB");
        assert_eq!(size_name(1 << 30), "1GB");
        assert_eq!(size_name(64 << 10), "64KB");
    }

    #[test]
    fn hugepage_sizes_from_sysfs() {
        let d = std::env::temp_dir().join(format!("nk-hp-{}", std::process::id()));
        for n in ["hugepages-2048kB", "hugepages-1048576kB", "other"] {
            std::fs::create_dir_all(d.join(n)).unwrap();
        }
        assert_eq!(
            hugepage_sizes(&d),
            vec!["2MB".to_string(), "1GB".to_string()]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
