#!/bin/sh
# Usage: bench/vm-run.sh [NK_RUNTIME] [RUNS]
# Times `nk-runtime run --mode=vm` of `echo` to exit (start, create, output,
# power-off, delete), beside the guest kernel's own cold-boot floor and
# container mode on the same bundle. Rows, measured in one run and
# alternating (row 1, row 2, ... then again), so that a loaded machine
# weighs on all alike:
#   floor     QEMU boots the same kernel with the same machine and kernel
#             command line, and an /init that only powers off
#             (bench/floor/vm-init.c): the least a cold boot can cost
#   cold      run --mode=vm --vm-boot=cold: the kernel boots, the agent starts
#   template  run --mode=vm: restored from the template snapshot
#   container run in container mode
#   cold-nic, template-nic  the same two in a network namespace holding a
#             veth (as an engine's bridge network gives): one network card
# Prints p50 (median), mean and min in ms per row, the template row's
# ratio to the floor, and the guest's boot-to-agent-ready time.
# Needs root, iproute2, qemu-system-x86, linux-image-amd64, gcc and the static agent
# (`make agent`); the guest image and the template are built first (not timed).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
rt=$(readlink -f "${1:-$here/target/x86_64-unknown-linux-gnu/release/nk-runtime}")
runs=${2:-10}
w=$(mktemp -d /tmp/nk-bench-vm.XXXXXX)
ns=nkbench-$$
trap 'rm -rf "$w"; ip netns del "$ns" 2>/dev/null || true' EXIT
"$here/scripts/mk-rootfs.sh" "$w/rootfs" >/dev/null
( cd "$w" && "$rt" spec )
# An engine's namespace: eth0 (a veth whose peer is on the host), up, addressed.
ip netns add "$ns"
ip link add "nkb$$" type veth peer name eth0 netns "$ns"
ip -n "$ns" addr add 10.251.0.2/24 dev eth0
ip -n "$ns" link set eth0 up
ip -n "$ns" link set lo up
ip link set "nkb$$" up
mkdir "$w/net"
python3 - "$w" "/run/netns/$ns" <<'PY'
import json, sys
w, ns = sys.argv[1], sys.argv[2]; p = f"{w}/config.json"; c = json.load(open(p))
c["process"]["terminal"] = False; c["process"]["args"] = ["echo", "hello"]
json.dump(c, open(p, "w"))
c["root"]["path"] = f"{w}/rootfs"
for n in c["linux"]["namespaces"]:
    if n["type"] == "network":
        n["path"] = ns
json.dump(c, open(f"{w}/net/config.json", "w"))
PY
"$rt" vm-image build >/dev/null
# The floor's initramfs: /init only.
gcc -O2 -static -o "$w/init" "$here/bench/floor/vm-init.c"
( cd "$w" && echo init | cpio -o -H newc --quiet >"$w/floor.cpio" )
vmlinux=$("$rt" vm-image status | python3 -c "import json,sys;print(json.load(sys.stdin)['kernel']['vmlinux'])")
# Builds the template (one boot); its record gives the accelerator.
"$rt" --root "$w/state" run --keep --mode=vm --bundle "$w" warm >/dev/null </dev/null
accel=$(python3 -c "import json;print(json.load(open('$w/state/warm/state.json'))['extra']['accel'])")
"$rt" --root "$w/state" delete warm
cd "$w"
python3 - "$rt" "$w" "$vmlinux" "$runs" "$accel" <<'PY'
import statistics, subprocess, sys, time
rt, w, vmlinux, runs, accel = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def khz():
    for l in open("/proc/cpuinfo"):
        if l.startswith("cpu MHz"):
            return int(float(l.split(":")[1]) * 1000)
# VM mode's machine and kernel command line (crates/vm/src/qemu.rs), no devices.
cmdline = "console=ttyS0 quiet reboot=t panic=-1 pci=off"
if accel == "tcg":
    cmdline += f" tsc_early_khz={khz()}"
floor = ["qemu-system-x86_64", "-M", "microvm", "-accel", accel,
         "-cpu", "max" if accel == "tcg" else "host", "-m", "256",
         "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
         "-global", "virtio-mmio.force-legacy=false", "-serial", "null",
         "-kernel", vmlinux, "-initrd", f"{w}/floor.cpio", "-append", cmdline]
rows = {
    "floor": floor,
    "cold": [rt, "--root", f"{w}/state", "run", "--mode=vm", "--vm-boot=cold", "--bundle", w, "v-cold"],
    "template": [rt, "--root", f"{w}/state", "run", "--mode=vm", "--bundle", w, "v-tmpl"],
    "container": [rt, "--root", f"{w}/state", "run", "--bundle", w, "c-bench"],
    "cold-nic": [rt, "--root", f"{w}/state", "run", "--mode=vm", "--vm-boot=cold", "--bundle", f"{w}/net", "v-cold-nic"],
    "template-nic": [rt, "--root", f"{w}/state", "run", "--mode=vm", "--bundle", f"{w}/net", "v-tmpl-nic"],
}
times = {k: [] for k in rows}
for i in range(runs + 1):  # the first round also builds the one-card template
    for name, argv in rows.items():
        t0 = time.monotonic()
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dt = time.monotonic() - t0
        if r.returncode != 0:
            sys.exit(f"{name}: exit {r.returncode}: {r.stderr.decode()[-500:]}")
        if i > 0:  # the first round warms up
            times[name].append(dt * 1000)
print(f"{'row':<12} {'p50_ms':>8} {'mean_ms':>8} {'min_ms':>8} {'runs':>5}")
for k, t in times.items():
    print(f"{k:<12} {statistics.median(t):8.1f} {statistics.mean(t):8.1f} {min(t):8.1f} {len(t):5d}")
f, c, t, cn, tn = (statistics.median(times[k]) for k in ("floor", "cold", "template", "cold-nic", "template-nic"))
print(f"template / floor: {t / f:.2f} (goal <= 0.25); cold / floor: {c / f:.2f}")
print(f"with a card: template-nic / floor: {tn / f:.2f}; cold-nic / floor: {cn / f:.2f}")
PY
# One more cold VM run with its record kept, for the boot time.
"$rt" --root "$w/state" run --keep --mode=vm --vm-boot=cold --bundle "$w" v-boot >/dev/null </dev/null
python3 -c "import json;x=json.load(open('$w/state/v-boot/state.json'))['extra'];print(f\"vm cold boot to agent ready: {x['boot_ms']} ms ({x['accel']})\")"
"$rt" --root "$w/state" delete v-boot
