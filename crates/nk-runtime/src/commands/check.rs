//! `check`: what this host supports for nk-runtime, with a fix for each gap.

use crate::cli::CheckArgs;
use crate::report::Globals;

pub fn run(_g: &Globals, a: CheckArgs) -> anyhow::Result<i32> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let layout = sandbox::cgroups::layout::detect_host(&mi, std::path::Path::new("/sys/fs/cgroup"));
    let ok = layout.kind != sandbox::cgroups::layout::Kind::None;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"cgroups": layout.describe(), "ok": ok})
        );
    } else {
        println!("cgroups: {}", layout.describe());
    }
    Ok(if ok { 0 } else { 1 })
}
