# bench/budget.sh - section "budget" of bench/run.sh (sourced): where the
# time of nk-runtime's `run` goes, phase by phase (--trace=json, RUNS runs),
# beside the kernel's own minimum for each phase, measured by the floor
# programs (bench/floor/*.c, built here with gcc) on the same config and
# rootfs; and `run` without tracing for nk and crun (hyperfine).

FL=$W/floor; mkdir -p "$FL"
for p in run cgroup state; do
  gcc -O2 -static -o "$FL/floor-$p" "$HERE/floor/$p.c" 2>"$FL/$p.cc.err" || die "gcc $p.c: $(tail -3 "$FL/$p.cc.err")"
done
gcc -O2 -o "$FL/floor-seccomp" "$HERE/floor/seccomp.c" -lseccomp 2>"$FL/seccomp.cc.err" || die "gcc seccomp.c: $(tail -3 "$FL/seccomp.cc.err")"

# The device rules runtimes write for runc's default spec (deny all, then
# the default devices, as nk's device_rules and runc do).
DEVRULES=('c *:* m' 'b *:* m' 'c 1:3 rwm' 'c 1:8 rwm' 'c 1:7 rwm' 'c 5:0 rwm' 'c 1:5 rwm' 'c 1:9 rwm' 'c 5:1 rwm' 'c 136:* rwm' 'c 5:2 rwm' 'c 10:200 rwm')

# budget_of NAME BUNDLE: one config's budget.
budget_of() {
  local name=$1 b=$2 f="$W/budget-$1" fs="$S/floor-state-$1" i
  python3 "$HERE/floor/plan.py" run "$b/config.json" > "$f.plan" || die "plan.py run $b"
  python3 "$HERE/floor/plan.py" seccomp "$b/config.json" > "$f.seccomp" || die "plan.py seccomp $b"
  local root; root=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["root"]["path"])' "$b/config.json")
  mkdir -p "$fs"
  {
    "$FL/floor-run" -n "$RUNS" "$f.plan" "$root" /bin/true | sed 's/^/run:/' || die "floor-run on $name failed"
    "$FL/floor-cgroup" -n "$RUNS" "nk-bench-floor-$$" "${DEVRULES[@]}" | sed 's/^/cgroup:/' || die "floor-cgroup failed"
    "$FL/floor-state" -n "$RUNS" "$fs" 1300 | sed 's/^/state:/' || die "floor-state failed"
    if [ -s "$f.seccomp" ]; then
      "$FL/floor-seccomp" -n "$RUNS" "$f.seccomp" | sed 's/^/seccomp:/' || die "floor-seccomp on $name failed"
    fi
  } > "$f.floor"
  : > "$f.traces"
  for i in $(seq "$RUNS"); do
    "$NK" --root "$S/state-nk" --trace=json run --bundle "$b" "budget-$i" </dev/null 2>&1 >/dev/null | tail -1 >> "$f.traces"
  done
  python3 "$HERE/budget.py" "$RES" "$name" "$f.floor" "$f.traces" || die "budget.py $name"
  cp "$f.floor" "$W/raw/budget-$name.floor"; cp "$f.traces" "$W/raw/budget-$name.traces"
  # `run` without tracing, nk and crun side by side.
  local specs=()
  for l in nk crun; do specs+=("$l=$(bin_of "$l") --root $S/state-$l run --bundle $b bud-$l"); done
  hf budget-run "run, no tracing" "$name" "$RUNS" "${specs[@]}"
  awk -F'\t' -v c="$name" 'BEGIN{OFS="\t"} $1=="budget-run" && $3==c {$1="budget"; $2="wall clock, run without --trace (hyperfine)"; print}' "$RES" >> "$RES.tmp"
  grep -v '^budget-run	' "$RES" > "$RES.new"; cat "$RES.tmp" >> "$RES.new"; mv "$RES.new" "$RES"; rm -f "$RES.tmp"
}

budget_of "base bundle" "$W/b"
# The same on the config Docker sends: its seccomp profile, its mounts.
if [ -f "$HERE/fixtures/docker.json" ]; then
  fixture_cgroup_parents "$HERE/fixtures/docker.json"
  fixture_bundle "$HERE/fixtures/docker.json" "$W/fxb-docker" budget
  budget_of "Docker fixture" "$W/fxb-docker"
  remove_fixture_cgroup_parents
fi
