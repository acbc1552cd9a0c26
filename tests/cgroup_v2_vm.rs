//! cgroup v2 tested for real: this host is hybrid (cgroup2 holds only
//! hugetlb), so the test boots a QEMU guest (Debian's kernel, every v2
//! controller), runs the static nk-runtime inside it on a bundle with
//! v2-relevant linux.resources, and checks what the v2 manager wrote, from
//! the cgroup files and from inside the container, plus enforcement (an OOM
//! kill, the pids limit), update, events, pause/resume via cgroup.freeze and
//! delete. One boot per test.

use nk_tests::vm as vm_support;

use nk_tests::*;
use std::time::Duration;
use vm_support::*;

const GUEST_SCRIPT: &str = r#"
S=/run/nk/share
export PATH=$S/bundle/rootfs/bin
RT="$S/nk-runtime --root /run/nk/t"
ID=v2c
CG=/sys/fs/cgroup/nk-test/v2c
FILES="memory.max memory.swap.max memory.low io.weight cpu.weight cpu.max cpuset.cpus cpuset.mems pids.max"
cd $S/bundle
echo "check=$($S/nk-runtime check --json)"
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
$RT create $ID </dev/null >/dev/null 2>/run/nk/create.err
echo "create=$?"
echo "create_err=$(tr '\n' ' ' </run/nk/create.err)"
$RT start $ID
echo "start=$?"
echo "status=$($RT state $ID | grep '"status"' | tr -d ' ",' | cut -d: -f2)"
for f in $FILES; do echo "host.$f=$(cat $CG/$f 2>&1)"; done
$RT exec $ID sh -c 'for f in '"$FILES"'; do echo "in.$f=$(cat /sys/fs/cgroup/$f 2>&1)"; done; echo "in.cgroup=$(cat /proc/self/cgroup)"'
echo "exec=$?"
# Enforcement: more processes than pids.max, and more memory than memory.max.
$RT exec $ID sh -c 'for i in $(seq 1 40); do sleep 1 & done; wait' >/dev/null 2>&1
echo "host.pids_events=$(grep max $CG/pids.events)"
# The sleeps that did start end within a second; wait for them.
i=0; while [ "$(cat $CG/pids.current)" -gt 2 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
echo "host.pids_after=$(cat $CG/pids.current)"
# dd faults its buffer in one read(2), so the kill comes at once (a shell
# growing a string thrashed at the limit, refaulting its own code).
$RT exec $ID sh -c 'dd if=/dev/zero of=/dev/null bs=60M count=1 && echo survived' >/dev/null 2>&1
echo "hog=$?"
echo "host.oom_kill=$(grep oom_kill $CG/memory.events | cut -d' ' -f2)"
$RT update --memory 64m --pids-limit 99 $ID
echo "update=$?"
echo "updated.memory.max=$(cat $CG/memory.max)"
echo "updated.pids.max=$(cat $CG/pids.max)"
echo "events=$($RT events --stats $ID | tr -d '\n')"
$RT pause $ID
echo "pause=$?"
echo "paused.freeze=$(cat $CG/cgroup.freeze)"
echo "paused.events=$(grep frozen $CG/cgroup.events)"
echo "paused.status=$($RT state $ID | grep '"status"' | tr -d ' ",' | cut -d: -f2)"
$RT resume $ID
echo "resume=$?"
echo "resumed.freeze=$(cat $CG/cgroup.freeze)"
echo "resumed.events=$(grep frozen $CG/cgroup.events)"
echo "resumed.status=$($RT state $ID | grep '"status"' | tr -d ' ",' | cut -d: -f2)"
$RT delete -f $ID
echo "delete=$?"
[ -e $CG ] && echo "cgroup_left=yes" || echo "cgroup_left=no"
"#;

/// runc's cpu.shares → cpu.weight conversion, as the v2 manager must do it.
fn weight(shares: u64) -> u64 {
    1 + ((shares - 2) * 9999) / 262_142
}

/// A share with the static runtime, a bundle (copied busybox rootfs) and the script.
fn share_with(resources: serde_json::Value) -> TempDir {
    let share = TempDir::new("nk-v2vm");
    std::fs::copy(static_runtime(), share.path().join("nk-runtime")).unwrap();
    let bundle = share.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    copy_tree(&rootfs(), &bundle.join("rootfs"));
    let st = std::process::Command::new(runtime())
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(st.success());
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    c["root"]["path"] = "rootfs".into();
    c["process"]["terminal"] = false.into();
    // A shell as the container's init: it reaps the orphans the fork test leaves.
    c["process"]["args"] = serde_json::json!(["sh", "-c", "while :; do sleep 1; done"]);
    c["linux"]["cgroupsPath"] = "/nk-test/v2c".into();
    c["linux"]["resources"] = resources;
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "cgroup"}));
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&c).unwrap(),
    )
    .unwrap();
    std::fs::write(share.path().join("t.sh"), GUEST_SCRIPT).unwrap();
    share
}

