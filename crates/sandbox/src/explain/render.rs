//! Turning events into text: numbered, phase-grouped prose for `--explain`,
//! and a table (or JSON) of phase durations for `--trace`. Everything fits 80
//! columns: long words such as a list of clone flags are broken after `|`,
//! `,` or `/`.

use super::catalog::{self, Phase};
use super::Event;
use crate::logging::Role;
use std::collections::HashMap;

/// The width all output is wrapped to.
pub const WIDTH: usize = 80;

/// Cut a word into pieces of at most `max` bytes, preferably after `|`, `,`,
/// `/` or `=`.
fn split_long(word: &str, max: usize) -> Vec<&str> {
    let max = max.max(8);
    let mut out = Vec::new();
    let mut rest = word;
    while rest.len() > max {
        let mut cut = 0;
        let mut last_break = 0;
        for (i, c) in rest.char_indices() {
            if i + c.len_utf8() > max {
                break;
            }
            cut = i + c.len_utf8();
            if matches!(c, '|' | ',' | '/' | '=') {
                last_break = cut;
            }
        }
        let at = if last_break > max / 3 {
            last_break
        } else {
            cut
        };
        let at = at.max(rest.chars().next().map_or(1, |c| c.len_utf8()));
        out.push(&rest[..at]);
        rest = &rest[at..];
    }
    out.push(rest);
    out
}

