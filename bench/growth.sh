# bench/growth.sh - section "growth" of bench/run.sh (sourced): how the cost
# grows with the work, nk, runc and crun side by side. Sizes (env, or
# smaller with QUICK=1):
#   G_BINDS       run with N bind mounts (rbind of one directory)
#   G_CONTAINERS  state and list with N containers in the root (N-1 stopped,
#                 one running; no network namespace, so a thousand are cheap)
#   G_RULES       run with a seccomp profile of N rules (default allow, each
#                 rule one syscall with an argument condition, so any N is
#                 possible; the three x86 architectures as Docker lists);
#                 floor-seccomp on the same profiles gives libseccomp's own
#   G_PARALLEL    N runs of /bin/true started at once: wall time of the
#                 batch (median of G_REPS batches) and containers per second
#   G_PROCS       exec /bin/true into a container that has N processes
if [ "${QUICK:-0}" = 1 ]; then
  G_BINDS=${G_BINDS:-1 10 50}; G_CONTAINERS=${G_CONTAINERS:-1 10 100}; G_RULES=${G_RULES:-50 350 1000}
  G_PARALLEL=${G_PARALLEL:-1 4 16}; G_PROCS=${G_PROCS:-1 10 100}; G_REPS=${G_REPS:-2}
else
  G_BINDS=${G_BINDS:-1 10 50 200}; G_CONTAINERS=${G_CONTAINERS:-1 100 1000}; G_RULES=${G_RULES:-50 350 1000}
  G_PARALLEL=${G_PARALLEL:-1 4 16 64}; G_PROCS=${G_PROCS:-1 100 1000}; G_REPS=${G_REPS:-5}
fi
GRUNS=$(( RUNS > 20 ? RUNS / 2 : RUNS ))

# --- bind mounts ---
mkdir -p "$W/bindsrc"
for n in $G_BINDS; do
  mkbundle "$W/gb-$n" '["/bin/true"]'
  json_edit "$W/gb-$n/config.json" '
n = int(sys.argv[2])
for i in range(n):
    c["mounts"].append({"destination": f"/mnt/b{i}", "type": "bind", "source": sys.argv[3], "options": ["rbind", "rprivate"]})' "$n" "$W/bindsrc"
  for i in $(seq 0 $((n - 1))); do mkdir -p "$ROOTFS/mnt/b$i"; done
  specs=(); for l in "${LABELS[@]}"; do specs+=("$l=$(bin_of "$l") --root $S/state-$l run --bundle $W/gb-$n gb-$l"); done
  hf growth-binds run "$n" "$GRUNS" "${specs[@]}"
done

# --- containers in the root ---
mkbundle "$W/gc" '["/bin/true"]'
json_edit "$W/gc/config.json" 'c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]'
mkbundle "$W/gcs" '["/bin/sleep", "1000"]'
json_edit "$W/gcs/config.json" 'c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]'
for l in "${LABELS[@]}"; do
  mkdir -p "$S/state-$l-many"
  rt_of "$l" --root "$S/state-$l-many" run -d --bundle "$W/gcs" held </dev/null >/dev/null 2>"$W/err" || die "$l: run -d in the growth root failed: $(tail -3 "$W/err")"
done
have=1
for n in $G_CONTAINERS; do
  # Grow every root to n containers: create and start /bin/true, leave it stopped.
  for l in "${LABELS[@]}"; do
    for i in $(seq "$have" $((n - 1))); do
      rt_of "$l" --root "$S/state-$l-many" create --bundle "$W/gc" "c$i" </dev/null >/dev/null 2>&1 \
        && rt_of "$l" --root "$S/state-$l-many" start "c$i" </dev/null >/dev/null 2>&1 || die "$l: container c$i of $n failed"
    done
  done
  have=$n
  for l in "${LABELS[@]}"; do
    got=$(rt_of "$l" --root "$S/state-$l-many" list -q 2>/dev/null | wc -l)
    [ "$got" = "$n" ] || die "$l lists $got containers, want $n"
  done
  specs=(); for l in "${LABELS[@]}"; do specs+=("$l=$(bin_of "$l") --root $S/state-$l-many state held"); done
  hf growth-state state "$n" "$GRUNS" "${specs[@]}"
  specs=(); for l in "${LABELS[@]}"; do specs+=("$l=$(bin_of "$l") --root $S/state-$l-many list"); done
  hf growth-list list "$n" "$GRUNS" "${specs[@]}"
done
for l in "${LABELS[@]}"; do clean_root "$l" "$S/state-$l-many"; done

