#!/usr/bin/env bash
# bench/smoke.sh - a quick check that the benchmark machinery works: one
# short pass of every section of bench/run.sh (few runs, tiny sizes) into a
# temporary directory, then checks that every table has its rows for every
# runtime and every chart is a well-formed SVG with something drawn.
# The numbers are not looked at. Needs root, like the bench. ~3-5 minutes.
# Last line "N passed, M failed"; exit status 0 only when nothing failed.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp -d /tmp/nk-bench-smoke.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
export QUICK=1 RUNS=5 LOOP=3 SEQ=5 HANG=10 OUT
export G_BINDS="1 5 10" G_CONTAINERS="1 5 10" G_RULES="10 50 100" G_PARALLEL="1 2 4" G_PROCS="1 5 10" G_REPS=1
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "PASS $1"; }
ko() { fail=$((fail + 1)); echo "FAIL $1: $2"; }

if "$HERE/run.sh" > "$OUT/run.log" 2>&1; then ok "bench/run.sh QUICK=1 exits 0"
else ko "bench/run.sh QUICK=1 exits 0" "$(tail -5 "$OUT/run.log" | tr '\n' '|')"; fi

python3 - "$OUT" "$HERE" > "$OUT/checks" <<'PY'
import os, sys, xml.etree.ElementTree as ET
out, here = sys.argv[1], sys.argv[2]
res = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "results.tsv"))] if os.path.exists(os.path.join(out, "results.tsv")) else []
have = {(r[0], r[1], r[2], r[3]) for r in res if len(r) == 8 and r[4] not in ("NA", "")}
def check(name, cond, why=""):
    print(("PASS " if cond else "FAIL ") + name + ("" if cond else " -- " + (why or "no")))
RT = ("nk", "runc", "crun")
for row in ("run /bin/true", "create", "start", "delete", "state", "exec /bin/true", "5 sequential runs", "peak RSS of run", "binary size"):
    miss = [rt for rt in RT if ("core", row, "", rt) not in have]
    check(f"core row '{row}' for every runtime", not miss, f"missing {miss}")
for conf in ("base bundle", "Docker fixture"):
    for rt in ("floor", "nk"):
        n = sum(1 for g, _, x, r in have if g == "budget" and x == conf and r == rt)
        check(f"budget of {conf}: rows for {rt}", n >= 5, f"{n} rows")
    check(f"budget of {conf}: run of crun", ("budget", "wall clock, run without --trace (hyperfine)", conf, "crun") in have)
for fx, vs in (("Docker 20.10 (dockerd)", ("", ", without seccomp")), ("Podman 4.3", ("", ", without seccomp")),
               ("containerd 1.6 CRI, default pod (no seccomp)", ("",)),
               ("containerd 1.6 CRI, seccomp RuntimeDefault", ("", ", without seccomp"))):
    for v in vs:
        miss = [rt for rt in RT if ("fixtures", fx + v, "", rt) not in have]
        check(f"fixture row '{fx}{v}' for every runtime", not miss, f"missing {miss}")
sizes = {"growth-binds": ("run", "1 5 10"), "growth-state": ("state", "1 5 10"), "growth-list": ("list", "1 5 10"),
         "growth-seccomp": ("run", "10 50 100"), "growth-parallel": ("containers per second", "1 2 4"),
         "growth-exec": ("exec", "1 5 10")}
for g, (row, xs) in sizes.items():
    miss = [(x, rt) for x in xs.split() for rt in RT if (g, row, x, rt) not in have]
    check(f"{g} '{row}' at every size for every runtime", not miss, f"missing {miss}")
check("growth-seccomp floor at every size", all(("growth-seccomp", "run", x, "floor") in have for x in ("10", "50", "100")))
check("cost rows (off, trace, explain)", all(("cost", r, "", "nk") in have for r in ("off", "trace", "explain")))
check("hang row", ("hang", "runs of /bin/true that hung", "10", "nk") in have)
tables = open(os.path.join(out, "tables.md")).read() if os.path.exists(os.path.join(out, "tables.md")) else ""
for h in ("One container's life", "Phase budget", "The configs engines send", "Cost as the work grows", "Narration cost and hangs", "Faster than linear"):
    check(f"tables.md has '{h}'", h in tables)
page = open(os.path.join(out, "performance.md")).read() if os.path.exists(os.path.join(out, "performance.md")) else ""
check("performance.md is filled in", page and "@TABLES@" not in page and "One container's life" in page)
for c in ("core", "budget", "budget-docker-fixture", "fixtures", *sizes):
    p = os.path.join(out, c + ".svg")
    try:
        root = ET.parse(p).getroot()
        drawn = sum(1 for e in root.iter() if e.tag.endswith(("rect", "polyline")))
        check(f"chart {c}.svg is SVG with something drawn", root.tag.endswith("svg") and drawn > 3, f"{drawn} shapes")
    except (OSError, ET.ParseError) as e:
        check(f"chart {c}.svg is SVG with something drawn", False, str(e))
    check(f"tables.md links {c}.svg", f"({c}.svg)" in tables)
PY
while read -r word rest; do
  case $word in PASS) ok "$rest";; FAIL) ko "${rest%% -- *}" "${rest#* -- }";; esac
done < "$OUT/checks"
[ "$fail" = 0 ] || { echo "--- last lines of bench/run.sh:"; tail -20 "$OUT/run.log"; }
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
