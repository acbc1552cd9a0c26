//! VM mode's template snapshots (crates/vm/src/template.rs), with real
//! QEMU guests: a run restored from the template gives the container's
//! output and exit code; two restored VMs draw different random numbers
//! and read the host's clock (the agent reseeds and sets it), although
//! both resume the same saved guest; a change of the template's key (the
//! memory size) builds another; `--vm-boot=cold` still boots the kernel; a
//! template whose state QEMU cannot load falls back to a cold boot, says
//! so, and is removed; nothing is left after delete; building an
//! initramfs or template prunes the cache's old, unused ones of its kind. Each test has a cache
//! of its own (the default cache's kernel copied in), so its templates are
//! built here and removed with it. Boots are few: each costs seconds under
//! TCG.

use nk_tests::vm as vm_support;

use nk_tests::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vm_support::assert_clean;

/// Prints what a restored VM must not share with its siblings, and exits 7.
const PROBE: &str = "echo out; cat /proc/sys/kernel/random/uuid; \
                     head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; \
                     date +%s; exit 7";

/// A VM cache of the test's own: the default cache's kernel and
/// accelerator record copied in (no extraction, no KVM probe), the
/// initramfs and templates made here.
fn private_cache() -> TempDir {
    let st = vm_support::cmd(&Root::new())
        .args(["vm-image", "build"])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "vm-image build");
    let from = ::vm::cache::cache_dir();
    let to = TempDir::new("nk-vmcache");
    for e in std::fs::read_dir(&from).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("kernel-") || n == "accel.json" {
            let st = Command::new("cp")
                .arg("-a")
                .arg(e.path())
                .arg(to.path())
                .status()
                .unwrap();
            assert!(st.success(), "cp -a {}", e.path().display());
        }
    }
    to
}

fn nk(root: &Root, cache: &Path) -> Command {
    let mut c = vm_support::cmd(root);
    c.env("NK_VM_CACHE", cache);
    c
}

/// The template directories in a cache.
fn templates(cache: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("template-"))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// What a build or discard may leave in the cache besides templates.
fn leftovers(cache: &Path) -> Vec<String> {
    std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.starts_with(".trash-"))
        .collect()
}

/// `-E run --mode=vm` of the probe: (output, narration with its lines joined).
fn run(root: &Root, cache: &Path, b: &Bundle, extra: &[&str]) -> (Output, String) {
    let id = unique_id("vmtpl");
    let mut c = nk(root, cache);
    c.args(["-E", "run", "--mode=vm"])
        .args(extra)
        .args(["--bundle", &b.path(), &id]);
    let o = run_to_files(&mut c);
    let narration = stderr(&o).split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        o.status.code(),
        Some(7),
        "the probe's exit code; stdout {:?}; stderr {narration}",
        stdout(&o)
    );
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines.first().map(String::as_str), Some("out"), "{lines:?}");
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_clean(root);
    (o, narration)
}

/// Whether the narration says `phrase` (-E wraps long lines, even inside
/// a path: compared without whitespace).
fn said(narration: &str, phrase: &str) -> bool {
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    squeeze(narration).contains(&squeeze(phrase))
}

/// No process maps (or runs in) anything under `dir`.
fn unused(dir: &Path) -> bool {
    let d = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
        if e.file_name().to_string_lossy().parse::<i32>().is_err() {
            return true;
        }
        let maps = std::fs::read_to_string(e.path().join("maps")).unwrap_or_default();
        let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
        !maps.contains(&d) && !cwd.starts_with(dir)
    })
}

