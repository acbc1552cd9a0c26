//! `ps`: the container's processes, as JSON pids or filtered ps(1) output.

use crate::cli::PsArgs;
use crate::report::Globals;

pub fn run(g: &Globals, a: PsArgs) -> anyhow::Result<i32> {
    if super::vm_mode::is_vm(g, &a.id) {
        super::vm_mode::ps(g, &a.id, &a.format)?;
        return Ok(0);
    }
    let pids = g.runtime().pids(&a.id)?;
    match a.format.as_str() {
        "json" => {
            println!("{}", serde_json::to_string(&pids)?);
            Ok(0)
        }
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
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or("");
            let pid_col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| {
                    anyhow::anyhow!("ps {}: no PID column in its output", args.join(" "))
                })?;
            println!("{header}");
            for l in lines {
                let pid: Option<i32> = l
                    .split_whitespace()
                    .nth(pid_col)
                    .and_then(|p| p.parse().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    println!("{l}");
                }
            }
            Ok(0)
        }
        other => anyhow::bail!("invalid format {other:?}: use table or json"),
    }
}
