#!/usr/bin/env bash
# bench/run.sh - nk-runtime side by side with runc and crun, in one run.
#
#   bench/run.sh                 # default: RUNS=50 LOOP=100 SEQ=100 HANG=1000
#   RUNS=20 LOOP=30 SEQ=20 HANG=100 bench/run.sh   # quicker
#   NK=/path/to/nk-runtime bench/run.sh
#
# Rows, for every runtime on the same bundle (busybox, /bin/true, runc's
# default spec): `run` (create+start+wait+delete), create, start, delete,
# state, 100 sequential runs, peak RSS of `run`, binary size; then the ratio
# of each runtime's p50 to crun's. A last row checks that HANG runs of
# /bin/true under nk-runtime never hang (each run has a 10 s watchdog).
#
# crun refuses this host's hybrid cgroups (cgroup2 at /sys/fs/cgroup/unified
# with hugetlb). Like ../shared/bench, the whole benchmark re-executes itself
# in a private mount namespace with that cgroup2 mount removed, so all three
# runtimes see the same pure cgroup v1 host. The host is not changed.
set -uo pipefail
export LC_ALL=C
RUNS=${RUNS:-50}; LOOP=${LOOP:-100}; SEQ=${SEQ:-100}; HANG=${HANG:-1000}
HERE=$(cd "$(dirname "$0")" && pwd); TOP=$(dirname "$HERE")
NK=${NK:-$TOP/target/x86_64-unknown-linux-gnu/release/nk-runtime}

die() { echo "bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$NK" ] || die "$NK is not built: run 'make build'"
need=""
for p in hyperfine runc crun time; do dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"; done
if [ -n "$need" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 $need >/dev/null || die "apt-get install$need failed"
fi

if [ -z "${NK_BENCH_INNS:-}" ] && mountpoint -q /sys/fs/cgroup/unified 2>/dev/null; then
  exec unshare -m --propagation private -- env NK_BENCH_INNS=1 bash "$0" "$@"
fi
if [ -n "${NK_BENCH_INNS:-}" ]; then umount /sys/fs/cgroup/unified 2>/dev/null; CG="pure v1 (cgroup2 unmounted in a private mount namespace)"; else CG="host as is"; fi

W=$(mktemp -d /tmp/nk-bench.XXXXXX)
cleanup() {
  for l in nk runc crun; do
    for id in $(ls "$W/state-$l" 2>/dev/null); do rt_of "$l" --root "$W/state-$l" delete -f "$id" >/dev/null 2>&1; done
  done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rt_of() { local l=$1; shift; case $l in nk) "$NK" "$@";; runc) runc "$@";; crun) crun "$@";; esac; }
bin_of() { case $1 in nk) echo "$NK";; runc) command -v runc;; crun) command -v crun;; esac; }

"$TOP/scripts/mk-rootfs.sh" "$W/rootfs" >/dev/null || die "rootfs"
mkdir -p "$W/b"
"$NK" spec --bundle "$W/b"
python3 - "$W/b/config.json" "$W/rootfs" <<'PY'
import json, sys
p, r = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["ociVersion"] = "1.0.2-dev"          # crun 1.8 knows no later version
c["root"]["path"] = r
c["hostname"] = "runc"
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(p, "w"))
PY

LABELS=(nk runc crun)
for l in "${LABELS[@]}"; do
  mkdir -p "$W/state-$l"
  out=$(rt_of "$l" --root "$W/state-$l" run --bundle "$W/b" smoke 2>&1) || die "$l cannot run the bundle: $out"
  rt_of "$l" --root "$W/state-$l" delete -f smoke >/dev/null 2>&1
done

ms_stats() { sort -g | awk '{a[NR]=$1; s+=$1} END{ if(NR==0){print "NA NA"; exit}
  i=int(0.5*NR+0.5); if(i<1)i=1; j=int(0.95*NR+0.5); if(j<1)j=1; printf "%.2f %.2f\n", a[i], a[j]}'; }
declare -A P50 P95

