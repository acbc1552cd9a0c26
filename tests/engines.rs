//! Engines end to end: Podman, containerd (ctr + the runc v2 shim) and Docker
//! each drive nk-runtime and, as the reference, runc, through the same
//! checks (tests/engines/<engine>.sh). Every engine is installed from apt if
//! missing and started privately by its script.
//!
//! A check passes only if it passes with both runtimes: one that fails with
//! nk-runtime alone is a runtime bug, one that fails with runc is a bad
//! check (after a second run with runc: the reference's own flakiness under
//! load is not under test; nk-runtime's failures are never retried). The
//! per-engine pass counts of both runtimes are printed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// One engine at a time: the checks include timeouts (stop -t 1), and two
/// engines starting daemons on two cores at once make those flaky.
static SERIAL: Mutex<()> = Mutex::new(());

const RUNC: &str = "/usr/sbin/runc";

/// The outcome of one script run: check name -> failure text (None = pass).
struct Run {
    checks: BTreeMap<String, Option<String>>,
    status: Option<i32>,
    output: String,
}

impl Run {
    fn passed(&self) -> usize {
        self.checks.values().filter(|v| v.is_none()).count()
    }
}

fn run_script(engine: &str, runtime: &PathBuf) -> Run {
    let script = nk_tests::workspace()
        .join("tests/engines")
        .join(format!("{engine}.sh"));
    let out = Command::new("bash")
        .arg(&script)
        .arg(runtime)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut checks = BTreeMap::new();
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("PASS ") {
            checks.insert(name.to_string(), None);
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
            checks.insert(name.to_string(), Some(why.to_string()));
        }
    }
    Run {
        checks,
        status: out.status.code(),
        output,
    }
}

fn engine(engine: &str) {
    nk_tests::require_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        std::path::Path::new(RUNC).exists(),
        "{RUNC} is missing: scripts/test-deps.sh installs runc, the reference runtime"
    );
    let nk = nk_tests::runtime();
    let with_nk = run_script(engine, &nk);
    let mut with_runc = run_script(engine, &PathBuf::from(RUNC));
    // The reference is not what is under test: a check that fails with
    // runc alone is run again (with runc) before it is called a bad check.
    // Engines have races of their own that a loaded machine brings out
    // (containerd's ctr loses the output of a process that exits at once,
    // with runc as with any runtime). A failure with nk-runtime is never
    // run again.
    let runc_only = |r: &Run| {
        r.checks
            .iter()
            .any(|(n, v)| v.is_some() && with_nk.checks.get(n).is_some_and(|x| x.is_none()))
    };
    if runc_only(&with_runc) {
        let again = run_script(engine, &PathBuf::from(RUNC));
        for (name, v) in with_runc.checks.iter_mut() {
            if v.is_some() && again.checks.get(name).is_some_and(|x| x.is_none()) {
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!(
                        "engines: {engine}: {name} failed with runc once, passed when run again\n"
                    )
                    .as_bytes(),
                );
                *v = None;
            }
        }
    }
    // Straight to stderr: the test harness captures eprintln! of passing tests.
    let line = format!(
        "engines: {engine:<10} nk-runtime {}/{} passed   runc {}/{} passed\n",
        with_nk.passed(),
        with_nk.checks.len(),
        with_runc.passed(),
        with_runc.checks.len()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    // How many of the cgroups each run made it removed (lib.sh, cgroup_tidy).
    for (what, run) in [("nk-runtime", &with_nk), ("runc", &with_runc)] {
        if let Some(l) = run.output.lines().find(|l| l.starts_with("# cgroups ")) {
            let text = format!("engines: {engine} with {what}: {}\n", &l[2..]);
            let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
        }
    }

    let mut problems = Vec::new();
    for (what, run) in [("nk-runtime", &with_nk), ("runc", &with_runc)] {
        if run.checks.is_empty() || run.status == Some(2) {
            problems.push(format!(
                "{engine} with {what} did not run its checks (status {:?}):\n{}",
                run.status, run.output
            ));
        }
    }
    let names: std::collections::BTreeSet<&String> = with_nk
        .checks
        .keys()
        .chain(with_runc.checks.keys())
        .collect();
    for name in names {
        let nk = with_nk.checks.get(name);
        let rc = with_runc.checks.get(name);
        match (nk, rc) {
            (Some(None), Some(None)) => {}
            (Some(Some(why)), Some(None)) => {
                problems.push(format!("nk-runtime fails where runc passes: {name}: {why}"))
            }
            (Some(Some(why)), Some(Some(_))) => {
                problems.push(format!("bad check (fails with runc too): {name}: {why}"))
            }
            (Some(None), Some(Some(why))) => {
                problems.push(format!("bad check (fails with runc only): {name}: {why}"))
            }
            (None, _) | (_, None) => problems.push(format!(
                "check {name:?} ran with only one runtime (the script stopped early?)"
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "{engine}:\n  {}\n--- output with nk-runtime ---\n{}",
        problems.join("\n  "),
        with_nk.output
    );
}

#[test]
fn podman() {
    engine("podman");
}

#[test]
fn containerd() {
    engine("containerd");
}

#[test]
fn docker() {
    engine("docker");
}
