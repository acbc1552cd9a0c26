#!/usr/bin/env python3
"""bench/report.py OUT [--docs DOCS]: the tables (and charts) of a bench run.

Reads OUT/results.tsv (group, row, x, runtime, p50, p95, unit, n) and
OUT/meta.tsv written by bench/run.sh, and writes OUT/tables.md (the tables)
and OUT/performance.md (bench/performance.md.in with the tables in place).
With --docs DOCS, writes DOCS/performance.md instead and copies the charts
to DOCS/img/bench/. Python 3 standard library only.
"""
import collections
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RUNTIMES = ["nk", "runc", "crun"]

# Growth groups: title, what x counts, and the unit of the chart's y axis.
GROWTH = collections.OrderedDict([
    ("growth-binds", ("`run` with N bind mounts", "bind mounts")),
    ("growth-state", ("`state` with N containers in the root", "containers in the root")),
    ("growth-list", ("`list` with N containers in the root", "containers in the root")),
    ("growth-seccomp", ("`run` with a seccomp profile of N rules", "seccomp rules")),
    ("growth-parallel", ("N containers started in parallel", "containers started at once")),
    ("growth-exec", ("`exec` into a container that has N processes", "processes in the container")),
])


def load(out):
    rows = []
    with open(os.path.join(out, "results.tsv")) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) != 8:
                continue
            g, row, x, rt, p50, p95, unit, n = p
            rows.append(dict(group=g, row=row, x=x, rt=rt, p50=num(p50), p95=num(p95), unit=unit, n=int(n)))
    meta = collections.OrderedDict()
    mp = os.path.join(out, "meta.tsv")
    if os.path.exists(mp):
        for line in open(mp):
            k, _, v = line.rstrip("\n").partition("\t")
            meta[k] = v
    return rows, meta


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def fmt(v, unit="ms"):
    if v is None:
        return "-"
    if unit in ("KiB", "count"):
        return f"{v:.0f}"
    if unit == "/s":
        return f"{v:.1f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(r):
    if r is None:
        return "-"
    if r["n"] <= 1 or r["p95"] == r["p50"]:
        return fmt(r["p50"], r["unit"])
    return f"{fmt(r['p50'], r['unit'])} / {fmt(r['p95'], r['unit'])}"


def ratio(a, b):
    if a is None or b is None or a["p50"] is None or not b["p50"]:
        return "-"
    return f"{a['p50'] / b['p50']:.2f}"


def index(rows):
    ix = {}
    order = collections.OrderedDict()
    for r in rows:
        ix[(r["group"], r["row"], r["x"], r["rt"])] = r
        order.setdefault(r["group"], collections.OrderedDict()).setdefault(r["row"], collections.OrderedDict())[r["x"]] = r["unit"]
    return ix, order


def side_by_side(ix, order, group, title):
    """Rows x runtimes with the ratios to crun."""
    if group not in order:
        return ""
    out = [f"**{title}** (p50 / p95)\n", "| row | unit | nk | runc | crun | nk/crun | runc/crun |", "|---|---|---|---|---|---|---|"]
    for row, xs in order[group].items():
        for x, unit in xs.items():
            c = {rt: ix.get((group, row, x, rt)) for rt in RUNTIMES}
            name = row if not x else f"{row} ({x})"
            out.append(f"| {name} | {unit} | {cell(c['nk'])} | {cell(c['runc'])} | {cell(c['crun'])} | "
                       f"{ratio(c['nk'], c['crun'])} | {ratio(c['runc'], c['crun'])} |")
    return "\n".join(out) + "\n"


def superlinear(points):
    """points: [(x, p50, p95)] ascending in x. None when linear or too noisy
    to say, else a sentence. Linear growth adds, over the top segment, what
    the per-unit cost below it predicts; faster than linear adds at least
    twice that, and more than the noise: 0.5 ms, 10 % of the smallest case,
    and half the p50-p95 spread at the last two sizes."""
    pts = [(float(x), a, b) for x, a, b in points if a is not None]
    if len(pts) < 3:
        return None
    (x0, y0, _), (xa, ya, qa), (xb, yb, qb) = pts[0], pts[-2], pts[-1]
    c_low = max(0.0, (ya - y0) / (xa - x0))
    predicted = c_low * (xb - xa)
    added = yb - ya
    noise = max(0.5, 0.1 * abs(y0), (qa - ya) / 2, (qb - yb) / 2)
    if added > 2 * predicted and added - predicted > noise:
        c_top = added / (xb - xa)
        return (f"{c_low * 1000:.1f} µs per unit up to {xa:.0f}, "
                f"{c_top * 1000:.1f} µs per unit from {xa:.0f} to {xb:.0f}")
    return None