# --- seccomp rules ---
for n in $G_RULES; do
  mkbundle "$W/gs-$n" '["/bin/true"]'
  json_edit "$W/gs-$n/config.json" '
pool = ["getpriority", "setpriority", "personality", "sched_getparam", "sched_getscheduler",
        "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval", "getpgid",
        "getsid", "setfsuid", "setfsgid", "ioprio_get", "ioprio_set", "kcmp", "syslog", "acct",
        "mlockall", "flock", "fchdir"]
n = int(sys.argv[2])
c["linux"]["seccomp"] = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [{"names": [pool[i % len(pool)]], "action": "SCMP_ACT_ERRNO",
                  "args": [{"index": 0, "value": 100000 + i, "op": "SCMP_CMP_EQ"}]} for i in range(n)]}' "$n"
  specs=(); for l in "${LABELS[@]}"; do specs+=("$l=$(bin_of "$l") --root $S/state-$l run --bundle $W/gs-$n gs-$l"); done
  hf growth-seccomp run "$n" "$GRUNS" "${specs[@]}"
  mkdir -p "$W/floor"
  [ -x "$W/floor/floor-seccomp" ] || gcc -O2 -o "$W/floor/floor-seccomp" "$HERE/floor/seccomp.c" -lseccomp || die "gcc seccomp.c"
  python3 "$HERE/floor/plan.py" seccomp "$W/gs-$n/config.json" > "$W/gs-$n.txt"
  "$W/floor/floor-seccomp" -n "$GRUNS" "$W/gs-$n.txt" \
    | awk -F'\t' '$1=="rules"{r=$2} $1=="compile and load"{print (r+$2)/1e6}' > "$W/raw/gs-floor-$n"
  record growth-seccomp run "$n" floor ms "$W/raw/gs-floor-$n"
done

# --- parallel starts ---
for k in $G_PARALLEL; do
  for l in "${LABELS[@]}"; do : > "$W/raw/gp-$k.$l"; done
  for rep in $(seq "$G_REPS"); do
    for l in "${LABELS[@]}"; do
      now_us t0
      for i in $(seq "$k"); do rt_of "$l" --root "$S/state-$l" run --bundle "$W/b" "p$rep-$i" </dev/null >/dev/null 2>&1 & done
      wait
      now_us t1
      us_ms "$t0" "$t1" >> "$W/raw/gp-$k.$l"
      clean_root "$l" "$S/state-$l"
    done
  done
  for l in "${LABELS[@]}"; do
    record growth-parallel "batch wall time" "$k" "$l" ms "$W/raw/gp-$k.$l"
    awk -v k="$k" '{print k * 1000 / $1}' "$W/raw/gp-$k.$l" > "$W/raw/gp-$k.$l.rate"
    record growth-parallel "containers per second" "$k" "$l" /s "$W/raw/gp-$k.$l.rate"
  done
done

# --- exec into a container with N processes ---
# count_in_pidns PID: how many processes share PID's pid namespace.
count_in_pidns() {
  python3 - "$1" <<'PY'
import os, sys
def ns(p):
    try:
        return os.readlink(f"/proc/{p}/ns/pid")
    except OSError:
        return None
me = ns(sys.argv[1])
print(sum(1 for p in os.listdir("/proc") if p.isdigit() and me and ns(p) == me))
PY
}
for n in $G_PROCS; do
  mkbundle "$W/ge-$n" "[\"/bin/sh\", \"-c\", \"i=1; while [ \$i -lt $n ]; do sleep 1000 & i=\$((i+1)); done; exec sleep 1000\"]"
  for l in "${LABELS[@]}"; do
    rt_of "$l" --root "$S/state-$l" run -d --bundle "$W/ge-$n" "ge-$n" </dev/null >/dev/null 2>"$W/err" || die "$l: run -d of $n processes failed: $(tail -3 "$W/err")"
    pid=$(rt_of "$l" --root "$S/state-$l" state "ge-$n" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
    for t in $(seq 600); do [ "$(count_in_pidns "$pid")" -ge "$n" ] && break; sleep 0.1; done
    [ "$(count_in_pidns "$pid")" -ge "$n" ] || die "$l: the container did not reach $n processes"
  done
  specs=(); for l in "${LABELS[@]}"; do specs+=("$l=$(bin_of "$l") --root $S/state-$l exec ge-$n /bin/true"); done
  hf growth-exec exec "$n" "$GRUNS" "${specs[@]}"
  for l in "${LABELS[@]}"; do rt_of "$l" --root "$S/state-$l" delete -f "ge-$n" >/dev/null 2>&1; done
done
