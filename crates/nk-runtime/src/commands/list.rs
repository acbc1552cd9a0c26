//! `list`: every container under --root, as a table or JSON.

use crate::cli::ListArgs;
use crate::report::Globals;
use std::io::Write;

/// Pad columns like Go's tabwriter(minwidth 12, padding 3), as runc prints.
pub fn table(rows: &[Vec<String>]) -> String {
    let ncol = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; ncol];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                out.push_str(c);
            } else {
                let w = (widths[i] + 3).max(12);
                out.push_str(&format!("{c:<w$}"));
            }
        }
        out.push('\n');
    }
    out
}

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: ListArgs) -> anyhow::Result<i32> {
    if !matches!(a.format.as_str(), "table" | "json") {
        anyhow::bail!("invalid format {:?}: use table or json", a.format);
    }
    let rt = g.runtime();
    let mut out = std::io::stdout().lock();
    // A record that cannot be read is named on stderr and left out, as
    // runc does ("load container ID: ..."): the others still list.
    let warn = |name: &str, e: &sandbox::Error| eprintln!("load container {name}: {e}");
    if a.quiet {
        // Ids only: no status to derive, so no /proc or cgroup reads.
        let mut text = String::new();
        for (name, r) in rt.store.summaries()? {
            match r {
                Ok(s) => {
                    text.push_str(&s.id);
                    text.push('\n');
                }
                Err(e) => warn(&name, &e),
            }
        }
        out.write_all(text.as_bytes())?;
        return Ok(0);
    }
    let mut all = Vec::new();
    for (name, r) in rt.summaries()? {
        match r {
            Ok(row) => all.push(row),
            Err(e) => warn(&name, &e),
        }
    }
    let owners = Owners::read();
    if a.format == "json" {
        let v: Vec<_> = all
            .into_iter()
            .map(|(s, st)| {
                let owner = owners.name(s.owner_uid);
                s.into_oci(st, owner)
            })
            .collect();
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")?;
        return Ok(0);
    }
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        .map(String::from)
        .to_vec()];
    for (s, st) in all {
        let owner = owners.name(s.owner_uid);
        let o = s.into_oci(st, owner);
        rows.push(vec![
            o.id,
            o.pid.to_string(),
            st.to_string(),
            o.bundle.display().to_string(),
            o.created,
            o.owner,
        ]);
    }
    out.write_all(table(&rows).as_bytes())?;
    Ok(0)
}

/// User names by uid from /etc/passwd, read once per `list` (not once per
/// row: with 1,000 containers that was most of its time). Read directly:
/// the binary is static, and glibc's NSS would need shared libraries.
struct Owners(Vec<sandbox::linux::user::Passwd>);

impl Owners {
    fn read() -> Owners {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Owners(sandbox::linux::user::parse_passwd(&passwd))
    }

    /// The name of `uid`, or `#uid` when /etc/passwd has none.
    fn name(&self, uid: u32) -> String {
        self.0
            .iter()
            .find(|p| p.uid == uid)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| format!("#{uid}"))
    }
}
