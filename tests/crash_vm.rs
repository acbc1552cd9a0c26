//! Crash safety of VM-mode create (tests/crash.rs does container mode): the
//! fault-injection build dies with SIGKILL before each step `create
//! --mode=vm` passes; `delete -f` by the shipped binary must then leave no
//! state directory, cgroup, monitor or QEMU process, and the id must be
//! usable again. Steps before the monitor's "go" cost no boot (the first
//! create builds the VM template, when there is none); the four after the
//! boot (vm.monitor, vm.boot, state.created, pid_file) cost one each, a
//! restore from the template. VM-mode checkpoint and restore (CRIU in the
//! guest) are crashed at their own steps too.

use nk_tests::vm as vm_support;

use nk_tests::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The steps that need the guest booted first: one boot each.
const AFTER_BOOT: &[&str] = &["vm.monitor", "vm.boot", "state.created", "pid_file"];

struct Vm {
    dir: TempDir,
    root: PathBuf,
    bundle: Bundle,
    id: String,
}

impl Vm {
    fn new() -> Vm {
        let dir = TempDir::new("nk-crashvm");
        let root = std::fs::canonicalize(dir.path()).unwrap().join("root");
        std::fs::create_dir(&root).unwrap();
        Vm {
            dir,
            root,
            bundle: Bundle::new(&["sleep", "100000"]),
            id: unique_id("crashvm"),
        }
    }

    /// `create --mode=vm` by the fault build, crashing at `step`; returns
    /// the steps this create passed (from its trace) and whether it died
    /// where asked.
    fn create(&self, step: &str) -> (Vec<String>, bool) {
        let trace = self
            .dir
            .path()
            .join(format!("trace-{}", step.replace('.', "_")));
        std::fs::write(&trace, "").unwrap();
        let pf = self.dir.path().join("pid");
        let err = self.dir.path().join("err");
        let mut c = Command::new(fault_runtime());
        c.arg("--root")
            .arg(&self.root)
            .args(["create", "--mode=vm", "--pid-file"])
            .arg(&pf)
            .args(["--bundle", &self.bundle.path(), &self.id])
            .env("NK_VM_AGENT", vm_support::agent())
            .env("NK_FAULT", format!("{step}:parent"))
            .env("NK_FAULT_TRACE", &trace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap());
        let mut child = c.spawn().unwrap();
        let pid = child.id().to_string();
        let st = child.wait().unwrap();
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        let fired = text
            .lines()
            .any(|l| l == format!("parent {step} fault {pid}"));
        // The create's own steps (the monitor it starts traces too).
        let steps = text
            .lines()
            .filter(|l| l.starts_with("parent ") && l.ends_with(&format!(" {pid}")))
            .filter(|l| !l.contains(" fault "))
            .filter_map(|l| l.split(' ').nth(1).map(String::from))
            .collect();
        (steps, fired && st.code().is_none())
    }

    fn leftovers(&self) -> Leftovers {
        leftovers(&self.root, &self.id, &[self.bundle.dir.path()], "")
    }
}

/// A test that failed midway leaves no VM: the container is force-deleted
/// by the shipped binary (a no-op when the test got to its own `delete -f`),
/// and a monitor or QEMU still running in its state directory after that is
/// killed by pid and start time. A pod member shares the pod's root: only
/// its own id and state directory are touched.
impl Drop for Vm {
    fn drop(&mut self) {
        let state = self.root.join(&self.id);
        if !state.exists() {
            return;
        }
        let procs = procs_with_cwd_under(&state);
        let _ = shipped(&self.root, &["delete", "-f", &self.id]);
        kill_procs(&procs);
    }
}

fn shipped(root: &Path, args: &[&str]) -> (Option<i32>, String) {
    let o = run_to_files(
        Command::new(runtime())
            .arg("--root")
            .arg(root)
            .args(args)
            .env_remove("NK_FAULT"),
    );
    (o.status.code(), stderr(&o))
}

fn pids_of(l: &Leftovers) -> BTreeSet<ProcId> {
    procs_of(l)
}

