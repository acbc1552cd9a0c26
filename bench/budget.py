#!/usr/bin/env python3
"""bench/budget.py RES CONFIG FLOOR-OUTPUT TRACES: the phase budget of one
config as result lines ("budget" group, x = CONFIG, runtime floor or nk).

FLOOR-OUTPUT holds the "part<TAB>ns" lines of the floor programs, each
part prefixed by its program ("run:", "cgroup:", "state:", "seccomp:");
TRACES one `nk-runtime --trace=json run` object a line (the format of
crates/sandbox/src/explain/render.rs, trace_json). Every phase nk reports
becomes a row, named "title (role)"; a floor part that matches a phase is
put beside it, the others get a row of their own."""
import collections
import json
import sys


def p50_p95(v):
    v = sorted(v)
    if not v:
        return None, None
    i = max(0, min(len(v) - 1, int(0.5 * len(v) + 0.5) - 1))
    j = max(0, min(len(v) - 1, int(0.95 * len(v) + 0.5) - 1))
    return v[i], v[j]


res, conf, floor_file, traces_file = sys.argv[1:5]
floor = collections.defaultdict(list)
for line in open(floor_file):
    k, _, ns = line.rstrip("\n").partition("\t")
    if ns.isdigit():
        floor[k].append(int(ns) / 1e6)
runs = []
for line in open(traces_file):
    line = line.strip()
    if line.startswith('{"phases"'):
        runs.append(json.loads(line))
nk = collections.OrderedDict()
for r in runs:
    for p in r["phases"]:
        nk.setdefault((p["phase"], p["role"], p["title"]), []).append(p["ms"])
# The sums over one run: phases of the host and the parent follow one
# another in one process; the child's run beside the parent's waits.
sums = collections.defaultdict(list)
for r in runs:
    sums["sum of host and parent phases"].append(sum(p["ms"] for p in r["phases"] if p["role"] != "child"))
    sums["sum of child phases"].append(sum(p["ms"] for p in r["phases"] if p["role"] == "child"))
    sums["wall clock (--trace total_ms)"].append(r["total_ms"])


def fsum(*parts):
    """Floor of a phase made of several parts: the sum of their p50s."""
    vals = [p50_p95(floor[p])[0] for p in parts]
    return None if None in vals else sum(vals)


# nk phase (phase, role) -> floor parts that do its work.
MATCH = {
    ("state", "host"): ["state:claim"],
    # On a pure v1 host the state is claimed after the clone, by the parent.
    ("state", "parent"): ["state:claim"],
    ("cgroups", "host"): ["cgroup:create", "cgroup:limits"],
    # On a pure v1 host create makes the cgroup after the clone, while the
    # child execs the runtime copy: the same work, by the parent.
    ("cgroups", "parent"): ["cgroup:create", "cgroup:limits"],
    ("clone", "parent"): ["run:clone"],
    ("namespaces", "child"): ["run:namespace setup"],
    ("mounts", "child"): ["run:mounts"],
    ("pivot_root", "child"): ["run:pivot_root"],
    # The profile is compiled by the host (from the cache of compiled
    # filters after the first run) and loaded by the child right before
    # execve: the kernel's part is the load of a compiled program.
    ("process", "child"): ["run:process attributes"],
    ("exec", "child"): ["?seccomp:load of a compiled filter"],
    ("exec_barrier", "parent"): ["run:exec barrier"],
    ("delete", "parent"): ["cgroup:removal", "state:removal"],
}
used = set()
lines = []


def row(name, runtime, p50, p95):
    if p50 is not None:
        lines.append(f"budget\t{name}\t{conf}\t{runtime}\t{p50:.3f}\t{p95:.3f}\tms\t{len(runs) or 1}\n")


for (phase, role, title), v in nk.items():
    name = f"{title} ({role})"
    a, b = p50_p95(v)
    row(name, "nk", a, b)
    # A part marked "?" counts when the config has it (seccomp).
    parts = [p.lstrip("?") for p in MATCH.get((phase, role), []) if not p.startswith("?") or floor[p[1:]]]
    if parts and all(floor[p] for p in parts):
        f = fsum(*parts)
        row(name, "floor", f, f)
        used.update(parts)
for part in floor:
    if part.startswith("seccomp:") and part != "seccomp:bpf instructions":
        a, b = p50_p95(floor[part])
        row(f"seccomp: {part[8:]} (floor only)", "floor", a, b)
        continue
    if part in used or part in ("run:total", "seccomp:bpf instructions"):
        continue
    prog, _, what = part.partition(":")
    a, b = p50_p95(floor[part])
    what = {"exec to exit": "execve of /bin/true to reaped"}.get(what, what)
    row({"cgroup": "cgroup ", "state": "state dir ", "seccomp": "seccomp: ", "run": ""}[prog] + what + " (floor only)", "floor", a, b)
for name, v in sums.items():
    a, b = p50_p95(v)
    row(name, "nk", a, b)
total = fsum("run:total", "cgroup:create", "cgroup:limits", "cgroup:entry", "cgroup:removal", "state:claim", "state:removal")
if total is not None and floor.get("seccomp:compile and load"):
    total += fsum("seccomp:rules", "seccomp:compile and load")
if total is not None:
    row("wall clock (--trace total_ms)", "floor", total, total)
if floor.get("seccomp:bpf instructions"):
    n = floor["seccomp:bpf instructions"][0] * 1e6
    lines.append(f"budget\tseccomp: BPF program (instructions)\t{conf}\tfloor\t{n:.0f}\t{n:.0f}\tcount\t1\n")
open(res, "a").writelines(lines)
