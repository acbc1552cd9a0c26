#!/usr/bin/env bash
# bench/explain-cost.sh - what -E/--explain and --trace cost, and that off costs nothing.
#
#   bench/explain-cost.sh              # RUNS=50
#   RUNS=200 bench/explain-cost.sh
#   NK=/path/to/nk-runtime bench/explain-cost.sh
#   RESULTS=file bench/explain-cost.sh   # also append the rows to a
#                                        # results.tsv of bench/run.sh
#   STATE_ROOT=dir bench/explain-cost.sh # the state root (bench/run.sh
#                                        # gives one on its tmpfs)
#
# Rows: `nk-runtime run` of /bin/true on the busybox bundle with everything
# off, with --trace=json, with -E, with both, and with --log-level debug
# (which logs every step). p50 and p95 over RUNS runs (hyperfine), and each
# row's p50 minus the p50 of "off".
#
# Why "off" is nil: every step and phase site in the code is
#     explain::step(&catalog::X, || detail)   /   explain::phase(Phase::Y)
# and with all switches off both are one relaxed load of one atomic byte and
# a branch not taken: the detail closure never runs, no clock is read,
# nothing is allocated (see crates/sandbox/src/explain/mod.rs). The per-run
# rows cannot resolve a cost that small, so the script also measures one
# call in a loop (crates/sandbox/examples/explain_off.rs), counts how many
# such sites one run passes, and prints the product next to the time of a run.
set -uo pipefail
export LC_ALL=C
RUNS=${RUNS:-50}
HERE=$(cd "$(dirname "$0")" && pwd); TOP=$(dirname "$HERE")
NK=${NK:-$TOP/target/x86_64-unknown-linux-gnu/release/nk-runtime}

die() { echo "explain-cost: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$NK" ] || die "$NK is not built: run 'make build'"
command -v hyperfine >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 hyperfine >/dev/null || die "apt-get install hyperfine failed"; }

W=$(mktemp -d /tmp/nk-explain-cost.XXXXXX)
ST=${STATE_ROOT:-$W/state}
cleanup() {
  for id in $(ls "$ST" 2>/dev/null); do "$NK" --root "$ST" delete -f "$id" >/dev/null 2>&1; done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$TOP/scripts/mk-rootfs.sh" "$W/rootfs" >/dev/null || die "rootfs"
mkdir -p "$W/b" "$ST"
"$NK" spec --bundle "$W/b"
python3 - "$W/b/config.json" "$W/rootfs" <<'PY'
import json, sys
p, r = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["root"]["path"] = r
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open(p, "w"))
PY
"$NK" --root "$ST" run --bundle "$W/b" smoke >/dev/null 2>&1 || die "nk-runtime cannot run the bundle"

echo "explain-cost: $(date -Is) $(uname -r) $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), RUNS=$RUNS, $NK" >&2

# How many narration sites one run passes: every step printed by -E, every
# phase guard reported by --trace (the child's included).
steps=$("$NK" --root "$ST" -E run --bundle "$W/b" count 2>&1 >/dev/null | grep -cE '^ *[0-9]+\. \[')
phases=$("$NK" --root "$ST" --trace=json run --bundle "$W/b" count2 2>&1 >/dev/null | tail -1 \
  | python3 -c 'import json,sys; print(sum(r["count"] for r in json.load(sys.stdin)["phases"]))')

rows=(off trace explain "explain+trace" "log-level debug")
cmd_of() {
  local base="$NK --root $ST"
  case $1 in
    off) echo "$base run --bundle $W/b r-off";;
    trace) echo "$base --trace=json run --bundle $W/b r-trace";;
    explain) echo "$base -E run --bundle $W/b r-explain";;
    "explain+trace") echo "$base -E --trace run --bundle $W/b r-both";;
    "log-level debug") echo "$base --log-level debug --log $W/debug.log run --bundle $W/b r-debug";;
  esac
}
args=()
for r in "${rows[@]}"; do args+=(-n "$r" "$(cmd_of "$r")"); done
hyperfine -N -i --output=null -w 5 -r "$RUNS" --export-json "$W/hf.json" "${args[@]}" >/dev/null 2>&1 || die "hyperfine failed"

# One call, measured in a loop of 200 million (release build of the example).
(cd "$TOP" && cargo run -q --release -p sandbox --example explain_off) > "$W/micro.txt" 2>"$W/micro.err" \
  || die "cargo run --example explain_off failed: $(tail -3 "$W/micro.err")"

RESULTS=${RESULTS:-} python3 - "$W/hf.json" "$steps" "$phases" "$W/micro.txt" <<'PY'
import json, os, re, sys
d = json.load(open(sys.argv[1])); steps, phases = int(sys.argv[2]), int(sys.argv[3])
micro = open(sys.argv[4]).read()
def delta(name):
    m = re.search(re.escape(name) + r" off: +[0-9.]+ ns per iteration \(([-+0-9.]+) ns\)", micro)
    return max(0.0, float(m.group(1)))
def pct(v, q):
    v = sorted(v); i = max(0, min(len(v) - 1, int(q * len(v) + 0.5) - 1)); return v[i]
res = {r["command"]: [t * 1000 for t in r["times"]] for r in d["results"]}
base = pct(res["off"], 0.5)
print(f"\n{'nk-runtime run /bin/true':<26} {'p50 ms':>8} {'p95 ms':>8} {'p50 - off':>10}")
for name, t in res.items():
    p50, p95 = pct(t, 0.5), pct(t, 0.95)
    print(f"{name:<26} {p50:>8.2f} {p95:>8.2f} {p50 - base:>+10.2f}")
ds, dp = delta("explain::step"), delta("explain::phase")
cost_ns = steps * ds + phases * dp
print()
print(micro.strip())
print(f"\none run passes {steps} steps and {phases} phase guards.")
print(f"off: {steps} x {ds:.3f} ns + {phases} x {dp:.3f} ns = {cost_ns:.1f} ns per run,")
print(f"     {100 * cost_ns / 1e6 / base:.5f} % of the {base:.2f} ms run.")
if os.environ.get("RESULTS"):
    with open(os.environ["RESULTS"], "a") as f:
        for name, t in res.items():
            f.write(f"cost\t{name}\t\tnk\t{pct(t, 0.5):.3f}\t{pct(t, 0.95):.3f}\tms\t{len(t)}\n")
        f.write(f"cost\toff: {steps} steps + {phases} phase guards, bound\t\tnk\t{cost_ns:.1f}\t{cost_ns:.1f}\tns\t1\n")
PY
