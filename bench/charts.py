"""bench/charts.py: the SVG charts of a bench run, written by hand with the
standard library (no plotting package on a fresh machine): grouped bars
for the side-by-side row groups, lines for the growth rows. Used by
bench/report.py; write_all returns {group: file name}."""
import html
import math
import os

COLORS = {"nk": "#d9480f", "runc": "#1c7ed6", "crun": "#2f9e44", "floor": "#868e96"}
FONT = 'font-family="sans-serif" font-size="12"'
TITLE = 'font-family="sans-serif" font-size="14" font-weight="bold"'
SMALL = 'font-family="sans-serif" font-size="10"'


def _esc(s):
    return html.escape(str(s), quote=True)


def _nice_max(v):
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def _ticks(top, n=5):
    return [top * i / n for i in range(n + 1)]


def _num(v):
    return f"{v:g}" if v >= 10 or v == 0 else f"{v:.2g}"


def _legend(names, x, y):
    out = []
    for i, n in enumerate(names):
        out.append(f'<rect x="{x + i * 90}" y="{y - 10}" width="12" height="12" fill="{COLORS.get(n, "#000")}"/>'
                   f'<text x="{x + i * 90 + 16}" y="{y}" {FONT}>{_esc(n)}</text>')
    return "".join(out)


def bars(title, cats, series, unit):
    """Horizontal grouped bars: one group a category, one bar a series."""
    names = [n for n in series if any(v is not None for v in series[n])]
    label_w, bar_h, gap, plot_w = 330, 12, 10, 420
    group_h = bar_h * len(names) + gap
    h = 60 + group_h * len(cats) + 40
    w = label_w + plot_w + 80
    top = _nice_max(max([v for n in names for v in series[n] if v is not None] or [1]))
    sx = plot_w / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="10" y="20" {TITLE}>{_esc(title)}</text>',
           _legend(names, label_w, 40)]
    y0 = 55
    for t in _ticks(top):
        x = label_w + t * sx
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{h - 35}" stroke="#ddd"/>'
                   f'<text x="{x:.1f}" y="{h - 20}" {FONT} text-anchor="middle">{_num(t)}</text>')
    out.append(f'<text x="{label_w + plot_w / 2}" y="{h - 5}" {FONT} text-anchor="middle">{_esc(unit)} (p50)</text>')
    for i, c in enumerate(cats):
        gy = y0 + i * group_h
        out.append(f'<text x="{label_w - 6}" y="{gy + group_h / 2 + 2}" {FONT} text-anchor="end">{_esc(c)}</text>')
        for j, n in enumerate(names):
            v = series[n][i]
            if v is None:
                continue
            by = gy + j * bar_h
            out.append(f'<rect x="{label_w}" y="{by}" width="{max(0.5, v * sx):.1f}" height="{bar_h - 2}" '
                       f'fill="{COLORS.get(n, "#000")}"><title>{_esc(n)}: {v:.3g} {_esc(unit)}</title></rect>'
                       f'<text x="{label_w + v * sx + 3:.1f}" y="{by + bar_h - 3}" {SMALL}>{v:.3g}</text>')
    out.append("</svg>")
    return "\n".join(out)


