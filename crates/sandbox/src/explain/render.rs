//! Turning events into text: numbered, phase-grouped prose for `--explain`,
//! and a duration table (or JSON) for `--trace`. Output fits 80 columns.

use super::catalog::{self, Phase};
use super::Event;
use crate::logging::Role;

/// Wrap `text` to `width` columns, prefixing continuation lines with `indent`.
pub fn wrap(text: &str, width: usize, first: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(first);
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.len() + 1 + word.len() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from(indent);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// Renders explain events as they arrive, keeping the step number and phase.
#[derive(Default)]
pub struct Narration {
    n: usize,
    phase: Option<Phase>,
}

impl Narration {
    /// Text for one step event (empty for unknown keys and phase events).
    pub fn render(&mut self, ev: &Event) -> String {
        let Event::Step { key, role, detail } = ev else {
            return String::new();
        };
        let Some(def) = catalog::lookup(key) else {
            return String::new();
        };
        let mut out = String::new();
        if self.phase != Some(def.phase) {
            self.phase = Some(def.phase);
            out.push_str(&format!("\n== {} ==\n", def.phase.title()));
        }
        self.n += 1;
        let head = format!("{:>3}. [{}] ", self.n, role.as_str());
        let pad = " ".repeat(head.len());
        out.push_str(&wrap(def.what, 80, &head, &pad));
        if !detail.is_empty() {
            out.push_str(&wrap(detail, 80, &format!("{pad}> "), &format!("{pad}  ")));
        }
        out.push_str(&wrap(
            def.why,
            80,
            &format!("{pad}why: "),
            &format!("{pad}     "),
        ));
        out
    }
}

/// One row of the trace table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TraceRow {
    pub phase: Phase,
    pub title: &'static str,
    pub role: Role,
    pub ms: f64,
}

/// Collect phase events into rows, in arrival order.
pub fn trace_rows(events: &[Event]) -> Vec<TraceRow> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Phase {
                phase,
                role,
                dur_ns,
            } => Some(TraceRow {
                phase: *phase,
                title: phase.title(),
                role: *role,
                ms: *dur_ns as f64 / 1e6,
            }),
            _ => None,
        })
        .collect()
}

/// The trace as an 80-column table with a total.
pub fn trace_table(rows: &[TraceRow]) -> String {
    let mut out = String::from("phase                    role        duration\n");
    out.push_str("------------------------ ------- -----------\n");
    let mut total = 0.0;
    for r in rows {
        total += r.ms;
        out.push_str(&format!(
            "{:<24} {:<7} {:>8.3} ms\n",
            r.title,
            r.role.as_str(),
            r.ms
        ));
    }
    out.push_str(&format!("{:<24} {:<7} {:>8.3} ms\n", "sum", "", total));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_respects_width() {
        let t = "word ".repeat(40);
        for line in wrap(&t, 80, "  1. ", "     ").lines() {
            assert!(line.len() <= 80, "{line}");
        }
    }

    #[test]
    fn narration_numbers_and_groups() {
        let mut n = Narration::default();
        let a = n.render(&Event::Step {
            key: "clone".into(),
            role: Role::Parent,
            detail: "flags CLONE_NEWPID".into(),
        });
        assert!(a.contains("== clone =="));
        assert!(a.contains("1. [parent]"));
        assert!(a.contains("> flags CLONE_NEWPID"));
        let b = n.render(&Event::Step {
            key: "exe.protect".into(),
            role: Role::Parent,
            detail: String::new(),
        });
        assert!(!b.contains("=="), "same phase, no new heading");
        assert!(b.contains("2. [parent]"));
    }

    #[test]
    fn trace_table_sums() {
        let rows = trace_rows(&[
            Event::Phase {
                phase: Phase::Spec,
                role: Role::Parent,
                dur_ns: 1_000_000,
            },
            Event::Phase {
                phase: Phase::Mounts,
                role: Role::Child,
                dur_ns: 2_500_000,
            },
        ]);
        let t = trace_table(&rows);
        assert!(t.contains("spec parsing"));
        assert!(t.contains("3.500 ms"));
    }
}
