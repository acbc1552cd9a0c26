//! `list`: every container under --root, as a table or JSON.

use crate::cli::ListArgs;
use crate::report::Globals;

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

pub fn run(g: &Globals, a: ListArgs) -> anyhow::Result<i32> {
    let rt = g.runtime();
    let all = rt.list()?;
    let owners = Owners::read();
    if a.quiet {
        for (s, _) in &all {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match a.format.as_str() {
        "json" => {
            let v: Vec<_> = all
                .iter()
                .map(|(s, st)| {
                    let mut o = serde_json::to_value(s.oci(*st)).unwrap_or_default();
                    o["owner"] = owners.name(s.owner_uid).into();
                    o
                })
                .collect();
            println!("{}", serde_json::to_string(&v)?);
        }
        "table" => {
            let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
                .map(String::from)
                .to_vec()];
            for (s, st) in &all {
                let o = s.oci(*st);
                rows.push(vec![
                    s.id.clone(),
                    o.pid.to_string(),
                    st.to_string(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    owners.name(s.owner_uid),
                ]);
            }
            print!("{}", table(&rows));
        }
        other => anyhow::bail!("invalid format {other:?}: use table or json"),
    }
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