def lines(title, xs, series, xlabel, unit):
    """Lines over a logarithmic x axis (the sizes span 1 to 1000)."""
    names = [n for n in series if any(v is not None for v in series[n])]
    w, h, left, right, top_m, bottom = 560, 340, 60, 20, 50, 50
    pw, ph = w - left - right, h - top_m - bottom
    lx = [math.log10(max(x, 1)) for x in xs]
    lo, hi = min(lx), max(lx)
    span = (hi - lo) or 1
    ymax = _nice_max(max([v for n in names for v in series[n] if v is not None] or [1]))

    def px(i):
        return left + (lx[i] - lo) / span * pw

    def py(v):
        return top_m + ph - v / ymax * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="10" y="20" {TITLE}>{_esc(title)}</text>',
           _legend(names, left, 40)]
    for t in _ticks(ymax):
        y = py(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 5}" y="{y + 4:.1f}" {FONT} text-anchor="end">{_num(t)}</text>')
    for i, x in enumerate(xs):
        out.append(f'<line x1="{px(i):.1f}" y1="{top_m}" x2="{px(i):.1f}" y2="{top_m + ph}" stroke="#eee"/>'
                   f'<text x="{px(i):.1f}" y="{top_m + ph + 16}" {FONT} text-anchor="middle">{_num(x)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 8}" {FONT} text-anchor="middle">{_esc(xlabel)} (log scale)</text>'
               f'<text x="14" y="{top_m + ph / 2}" {FONT} text-anchor="middle" '
               f'transform="rotate(-90 14 {top_m + ph / 2})">{_esc(unit)} (p50)</text>')
    for n in names:
        pts = [(px(i), py(v), v) for i, v in enumerate(series[n]) if v is not None]
        dash = ' stroke-dasharray="5,4"' if n == "floor" else ""
        out.append(f'<polyline fill="none" stroke="{COLORS.get(n, "#000")}" stroke-width="2"{dash} points="'
                   + " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts) + '"/>')
        for x, y, v in pts:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{COLORS.get(n, "#000")}">'
                       f'<title>{_esc(n)}: {v:.3g} {_esc(unit)}</title></circle>')
    out.append("</svg>")
    return "\n".join(out)


def budget_chart_name(i, conf):
    """The chart of the i-th config of the phase budget."""
    return "budget" if i == 0 else "budget-" + "".join(ch if ch.isalnum() else "-" for ch in conf.lower())


def write_all(out, rows):
    """Write one SVG a row group into `out`; return {group: file name}."""
    by = {}
    for r in rows:
        by.setdefault(r["group"], []).append(r)
    files = {}

    def save(name, svg):
        f = f"{name}.svg"
        with open(os.path.join(out, f), "w") as fh:
            fh.write(svg + "\n")
        files[name] = f

    def side(group, title, keep=lambda r: True):
        rs = [r for r in by.get(group, []) if r["unit"] == "ms" and keep(r)]
        cats = list(dict.fromkeys(r["row"] for r in rs))
        if not cats:
            return
        val = {(r["row"], r["rt"]): r["p50"] for r in rs}
        series = {n: [val.get((c, n)) for c in cats] for n in ("nk", "runc", "crun")}
        save(group, bars(title, cats, series, "ms"))

    side("core", "One container's life: nk, runc, crun", lambda r: "sequential" not in r["row"])
    side("fixtures", "run /bin/true on the configs engines send")
    brs = [r for r in by.get("budget", []) if r["unit"] == "ms"]
    confs = list(dict.fromkeys(r["x"] for r in brs))
    for i, conf in enumerate(confs):
        rs = [r for r in brs if r["x"] == conf]
        cats = list(dict.fromkeys(r["row"] for r in rs))
        val = {(r["row"], r["rt"]): r["p50"] for r in rs}
        series = {n: [val.get((c, n)) for c in cats] for n in ("floor", "nk", "crun")}
        save(budget_chart_name(i, conf), bars(f"Phase budget, {conf}: the kernel's floor and nk", cats, series, "ms"))
    titles = {
        "growth-binds": ("run with N bind mounts", "bind mounts"),
        "growth-state": ("state with N containers in the root", "containers in the root"),
        "growth-list": ("list with N containers in the root", "containers in the root"),
        "growth-seccomp": ("run with a seccomp profile of N rules", "rules"),
        "growth-parallel": ("N runs started at once: containers per second", "containers started at once"),
        "growth-exec": ("exec into a container with N processes", "processes in the container"),
    }
    for g, (title, xl) in titles.items():
        rs = by.get(g, [])
        if g == "growth-parallel":
            rs = [r for r in rs if r["unit"] == "/s"]
        if not rs:
            continue
        xs = sorted({float(r["x"]) for r in rs})
        val = {(float(r["x"]), r["rt"]): r["p50"] for r in rs}
        series = {n: [val.get((x, n)) for x in xs] for n in ("nk", "runc", "crun", "floor")}
        save(g, lines(title, xs, series, xl, rs[0]["unit"]))
    return files
