#!/bin/sh
# Usage: bench/vm-checkpoint.sh [NK_RUNTIME] [RUNS]
# Times checkpoint and restore of a VM-mode container (CRIU in the guest,
# docs/vm-mode.md "Checkpoint and restore"): each round runs a counter in
# a VM, checkpoints it (the VM stops), restores it under a new id in a new
# VM (from the template) and deletes it. Prints p50, mean and min in ms of
# each command's wall time, and the same round's `run -d` for scale.
# Needs root, qemu-system-x86, linux-image-amd64, criu and the static agent
# (`make agent`); the guest image, the template and the CRIU kit are made
# in a warm-up round (not timed).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
rt=$(readlink -f "${1:-$here/target/x86_64-unknown-linux-gnu/release/nk-runtime}")
runs=${2:-3}
w=$(mktemp -d /tmp/nk-bench-vmckpt.XXXXXX)
trap '"$rt" --root "$w/state" delete -f r >/dev/null 2>&1; "$rt" --root "$w/state" delete -f c >/dev/null 2>&1; rm -rf "$w"' EXIT
"$here/scripts/mk-rootfs.sh" "$w/rootfs" >/dev/null
( cd "$w" && "$rt" spec )
python3 - "$w/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done"]
json.dump(c, open(p, "w"))
PY
"$rt" vm-image build >/dev/null
python3 - "$rt" "$w" "$runs" <<'PY'
import os, shutil, statistics, subprocess, sys, time
rt, w, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
st = ["--root", f"{w}/state"]
def timed(args, out=subprocess.DEVNULL):
    # stderr to a file: a detached container's monitor keeps it open.
    with open(f"{w}/err", "w+") as e:
        t0 = time.monotonic()
        r = subprocess.run([rt] + st + args, stdin=subprocess.DEVNULL, stdout=out, stderr=e)
        dt = (time.monotonic() - t0) * 1000
        if r.returncode != 0:
            e.seek(0)
            sys.exit(f"{args[0]}: exit {r.returncode}: {e.read()[-800:]}")
    return dt
def lines(p):
    try:
        return open(p).read().split()
    except FileNotFoundError:
        return []
def wait_count(p):
    end = time.monotonic() + 180
    while time.monotonic() < end:
        if len(lines(p)) >= 3:
            return
        time.sleep(0.05)
    sys.exit(f"no count in {p}")
times = {"run -d": [], "checkpoint": [], "restore -d": []}
for i in range(runs + 1):
    img = f"{w}/img{i}"
    with open(f"{w}/out{i}", "w") as o:
        t_run = timed(["run", "-d", "--mode=vm", "--bundle", w, "c"], o)
    wait_count(f"{w}/out{i}")
    t_ck = timed(["checkpoint", "--image-path", img, "c"])
    with open(f"{w}/res{i}", "w") as o:
        t_rs = timed(["restore", "-d", "--image-path", img, "--bundle", w, "r"], o)
    wait_count(f"{w}/res{i}")
    timed(["delete", "-f", "r"])
    shutil.rmtree(img)
    if i > 0:  # the first round warms up (image, template, kit)
        times["run -d"].append(t_run); times["checkpoint"].append(t_ck); times["restore -d"].append(t_rs)
print(f"{'row':<11} {'p50_ms':>8} {'mean_ms':>8} {'min_ms':>8} {'runs':>5}")
for k, t in times.items():
    print(f"{k:<11} {statistics.median(t):8.1f} {statistics.mean(t):8.1f} {min(t):8.1f} {len(t):5d}")
PY
