# bench/lib.sh - shared by the sections of bench/run.sh (sourced, not run).
#
# Every measurement ends as one line of $RES (tab-separated):
#   group  row  x  runtime  p50  p95  unit  n
# bench/report.py turns that file into the Markdown tables and SVG charts.
# A value that has no p95 (a total, a count) repeats p50 there.

LABELS=(nk runc crun)

rt_of() { local l=$1; shift; case $l in nk) "$NK" "$@";; runc) runc "$@";; crun) crun "$@";; esac; }
bin_of() { case $1 in nk) echo "$NK";; runc) command -v runc;; crun) command -v crun;; esac; }
log() { echo "bench: [$(date +%T)] $*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# now_us VAR: the time in microseconds, into VAR. Not `$(now_us)`: that
# forks a subshell, whose fork and exit (about a millisecond here) would
# fall inside every interval measured with it, for every runtime alike.
now_us() { printf -v "$1" '%s' "${EPOCHREALTIME/./}"; }
# us_ms T0 T1: the interval in ms with 3 decimals, without forking bc.
us_ms() { local d=$(( $2 - $1 )); printf '%d.%03d\n' $((d / 1000)) $((d % 1000)); }

# stats < values: "p50 p95 n" (nearest rank).
stats() {
  sort -g | awk '{a[NR]=$1} END{ if(NR==0){print "NA NA 0"; exit}
    i=int(0.5*NR+0.5); if(i<1)i=1; j=int(0.95*NR+0.5); if(j<1)j=1; if(j>NR)j=NR
    printf "%.3f %.3f %d\n", a[i], a[j], NR}'
}

# record GROUP ROW X RUNTIME UNIT FILE: one result line from a file of samples.
record() {
  local p50 p95 n
  read -r p50 p95 n < <(stats < "$6")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$p50" "$p95" "$5" "$n" >> "$RES"
}
# record_value GROUP ROW X RUNTIME UNIT VALUE: a single number.
record_value() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t1\n' "$1" "$2" "$3" "$4" "$6" "$6" "$5" >> "$RES"
}