def growth_table(ix, order, group):
    title, xname = GROWTH[group]
    if group not in order:
        return "", []
    out = [f"**{title}** (p50 / p95)\n"]
    flags = []
    for row, xs in order[group].items():
        unit = next(iter(xs.values()))
        rts = RUNTIMES + [rt for rt in ("floor",) if any((group, row, x, rt) in ix for x in xs)]
        out.append(f"| {xname} ({row}, {unit}) | " + " | ".join(rts) + " | nk/crun |")
        out.append("|---" * (len(rts) + 2) + "|")
        for x in sorted(xs, key=float):
            c = {rt: ix.get((group, row, x, rt)) for rt in rts}
            out.append(f"| {x} | " + " | ".join(cell(c[rt]) for rt in rts) + f" | {ratio(c['nk'], c['crun'])} |")
        out.append("")
        if unit == "ms":
            for rt in rts:
                pts = []
                for x in sorted(xs, key=float):
                    r = ix.get((group, row, x, rt)) or {}
                    pts.append((x, r.get("p50"), r.get("p95")))
                s = superlinear(pts)
                if s:
                    flags.append(f"{title}, {row}: **{rt}** grows faster than linear ({s})")
            if any(f"**floor**" in f and f.startswith(f"{title}, {row}:") for f in flags):
                flags.append(f"{title}, {row}: the floor grows the same way, so the slope is the kernel's "
                             "or the library's (libseccomp for seccomp), not only the runtimes'")
    return "\n".join(out) + "\n", flags


def budget_table(ix, order, chart):
    if "budget" not in order:
        return ""
    import charts as ch
    out = []
    configs = []
    for row, xs in order["budget"].items():
        for x in xs:
            if x not in configs:
                configs.append(x)
    for i, conf in enumerate(configs):
        out.append(f"**Phase budget, {conf}** (p50 ms over the runs; floor = the kernel's own minimum, bench/floor/)\n")
        out.append("| phase | floor | nk | crun | nk/floor |")
        out.append("|---|---|---|---|---|")
        for row, xs in order["budget"].items():
            if conf not in xs:
                continue
            c = {rt: ix.get(("budget", row, conf, rt)) for rt in ("floor", "nk", "crun")}
            out.append(f"| {row} | {cell(c['floor'])} | {cell(c['nk'])} | {cell(c['crun'])} | {ratio(c['nk'], c['floor'])} |")
        out.append(chart(ch.budget_chart_name(i, conf)))
    return "\n".join(out) + "\n"


def single_runtime(ix, order, group, title, rt="nk"):
    if group not in order:
        return ""
    out = [f"**{title}**\n", "| row | unit | p50 | p95 |", "|---|---|---|---|"]
    for row, xs in order[group].items():
        for x, unit in xs.items():
            r = ix.get((group, row, x, rt))
            if r:
                name = row if not x else f"{row} ({x})"
                out.append(f"| {name} | {unit} | {fmt(r['p50'], unit)} | {fmt(r['p95'], unit)} |")
    return "\n".join(out) + "\n"


def tables(rows, meta, charts):
    ix, order = index(rows)
    parts = []
    m = meta
    parts.append(f"Measured {m.get('date', '?')} on {m.get('host', '?')}; load {m.get('load_before', '?')} "
                 f"before, {m.get('load_after', '?')} after; cgroups: {m.get('cgroups', '?')}; "
                 f"{m.get('knobs', '')}; {m.get('duration_s', '?')} s in all.\n"
                 f"nk-runtime {m.get('nk', '?')}; {m.get('runc', '?')}; {m.get('crun', '?')}.\n")

    def chart(name):
        return f"![{name}]({charts[name]})\n" if name in charts else ""

    def section(title, *chunks):
        if any(c.strip() for c in chunks):
            parts.append(f"### {title}\n")
            parts.extend(chunks)

    section("One container's life",
            side_by_side(ix, order, "core", "Base bundle (busybox, /bin/true, runc's default spec)"), chart("core"))
    section("Phase budget", budget_table(ix, order, chart))
    missing = ""
    if "fixtures-missing" in order:
        missing = "Not captured yet: " + ", ".join(order["fixtures-missing"]) + " (see bench/fixtures/capture.sh).\n"
    section("The configs engines send",
            side_by_side(ix, order, "fixtures", "run /bin/true on each engine's config.json (bench/fixtures/)"),
            missing, chart("fixtures"))
    flags = []
    growth = []
    for g in GROWTH:
        t, f = growth_table(ix, order, g)
        if t:
            growth += [t, chart(g)]
            flags += f
    if growth:
        growth.append("**Faster than linear:** " + ("none." if not flags else "") + "\n")
        growth += [f"- {f}" for f in flags]
        growth.append("\n")
    section("Cost as the work grows", *growth)
    section("Narration cost and hangs",
            single_runtime(ix, order, "cost", "nk-runtime run /bin/true with -E / --trace (bench/explain-cost.sh)"),
            single_runtime(ix, order, "hang", "No hang"))
    return "\n".join(p for p in parts if p) + "\n", flags


def main():
    out = sys.argv[1]
    docs = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--docs" else None
    rows, meta = load(out)
    charts = {}
    try:
        import charts as ch  # bench/charts.py
        charts = ch.write_all(out, rows)
    except ImportError:
        pass
    if docs:
        img = os.path.join(docs, "img", "bench")
        os.makedirs(img, exist_ok=True)
        for f in os.listdir(img):
            if f.endswith(".svg"):
                os.remove(os.path.join(img, f))
        for name, f in charts.items():
            shutil.copy(os.path.join(out, f), os.path.join(img, f))
        charts = {k: f"img/bench/{v}" for k, v in charts.items()}
    body, flags = tables(rows, meta, charts)
    page = open(os.path.join(HERE, "performance.md.in")).read().replace("@TABLES@", body.strip() + "\n")
    if docs:
        open(os.path.join(docs, "performance.md"), "w").write(page)
        return
    open(os.path.join(out, "tables.md"), "w").write(body)
    open(os.path.join(out, "performance.md"), "w").write(page)


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    main()