#[test]
fn cgroup_v2_resources_applied_and_enforced_in_guest() {
    require_root();
    let res = serde_json::json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 50331648, "swap": 100663296, "reservation": 33554432},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 32},
        "unified": {"io.weight": "default 200"}
    });
    let share = share_with(res);
    let mut g = boot(share.path());
    let o = g
        .run(
            &["/run/nk/share/bundle/rootfs/bin/sh", "/run/nk/share/t.sh"],
            &[],
            Duration::from_secs(300),
        )
        .expect("run the script in the guest");
    let out = o.stdout_str();
    eprintln!(
        "--- guest stdout\n{out}--- guest stderr\n{}---",
        o.stderr_str()
    );
    let _ = g.shutdown();
    assert_eq!(o.status, 0, "script status");
    let m = kv(&out);
    let get = |k: &str| {
        m.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("no {k} in the guest output"))
    };
    assert!(
        get("check").contains("unified"),
        "the guest is pure v2: {}",
        get("check")
    );
    for c in ["cpuset", "cpu", "io", "memory", "pids"] {
        assert!(
            get("controllers").split(' ').any(|x| x == c),
            "controller {c}"
        );
    }
    assert_eq!(get("create"), "0", "create failed: {}", get("create_err"));
    assert_eq!(get("start"), "0");
    assert_eq!(get("status"), "running");
    let want = [
        ("memory.max", "50331648".to_string()),
        // OCI swap is memory+swap; v2's swap.max is swap alone.
        ("memory.swap.max", (100663296 - 50331648).to_string()),
        ("memory.low", "33554432".to_string()),
        ("io.weight", "default 200".to_string()),
        ("cpu.weight", weight(512).to_string()),
        ("cpu.max", "50000 100000".to_string()),
        ("cpuset.cpus", "0".to_string()),
        ("cpuset.mems", "0".to_string()),
        ("pids.max", "32".to_string()),
    ];
    for (f, v) in &want {
        assert_eq!(&get(&format!("host.{f}")), v, "{f} in the cgroup directory");
        assert_eq!(
            &get(&format!("in.{f}")),
            v,
            "{f} seen from inside the container"
        );
    }
    assert_eq!(get("exec"), "0");
    // The container's cgroup namespace hides the path.
    assert_eq!(get("in.cgroup"), "0::/");
    // Enforcement: the fork loop hit pids.max, the memory hog was OOM-killed.
    let pc: u64 = get("host.pids_after").parse().unwrap();
    // The init shell and its own `sleep 1` remain.
    assert!(
        pc <= 2,
        "the sleeps that started have not ended: pids.current {pc}"
    );
    let pe: u64 = get("host.pids_events")
        .trim_start_matches("max ")
        .parse()
        .unwrap();
    assert!(pe > 0, "pids.events max counter did not move");
    assert_ne!(
        get("hog"),
        "0",
        "the 60 MB memory hog survived a 48 MiB limit"
    );
    let oom: u64 = get("host.oom_kill").parse().unwrap();
    assert!(oom >= 1, "memory.events oom_kill = {oom}");
    // update, events --stats
    assert_eq!(get("update"), "0");
    assert_eq!(get("updated.memory.max"), (64u64 << 20).to_string());
    assert_eq!(get("updated.pids.max"), "99");
    let ev: serde_json::Value = serde_json::from_str(&get("events")).expect("events JSON");
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 64u64 << 20);
    assert_eq!(ev["data"]["pids"]["limit"], 99);
    // pause and resume through cgroup.freeze
    assert_eq!(get("pause"), "0");
    assert_eq!(get("paused.freeze"), "1");
    assert_eq!(get("paused.events"), "frozen 1");
    assert_eq!(get("paused.status"), "paused");
    assert_eq!(get("resume"), "0");
    assert_eq!(get("resumed.freeze"), "0");
    assert_eq!(get("resumed.events"), "frozen 0");
    assert_eq!(get("resumed.status"), "running");
    assert_eq!(get("delete"), "0");
    assert_eq!(get("cgroup_left"), "no");
}