#[test]
fn restored_vms_run_right_differ_in_secrets_and_follow_their_key() {
    require_root();
    let root = Root::new();
    let cache = private_cache();
    let b = Bundle::new(&["sh", "-c", PROBE]);
    // What older builds left: unused for two days (removed when the new
    // initramfs and template are built), and an initramfs used an hour
    // ago (kept: a binary of that build still runs).
    let plant = |name: &str, dir: bool, ago: &str| {
        let p = cache.path().join(name);
        if dir {
            std::fs::create_dir_all(p.join("empty")).unwrap();
        } else {
            std::fs::write(&p, b"old").unwrap();
        }
        let st = Command::new("touch")
            .args(["-d", ago])
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success(), "touch {}", p.display());
        p
    };
    let stale = [
        plant(
            "initramfs-6.1.0-0-old-0000000000000000.cpio",
            false,
            "2 days ago",
        ),
        plant("template-6.1.0-0-old-0000000000000000", true, "2 days ago"),
    ];
    let recent = plant(
        "initramfs-6.1.0-0-old-1111111111111111.cpio",
        false,
        "1 hour ago",
    );

    // First run: the template is built (one boot) and this VM restored from it.
    let (o1, n1) = run(&root, cache.path(), &b, &[]);
    assert!(
        said(&n1, "built now: its guest booted to the agent in"),
        "no narration of the template's build: {n1}"
    );
    assert!(
        said(&n1, "> restored from the template"),
        "the first VM was not restored: {n1}"
    );
    let built = templates(cache.path());
    assert_eq!(built.len(), 1, "{built:?}");
    for p in &stale {
        assert!(!p.exists(), "{} was not pruned", p.display());
    }
    assert!(recent.exists(), "{} was pruned", recent.display());

    // A cold boot still works when asked for; it also makes the template
    // older than a boot, so a restored clock that was not set would lag.
    let (_, n2) = run(&root, cache.path(), &b, &["--vm-boot=cold"]);
    assert!(said(&n2, "> cold boot: asked for (--vm-boot=cold)"), "{n2}");
    assert!(said(&n2, "the agent was ready after"), "{n2}");

    // Second restore of the same template.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (o3, n3) = run(&root, cache.path(), &b, &[]);
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        said(
            &n3,
            &format!("> restore from {} (the default)", built[0].display())
        ),
        "the cached template was not used: {n3}"
    );
    assert!(said(&n3, "> restored from the template"), "{n3}");
    let (l1, l3) = (stdout(&o1), stdout(&o3));
    let (l1, l3): (Vec<&str>, Vec<&str>) = (l1.lines().collect(), l3.lines().collect());
    eprintln!("first restore: {l1:?}; second: {l3:?}; host clock {before}..{after}");
    // Without the agent's reseed these could still differ: 6.1's CRNG
    // reseeds from interrupt timing soon after a young guest's boot (the
    // clock check below is what fails without `wake`); they must differ.
    assert_ne!(l1[1], l3[1], "two restored VMs made the same uuid");
    assert_ne!(
        l1[2], l3[2],
        "two restored VMs read the same /dev/urandom bytes"
    );
    assert_eq!(l3[2].len(), 32, "{l3:?}");
    let guest: u64 = l3[3].parse().expect("date +%s");
    assert!(
        guest + 1 >= before && guest <= after + 1,
        "the restored guest's clock reads {guest}, the host's was {before}..{after}"
    );

    // Another memory size is another template, built on first use.
    let (_, n4) = run(&root, cache.path(), &b, &["--vm-memory=320"]);
    assert!(said(&n4, "built now"), "no new template for 320 MiB: {n4}");
    let now = templates(cache.path());
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(
        now.contains(&built[0]),
        "the 256 MiB template went: {now:?}"
    );

    // A detached container in a restored VM: its QEMU maps the template's
    // memory copy-on-write; after delete nothing runs, maps or is left.
    let id = unique_id("vmtpl-d");
    let mut sleeper = Bundle::new(&["sleep", "1000"]);
    sleeper.edit(|c| c["process"]["terminal"] = json!(false));
    let o = run_to_files(nk(&root, cache.path()).args([
        "run",
        "-d",
        "--mode=vm",
        "--bundle",
        &sleeper.path(),
        &id,
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let record = root.dir.path().join(&id).join("state.json");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let qemu = record["extra"]["qemu_pid"].as_i64().unwrap_or(0);
    assert!(qemu > 0, "{record}");
    let cmdline = std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains(&format!("mem-path={}/memory,share=off", built[0].display()))
            && cmdline.contains("-incoming defer"),
        "{cmdline}"
    );
    let o = root.run(&["delete", "--force", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean(&root);
    wait_for("nothing to map the templates", DEADLINE, || {
        unused(cache.path()).then_some(())
    });
    assert!(
        leftovers(cache.path()).is_empty(),
        "{:?}",
        leftovers(cache.path())
    );
}

#[test]
fn a_template_qemu_cannot_load_falls_back_to_a_cold_boot_and_is_removed() {
    require_root();
    let root = Root::new();
    let cache = private_cache();
    let b = Bundle::new(&["sh", "-c", PROBE]);
    let (_, n1) = run(&root, cache.path(), &b, &[]);
    assert!(said(&n1, "> restored from the template"), "{n1}");
    let t = templates(cache.path()).pop().expect("a template");

    // Cut the device state in half and rewrite the record to match, so
    // that the files look whole and QEMU itself refuses the state.
    let state = t.join("state");
    let data = std::fs::read(&state).unwrap();
    let half = &data[..data.len() / 2];
    let meta_path = t.join("template.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    let sum = {
        let o = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(half)?;
                c.wait_with_output()
            })
            .unwrap();
        stdout(&o).split_whitespace().next().unwrap().to_string()
    };
    meta["state_len"] = json!(half.len());
    meta["state_sha256"] = json!(sum);
    std::fs::write(&state, half).unwrap();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();

    let (_, n2) = run(&root, cache.path(), &b, &[]);
    assert!(
        said(
            &n2,
            &format!(
                "> cold boot: the restore from the template {} failed (",
                t.display()
            )
        ) && said(&n2, "the template was removed"),
        "no narration of the fallback: {n2}"
    );
    assert!(!t.exists(), "the broken template is still there");
    assert!(
        leftovers(cache.path()).is_empty(),
        "{:?}",
        leftovers(cache.path())
    );
    wait_for("nothing to map the template", DEADLINE, || {
        unused(cache.path()).then_some(())
    });
}

/// Asking for a boot that does not exist is refused by name before
/// anything is made (flag and annotation). No boot.
#[test]
fn an_unknown_boot_is_refused() {
    require_root();
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    let o = run_to_files(vm_support::cmd(&root).args([
        "run",
        "--mode=vm",
        "--vm-boot=warm",
        "--bundle",
        &b.path(),
        &unique_id("vmtpl"),
    ]));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("--vm-boot") && e.contains("warm") && e.contains("use template"),
        "{e}"
    );
    b.edit(|c| c["annotations"] = json!({ ::vm::template::ANNOTATION: "warm" }));
    let o = run_to_files(vm_support::cmd(&root).args([
        "run",
        "--mode=vm",
        "--bundle",
        &b.path(),
        &unique_id("vmtpl"),
    ]));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&format!("annotation {}", ::vm::template::ANNOTATION))
            && e.contains("warm")
            && e.contains("use template"),
        "{e}"
    );
    assert_clean(&root);
}