#[test]
fn vm_create_crashed_at_every_step_leaves_nothing() {
    require_root();
    // The killed create's monitor is orphaned to us: we reap it as an init would.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let vm = Vm::new();
    // The last step first: one boot, and the trace lists every step before it.
    let mut order: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut todo: Vec<String> = vec!["pid_file".into()];
    let mut i = 0;
    while i < todo.len() {
        let step = todo[i].clone();
        i += 1;
        let (steps, fired) = vm.create(&step);
        if order.is_empty() {
            order = steps.clone();
            let mut seen = BTreeSet::new();
            // Each step once; those after the boot last (they boot a guest).
            let mut before: Vec<String> = Vec::new();
            let mut after: Vec<String> = Vec::new();
            for s in &steps {
                if s != "pid_file" && seen.insert(s.clone()) {
                    if AFTER_BOOT.contains(&s.as_str()) {
                        after.push(s.clone());
                    } else {
                        before.push(s.clone());
                    }
                }
            }
            todo.extend(before);
            todo.extend(after);
        }
        if !fired {
            failures.push(format!("{step}: the fault did not fire"));
            continue;
        }
        let before = vm.leftovers();
        let pids = pids_of(&before);
        let (code, err) = shipped(&vm.root, &["delete", "-f", &vm.id]);
        if code != Some(0) {
            failures.push(format!("{step}: delete -f failed: {err}"));
        }
        let gone = proc_gone;
        let _ = std::panic::catch_unwind(|| {
            wait_for("the monitor and QEMU to go", DEADLINE, || {
                pids.iter().for_each(reap_orphan);
                pids.iter().all(gone).then_some(())
            })
        });
        let after = vm.leftovers();
        let alive: Vec<_> = pids.iter().filter(|p| !gone(p)).collect();
        if !after.is_empty() || !alive.is_empty() {
            failures.push(format!("{step}: left {after}; processes {alive:?}"));
        }
        rows.push((step, before, after));
    }
    // Every crash above re-created the same id (each got past state.claim
    // of the one before); once more after the last, through the claim.
    let (_, fired) = vm.create("cgroup.create");
    assert!(fired, "the id could not be claimed again");
    let (code, err) = shipped(&vm.root, &["delete", "-f", &vm.id]);
    assert_eq!(code, Some(0), "{err}");
    println!("\nVM create: crash at step -> left before delete -f -> left after\n");
    println!("| step | left before delete -f | left after |\n|---|---|---|");
    for (step, before, after) in &rows {
        println!("| {step} | {} | {} |", before.summary(), after.summary());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for s in ["vm.image", "vm.accel", "vm.monitor"] {
        assert!(
            rows.iter().any(|(k, _, _)| k == s),
            "{s} was not crashed at: {order:?}"
        );
    }
    assert!(vm.leftovers().is_empty(), "{}", vm.leftovers());
}

impl Vm {
    /// A command of the fault build, crashing at `step` (in the parent),
    /// or of the shipped build when `step` is None; returns whether it
    /// died where asked (always true for the shipped build when it
    /// succeeded) and its stderr.
    fn verb(&self, step: Option<&str>, args: &[&str]) -> (bool, String) {
        let trace = self.dir.path().join("trace-verb");
        std::fs::write(&trace, "").unwrap();
        let mut c = Command::new(if step.is_some() {
            fault_runtime()
        } else {
            runtime()
        });
        c.arg("--root")
            .arg(&self.root)
            .args(args)
            .env("NK_VM_AGENT", vm_support::agent())
            .env("NK_FAULT_TRACE", &trace)
            .env_remove("NK_FAULT")
            .stdin(Stdio::null());
        if let Some(s) = step {
            c.env("NK_FAULT", format!("{s}:parent"));
        }
        // Stdout and stderr to files: a detached monitor keeps them open.
        let o = run_to_files(&mut c);
        let text = std::fs::read_to_string(&trace).unwrap_or_default();
        let ok = match step {
            Some(s) => {
                o.status.code().is_none()
                    && text
                        .lines()
                        .any(|l| l.starts_with(&format!("parent {s} fault ")))
            }
            None => o.status.success(),
        };
        (ok, stderr(&o))
    }

    /// `delete -f` by the shipped build, then nothing of the container may
    /// be left (its monitor and QEMU reaped as an init would).
    fn delete_leaves_nothing(&self, what: &str) -> Result<(), String> {
        let pids = pids_of(&self.leftovers());
        let (code, err) = shipped(&self.root, &["delete", "-f", &self.id]);
        if code != Some(0) {
            return Err(format!("{what}: delete -f failed: {err}"));
        }
        let gone = proc_gone;
        let _ = std::panic::catch_unwind(|| {
            wait_for("the monitor and QEMU to go", DEADLINE, || {
                pids.iter().for_each(reap_orphan);
                pids.iter().all(gone).then_some(())
            })
        });
        let after = self.leftovers();
        if after.is_empty() {
            Ok(())
        } else {
            Err(format!("{what}: left {after}"))
        }
    }
}

/// VM-mode checkpoint and restore (CRIU in the guest) crashed before each
/// of their own steps: vm.criu_kit and vm.checkpoint of `checkpoint`,
/// vm.restore of `restore`. `delete -f` then leaves nothing. Three boots
/// (from the template) and one full checkpoint. Needs criu on the host
/// (the kit is made from it; test-deps installs it).
#[test]
fn vm_checkpoint_and_restore_crashed_at_their_steps_leave_nothing() {
    require_root();
    if let Err(e) = sandbox::criu::find(None) {
        eprintln!("no criu on this host ({e}): vm.criu_kit, vm.checkpoint and vm.restore not crashed at (tests/vm_checkpoint.rs checks the error)");
        return;
    }
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let vm = Vm::new();
    let b = vm.bundle.path();
    let img = |n: &str| vm.dir.path().join(n).display().to_string();
    let run = [
        "run",
        "-d",
        "--mode=vm",
        "--bundle",
        b.as_str(),
        vm.id.as_str(),
    ];
    let mut failures = Vec::new();
    for step in ["vm.criu_kit", "vm.checkpoint"] {
        let (ok, err) = vm.verb(None, &run);
        assert!(ok, "run -d: {err}");
        let i = img(&format!("img-{step}"));
        let (fired, err) = vm.verb(Some(step), &["checkpoint", "--image-path", &i, &vm.id]);
        if !fired {
            failures.push(format!(
                "checkpoint at {step}: the fault did not fire: {err}"
            ));
        }
        if let Err(e) = vm.delete_leaves_nothing(&format!("checkpoint crashed at {step}")) {
            failures.push(e);
        }
    }
    let (ok, err) = vm.verb(None, &run);
    assert!(ok, "run -d: {err}");
    let i = img("img-restore");
    let (ok, err) = vm.verb(None, &["checkpoint", "--image-path", &i, &vm.id]);
    assert!(ok, "checkpoint: {err}");
    let restore = ["restore", "-d", "--image-path", &i, "--bundle", &b, &vm.id];
    let (fired, err) = vm.verb(Some("vm.restore"), &restore);
    if !fired {
        failures.push(format!(
            "restore at vm.restore: the fault did not fire: {err}"
        ));
    }
    if let Err(e) = vm.delete_leaves_nothing("restore crashed at vm.restore") {
        failures.push(e);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The monitor killed with SIGKILL while its container runs, the share
/// over virtio-fs: QEMU, virtiofsd and virtiofsd's sandboxed server all die
/// with it (PR_SET_PDEATHSIG, each on its parent), and `delete -f` then
/// leaves nothing. One boot.
#[test]
fn vm_monitor_killed_takes_virtiofsd_along() {
    require_root();
    if !vm_support::virtiofs_here() {
        eprintln!("virtiofsd or the guest's virtiofs module is missing: not exercised (tests/vm_share.rs checks the fallback)");
        return;
    }
    // The orphans come to us: we reap them as an init would.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut vm = Vm::new();
    // virtio-fs must be asked for: a VM started from a template uses 9p.
    vm.bundle
        .edit(|c| c["annotations"] = serde_json::json!({ ::vm::virtiofs::ANNOTATION: "virtiofs" }));
    let o = run_to_files(
        Command::new(runtime())
            .arg("--root")
            .arg(&vm.root)
            .args(["create", "--mode=vm", "--bundle", &vm.bundle.path(), &vm.id])
            .env("NK_VM_AGENT", vm_support::agent())
            .stdin(Stdio::null()),
    );
    assert_eq!(o.status.code(), Some(0), "create: {}", stderr(&o));
    let state = vm.root.join(&vm.id);
    let o = run_to_files(
        Command::new(runtime())
            .arg("--root")
            .arg(&vm.root)
            .args(["state", &vm.id]),
    );
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let monitor = st["pid"].as_i64().unwrap() as i32;
    let fsd = vm_support::virtiofsd_pids(&state);
    assert_eq!(fsd.len(), 2, "virtiofsd and its server: {fsd:?}");
    let pids: BTreeSet<ProcId> = vm_support::procs_in(&state)
        .into_iter()
        .chain(fsd.iter().copied())
        .chain([monitor])
        .filter_map(proc_id)
        .collect();
    // SAFETY: kill(2) the monitor this test's create started.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    let gone = proc_gone;
    wait_for("QEMU and virtiofsd to follow the monitor", DEADLINE, || {
        pids.iter().for_each(reap_orphan);
        pids.iter().all(gone).then_some(())
    });
    let (code, err) = shipped(&vm.root, &["delete", "-f", &vm.id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(vm.leftovers().is_empty(), "{}", vm.leftovers());
}

/// A pod member's create (a container that joins a running VM-mode
/// container's IPC namespace, so it runs in that VM) crashed before each of
/// its steps from vm.pod on: `delete -f` by the shipped binary removes the
/// member, its mounts leave the pod's share, and the pod's VM runs on
/// untouched. One boot, the pod's.
#[test]
fn pod_member_create_crashed_at_every_step_leaves_the_pod_running() {
    require_root();
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let pod = Vm::new();
    let mut c = Command::new(runtime());
    c.arg("--root")
        .arg(&pod.root)
        .args([
            "run",
            "-d",
            "--mode=vm",
            "--bundle",
            &pod.bundle.path(),
            &pod.id,
        ])
        .env("NK_VM_AGENT", vm_support::agent());
    let o = run_to_files(&mut c);
    assert!(o.status.success(), "the pod's container: {}", stderr(&o));
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pod.root.join(&pod.id).join("state.json")).unwrap())
            .unwrap();
    let pod_pid = st["pid"].as_i64().unwrap();
    let mut bundle = Bundle::new(&["sleep", "100000"]);
    bundle.edit(|c| {
        for n in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if n["type"] == "ipc" {
                n["path"] = format!("/proc/{pod_pid}/ns/ipc").into();
            }
        }
    });
    let member = Vm {
        dir: TempDir::new("nk-crashvm-member"),
        root: pod.root.clone(),
        bundle,
        id: unique_id("crashvm-member"),
    };
    // What the running pod holds: every crash must leave exactly this.
    // (Seen as the member's: its id, its bundle, the shared root.)
    let baseline = leftovers(&pod.root, &member.id, &[member.bundle.dir.path()], "");
    let share_mounts = || {
        std::fs::read_to_string(format!("/proc/{pod_pid}/mountinfo"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/share/pod/"))
            .count()
    };
    let mut failures = Vec::new();
    let mut settle = |step: &str, fired: bool| {
        if !fired {
            failures.push(format!("{step}: the fault did not fire"));
            return;
        }
        let (code, err) = shipped(&pod.root, &["delete", "-f", &member.id]);
        if code != Some(0) {
            failures.push(format!("{step}: delete -f failed: {err}"));
        }
        let left = || leftovers(&pod.root, &member.id, &[member.bundle.dir.path()], "");
        let settled = std::panic::catch_unwind(|| {
            wait_for("only the pod to be left", DEADLINE, || {
                // The member's orphans only: waitpid(-1) would also reap
                // another test thread's children from under it.
                pids_of(&left()).iter().for_each(reap_orphan);
                (left().0 == baseline.0 && share_mounts() == 0).then_some(())
            })
        });
        if settled.is_err() {
            failures.push(format!(
                "{step}: left {:?} beside the pod's {:?}; {} mounts in the pod's share",
                left().0,
                baseline.0,
                share_mounts()
            ));
        }
    };
    // The last step first: its trace lists every step before it.
    let (steps, fired) = member.create("pid_file");
    settle("pid_file", fired);
    let mut todo: Vec<String> = Vec::new();
    for s in steps.iter().skip_while(|s| *s != "vm.pod") {
        if s != "pid_file" && !todo.contains(s) {
            todo.push(s.clone());
        }
    }
    assert!(todo.iter().any(|s| s == "vm.pod"), "no vm.pod in {steps:?}");
    for step in &todo {
        let fired = member.create(step).1;
        settle(step, fired);
    }
    let (code, out) = {
        let o = run_to_files(
            Command::new(runtime())
                .arg("--root")
                .arg(&pod.root)
                .args(["state", &pod.id]),
        );
        (o.status.code(), stdout(&o))
    };
    assert_eq!(code, Some(0), "state of the pod");
    assert!(out.contains("\"running\""), "the pod's container: {out}");
    let (code, err) = shipped(&pod.root, &["delete", "-f", &pod.id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
