#!/bin/sh
# Usage: bench/vm-share.sh [NK_RUNTIME] [RUNS]
# The cost of VM mode's shared filesystem: inside the container, untar a
# ~50 MB tree (read from one bind mount, written into another) and `find`
# + `stat` every file of it, timed by the container itself (so the boot is
# not counted). Three rows: VM mode over 9p, VM mode over virtio-fs (the
# annotation org.nano-sandbox.vm.share forces each), and container mode on
# the same bundle. Prints the median of RUNS runs per row, in ms.
# Needs root, qemu-system-x86 (with /usr/lib/qemu/virtiofsd for the
# virtio-fs row), linux-image-amd64 and the static agent (`make agent`).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
rt=$(readlink -f "${1:-$here/target/x86_64-unknown-linux-gnu/release/nk-runtime}")
runs=${2:-3}
w=$(mktemp -d /tmp/nk-bench-share.XXXXXX)
trap 'for s in "$w"/state/*; do [ -d "$s" ] && "$rt" --root "$w/state" delete -f "$(basename "$s")" >/dev/null 2>&1; done; rm -rf "$w"' EXIT
"$here/scripts/mk-rootfs.sh" "$w/rootfs" >/dev/null
mkdir -p "$w/data" "$w/out"
# The tree: 40 directories of 50 files, 1-49 KiB each (~50 MB), made
# once; deterministic contents that do not compress away.
python3 - "$w/data/tree.tar" <<'PY'
import io, random, sys, tarfile
r = random.Random(42)
with tarfile.open(sys.argv[1], "w") as t:
    for d in range(40):
        for f in range(50):
            data = r.randbytes(1024 * r.randint(1, 49))
            i = tarfile.TarInfo(f"tree/d{d:02}/f{f:02}")
            i.size = len(data)
            t.addfile(i, io.BytesIO(data))
PY
( cd "$w" && "$rt" spec )
python3 - "$w/config.json" "$w" <<'PY'
import json, sys
p, w = sys.argv[1], sys.argv[2]; c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", """set -e
up() { cut -d' ' -f1 /proc/uptime; }
rm -rf /out/tree
t0=$(up); tar -xf /data/tree.tar -C /out
t1=$(up); n=$(find /out/tree -type f -exec stat -c %s {} + | wc -l)
t2=$(up); rm -rf /out/tree
echo "$t0 $t1 $t2 $n" | awk '{ printf "untar_ms=%d findstat_ms=%d files=%d\\n", ($2-$1)*1000, ($3-$2)*1000, $4 }'"""]
c["mounts"] += [
    {"destination": "/data", "type": "bind", "source": w + "/data", "options": ["rbind", "ro"]},
    {"destination": "/out", "type": "bind", "source": w + "/out", "options": ["rbind", "rw"]},
]
json.dump(c, open(p, "w"))
PY
"$rt" vm-image build >/dev/null
share() {
  python3 - "$w/config.json" "$1" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c.setdefault("annotations", {})["org.nano-sandbox.vm.share"] = sys.argv[2]
json.dump(c, open(p, "w"))
PY
}
# One row: RUNS runs of `run` with the given mode arguments; the median
# of each phase.
row() {
  name=$1; shift
  : > "$w/$name.txt"
  i=0
  while [ "$i" -lt "$runs" ]; do
    "$rt" --root "$w/state" run "$@" --bundle "$w" "b-$name-$i" </dev/null >> "$w/$name.txt"
    i=$((i + 1))
  done
  python3 - "$w/$name.txt" "$name" <<'PY'
import statistics, sys
rows = [dict(kv.split("=") for kv in l.split()) for l in open(sys.argv[1]) if "=" in l]
med = lambda k: statistics.median(int(r[k]) for r in rows)
print(f"{sys.argv[2]:<14} {med('untar_ms'):>9.0f} {med('findstat_ms'):>12.0f} {rows[0]['files']:>6} {len(rows):>5}")
PY
}
echo "$(printf '%-14s %9s %12s %6s %5s' share untar_ms findstat_ms files runs)"
share 9p
row vm-9p --mode=vm
if [ -x "${NK_VIRTIOFSD:-/usr/lib/qemu/virtiofsd}" ]; then
  share virtiofs
  row vm-virtio-fs --mode=vm
else
  echo "vm-virtio-fs   (no virtiofsd: skipped)"
fi
row container