/// The guest script of the hugetlb test: the page size is the guest
/// kernel's default one (Hugepagesize), put into the bundle's config there;
/// a kernel without huge pages or the hugetlb controller says so and stops.
const HUGETLB_SCRIPT: &str = r#"S=/run/nk/share; export PATH=$S/bundle/rootfs/bin; cd $S/bundle
kb=$(sed -n 's/^Hugepagesize: *\([0-9]*\) kB$/\1/p' /proc/meminfo)
if [ -z "$kb" ] || [ ! -d /sys/kernel/mm/hugepages/hugepages-${kb}kB ]; then
  echo "hugetlb=none: the guest kernel has no huge pages"; exit 0
fi
grep -qw hugetlb /sys/fs/cgroup/cgroup.controllers || { echo "hugetlb=none: no hugetlb controller in $(cat /sys/fs/cgroup/cgroup.controllers)"; exit 0; }
if [ "$kb" -ge 1048576 ]; then size=$((kb / 1048576))GB
elif [ "$kb" -ge 1024 ]; then size=$((kb / 1024))MB
else size=${kb}KB; fi
limit=$((kb * 1024 * 2))
echo "size=$size"; echo "limit=$limit"
sed "s/@size@/$size/; s/\"limit\": 0/\"limit\": $limit/" config.json >config.json.new && mv config.json.new config.json || exit 3
$S/nk-runtime --root /run/nk/t create h </dev/null >/dev/null; echo "create=$?"
echo "max=$(cat /sys/fs/cgroup/nk-test/v2c/hugetlb.$size.max)"
$S/nk-runtime --root /run/nk/t delete -f h
"#;

#[test]
fn cgroup_v2_hugetlb_limit_in_guest() {
    require_root();
    // Two pages of a size only the guest can tell: filled in there.
    let share = share_with(serde_json::json!({
        "hugepageLimits": [{"pageSize": "@size@", "limit": 0}]
    }));
    std::fs::write(share.path().join("t.sh"), HUGETLB_SCRIPT).unwrap();
    let mut g = boot(share.path());
    let o = g
        .run(
            &["/run/nk/share/bundle/rootfs/bin/sh", "/run/nk/share/t.sh"],
            &[],
            Duration::from_secs(120),
        )
        .unwrap();
    let _ = g.shutdown();
    let m = kv(&o.stdout_str());
    if let Some(why) = m.get("hugetlb") {
        eprintln!("skipped: {why}");
        return;
    }
    assert_eq!(o.status, 0, "guest script: {}", o.stderr_str());
    assert_eq!(
        m.get("create").map(String::as_str),
        Some("0"),
        "{}",
        o.stderr_str()
    );
    let limit = m.get("limit").expect("the page size the guest found");
    assert_eq!(m.get("max"), Some(limit), "page size {:?}", m.get("size"));
}
