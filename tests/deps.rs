//! Every package a test uses is installed by scripts/test-deps.sh: the
//! tests must not rely on what happens to be on a machine (podman pulling
//! in catatonit as a Recommends, say). Each tool the tests run, found in
//! the test sources (`Command::new("...")`) or named below (the ones run
//! through a shell or a script), is looked up with `dpkg -S`; its package
//! must be in test-deps.sh, or be Essential (always installed). The
//! packages the engine scripts `need` must be in the list too.

use nk_tests::workspace;
use std::collections::BTreeSet;
use std::process::Command;

/// Tools run through shells, scripts or other tools, which no
/// `Command::new` literal names.
const INDIRECT: &[&str] = &[
    // tests/engines/*.sh and their checks
    "script",
    "timeout",
    "gcc",
    "python3",
    "podman",
    "buildah",
    "ctr",
    "containerd",
    "dockerd",
    "docker",
    "skopeo",
    "umoci",
    "iptables",
    "awk",
    "lsblk",
    "md5sum",
    "nsenter",
    // the reference runtimes and VM mode
    "runc",
    "crun",
    "qemu-system-x86_64",
    // rootless: subordinate ids
    "newuidmap",
    "newgidmap",
    // Makefile targets and benchmarks
    "stress-ng",
    "hyperfine",
    "jq",
    "pkg-config",
    "file",
];

/// Files (not on PATH) that tests need, found the same way.
const FILES: &[&str] = &["/bin/busybox", "/usr/lib/qemu/virtiofsd"];

/// Packages the engines use on their own, which no test names: podman runs
/// catatonit for --init and pods, conmon for every container, the CNI
/// plugins, netavark and aardvark-dns for its networks and their names.
const ENGINE_PARTS: &[&str] = &[
    "catatonit",
    "conmon",
    "containernetworking-plugins",
    "netavark",
    "aardvark-dns",
];

fn test_deps() -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace().join("scripts/test-deps.sh")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("pkgs=\""))
        .flat_map(|l| {
            l.trim_end_matches('"')
                .split_whitespace()
                .filter(|w| *w != "$pkgs")
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `Command::new("tool")` literals in the test sources.
fn tools_in_tests() -> BTreeSet<String> {
    let mut v = BTreeSet::new();
    for dir in ["tests", "tests/support"] {
        for e in std::fs::read_dir(workspace().join(dir)).unwrap().flatten() {
            let p = e.path();
            // This file names Command::new in its comments.
            if p.extension().is_none_or(|x| x != "rs") || p.ends_with("deps.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for part in text.split("Command::new(\"").skip(1) {
                if let Some(t) = part.split('"').next() {
                    v.insert(t.to_string());
                }
            }
        }
    }
    v
}

/// Packages the engine scripts install with `need`.
fn engine_needs() -> BTreeSet<String> {
    let mut v = BTreeSet::new();
    for e in std::fs::read_dir(workspace().join("tests/engines"))
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for l in text.lines() {
            if let Some(rest) = l.trim().strip_prefix("need ") {
                v.extend(rest.split_whitespace().map(String::from));
            }
        }
    }
    v
}

fn package_of(path: &str) -> Option<String> {
    let o = Command::new("dpkg").args(["-S", path]).output().ok()?;
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    // "pkg[:arch][, pkg2]: /path"; diversions start with "diversion by".
    out.lines()
        .find(|l| !l.starts_with("diversion"))
        .and_then(|l| l.split(": ").next())
        .and_then(|p| p.split(',').next())
        .map(|p| p.trim().split(':').next().unwrap_or("").to_string())
}

fn essential(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Essential}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "yes")
}

/// Where `tool` is on the system PATH (not /usr/local: what is there is no
/// package's, and the engine scripts name their binaries fully).
fn which(tool: &str) -> Option<String> {
    let o = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (!p.is_empty()).then_some(p)
}

/// The package owning `path`: as named, with or without /usr (the /usr
/// merge), or else what its symlink leads to (alternatives), link by link.
fn owner(path: &str) -> Option<String> {
    let mut p = std::path::PathBuf::from(path);
    for _ in 0..6 {
        let s = p.display().to_string();
        let alt = s
            .strip_prefix("/usr")
            .map(String::from)
            .unwrap_or_else(|| format!("/usr{s}"));
        if let Some(pkg) = package_of(&s).or_else(|| package_of(&alt)) {
            return Some(pkg);
        }
        let next = std::fs::read_link(&p).ok()?;
        p = if next.is_absolute() {
            next
        } else {
            p.parent()?.join(next)
        };
    }
    None
}

/// The packages the listed ones depend on (Depends, Pre-Depends): installed
/// with them, whatever the machine. Recommends are not: they may be off.
fn dependencies(listed: &BTreeSet<String>) -> BTreeSet<String> {
    let o = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Depends}, ${Pre-Depends}\n")
        .args(listed)
        .output()
        .expect("dpkg-query");
    String::from_utf8_lossy(&o.stdout)
        .split([',', '|', '\n'])
        .filter_map(|d| d.split_whitespace().next())
        .map(|d| d.split(':').next().unwrap_or(d).to_string())
        .filter(|d| !d.is_empty())
        .collect()
}

#[test]
fn every_package_the_tests_use_comes_from_test_deps() {
    let listed = test_deps();
    let mut problems = Vec::new();
    for p in ENGINE_PARTS {
        if !listed.contains(*p) {
            problems.push(format!(
                "{p}: used by an engine under test, not in test-deps.sh"
            ));
        }
    }
    for p in engine_needs() {
        if !listed.contains(&p) {
            problems.push(format!(
                "tests/engines needs {p}, which test-deps.sh does not install"
            ));
        }
    }
    let mut tools: BTreeSet<String> = tools_in_tests();
    tools.extend(INDIRECT.iter().map(|s| s.to_string()));
    // Relative paths and our own binaries are not packages.
    tools.retain(|t| !t.contains('/') && !t.starts_with("nk-"));
    let mut paths: Vec<(String, String)> = Vec::new();
    for t in &tools {
        match which(t) {
            Some(p) => paths.push((t.clone(), p)),
            None => problems.push(format!(
                "{t}: not installed (run scripts/test-deps.sh; is its package listed there?)"
            )),
        }
    }
    paths.extend(FILES.iter().map(|f| (f.to_string(), f.to_string())));
    let deps = dependencies(&listed);
    let mut seen = Vec::new();
    for (tool, path) in paths {
        match owner(&path) {
            Some(p) if listed.contains(&p) || deps.contains(&p) || essential(&p) => {
                seen.push(format!("{tool}: {p}"))
            }
            Some(p) => problems.push(format!(
                "{tool} ({path}) comes from {p}, which test-deps.sh does not install"
            )),
            None => problems.push(format!("{tool} ({path}): no Debian package owns it")),
        }
    }
    println!("{}", seen.join("\n"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