/// Wrap `text` to `width` columns: the first line starts with `first`,
/// the others with `indent`.
pub fn wrap(text: &str, width: usize, first: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(first);
    let mut empty = true;
    let room = width.saturating_sub(first.len().max(indent.len()));
    for word in text.split_whitespace() {
        for (j, piece) in split_long(word, room).into_iter().enumerate() {
            let sep = if empty || j > 0 { "" } else { " " };
            if !empty && line.len() + sep.len() + piece.len() > width {
                out.push_str(line.trim_end());
                out.push('\n');
                line = String::from(indent);
                line.push_str(piece);
            } else {
                line.push_str(sep);
                line.push_str(piece);
            }
            empty = false;
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// Renders explain events as they arrive: numbers the steps, prints a
/// heading when the phase changes (and, when it comes back to a phase
/// already shown, why), and says each "why" once.
#[derive(Default)]
pub struct Narration {
    n: usize,
    phase: Option<Phase>,
    shown: Vec<Phase>,
    last_key: Option<&'static str>,
    last_role: Option<Role>,
    /// Width of the last step's number and role tag.
    pad: usize,
    first_seen: HashMap<&'static str, usize>,
}

impl Narration {
    /// Text for one step event (empty for unknown keys and phase events).
    pub fn render(&mut self, ev: &Event) -> String {
        let Event::Step {
            key, role, detail, ..
        } = ev
        else {
            return String::new();
        };
        let Some(def) = catalog::lookup(key) else {
            return String::new();
        };
        let mut out = String::new();
        if self.n == 0 {
            out.push_str(&wrap(catalog::ROLES_LEGEND, WIDTH, "", ""));
        }
        if self.phase != Some(def.phase) {
            self.phase = Some(def.phase);
            self.last_key = None;
            if self.shown.contains(&def.phase) {
                out.push_str(&format!("\n== {}, again ==\n", def.phase.title()));
                out.push_str(&wrap(def.phase.again(), WIDTH, "   ", "   "));
            } else {
                self.shown.push(def.phase);
                out.push_str(&format!("\n== {} ==\n", def.phase.title()));
            }
        }
        if self.last_key == Some(def.key) && !detail.is_empty() {
            // The same step again (one more mount, one more device rule):
            // only the new values, as one more detail line of that step, or
            // under a new number when another role does it.
            if self.last_role == Some(*role) {
                let pad = " ".repeat(self.pad);
                out.push_str(&wrap(
                    detail,
                    WIDTH,
                    &format!("{pad}> "),
                    &format!("{pad}  "),
                ));
                return out;
            }
            self.n += 1;
            let head = format!("{:>3}. [{}] ", self.n, role.as_str());
            self.pad = head.len();
            self.last_role = Some(*role);
            out.push_str(&wrap(
                detail,
                WIDTH,
                &format!("{head}> "),
                &format!("{}  ", " ".repeat(head.len())),
            ));
            return out;
        }
        self.n += 1;
        let head = format!("{:>3}. [{}] ", self.n, role.as_str());
        let pad = " ".repeat(head.len());
        self.pad = head.len();
        self.last_role = Some(*role);
        self.last_key = Some(def.key);
        out.push_str(&wrap(def.what, WIDTH, &head, &pad));
        if !detail.is_empty() {
            out.push_str(&wrap(
                detail,
                WIDTH,
                &format!("{pad}> "),
                &format!("{pad}  "),
            ));
        }
        let why = match self.first_seen.get(def.key) {
            Some(k) => format!("see step {k}."),
            None => {
                self.first_seen.insert(def.key, self.n);
                def.why.to_string()
            }
        };
        out.push_str(&wrap(
            &why,
            WIDTH,
            &format!("{pad}why: "),
            &format!("{pad}     "),
        ));
        out
    }
}

/// One row of the trace: a phase as one role saw it, all its occurrences summed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TraceRow {
    pub phase: Phase,
    pub title: &'static str,
    pub role: Role,
    /// How many times the phase was entered (each mount pass, each hook ...).
    pub count: u32,
    pub ms: f64,
}

fn role_rank(r: Role) -> u8 {
    match r {
        Role::Host => 0,
        Role::Parent => 1,
        Role::Child => 2,
    }
}

/// Merge phase events into one row per (phase, role), in phase order.
pub fn trace_rows(events: &[Event]) -> Vec<TraceRow> {
    let mut rows: Vec<TraceRow> = Vec::new();
    for e in events {
        let Event::Phase {
            phase,
            role,
            dur_ns,
            ..
        } = e
        else {
            continue;
        };
        let ms = *dur_ns as f64 / 1e6;
        match rows
            .iter_mut()
            .find(|r| r.phase == *phase && r.role == *role)
        {
            Some(r) => {
                r.count += 1;
                r.ms += ms;
            }
            None => rows.push(TraceRow {
                phase: *phase,
                title: phase.title(),
                role: *role,
                count: 1,
                ms,
            }),
        }
    }
    rows.sort_by_key(|r| (r.phase, role_rank(r.role)));
    rows
}

/// The trace as a table. Phases of different roles overlap in time (the
/// parent waits while the child works), so rows are not summed; `total_ms`
/// is the command's own wall-clock time.
pub fn trace_table(rows: &[TraceRow], total_ms: f64) -> String {
    let mut out = String::from("phase                  role       n     duration\n");
    out.push_str("---------------------- ------ ----- ------------\n");
    for r in rows {
        out.push_str(&format!(
            "{:<22} {:<6} {:>5} {:>9.3} ms\n",
            r.title,
            r.role.as_str(),
            r.count,
            r.ms
        ));
    }
    out.push_str("---------------------- ------ ----- ------------\n");
    out.push_str(&format!(
        "{:<35} {:>9.3} ms\n",
        "this command, wall clock", total_ms
    ));
    out
}

/// The trace as one JSON object.
pub fn trace_json(rows: &[TraceRow], total_ms: f64) -> String {
    serde_json::json!({ "phases": rows, "total_ms": total_ms }).to_string()
}

/// Track (thread id) of each role in the Chrome trace; 0 is the command.
fn track(r: Role) -> u32 {
    role_rank(r) as u32 + 1
}

/// The trace as Chrome trace-event JSON, the format Perfetto
/// (ui.perfetto.dev) and chrome://tracing open: one timeline with a track
/// for the whole command and one per role (host, parent, child). Each phase
/// is a complete event ("X") on its role's track; each narrated step (with
/// `-E`) an instant event ("i") there. Times are microseconds from the
/// earliest event: the container's init may have parked before this command
/// began (`start` shows it), so that is not always the command's start.
pub fn trace_chrome(events: &[Event], started_ns: u64, total_ms: f64, command: &str) -> String {
    use serde_json::{json, Value};
    let origin = events
        .iter()
        .filter_map(|e| match e {
            Event::Phase { start_ns, .. } if *start_ns > 0 => Some(*start_ns),
            Event::Step { at_ns, .. } if *at_ns > 0 => Some(*at_ns),
            _ => None,
        })
        .chain(std::iter::once(started_ns))
        .min()
        .unwrap_or(started_ns);
    let us = |ns: u64| ns.saturating_sub(origin) as f64 / 1e3;
    let mut out: Vec<Value> = vec![json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
        "args": {"name": command},
    })];
    for (tid, name) in [(0, "command"), (1, "host"), (2, "parent"), (3, "child")] {
        out.push(
            json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}}),
        );
        out.push(json!({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": {"sort_index": tid}}));
    }
    out.push(json!({
        "name": command, "cat": "command", "ph": "X", "pid": 1, "tid": 0,
        "ts": us(started_ns), "dur": total_ms * 1e3,
    }));
    for e in events {
        match e {
            Event::Phase {
                phase,
                role,
                dur_ns,
                start_ns,
            } if *start_ns > 0 => out.push(json!({
                "name": phase.title(), "cat": "phase", "ph": "X", "pid": 1, "tid": track(*role),
                "ts": us(*start_ns), "dur": *dur_ns as f64 / 1e3,
                "args": {"phase": phase, "role": role.as_str()},
            })),
            Event::Step {
                key,
                role,
                detail,
                at_ns,
            } if *at_ns > 0 => out.push(json!({
                "name": key, "cat": "step", "ph": "i", "s": "t", "pid": 1, "tid": track(*role),
                "ts": us(*at_ns),
                "args": {
                    "what": catalog::lookup(key).map_or("", |d| d.what),
                    "detail": detail,
                },
            })),
            _ => {}
        }
    }
    json!({
        "traceEvents": out,
        "displayTimeUnit": "ms",
        "otherData": {"command": command, "total_ms": total_ms},
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(key: &str, role: Role, detail: &str) -> Event {
        Event::Step {
            key: key.into(),
            role,
            detail: detail.into(),
            at_ns: 0,
        }
    }

    #[test]
    fn wrap_respects_width_and_breaks_long_words() {
        let t = "word ".repeat(40);
        for line in wrap(&t, 80, "  1. ", "     ").lines() {
            assert!(line.len() <= 80, "{line}");
        }
        let flags = "clone3(flags=CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWNET|CLONE_NEWIPC|CLONE_NEWUTS|CLONE_NEWCGROUP)";
        let w = wrap(flags, 80, "            > ", "              ");
        for line in w.lines() {
            assert!(line.len() <= 80, "{line}");
        }
        assert!(w.lines().next().unwrap().ends_with('|'), "{w}");
        let joined: String = w
            .lines()
            .map(|l| l.trim_start().trim_start_matches("> "))
            .collect();
        assert_eq!(joined, flags, "no character lost or added");
    }

    #[test]
    fn narration_numbers_groups_and_says_why_once() {
        let mut n = Narration::default();
        let a = n.render(&step("clone", Role::Parent, "flags CLONE_NEWPID"));
        assert!(a.contains("== clone =="));
        assert!(a.contains("1. [parent]"));
        assert!(a.contains("> flags CLONE_NEWPID"));
        assert!(a.contains("why: The namespaces"));
        let b = n.render(&step("exe.protect", Role::Parent, ""));
        assert!(!b.contains("=="), "same phase, no new heading");
        assert!(b.contains("2. [parent] Give the child"));
        let c = n.render(&step("exe.protect", Role::Parent, "again"));
        assert_eq!(
            c, "              > again\n",
            "a repeat shows its values only, as a detail line of the step"
        );
        let c = n.render(&step("exe.protect", Role::Child, "by the child"));
        assert_eq!(
            c, "  3. [child] > by the child\n",
            "a repeat by another role is numbered, with its role"
        );
        let d = n.render(&step("mount", Role::Child, "proc"));
        assert!(d.contains("== mounts =="));
        let e = n.render(&step("clone", Role::Parent, "x"));
        assert!(e.contains("why: see step 1."), "{e}");
        assert!(e.contains("== clone, again =="), "{e}");
        let flat = e.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains(Phase::Clone.again()),
            "a repeated heading says why: {e}"
        );
        assert_eq!(n.render(&step("no.such.key", Role::Host, "")), "");
    }

    #[test]
    fn every_catalog_text_fits_80_columns() {
        let mut n = Narration::default();
        for s in catalog::ALL {
            let out = n.render(&step(s.key, Role::Parent, &"/a/long/path".repeat(12)));
            for line in out.lines() {
                assert!(line.len() <= WIDTH, "{}: {line}", s.key);
            }
        }
    }

    #[test]
    fn chrome_trace_puts_each_role_on_its_track() {
        let ev = vec![
            Event::Phase {
                phase: Phase::Spec,
                role: Role::Host,
                dur_ns: 2_000,
                start_ns: 5_000,
            },
            Event::Step {
                key: "pivot_root".into(),
                role: Role::Child,
                detail: "d".into(),
                at_ns: 9_000,
            },
            // An event from before the command began (a parked init's).
            Event::Phase {
                phase: Phase::ExecBarrier,
                role: Role::Child,
                dur_ns: 1_000,
                start_ns: 1_000,
            },
        ];
        let v: serde_json::Value =
            serde_json::from_str(&trace_chrome(&ev, 4_000, 0.01, "nk-runtime run x")).unwrap();
        let evs = v["traceEvents"].as_array().unwrap();
        let find = |name: &str| evs.iter().find(|e| e["name"] == name).unwrap().clone();
        let spec = find("spec parsing");
        assert_eq!(
            (spec["ph"].clone(), spec["tid"].clone()),
            ("X".into(), 1.into())
        );
        assert_eq!(
            (spec["ts"].as_f64(), spec["dur"].as_f64()),
            (Some(4.0), Some(2.0))
        );
        let step = find("pivot_root");
        assert_eq!(
            (step["ph"].clone(), step["tid"].clone()),
            ("i".into(), 3.into())
        );
        assert_eq!(step["args"]["what"], catalog::PIVOT_ROOT.what);
        assert_eq!(
            find("exec barrier")["ts"].as_f64(),
            Some(0.0),
            "earliest is 0"
        );
        assert_eq!(find("nk-runtime run x")["ts"].as_f64(), Some(3.0));
        let tracks: Vec<_> = evs
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(tracks, ["command", "host", "parent", "child"]);
    }

    #[test]
    fn trace_merges_by_phase_and_role() {
        let ph = |phase, role, ms: u64| Event::Phase {
            phase,
            role,
            dur_ns: ms * 1_000_000,
            start_ns: 0,
        };
        let rows = trace_rows(&[
            ph(Phase::Mounts, Role::Child, 2),
            ph(Phase::Spec, Role::Host, 1),
            ph(Phase::Mounts, Role::Child, 3),
            ph(Phase::Hooks, Role::Child, 1),
            ph(Phase::Hooks, Role::Parent, 1),
        ]);
        let v: Vec<_> = rows.iter().map(|r| (r.phase, r.role, r.count)).collect();
        assert_eq!(
            v,
            [
                (Phase::Spec, Role::Host, 1),
                (Phase::Mounts, Role::Child, 2),
                (Phase::Hooks, Role::Parent, 1),
                (Phase::Hooks, Role::Child, 1)
            ]
        );
        let t = trace_table(&rows, 12.5);
        assert!(
            t.contains("mounts                 child      2     5.000 ms"),
            "{t}"
        );
        assert!(t.contains("12.500 ms"));
        let j: serde_json::Value = serde_json::from_str(&trace_json(&rows, 12.5)).unwrap();
        assert_eq!(j["phases"][1]["phase"], "mounts");
        assert_eq!(j["phases"][1]["count"], 2);
        assert_eq!(j["total_ms"], 12.5);
    }
}