hf() {  # row, then label=command pairs
  # hyperfine times one command's runs back to back; load that comes and goes
  # would then favour whichever runtime ran in the quiet spell. So the runs
  # are split into 5 rounds, the order of the runtimes reversed every other
  # round, and the times of all rounds pooled.
  local row=$1; shift
  local specs=("$@") per=$(( (RUNS + 4) / 5 )) r k
  for spec in "${specs[@]}"; do : > "$W/t-${spec%%=*}"; done
  for r in 1 2 3 4 5; do
    local args=() names=() order=("${specs[@]}")
    if [ $((r % 2)) -eq 0 ]; then order=(); for ((k=${#specs[@]}-1; k>=0; k--)); do order+=("${specs[$k]}"); done; fi
    for spec in "${order[@]}"; do names+=("${spec%%=*}"); args+=(-n "${spec%%=*}" "${spec#*=}"); done
    hyperfine -N -i --output=pipe -w 3 -r "$per" --export-json "$W/hf.json" "${args[@]}" >/dev/null 2>&1 || die "hyperfine $row failed"
    for k in "${!names[@]}"; do
      python3 -c "import json;d=json.load(open('$W/hf.json'));print('\n'.join(str(t*1000) for t in d['results'][$k]['times']))" >> "$W/t-${names[$k]}"
    done
  done
  for spec in "${specs[@]}"; do
    read -r a b < <(ms_stats < "$W/t-${spec%%=*}")
    P50[$row,${spec%%=*}]=$a; P95[$row,${spec%%=*}]=$b
  done
}

now_us() { echo "${EPOCHREALTIME/./}"; }
echo "bench: $(date -Is) $(uname -r) $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); cgroups: $CG" >&2

# run of /bin/true (the attached run of every runtime deletes its container).
specs=(); for l in "${LABELS[@]}"; do specs+=("$l=$(bin_of $l) --root $W/state-$l run --bundle $W/b r-$l"); done
hf "run /bin/true" "${specs[@]}"

# create / start / delete, runtimes interleaved.
for l in "${LABELS[@]}"; do : > "$W/c-$l"; : > "$W/s-$l"; : > "$W/d-$l"; done
for i in $(seq "$LOOP"); do
  for l in "${LABELS[@]}"; do
    st="$W/state-$l"; id="csd-$i"
    t0=$(now_us); rt_of "$l" --root "$st" create --bundle "$W/b" "$id" </dev/null >/dev/null 2>&1; t1=$(now_us)
    rt_of "$l" --root "$st" start "$id" </dev/null >/dev/null 2>&1; t2=$(now_us)
    for k in $(seq 200); do rt_of "$l" --root "$st" state "$id" 2>/dev/null | grep -q '"stopped"' && break; sleep 0.005; done
    t3=$(now_us); rt_of "$l" --root "$st" delete "$id" </dev/null >/dev/null 2>&1; t4=$(now_us)
    echo "scale=3; ($t1-$t0)/1000" | bc >> "$W/c-$l"
    echo "scale=3; ($t2-$t1)/1000" | bc >> "$W/s-$l"
    echo "scale=3; ($t4-$t3)/1000" | bc >> "$W/d-$l"
  done
done
for l in "${LABELS[@]}"; do
  read -r P50[create,$l] P95[create,$l] < <(ms_stats < "$W/c-$l")
  read -r P50[start,$l] P95[start,$l] < <(ms_stats < "$W/s-$l")
  read -r P50[delete,$l] P95[delete,$l] < <(ms_stats < "$W/d-$l")
done

# state of a running container.
python3 - "$W/b/config.json" "$W/sleep.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["process"]["args"] = ["/bin/sleep", "1000"]; json.dump(c, open(sys.argv[2], "w"))
PY
mkdir -p "$W/bs"; cp "$W/sleep.json" "$W/bs/config.json"
for l in "${LABELS[@]}"; do rt_of "$l" --root "$W/state-$l" run -d --bundle "$W/bs" held </dev/null >/dev/null 2>&1; done
specs=(); for l in "${LABELS[@]}"; do specs+=("$l=$(bin_of $l) --root $W/state-$l state held"); done
hf "state" "${specs[@]}"
for l in "${LABELS[@]}"; do rt_of "$l" --root "$W/state-$l" delete -f held >/dev/null 2>&1; done

# SEQ sequential runs, total time.
for l in "${LABELS[@]}"; do
  t0=$(now_us)
  for i in $(seq "$SEQ"); do rt_of "$l" --root "$W/state-$l" run --bundle "$W/b" "seq-$i" </dev/null >/dev/null 2>&1; done
  t1=$(now_us)
  P50["$SEQ sequential runs",$l]=$(echo "scale=1; ($t1-$t0)/1000" | bc); P95["$SEQ sequential runs",$l]="-"
done

# Peak RSS of run (KiB), median of 5.
for l in "${LABELS[@]}"; do
  for i in 1 2 3 4 5; do /usr/bin/time -f %M -o "$W/rss" "$(bin_of $l)" --root "$W/state-$l" run --bundle "$W/b" rss </dev/null >/dev/null 2>&1; tail -1 "$W/rss"; done > "$W/rss-$l"
  read -r P50["peak RSS of run (KiB)",$l] _ < <(ms_stats < "$W/rss-$l"); P95["peak RSS of run (KiB)",$l]="-"
  P50["binary size (KiB)",$l]=$(( $(stat -L -c %s "$(bin_of $l)") / 1024 )); P95["binary size (KiB)",$l]="-"
done

printf '\n%-26s' "row (p50 / p95 ms)"; for l in "${LABELS[@]}"; do printf ' | %-17s' "$l"; done; printf ' | %s\n' "nk/crun  runc/crun"
for row in "run /bin/true" create start delete state "$SEQ sequential runs" "peak RSS of run (KiB)" "binary size (KiB)"; do
  printf '%-26s' "$row"
  for l in "${LABELS[@]}"; do
    v=${P50[$row,$l]}; q=${P95[$row,$l]}
    if [ "$q" = "-" ]; then printf ' | %-17s' "$v"; else printf ' | %-17s' "$v / $q"; fi
  done
  c=${P50[$row,crun]}
  printf ' | %s  %s\n' "$(echo "scale=2; ${P50[$row,nk]} / $c" | bc)" "$(echo "scale=2; ${P50[$row,runc]} / $c" | bc)"
done

# HANG runs of /bin/true must never hang.
hangs=0
for i in $(seq "$HANG"); do
  timeout -k 1 10 "$NK" --root "$W/state-nk" run --bundle "$W/b" "hang-$i" </dev/null >/dev/null 2>&1
  rc=$?
  if [ $rc = 124 ] || [ $rc = 137 ]; then hangs=$((hangs+1)); "$NK" --root "$W/state-nk" delete -f "hang-$i" >/dev/null 2>&1; fi
done
echo
echo "nk-runtime: $HANG runs of /bin/true, $hangs hung"
[ "$hangs" = 0 ]
