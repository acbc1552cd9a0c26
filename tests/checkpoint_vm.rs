//! checkpoint and restore through CRIU, tested for real where CRIU runs:
//! Debian's criu 3.17 cannot start on this host's kernel (tests/checkpoint.rs
//! checks the error there), so this test boots the Debian guest kernel VM
//! mode uses, with criu, runc and their shared libraries in the share, and
//! runs the same steps with nk-runtime and with runc (the reference): a
//! counter container is pre-dumped, dumped (which kills it), and restored
//! under a new id from the dump, where it goes on counting from the value
//! it had. One boot for both runtimes. The closing lines print the time
//! each checkpoint and restore took in the guest.

use nk_tests::vm as vm_support;

use nk_tests::*;
use std::path::Path;
use std::time::Duration;
use vm_support::*;

const GUEST_SCRIPT: &str = r#"
S=/run/nk/share
export PATH=$S/bundle/rootfs/bin:/usr/sbin
# criu and runc are dynamic: their libraries go where the loader looks.
mkdir -p /lib/x86_64-linux-gnu /lib64 /usr/sbin
cp $S/lib/* /lib/x86_64-linux-gnu/ && cp $S/lib/ld-linux-x86-64.so.2 /lib64/
cp $S/criu $S/runc /usr/sbin/
# What CRIU's kernel probe needs: the socket diag and nf_tables modules
# (criu 3.17 is built with nftables and probes it), and loopback up
# (it checks TCP repair on a connection to 127.0.0.1).
for m in inet_diag tcp_diag udp_diag unix_diag netlink_diag af_packet_diag libcrc32c nfnetlink nf_tables; do
  insmod $S/mods/$m.ko 2>/dev/null
done
ip link set lo up
echo "criu_check=$(criu check 2>&1 | tail -1)"
ms() { awk '{printf "%d", $1 * 1000}' /proc/uptime; }
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
  echo "$name.resumed=$(above $C $before)"
  $R kill c2 KILL; $R delete -f c2
  echo "$name.err=$(tr '\n' ' ' </run/$name.err)"
  tail -3 $I/final/restore.log 2>/dev/null | sed "s/^/$name.restore_log: /"
}
steps nk "$S/nk-runtime --root /run/nk-state"
steps runc "runc --root /run/runc-state"
"#;

/// The share: the static nk-runtime, criu and runc with every library
/// `ldd` lists, and a bundle whose process counts in /count.
fn share() -> TempDir {
    let share = TempDir::new("nk-criuvm");
    let p = share.path();
    std::fs::copy(static_runtime(), p.join("nk-runtime")).unwrap();
    let lib = p.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    for bin in ["/usr/sbin/criu", &runc()] {
        std::fs::copy(bin, p.join(Path::new(bin).file_name().unwrap())).unwrap();
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
    let k = ::vm::image::find_kernel().expect("the guest kernel");
    let mods = p.join("mods");
    std::fs::create_dir_all(&mods).unwrap();
    for (dir, m) in [
        ("ipv4", "inet_diag"),
        ("ipv4", "tcp_diag"),
        ("ipv4", "udp_diag"),
        ("unix", "unix_diag"),
        ("netlink", "netlink_diag"),
        ("packet", "af_packet_diag"),
        ("../lib", "libcrc32c"),
        ("netfilter", "nfnetlink"),
        ("netfilter", "nf_tables"),
    ] {
        let src = k
            .modules_root
            .join(&k.version)
            .join(format!("kernel/net/{dir}/{m}.ko"));
        std::fs::copy(&src, mods.join(format!("{m}.ko")))
            .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    }
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
#[ignore = "not finished: criu 3.17's kernel probe still fails in the test guest (kerndat_has_nftables_concat: `create table inet CRIU` gets EOPNOTSUPP after nf_tables is loaded), for runc as for nk-runtime"]
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
        // one goes on from the value it was dumped with.
        assert!(
            after > before && after <= before + 10,
            "{rt}: dumped at {before}, restored counter wrote {after}"
        );
    }
    eprintln!(
        "CRIU times in the guest (TCG): nk pre-dump {} ms, dump {} ms, restore {} ms; runc pre-dump {} ms, dump {} ms, restore {} ms",
        get("nk.predump_ms"),
        get("nk.dump_ms"),
        get("nk.restore_ms"),
        get("runc.predump_ms"),
        get("runc.dump_ms"),
        get("runc.restore_ms")
    );
}
