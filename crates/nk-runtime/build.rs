//! Embed the git commit in `--version`, as runc does.
fn main() {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output();
    if let Ok(o) = out {
        if o.status.success() {
            let c = String::from_utf8_lossy(&o.stdout).trim().to_string();
            println!("cargo:rustc-env=NK_GIT_COMMIT={c}");
        }
    }
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
}
