//! `nk-runtime check`, the host doctor: its findings are compared with the
//! host read independently here, and its verdict ("the default bundle can
//! run") with what really happens when that bundle is run, on this host and
//! in a mount namespace where every cgroup hierarchy has been unmounted.

use nk_tests::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn check_json(c: &mut Command) -> (i32, Value) {
    let o = run_to_files(c);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check --json: {e}: {}{}", stdout(&o), stderr(&o)));
    (o.status.code().unwrap_or(-1), v)
}

fn find<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {v}"))
}

fn mountinfo_fstypes() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            Some((f[4].to_string(), f[dash + 1].to_string()))
        })
        .collect()
}

#[test]
fn findings_match_the_host() {
    require_root();
    let (code, v) = check_json(Command::new(runtime()).args(["check", "--json"]));
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.len() >= 15, "{v}");
    for c in checks {
        let st = c["status"].as_str().unwrap();
        assert!(["ok", "warn", "missing", "info"].contains(&st), "{c}");
        assert!(!c["detail"].as_str().unwrap().is_empty(), "{c}");
        if st == "warn" || st == "missing" {
            assert!(
                c["fix"].as_str().is_some_and(|f| !f.is_empty()),
                "no fix: {c}"
            );
        }
    }
    let runs = v["default_bundle_runs"].as_bool().unwrap();
    assert_eq!(code, if runs { 0 } else { 1 });
    let required_missing = checks
        .iter()
        .any(|c| c["required"] == true && c["status"] == "missing");
    assert_eq!(runs, !required_missing);

    // cgroups: the kind from mountinfo.
    let m = mountinfo_fstypes();
    let v1 = m.iter().filter(|(_, t)| t == "cgroup").count();
    let v2 = m.iter().filter(|(_, t)| t == "cgroup2").count();
    let want = match (v1 > 0, v2 > 0) {
        (true, true) => "hybrid",
        (true, false) => "legacy",
        (false, true) => "unified",
        (false, false) => "none",
    };
    let cg = find(&v, "cgroups");
    assert!(cg["detail"].as_str().unwrap().starts_with(want), "{cg}");
    assert_eq!(cg["required"], true, "root needs a cgroup");

    // user namespaces: the same limit.
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap();
    let u = find(&v, "user namespaces");
    assert!(
        u["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("max_user_namespaces={}", max.trim())),
        "{u}"
    );

    // seccomp: the libseccomp version --version reports.
    let ver = Command::new(runtime()).arg("--version").output().unwrap();
    let lib = String::from_utf8_lossy(&ver.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("libseccomp: ").map(String::from))
        .unwrap();
    assert!(find(&v, "seccomp")["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("libseccomp {lib}")));

    // capabilities: what the bounding set lacks is named.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bnd = u64::from_str_radix(
        status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .unwrap()
            .trim(),
        16,
    )
    .unwrap();
    let caps = find(&v, "capabilities");
    let sys_resource = 1u64 << 24;
    assert_eq!(
        caps["detail"]
            .as_str()
            .unwrap()
            .contains("CAP_SYS_RESOURCE"),
        bnd & sys_resource == 0,
        "{caps}"
    );

    // VM mode: qemu, the guest kernel, and KVM or TCG.
    let qemu = [
        "/usr/bin/qemu-system-x86_64",
        "/usr/local/bin/qemu-system-x86_64",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    assert_eq!(find(&v, "qemu")["status"] == "ok", qemu);
    let gk = find(&v, "guest kernel");
    if gk["status"] != "missing" {
        let d = gk["detail"].as_str().unwrap();
        let path = d.split_whitespace().next().unwrap().trim_end_matches(',');
        assert!(Path::new(path).exists(), "{gk}");
    }
    let kvm = find(&v, "KVM");
    if Path::new("/sys/module/kvm_pvm").exists() {
        assert_eq!(kvm["status"], "warn", "{kvm}");
        assert!(kvm["detail"].as_str().unwrap().contains("kvm_pvm"));
        assert!(kvm["detail"].as_str().unwrap().contains("TCG"));
    }
    if !Path::new("/dev/kvm").exists() {
        assert_eq!(kvm["status"], "warn");
    }

    // The verdict is true: the default bundle does run here.
    if runs {
        let root = Root::new();
        let b = Bundle::new(&["true"]);
        root.ok(&["run", "--bundle", &b.path(), &unique_id("check-run")]);
    }
}

#[test]
fn table_fits_80_columns_and_agrees_with_json() {
    require_root();
    let o = run_to_files(Command::new(runtime()).arg("check"));
    let text = stdout(&o);
    for l in text.lines() {
        assert!(l.chars().count() <= 80, "{l}");
    }
    let (code, v) = check_json(Command::new(runtime()).args(["check", "--json"]));
    assert_eq!(o.status.code(), Some(code));
    for c in v["checks"].as_array().unwrap() {
        assert!(text.contains(c["name"].as_str().unwrap()), "{c}");
    }
    assert!(text.contains("default bundle"), "{text}");
}

/// `check` says which filesystem VM mode will share the bundle over, and
/// why, as `create --mode vm` decides it: virtio-fs where virtiofsd is
/// installed and the guest kernel has the virtiofs module, otherwise 9p
/// with the reason (here forced by naming a virtiofsd that does not exist).
#[test]
fn vm_share_names_the_filesystem_and_why() {
    require_root();
    let (_, v) = check_json(
        Command::new(runtime())
            .args(["check", "--json"])
            .env("NK_VIRTIOFSD", "/nonexistent/virtiofsd"),
    );
    let s = find(&v, "vm share");
    assert_eq!(s["status"], "warn", "{s}");
    assert_eq!(
        s["detail"],
        "9p: /nonexistent/virtiofsd is not installed: 9p instead (for cold boots; a VM started from a template carries its share over 9p)",
        "{s}"
    );
    assert!(s["fix"].as_str().unwrap().contains("virtiofsd"), "{s}");

    let (_, v) = check_json(
        Command::new(runtime())
            .args(["check", "--json"])
            .env_remove("NK_VIRTIOFSD"),
    );
    let s = find(&v, "vm share");
    let d = s["detail"].as_str().unwrap();
    // Read independently: the daemon Debian's QEMU ships, and the module
    // of the guest kernel `check` found.
    let daemon = std::fs::metadata("/usr/lib/qemu/virtiofsd").is_ok_and(|m| m.is_file());
    let gk = find(&v, "guest kernel")["detail"]
        .as_str()
        .unwrap()
        .to_string();
    let module = gk
        .split_whitespace()
        .next()
        .and_then(|p| p.rsplit_once("vmlinuz-"))
        .is_some_and(|(_, ver)| {
            std::fs::read_dir(format!("/lib/modules/{ver}/kernel/fs/fuse"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("virtiofs.ko"))
        });
    if daemon && module {
        assert_eq!(s["status"], "ok", "{s}");
        assert!(d.starts_with("virtio-fs: /usr/lib/qemu/virtiofsd"), "{s}");
    } else {
        eprintln!("virtio-fs is not available here ({gk}): only the 9p answer is checked");
        assert_eq!(s["status"], "warn", "{s}");
        assert!(d.starts_with("9p: "), "{s}");
    }
}

/// In a private mount namespace with every cgroup hierarchy unmounted, check
/// must say the default bundle cannot run, and running it must indeed fail.
#[test]
fn without_cgroups_it_fails_and_so_does_the_bundle() {
    require_root();
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let rt = runtime();
    let script = format!(
        "set -e
         for m in $(awk '{{ for (i = 7; i <= NF; i++) if ($i == \"-\") {{ if ($(i+1) ~ /^cgroup2?$/) print $5; break }} }}' /proc/self/mountinfo | sort -r); do
           umount -l \"$m\"
         done
         set +e
         {rt} check --json > {dir}/check.json; echo $? > {dir}/check.rc
         {rt} --root {root} run --bundle {bundle} no-cgroups > {dir}/run.out 2>&1; echo $? > {dir}/run.rc",
        rt = rt.display(),
        dir = root.dir.path().display(),
        root = root.dir.path().join("state").display(),
        bundle = b.path(),
    );
    let st = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .status()
        .unwrap();
    assert!(st.success());
    let rd = |f: &str| std::fs::read_to_string(root.dir.path().join(f)).unwrap();
    assert_eq!(rd("check.rc").trim(), "1");
    let v: Value = serde_json::from_str(&rd("check.json")).unwrap();
    assert_eq!(v["default_bundle_runs"], false);
    let cg = find(&v, "cgroups");
    assert_eq!(cg["status"], "missing", "{cg}");
    assert!(cg["fix"].as_str().unwrap().contains("mount"));
    assert_ne!(
        rd("run.rc").trim(),
        "0",
        "the bundle ran: {}",
        rd("run.out")
    );
    assert!(rd("run.out").contains("cgroup"), "{}", rd("run.out"));
}
