#!/bin/sh
# Usage: bench/vm-run.sh [NK_RUNTIME] [RUNS]
# Times `nk-runtime run --mode=vm` of `echo` to exit (boot, create, start,
# output, power-off, delete), beside `run` in container mode on the same
# bundle, with hyperfine. Prints one row per mode with p50 (median), mean
# and min in ms, and the guest's boot-to-agent-ready time.
# Needs root, qemu-system-x86, linux-image-amd64 and the static agent
# (`make agent`); the guest image is built on the first run (not timed).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
rt=$(readlink -f "${1:-$here/target/x86_64-unknown-linux-gnu/release/nk-runtime}")
runs=${2:-10}
w=$(mktemp -d /tmp/nk-bench-vm.XXXXXX)
trap 'rm -rf "$w"' EXIT
"$here/scripts/mk-rootfs.sh" "$w/rootfs"
( cd "$w" && "$rt" spec )
python3 - "$w/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False; c["process"]["args"] = ["echo", "hello"]
json.dump(c, open(p, "w"))
PY
"$rt" vm-image build >/dev/null
cd "$w"
hyperfine -N --warmup 1 --runs "$runs" --export-json "$w/h.json" \
  -n container "$rt --root $w/state run --bundle $w c-bench" \
  -n vm "$rt --root $w/state run --mode=vm --bundle $w v-bench" >/dev/null 2>&1 </dev/null
# One more VM run with the monitor's log kept, for the boot time.
"$rt" --root "$w/state" run --keep --mode=vm --bundle "$w" v-boot >/dev/null </dev/null
boot=$(python3 -c "import json;print(json.load(open('$w/state/v-boot/state.json'))['extra']['boot_ms'])")
accel=$(python3 -c "import json;print(json.load(open('$w/state/v-boot/state.json'))['extra']['accel'])")
"$rt" --root "$w/state" delete v-boot
python3 - "$w/h.json" "$runs" "$boot" "$accel" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print(f"{'mode':<10} {'p50_ms':>8} {'mean_ms':>8} {'min_ms':>8} {'runs':>5}")
for x in r:
    print(f"{x['command']:<10} {x['median']*1000:8.1f} {x['mean']*1000:8.1f} {x['min']*1000:8.1f} {len(x['times']):5d}")
print(f"vm boot to agent ready: {sys.argv[3]} ms ({sys.argv[4]})")
PY
