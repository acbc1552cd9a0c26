//! `ps`: the container's processes, as a JSON list of pids, or the lines of
//! ps(1) (`-ef` unless other options are given) whose PID is in the
//! container's cgroup, as runc prints them.

use crate::backend::{Backend, Processes};
use crate::cli::PsArgs;
use crate::report::Globals;
use std::io::Write;

/// Keep the header and the lines whose PID column is one of `pids`.
pub fn filter_table(text: &str, pids: &[i32]) -> anyhow::Result<Vec<String>> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| anyhow::anyhow!("couldn't find PID field in ps output"))?;
    let mut out = vec![header.to_string()];
    for l in lines {
        let pid: Option<i32> = l
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push(l.to_string());
        }
    }
    Ok(out)
}

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: PsArgs) -> anyhow::Result<i32> {
    let pids = match Backend::for_id(g, &a.id).processes(&a.id)? {
        Processes::Host(pids) => pids,
        Processes::Guest(list) => return guest(&list, &a.format),
    };
    let lines = match a.format.as_str() {
        "json" => vec![serde_json::to_string(&pids)?],
        "table" => {
            let args = if a.ps_args.is_empty() {
                vec!["-ef".to_string()]
            } else {
                a.ps_args.clone()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .map_err(|e| anyhow::anyhow!("run ps {}: {e}", args.join(" ")))?;
            if !out.status.success() {
                anyhow::bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            filter_table(&String::from_utf8_lossy(&out.stdout), &pids)?
        }
        other => anyhow::bail!("invalid format option {other:?}: use table or json"),
    };
    // A closed pipe (ps | head) ends the output quietly.
    let mut o = std::io::stdout().lock();
    for l in lines {
        if writeln!(o, "{l}").is_err() {
            break;
        }
    }
    Ok(0)
}

/// A VM's processes: guest pids, with their parent and command line (ps(1)
/// on the host cannot see them).
fn guest(list: &[vm_protocol::ProcInfo], format: &str) -> anyhow::Result<i32> {
    match format {
        "json" => println!(
            "{}",
            serde_json::to_string(&list.iter().map(|p| p.pid).collect::<Vec<_>>())?
        ),
        "table" => {
            println!("PID   PPID  CMD  (guest pids)");
            for p in list {
                println!("{:<5} {:<5} {}", p.pid, p.ppid, p.cmd);
            }
        }
        other => anyhow::bail!("invalid format {other:?}: use table or json"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_keeps_the_container_pids() {
        let t = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 09:00 ? 00:00:01 init\nroot 42 1 0 09:01 ? 00:00:00 sleep 9\n";
        assert_eq!(
            filter_table(t, &[42]).unwrap(),
            vec![
                "UID PID PPID C STIME TTY TIME CMD".to_string(),
                "root 42 1 0 09:01 ? 00:00:00 sleep 9".to_string()
            ]
        );
        // `ps -o comm` has no PID column.
        assert!(filter_table("COMMAND\nsh\n", &[1]).is_err());
    }
}
