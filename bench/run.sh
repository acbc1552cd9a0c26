#!/usr/bin/env bash
# bench/run.sh - nk-runtime side by side with runc and crun, in one run.
#
#   bench/run.sh                       # everything (make bench), < 20 min
#   QUICK=1 bench/run.sh               # a short pass: few runs, small sizes
#   SECTIONS="core growth" bench/run.sh
#   RUNS=20 LOOP=30 SEQ=20 HANG=100 bench/run.sh
#   NK=/path/to/nk-runtime OUT=/tmp/b bench/run.sh
#   UPDATE_DOCS=1 bench/run.sh         # also refresh docs/performance.md
#
# Sections (bench/<name>.sh), for every runtime on the same rootfs (busybox):
#   core      run /bin/true (create+start+wait+delete), create, start,
#             delete, state, exec, SEQ sequential runs, peak RSS, binary size
#   budget    nk's per-phase times (--trace=json) beside the kernel's floor
#             for each phase (the C programs in bench/floor/)
#   fixtures  run on the config.json Docker, Podman and containerd's CRI
#             plugin generate (bench/fixtures/)
#   growth    cost as the work grows: bind mounts, containers in the root,
#             seccomp rules, parallel starts, processes in the container
#   cost      what -E and --trace cost, and that off costs nothing
#             (bench/explain-cost.sh)
#   hang      HANG runs of /bin/true under nk-runtime never hang
#
# Results: $OUT (default build/bench/): results.tsv (one line a row and
# runtime), tables.md and performance.md (bench/report.py), one SVG chart
# a row group, raw samples in raw/. The tables are also printed.
#
# The whole benchmark re-executes itself in a private mount namespace. crun
# refuses this host's hybrid cgroups (cgroup2 at /sys/fs/cgroup/unified with
# hugetlb): like ../shared/bench, that cgroup2 mount is removed there, so all
# three runtimes see the same pure cgroup v1 host; and the state roots are on
# a tmpfs mounted there (see below). The host is not changed.
set -uo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd); TOP=$(dirname "$HERE")
if [ "${QUICK:-0}" = 1 ]; then
  RUNS=${RUNS:-10}; LOOP=${LOOP:-10}; SEQ=${SEQ:-20}; HANG=${HANG:-50}
else
  RUNS=${RUNS:-50}; LOOP=${LOOP:-100}; SEQ=${SEQ:-100}; HANG=${HANG:-1000}
fi
SECTIONS=${SECTIONS:-core budget fixtures growth cost hang}
NK=${NK:-$TOP/target/x86_64-unknown-linux-gnu/release/nk-runtime}
OUT=${OUT:-$TOP/build/bench}
export QUICK RUNS LOOP SEQ HANG NK OUT

. "$HERE/lib.sh"
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$NK" ] || die "$NK is not built: run 'make build'"
"$HERE/deps.sh" || die "cannot install the benchmark's dependencies"

if [ -z "${NK_BENCH_INNS:-}" ]; then
  exec unshare -m --propagation private -- env NK_BENCH_INNS=1 bash "$0" "$@"
fi
if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null && umount /sys/fs/cgroup/unified; then
  CG="pure v1 (cgroup2 unmounted in a private mount namespace)"
else
  CG="host as is"
fi

W=$(mktemp -d /tmp/nk-bench.XXXXXX)
# The state roots, on a tmpfs of this mount namespace: engines keep them in
# /run (/run/runc, /run/crun, containerd's /run/containerd/runc), a tmpfs on
# a systemd host. On a disk file system the roots would time the file system
# too: on this host's ext4, mounted without a journal, every new inode is
# allocated past the inodes freed in the last seconds (ext4's
# recently_deleted), so a file's creation grows from 0.3 to 1.6 ms in the
# churn of a benchmark's runs, in every runtime alike.
S=$W/states
cleanup() {
  local l
  for l in "${LABELS[@]}"; do for st in "$S"/state-"$l"*; do [ -d "$st" ] && clean_root "$l" "$st"; done; done
  [ -n "${CLEANUP_MORE:-}" ] && eval "$CLEANUP_MORE"
  mountpoint -q "$S" && umount "$S"
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$W/raw" "$S" "$OUT"
mount -t tmpfs -o mode=0700,size=512m nk-bench-states "$S" || die "cannot mount a tmpfs for the state roots on $S"
export S
rm -f "$OUT"/*.svg "$OUT"/*.md
RES=$OUT/results.tsv; : > "$RES"
T_START=$(date +%s)

"$TOP/scripts/mk-rootfs.sh" "$W/rootfs" >/dev/null || die "rootfs"
ROOTFS=$W/rootfs
"$NK" spec --bundle "$W"
mv "$W/config.json" "$W/base.json"
json_edit "$W/base.json" '
c["ociVersion"] = "1.0.2-dev"          # crun 1.8 knows no later version
c["root"]["path"] = sys.argv[2]
c["hostname"] = "runc"
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]' "$ROOTFS"
mkbundle "$W/b" '["/bin/true"]'

for l in "${LABELS[@]}"; do
  mkdir -p "$S/state-$l"
  out=$(rt_of "$l" --root "$S/state-$l" run --bundle "$W/b" smoke 2>&1 </dev/null) || die "$l cannot run the bundle: $out"
  rt_of "$l" --root "$S/state-$l" delete -f smoke >/dev/null 2>&1
done

{
  echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "host	$(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "load_before	$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "cgroups	$CG"
  echo "knobs	QUICK=${QUICK:-0} RUNS=$RUNS LOOP=$LOOP SEQ=$SEQ HANG=$HANG"
  echo "nk	$("$NK" --version 2>/dev/null | head -1) ($(git -C "$TOP" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo "runc	$(runc --version | head -1)"
  echo "crun	$(crun --version | head -1)"
} > "$OUT/meta.tsv"
log "$(uname -r) $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); cgroups: $CG; sections: $SECTIONS"

for s in $SECTIONS; do
  [ -f "$HERE/$s.sh" ] || die "no such section: $s"
  sec_t0=$(date +%s)
  log "section $s"
  . "$HERE/$s.sh"
  echo "time_$s	$(( $(date +%s) - sec_t0 ))" >> "$OUT/meta.tsv"
done
echo "load_after	$(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/meta.tsv"
echo "duration_s	$(( $(date +%s) - T_START ))" >> "$OUT/meta.tsv"
cp -r "$W/raw" "$OUT/" 2>/dev/null

python3 "$HERE/report.py" "$OUT" || die "report.py failed"
if [ "${UPDATE_DOCS:-0}" = 1 ]; then
  python3 "$HERE/report.py" "$OUT" --docs "$TOP/docs" || die "report.py --docs failed"
  log "docs/performance.md and docs/img/bench/ updated"
fi
cat "$OUT/tables.md"
[ "${HUNG:-0}" = 0 ]