# hf GROUP ROW X NRUNS label=command...: hyperfine, pooled over 5 rounds.
# hyperfine times one command's runs back to back; load that comes and goes
# would then favour whichever runtime ran in the quiet spell. So the runs are
# split into 5 rounds, the order of the runtimes reversed every other round,
# and the times of all rounds pooled. Samples land in $W/raw/.
hf() {
  local group=$1 row=$2 x=$3 n=$4; shift 4
  local specs=("$@") per=$(( (n + 4) / 5 )) r k tag
  tag=$(echo "$group-$row-$x" | tr -c 'A-Za-z0-9_.\n-' _)
  for spec in "${specs[@]}"; do : > "$W/raw/$tag.${spec%%=*}"; done
  for r in 1 2 3 4 5; do
    local args=() names=() order=("${specs[@]}")
    if [ $((r % 2)) -eq 0 ]; then order=(); for ((k=${#specs[@]}-1; k>=0; k--)); do order+=("${specs[$k]}"); done; fi
    for spec in "${order[@]}"; do names+=("${spec%%=*}"); args+=(-n "${spec%%=*}" "${spec#*=}"); done
    hyperfine -N -i --output=pipe -w 2 -r "$per" --export-json "$W/hf.json" "${args[@]}" >"$W/hf.out" 2>&1 \
      || die "hyperfine $group/$row/$x failed: $(tail -3 "$W/hf.out")"
    python3 - "$W/hf.json" "$W/raw/$tag" "${names[@]}" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for name, res in zip(sys.argv[3:], d["results"]):
    with open(f"{sys.argv[2]}.{name}", "a") as f:
        f.writelines(f"{t * 1000:.4f}\n" for t in res["times"])
PY
  done
  for spec in "${specs[@]}"; do record "$group" "$row" "$x" "${spec%%=*}" ms "$W/raw/$tag.${spec%%=*}"; done
}

# json_edit FILE PYTHON-STATEMENTS: edit a config.json in place (`c` is the
# parsed document; `sys.argv[2:]` are the extra arguments).
json_edit() {
  local f=$1 code=$2; shift 2
  python3 - "$f" "$@" <<PY || die "editing $f failed"
import json, sys
c = json.load(open(sys.argv[1]))
$code
json.dump(c, open(sys.argv[1], "w"), indent=1)
PY
}

# mkbundle DIR ARGS-JSON: the base bundle (runc's default spec as nk writes
# it, busybox rootfs) with this command.
mkbundle() {
  mkdir -p "$1"
  cp "$W/base.json" "$1/config.json"
  json_edit "$1/config.json" 'c["process"]["args"] = json.loads(sys.argv[2])' "$2"
}

# clean_root LABEL ROOT: force-delete every container of a state root.
clean_root() {
  local id
  for id in $(ls "$2" 2>/dev/null); do
    case $id in .*) continue;; esac
    rt_of "$1" --root "$2" delete -f "$id" >/dev/null 2>&1
  done
}

# wait_stopped LABEL ROOT ID: poll state until the container has stopped.
wait_stopped() {
  local k
  for k in $(seq 400); do
    rt_of "$1" --root "$2" state "$3" 2>/dev/null | grep -q '"stopped"' && return 0
    sleep 0.005
  done
  return 1
}

# fixture_bundle FIXTURE DIR LABEL [nosec]: a bundle in DIR from an engine's
# captured config (bench/fixtures/*.json): the placeholders re-pointed at
# the bench's rootfs and at files and directories made in DIR, @ID@ (the
# container id in the cgroup path) made LABEL's own, rlimits clamped to this
# host's hard limits (an engine asks for what its host allows). With
# "nosec", linux.seccomp is dropped: the same config without its profile.
fixture_bundle() {
  mkdir -p "$2"
  python3 - "$1" "$2" "$3" "$ROOTFS" "${4:-}" <<'PY' || die "cannot make a bundle of $1"
import json, os, resource, sys
fx, d, label, rootfs, mode = sys.argv[1:6]
text = open(fx).read().replace("@ROOTFS@", rootfs).replace("@ID@", f"bench-{label}")
text = text.replace("@FILES@", os.path.join(d, "files")).replace("@DIRS@", os.path.join(d, "dirs"))
c = json.loads(text)
for m in c.get("mounts", []):
    s = m.get("source", "")
    if s.startswith(os.path.join(d, "files") + "/"):
        os.makedirs(os.path.dirname(s), exist_ok=True)
        with open(s, "w") as f:
            f.write({"hosts": "127.0.0.1 localhost\n", "hostname": "bench\n"}.get(os.path.basename(s), ""))
    elif s.startswith(os.path.join(d, "dirs") + "/"):
        os.makedirs(s, exist_ok=True)
names = {"RLIMIT_NOFILE": resource.RLIMIT_NOFILE, "RLIMIT_NPROC": resource.RLIMIT_NPROC}
for r in c.get("process", {}).get("rlimits", []):
    if r["type"] in names:
        hard = resource.getrlimit(names[r["type"]])[1]
        if hard != resource.RLIM_INFINITY:
            r["hard"] = min(r["hard"], hard); r["soft"] = min(r["soft"], r["hard"])
if mode == "nosec":
    c["linux"].pop("seccomp", None)
json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=1)
PY
}

# The captured fixtures, in row order: file name, row title. The CRI
# plugin's default pod has no seccomp profile (the kubelet sends Unconfined
# unless it runs with --seccomp-default); RuntimeDefault is what most
# clusters set.
FIXTURES=("docker:Docker 20.10 (dockerd)" "podman:Podman 4.3"
  "cri:containerd 1.6 CRI, default pod (no seccomp)"
  "cri-runtime-default:containerd 1.6 CRI, seccomp RuntimeDefault")

# fixture_cgroup_parents FX: the parents of the fixture's cgroupsPath
# (/docker, /kubepods/besteffort/pod<uid>) that no hierarchy has yet, into
# `made` (and the path into `parent`): the runtimes remove the container's
# own cgroup, not the parents they made for it, so those are the bench's.
fixture_cgroup_parents() {
  parent=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["linux"].get("cgroupsPath", "").strip("/").rpartition("/")[0])' "$1")
  made=()
  if [ -n "$parent" ]; then
    for c in /sys/fs/cgroup/*/; do [ -d "$c${parent%%/*}" ] || made+=("$c$parent"); done
  fi
}
# remove_fixture_cgroup_parents: rmdir what fixture_cgroup_parents found,
# deepest first, stopping at the first directory that is not empty.
remove_fixture_cgroup_parents() {
  local d p
  for d in "${made[@]}"; do
    p=$parent
    while [ -n "$p" ] && rmdir "$d" 2>/dev/null; do
      [ "$p" = "${p%/*}" ] && break
      p=${p%/*}; d=${d%/*}
    done
  done
}
