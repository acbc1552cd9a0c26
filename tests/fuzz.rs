//! A short, bounded fuzz pass (proptest, which runs on stable Rust; cargo
//! fuzz needs nightly) over what reads untrusted input: the config parser
//! and validation, the state file parser, /proc/<pid>/stat parsing, mount
//! options, seccomp profiles, container ids, and path resolution inside a
//! root. Every property is "never panics" plus, where there is one, the
//! security property (an accepted id stays in the state root; a path
//! resolved in a root never leaves it).
//!
//! NK_FUZZ_CASES sets the number of cases per property (default 512); a
//! crash found here becomes a regression test below (`regressions`).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sandbox::spec::{self, Bundle, ValidateOpts};
use serde_json::{json, Value};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

fn cases(scale: u32) -> Config {
    let n: u32 = std::env::var("NK_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    Config {
        cases: (n / scale).max(16),
        failure_persistence: None,
        ..Config::default()
    }
}

/// A config touching most of what validation and the parsers look at.
fn base_config() -> Value {
    json!({
        "ociVersion": "1.2.0",
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "h",
        "process": {
            "terminal": false, "cwd": "/", "args": ["sh", "-c", "true"],
            "env": ["PATH=/bin", "A=b"],
            "user": {"uid": 0, "gid": 0, "additionalGids": [1, 2], "umask": 18},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}],
            "noNewPrivileges": true, "oomScoreAdj": 0,
            "scheduler": {"policy": "SCHED_BATCH", "nice": 3},
            "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
            "execCPUAffinity": {"initial": "0", "final": "0-1"}
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "ro", "ridmap"],
             "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
             "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}
        ],
        "hooks": {"prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]},
        "annotations": {"a": "b"},
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "user"}],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "resources": {"memory": {"limit": 100000000}, "cpu": {"cpus": "0-1", "quota": 50000, "period": 100000},
                          "pids": {"limit": 10}, "devices": [{"allow": false, "access": "rwm"}]},
            "cgroupsPath": "/x/y",
            "sysctl": {"kernel.shmmax": "100"},
            "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                        "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                                     {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
                                      "args": [{"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": 3, "valueTwo": 1}]}]},
            "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
            "personality": {"domain": "LINUX"},
            "rootfsPropagation": "rslave",
            "timeOffsets": {}
        }
    })
}

/// Every JSON pointer in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                pointers(
                    x,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Strings a hostile config would use.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("..".to_string()),
        Just("../../etc".to_string()),
        Just("/proc/self/fd/3".to_string()),
        Just("a\u{0}b".to_string()),
        Just("SCMP_ACT_NOTIFY".to_string()),
        Just("SCMP_CMP_MASKED_EQ".to_string()),
        Just("SCHED_FLAG_RESET_ON_FORK".to_string()),
        Just("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV".to_string()),
        Just("0-65535".to_string()),
        Just("user".to_string()),
        "[a-z_/.\\-]{0,12}",
        "\\PC{0,16}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just(-1i64),
            Just(0),
            Just(1),
            Just(4096),
            Just(65536),
            Just(i64::MIN)
        ]
        .prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(nasty_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn bundle_of(raw: &[u8]) -> Option<Bundle> {
    let p = spec::parse(raw, Path::new("/fuzz/config.json")).ok()?;
    Some(Bundle {
        dir: "/fuzz".into(),
        config_path: "/fuzz/config.json".into(),
        raw: raw.to_vec(),
        spec: p.spec,
    })
}

/// Everything that reads a parsed config without touching the host.
fn exercise(raw: &[u8]) {
    match spec::parse(raw, Path::new("/fuzz/config.json")) {
        Err(e) => assert!(e.to_string().contains("/fuzz/config.json"), "{e}"),
        Ok(_) => {
            let b = bundle_of(raw).unwrap();
            for need_process in [false, true] {
                if let Err(e) = spec::validate(
                    &b,
                    ValidateOpts {
                        need_process,
                        check_rootfs: false,
                    },
                ) {
                    assert!(!e.to_string().is_empty());
                }
            }
            let valid = spec::validate(&b, ValidateOpts::default()).is_ok();
            for m in b.spec.mounts().iter().flatten() {
                let _ =
                    sandbox::linux::mounts::parse_options(m.options().as_deref().unwrap_or(&[]));
                if let Some(p) = sandbox::linux::mounts::idmap_plan(m) {
                    let _ = sandbox::linux::mounts::check_idmap(m, &p);
                }
            }
            if let Some(s) = b.spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
                // Compiling is pure (libseccomp builds BPF in memory).
                if valid && sandbox::linux::seccomp::validate(&s).is_ok() {
                    let _ = sandbox::linux::seccomp::prepare(&s);
                }
            }
            if let Some(p) = b.spec.process() {
                let _ = spec::check_process(p);
            }
        }
    }
}

