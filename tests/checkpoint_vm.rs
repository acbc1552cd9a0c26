//! checkpoint and restore through CRIU, tested for real where CRIU runs:
//! Debian's criu 3.17 cannot start on this host's kernel (tests/checkpoint.rs
//! checks the error there), so this test boots the Debian guest kernel VM
//! mode uses and makes it a CRIU host as a Debian system with criu and runc
//! installed is one: criu, runc, ip, iptables (nft), tar and gzip with their
//! libraries, /bin/sh, the socket-diag, nf_tables and conntrack modules,
//! loopback up; `criu check` must pass there. Then the same steps with
//! nk-runtime and with runc (the reference): a counter container is
//! pre-dumped, dumped (which kills it and deletes the container), restored
//! under a new id from the dump, where it goes on counting from the value it
//! had, then killed and deleted. One boot for both runtimes. The closing
//! line prints the time each checkpoint and restore took in the guest.

use nk_tests::vm as vm_support;

use nk_tests::*;
use std::path::Path;
use std::time::Duration;
use vm_support::*;

const GUEST_SCRIPT: &str = r#"
S=/run/nk/share
export PATH=/usr/sbin:/usr/bin:$S/bundle/rootfs/bin
# A Debian-like /usr: criu, runc, ip, iptables, tar and gzip are dynamic,
# their libraries go where the loader looks, iptables' extensions where
# libxtables looks. CRIU archives tmpfs mounts with tar, which starts gzip
# through /bin/sh (the bundle's static busybox here).
mkdir -p /lib/x86_64-linux-gnu /lib64 /usr/sbin /usr/bin /usr/lib/x86_64-linux-gnu
ln -s usr/bin /bin && ln -s usr/sbin /sbin
cp $S/lib/* /lib/x86_64-linux-gnu/ && cp $S/lib/ld-linux-x86-64.so.2 /lib64/
cp $S/bin/* /usr/bin/ && ln -s $S/bundle/rootfs/bin/busybox /usr/bin/sh && ln -s ../bin/criu ../bin/runc ../bin/ip ../bin/xtables-nft-multi /usr/sbin/
cp -a $S/xtables /usr/lib/x86_64-linux-gnu/xtables
for t in iptables ip6tables; do
  for s in "" -restore -save; do ln -sf xtables-nft-multi /usr/sbin/$t$s; done
done
# The modules, each after its dependencies.
while read m; do insmod $S/mods/$m || echo "insmod_failed=$m"; done <$S/mods.list
ip link set lo up
criu check >/run/criu-check.log 2>&1; echo "criu_check=$?"; sed "s/^/criu_check_log: /" /run/criu-check.log | tail -20
ms() { awk '{printf "%d", $1 * 1000}' /proc/uptime; }
# Wait (up to 60 s) until the counter file holds a number other than $2,
# and print it: the first count the restored process wrote.
changed() {
  n=0
  while [ $n -lt 600 ]; do
    v=$(cat $1 2>/dev/null)
    [ -n "$v" ] && [ "$v" != "$2" ] && { echo $v; return 0; }
    sleep 0.1; n=$((n+1))
  done
  echo "stuck:$v"
}
# Wait (up to 60 s) until the counter file holds a number above $2.
above() {
  n=0
  while [ $n -lt 600 ]; do
    v=$(cat $1 2>/dev/null)
    [ -n "$v" ] && [ "$v" -gt "$2" ] && { echo $v; return 0; }
    sleep 0.1; n=$((n+1))
  done
  echo "stuck:$v"
}
steps() {
  name=$1; R="$2"; B=/run/b.$name; I=/run/img.$name
  cp -a $S/bundle $B
  C=$B/rootfs/count
  $R run -d -b $B c1 </dev/null >/dev/null 2>/run/$name.err; echo "$name.run=$?"
  echo "$name.counting=$(above $C 3)"
  t=$(ms); $R checkpoint --pre-dump --image-path $I/pre c1 2>>/run/$name.err
  echo "$name.predump=$?"; echo "$name.predump_ms=$(( $(ms) - t ))"
  echo "$name.after_predump=$($R state c1 | grep '"status"' | tr -d ' ",' | cut -d: -f2)"
  t=$(ms); $R checkpoint --image-path $I/final --parent-path ../pre c1 2>>/run/$name.err
  echo "$name.dump=$?"; echo "$name.dump_ms=$(( $(ms) - t ))"
  before=$(cat $C)
  echo "$name.before=$before"
  $R state c1 >/dev/null 2>&1; echo "$name.state_after_dump=$?"
  t=$(ms); $R restore -d -b $B --image-path $I/final c2 </dev/null >/dev/null 2>>/run/$name.err
  echo "$name.restore=$?"; echo "$name.restore_ms=$(( $(ms) - t ))"
  echo "$name.restored_status=$($R state c2 | grep '"status"' | tr -d ' ",' | cut -d: -f2)"
  echo "$name.resumed=$(changed $C $before)"
  pid=$($R state c2 | grep '"pid"' | tr -d ' ",' | cut -d: -f2)
  echo "$name.restored_cgroup=$(cat /proc/$pid/cgroup)"
  echo "$name.restored_cgroup_mount=$(grep ' /sys/fs/cgroup ' /proc/$pid/mountinfo | cut -d' ' -f4,9)"
  $R kill c2 KILL; echo "$name.kill=$?"
  n=0; while [ -d /proc/$pid ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
  $R delete c2; echo "$name.delete=$?"
  echo "$name.err=$(tr '\n' ' ' </run/$name.err)"
  for l in pre/dump final/dump final/restore; do
    grep -E "Error|rror \(" $I/$l.log 2>/dev/null | tail -5 | sed "s|^|$name.$l: |"
  done
}
steps nk "$S/nk-runtime --root /run/nk-state"
steps runc "runc --root /run/runc-state"
# The times: the steps above ran each path once (under TCG the first run
# of any code also pays for its translation), so three more rounds,
# alternating the runtimes: run, dump, restore, delete.
cycle() {
  name=$1; R="$2"; B=/run/b.$name; I=/run/img.$name.$3
  $R run -d -b $B t$3 </dev/null >/dev/null 2>>/run/$name.t.err
  above $B/rootfs/count 0 >/dev/null; v=$(cat $B/rootfs/count)
  above $B/rootfs/count $v >/dev/null
  t=$(ms); $R checkpoint --image-path $I t$3 2>>/run/$name.t.err; r=$?
  echo "$name.t$3.dump=$r $(( $(ms) - t ))"
  t=$(ms); $R restore -d -b $B --image-path $I r$3 </dev/null >/dev/null 2>>/run/$name.t.err; r=$?
  echo "$name.t$3.restore=$r $(( $(ms) - t ))"
  $R delete -f r$3 2>>/run/$name.t.err
}
for i in 1 2 3; do
  cycle nk "$S/nk-runtime --root /run/nk-state" $i
  cycle runc "runc --root /run/runc-state" $i
done
for n in nk runc; do echo "$n.t.err=$(tr '\n' ' ' </run/$n.t.err 2>/dev/null)"; done
"#;

/// The share: the static nk-runtime, criu and runc with every library
/// `ldd` lists, the guest kernel modules VM mode's CRIU kit loads
/// (vm::criu_kit::MODULES), and a bundle whose process counts in /count.
fn share() -> TempDir {
    let share = TempDir::new("nk-criuvm");
    let p = share.path();
    std::fs::copy(static_runtime(), p.join("nk-runtime")).unwrap();
    let lib = p.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let bins = p.join("bin");
    std::fs::create_dir_all(&bins).unwrap();
    // criu and runc, and the tools CRIU runs while it dumps and restores a
    // network namespace: `ip` (addresses, routes, rules) and
    // iptables-restore/-save (the network lock).
    for bin in [
        "/usr/sbin/criu",
        &runc(),
        "/bin/ip",
        "/usr/sbin/xtables-nft-multi",
        "/bin/tar",
        "/bin/gzip",
    ] {
        std::fs::copy(bin, bins.join(Path::new(bin).file_name().unwrap())).unwrap();
        let out = std::process::Command::new("ldd").arg(bin).output().unwrap();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = l
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(Path::new);
            if let Some(src) = path {
                std::fs::copy(src, lib.join(src.file_name().unwrap())).unwrap();
            }
        }
    }
    // The modules CRIU's kernel probe and its network lock need, each after
    // its dependencies (modules.dep); crc32c_generic is only a soft
    // dependency of libcrc32c (modules.softdep), which nf_tables needs: without it
    // nf_tables does not load and every nftables request gets EOPNOTSUPP.
    copy_tree(
        Path::new("/usr/lib/x86_64-linux-gnu/xtables"),
        &p.join("xtables"),
    );
    let k = ::vm::image::find_kernel().expect("the guest kernel");
    let kdir = k.modules_root.join(&k.version);
    let dep = ::vm::modules::parse_dep(&std::fs::read_to_string(kdir.join("modules.dep")).unwrap());
    let builtin = std::fs::read_to_string(kdir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(|b| b.trim_end_matches(".ko").replace('-', "_"))
        .collect();
    let order = ::vm::modules::resolve(&dep, &builtin, ::vm::criu_kit::MODULES).unwrap();
    let mods = p.join("mods");
    std::fs::create_dir_all(&mods).unwrap();
    let mut list = String::new();
    for (i, m) in order.iter().enumerate() {
        let name = format!("{i:02}-{m}.ko");
        std::fs::copy(kdir.join(&dep[m].0), mods.join(&name)).unwrap();
        list.push_str(&name);
        list.push('\n');
    }
    std::fs::write(p.join("mods.list"), list).unwrap();
    let bundle = p.join("bundle");
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
    c["root"]["readonly"] = false.into();
    c["process"]["terminal"] = false.into();
    // Its stdio is the container's own /dev/null, so CRIU has no outside
    // descriptor to resolve; the count lives in the shell's memory.
    c["process"]["args"] = serde_json::json!([
        "sh",
        "-c",
        "exec </dev/null >/dev/null 2>&1; i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.1; done"
    ]);
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&c).unwrap(),
    )
    .unwrap();
    std::fs::write(p.join("t.sh"), GUEST_SCRIPT).unwrap();
    share
}

#[test]
fn checkpoint_restore_in_guest_like_runc() {
    require_root();
    let share = share();
    let mut g = boot(share.path());
    let o = g
        .run(
            &["/run/nk/share/bundle/rootfs/bin/sh", "/run/nk/share/t.sh"],
            &[],
            Duration::from_secs(600),
        )
        .expect("run the script in the guest");
    let out = o.stdout_str();
    eprintln!(
        "--- guest stdout\n{out}--- guest stderr\n{}---",
        o.stderr_str()
    );
    let _ = g.shutdown();
    let m = kv(&out);
    let get = |k: &str| {
        m.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("no {k} in the guest output"))
    };
    assert_eq!(
        get("criu_check"),
        "0",
        "criu check fails in the guest: the guest setup misses something CRIU needs (see criu_check_log above)"
    );
    for rt in ["runc", "nk"] {
        let err = get(&format!("{rt}.err"));
        let k = |s: &str| format!("{rt}.{s}");
        assert_eq!(get(&k("run")), "0", "{rt} run: {err}");
        assert!(!get(&k("counting")).starts_with("stuck"), "{rt}: no count");
        assert_eq!(get(&k("predump")), "0", "{rt} pre-dump: {err}");
        assert_eq!(
            get(&k("after_predump")),
            "running",
            "{rt}: a pre-dump leaves the container running"
        );
        assert_eq!(get(&k("dump")), "0", "{rt} dump: {err}");
        assert_ne!(
            get(&k("state_after_dump")),
            "0",
            "{rt}: the dumped container is gone (runc 1.1 deletes it)"
        );
        assert_eq!(get(&k("restore")), "0", "{rt} restore: {err}");
        assert_eq!(get(&k("restored_status")), "running", "{rt}");
        let before: u64 = get(&k("before")).parse().unwrap();
        let resumed = get(&k("resumed"));
        let after: u64 = resumed
            .parse()
            .unwrap_or_else(|_| panic!("{rt}: the restored counter did not count: {resumed}"));
        // A counter that started over would write 1, 2, ...: the restored
        // one goes on from the value it was dumped with (the margin is for
        // a guest too loaded to read every value).
        assert!(
            after > before && after <= before + 50,
            "{rt}: dumped at {before}, restored counter wrote {after}"
        );
        assert_eq!(get(&k("kill")), "0", "{rt}: kill the restored container");
        assert_eq!(
            get(&k("delete")),
            "0",
            "{rt}: delete the restored container"
        );
    }
    // The restored container lives in its own cgroup, the one its state
    // records, and its /sys/fs/cgroup shows that cgroup. (runc 1.1 puts the
    // restored tree back in the dumped container's cgroup path, /c1 here,
    // and mounts the whole hierarchy: it is not the reference for this.)
    let cg = get("nk.restored_cgroup");
    assert!(
        cg.starts_with("0::/") && cg.ends_with("/c2"),
        "nk: the restored init is in {cg}, not the new container's cgroup"
    );
    assert_eq!(
        get("nk.restored_cgroup_mount"),
        format!("{} cgroup2", &cg[3..]),
        "nk: the restored container's /sys/fs/cgroup"
    );
    // Three timed rounds: each must succeed; the times are printed, not
    // judged (a loaded host makes TCG times vary several-fold).
    let mut line = String::from(
        "CRIU in the guest (TCG), median of 3 (wall ms, the runtime's whole command):",
    );
    for rt in ["nk", "runc"] {
        for op in ["dump", "restore"] {
            let mut ms: Vec<u64> = (1..=3)
                .map(|i| {
                    let v = get(&format!("{rt}.t{i}.{op}"));
                    let (code, ms) = v.split_once(' ').unwrap_or((&v, ""));
                    assert_eq!(
                        code,
                        "0",
                        "{rt} timed {op} {i} failed: {}",
                        get(&format!("{rt}.t.err"))
                    );
                    ms.parse().unwrap()
                })
                .collect();
            ms.sort();
            line.push_str(&format!(" {rt} {op} {} ({ms:?});", ms[1]));
        }
    }
    eprintln!("{line}");
    eprintln!(
        "first run (with TCG warm-up): nk pre-dump {} ms, dump {} ms, restore {} ms; runc pre-dump {} ms, dump {} ms, restore {} ms",
        get("nk.predump_ms"),
        get("nk.dump_ms"),
        get("nk.restore_ms"),
        get("runc.predump_ms"),
        get("runc.dump_ms"),
        get("runc.restore_ms")
    );
}