#[test]
fn config_parser_and_validation_on_mutated_configs() {
    let base = base_config();
    let mut ptrs = Vec::new();
    pointers(&base, String::new(), &mut ptrs);
    let n = ptrs.len();
    let mutation = (0..n, arb_json(), 0u8..4);
    let mut runner = TestRunner::new(cases(1));
    runner
        .run(&prop::collection::vec(mutation, 1..5), |muts| {
            let mut v = base.clone();
            for (i, new, how) in muts {
                let p = &ptrs[i];
                match how {
                    // Replace the value there.
                    0 | 1 => {
                        if let Some(slot) = v.pointer_mut(p) {
                            *slot = new;
                        }
                    }
                    // Remove it from its parent.
                    2 => {
                        if let Some((parent, key)) = p.rsplit_once('/') {
                            match v.pointer_mut(parent) {
                                Some(Value::Object(m)) => {
                                    m.remove(&key.replace("~1", "/").replace("~0", "~"));
                                }
                                Some(Value::Array(a)) => {
                                    if let Ok(k) = key.parse::<usize>() {
                                        if k < a.len() {
                                            a.remove(k);
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    // Add to an array, or a new key to an object.
                    _ => match v.pointer_mut(p) {
                        Some(Value::Array(a)) => a.push(new),
                        Some(Value::Object(m)) => {
                            m.insert("fuzz".into(), new);
                        }
                        _ => {}
                    },
                }
            }
            exercise(&serde_json::to_vec(&v).unwrap());
            Ok(())
        })
        .unwrap();
}

#[test]
fn config_parser_on_raw_bytes() {
    let token = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\"".to_vec()),
        Just(b":".to_vec()),
        Just(b",".to_vec()),
        Just(b"\"ociVersion\"".to_vec()),
        Just(b"\"linux\"".to_vec()),
        Just(b"\"mounts\"".to_vec()),
        Just(b"\"uidMappings\"".to_vec()),
        Just(b"\"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV\"".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"1e999".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just(vec![0xff]),
        Just(vec![0xc3]),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    let mut runner = TestRunner::new(cases(1));
    runner
        .run(&prop::collection::vec(token, 0..64), |toks| {
            exercise(&toks.concat());
            Ok(())
        })
        .unwrap();
    let mut runner = TestRunner::new(cases(2));
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
            exercise(&bytes);
            Ok(())
        })
        .unwrap();
}

#[test]
fn state_parsers() {
    let mut runner = TestRunner::new(cases(2));
    let tmp = nk_tests::TempDir::new("nk-fuzz-state");
    let dir = tmp.path().to_path_buf();
    let store = sandbox::state::Store::open(&dir).unwrap();
    std::fs::create_dir_all(dir.join("c")).unwrap();
    let good = serde_json::to_vec(&sandbox::state::ContainerState {
        id: "c".into(),
        pid: 1,
        ..Default::default()
    })
    .unwrap();
    runner
        .run(
            &(
                prop::collection::vec(any::<u8>(), 0..256),
                0..good.len(),
                any::<bool>(),
            ),
            |(bytes, cut, splice)| {
                // Random bytes, and a real state file cut or spliced.
                let data = if splice {
                    let mut g = good[..cut].to_vec();
                    g.extend_from_slice(&bytes);
                    g
                } else {
                    bytes
                };
                let _ = serde_json::from_slice::<sandbox::state::ContainerState>(&data);
                std::fs::write(dir.join("c/state.json"), &data).unwrap();
                let _ = store.load("c");
                let _ = store.list();
                Ok(())
            },
        )
        .unwrap();
    let mut runner = TestRunner::new(cases(1));
    runner
        .run(&"\\PC{0,64}", |s| {
            // /proc/<pid>/stat text: the command name may hold anything.
            let _ = sandbox::state::parse_stat(&s);
            let _ = sandbox::state::parse_stat(&format!("12 ({s}) S 1 2 3"));
            Ok(())
        })
        .unwrap();
}

#[test]
fn container_ids_never_leave_the_state_root() {
    let id = prop_oneof![
        "\\PC{0,24}",
        "[a-zA-Z0-9_+.\\-/ ]{0,24}",
        Just("..".to_string()),
        Just(".".to_string()),
        Just("a/../..".to_string()),
    ];
    let mut runner = TestRunner::new(cases(1));
    let root = Path::new("/run/nk-fuzz-root");
    runner
        .run(&id, |id| {
            if sandbox::state::validate_id(&id).is_ok() {
                let p = root.join(&id);
                prop_assert_eq!(p.parent(), Some(root), "{:?}", id);
                prop_assert!(id != "." && id != ".." && !id.contains('/') && !id.is_empty());
                prop_assert_eq!(p.components().count(), root.components().count() + 1);
            }
            Ok(())
        })
        .unwrap();
}

/// Path components a hostile image or config would use.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("abs".to_string()),
        Just("up".to_string()),
        Just("loop".to_string()),
        Just("self".to_string()),
        Just("file".to_string()),
        "[a-c]{1,2}",
    ]
}

#[test]
fn paths_resolved_in_a_root_never_leave_it() {
    use sandbox::linux::fs::{clean_rel, mkdir_all_in_root, open_in_root, touch_in_root};
    // root/ is the container's root; outside/ must stay untouched. The root
    // holds the symlinks an image would plant.
    let tmp = nk_tests::TempDir::new("nk-fuzz-fs");
    let top = tmp.path().to_path_buf();
    let (root, outside) = (top.join("root"), top.join("outside"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let ln = |t: &str, l: &str| std::os::unix::fs::symlink(t, root.join(l)).unwrap();
    ln(&outside.display().to_string(), "abs");
    ln("../../../../../..", "up");
    ln("loop", "loop");
    ln("/proc/self/root", "self");
    std::fs::write(root.join("file"), b"").unwrap();
    let rootfd = sandbox::linux::fs::open_dir_path(&root).unwrap();
    let real_root = std::fs::canonicalize(&root).unwrap();
    let mut runner = TestRunner::new(cases(4));
    runner
        .run(
            &(
                prop::collection::vec(component(), 0..6),
                any::<bool>(),
                0u8..3,
            ),
            |(comps, absolute, op)| {
                let mut p = PathBuf::from(if absolute { "/" } else { "" });
                for c in &comps {
                    p.push(c);
                }
                let rel = clean_rel(&p);
                prop_assert!(!rel.has_root());
                if !spec::has_dotdot(&p) {
                    prop_assert!(!spec::has_dotdot(&rel));
                }
                let fd = match op {
                    0 => open_in_root(rootfd.as_fd(), &p, nix::fcntl::OFlag::O_PATH).ok(),
                    1 => mkdir_all_in_root(rootfd.as_fd(), &p).ok(),
                    _ => touch_in_root(rootfd.as_fd(), &p).ok(),
                };
                if let Some(fd) = fd {
                    let at = std::fs::read_link(sandbox::linux::fs::fd_path(fd.as_fd())).unwrap();
                    prop_assert!(at.starts_with(&real_root), "{:?} resolved to {:?}", p, at);
                }
                prop_assert_eq!(
                    std::fs::read_dir(&outside).unwrap().count(),
                    0,
                    "{:?} wrote outside",
                    p
                );
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn cpu_lists_and_mount_options() {
    let mut runner = TestRunner::new(cases(1));
    runner
        .run(&"[0-9,\\- ]{0,40}", |s| {
            if let Some(v) = sandbox::cgroups::parse_cpu_list(&s) {
                prop_assert!(v.len() <= 1 << 16);
            }
            Ok(())
        })
        .unwrap();
    runner
        .run(&prop::collection::vec(nasty_string(), 0..8), |opts| {
            let _ = sandbox::linux::mounts::parse_options(&opts);
            Ok(())
        })
        .unwrap();
}

/// Inputs the fuzz pass found crashing, kept so they stay fixed.
mod regressions {
    /// parse_stat sliced two bytes past the last ')' unchecked: a line
    /// ending at the ')' panicked (index out of bounds), and so did a
    /// multi-byte character right after it. Found by `state_parsers`;
    /// ")ᢀ" is its minimal failing input.
    #[test]
    fn stat_line_ending_at_the_parenthesis() {
        for s in [")\u{1880}", "1 (a)", "1 (a) ", "1 (a)é", ")", "x)\u{80}"] {
            assert!(sandbox::state::parse_stat(s).is_none(), "{s:?}");
        }
    }
}
