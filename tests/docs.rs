//! The documentation is tested like code.
//!
//! 1. Every fenced block tagged ```` ```sh runnable ```` runs, and succeeds.
//!    The runnable blocks of one page form one shell session (`bash -e`,
//!    `pipefail`), started at the top of the repository, as a reader would
//!    type them one after the other. `nk-runtime` on the PATH is the binary
//!    under test behind a wrapper that adds a private `--root`, so nothing
//!    touches /run/nano-sandbox; containers left behind are deleted.
//! 2. Every repository path a page names in backquotes (`crates/...`,
//!    `tests/...`, `scripts/...`, `bench/...`, `docs/...`) exists, and every
//!    relative Markdown link points at a file that exists.
//! 3. Every page of the map in docs/README.md exists, and names the source
//!    files it explains.

use nk_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Pages written by other parts of the project; a link to one of them is
/// checked once the page exists.
const PAGES_OF_OTHERS: &[&str] = &["engines.md", "vm-mode.md"];

fn pages() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(workspace().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    v.push(workspace().join("QUICKSTART.md"));
    v.push(workspace().join("README.md"));
    v.sort();
    v
}

/// Fenced blocks as (info string, body, line number of the fence).
fn blocks(text: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let mut cur: Option<(String, String, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            match cur.take() {
                Some(b) => out.push(b),
                None => cur = Some((info.trim().to_string(), String::new(), i + 1)),
            }
            continue;
        }
        if let Some(b) = cur.as_mut() {
            b.1.push_str(line);
            b.1.push('\n');
        }
    }
    out
}

/// Repository paths named in backquotes outside code blocks.
fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            let p = part.trim();
            let prefixed = ["crates/", "tests/", "scripts/", "bench/", "docs/", ".ci/"]
                .iter()
                .any(|d| p.starts_with(d));
            let file = ["Makefile", "Cargo.toml", "QUICKSTART.md", "README.md"].contains(&p);
            let plain = !p.contains(['<', '>', '*', ' ', '{', '$', '(', '|']);
            if (prefixed || file) && plain {
                // `crates/sandbox/src/explain/mod.rs:42` or `...rs::item`
                let p = p.split(':').next().unwrap();
                out.push(p.trim_end_matches('/').to_string());
            }
        }
    }
    out
}

/// Relative Markdown link targets, without anchors.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        rest = &rest[end..];
        if target.contains("://") || target.starts_with('#') || target.starts_with("mailto:") {
            continue;
        }
        let t = target.split('#').next().unwrap().trim();
        if !t.is_empty() && !t.contains(' ') {
            out.push(t.to_string());
        }
    }
    out
}

#[test]
fn named_paths_and_links_exist() {
    let mut bad = Vec::new();
    for page in pages() {
        let Ok(text) = std::fs::read_to_string(&page) else {
            continue;
        };
        for p in named_paths(&text) {
            if !workspace().join(&p).exists() {
                bad.push(format!("{}: `{p}` does not exist", page.display()));
            }
        }
        for l in links(&text) {
            let target = page.parent().unwrap().join(&l);
            if target.exists() {
                continue;
            }
            let name = Path::new(&l)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            if PAGES_OF_OTHERS.contains(&name) {
                eprintln!(
                    "{}: link to {l}: that page is not written yet",
                    page.display()
                );
                continue;
            }
            bad.push(format!("{}: link ({l}) leads nowhere", page.display()));
        }
    }
    bad.sort();
    bad.dedup();
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
}

#[test]
fn every_page_of_the_map_exists_and_names_its_sources() {
    let map = std::fs::read_to_string(workspace().join("docs/README.md")).unwrap();
    let mut missing = Vec::new();
    for l in links(&map) {
        let p = workspace().join("docs").join(&l);
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if !name.ends_with(".md") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            if !PAGES_OF_OTHERS.contains(&name.as_str()) {
                missing.push(format!("{l}: missing"));
            }
            continue;
        };
        let explains_code = !["README.md", "QUICKSTART.md"].contains(&name.as_str());
        if explains_code && !named_paths(&text).iter().any(|p| p.starts_with("crates/")) {
            missing.push(format!("{l}: names no source file under crates/"));
        }
        if explains_code && !text.contains("```mermaid") {
            missing.push(format!("{l}: has no Mermaid diagram"));
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "{missing:?}");
}

#[test]
fn runnable_blocks_run() {
    require_root();
    let bin_dir = TempDir::new("nk-docs-bin");
    let state = TempDir::new("nk-docs-root");
    let wrapper = bin_dir.path().join("nk-runtime");
    // Written by install(1): no write descriptor of it in this process for a
    // concurrently forked child to inherit (ETXTBSY when it runs).
    write_executable(
        &wrapper,
        &format!(
            "#!/bin/sh\nexec {} --root {} \"$@\"\n",
            runtime().display(),
            state.path().display()
        ),
    );
    let path = format!(
        "{}:{}",
        bin_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    let mut failures = Vec::new();
    for page in pages() {
        let Ok(text) = std::fs::read_to_string(&page) else {
            continue;
        };
        let runnable: Vec<_> = blocks(&text)
            .into_iter()
            .filter(|(info, _, _)| {
                let mut w = info.split_whitespace();
                matches!(w.next(), Some("sh" | "bash")) && w.any(|x| x == "runnable")
            })
            .collect();
        if runnable.is_empty() {
            continue;
        }
        // One session per page; each block announces itself on stderr so a
        // failure can be traced to its line.
        let mut script = String::from("set -eo pipefail\n");
        for (_, body, line) in &runnable {
            script.push_str(&format!(
                "echo '--- {}:{line}' >&2\n{body}\n",
                page.display()
            ));
            ran += 1;
        }
        let o = run_to_files(
            Command::new("bash")
                .arg("-c")
                .arg(&script)
                .current_dir(workspace())
                .env("PATH", &path),
        );
        if !o.status.success() {
            let err = stderr(&o);
            let at = err
                .lines()
                .rev()
                .find(|l| l.starts_with("--- "))
                .unwrap_or("")
                .to_string();
            failures.push(format!(
                "{}: a runnable block failed ({:?}) at {at}\nstdout:\n{}\nstderr:\n{}",
                page.display(),
                o.status,
                stdout(&o),
                err
            ));
        }
        // Containers a page left behind.
        for e in std::fs::read_dir(state.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = e.file_name().to_string_lossy().into_owned();
            if !id.starts_with('.') {
                let _ = Command::new(runtime())
                    .args(["--root"])
                    .arg(state.path())
                    .args(["delete", "-f", &id])
                    .output();
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        ran >= 10,
        "only {ran} runnable blocks: is the marker still ```sh runnable?"
    );
}

#[test]
fn the_parsers_find_what_they_should() {
    let page = "see `crates/sandbox/src/spec.rs` and `target/x`\n\
                ```sh runnable\nnk-runtime list\n```\n\
                [map](README.md#x) [web](https://example.org) `docs/README.md:3`\n";
    assert_eq!(
        named_paths(page),
        ["crates/sandbox/src/spec.rs", "docs/README.md"]
    );
    assert_eq!(links(page), ["README.md"]);
    let b = blocks(page);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].0, "sh runnable");
    assert_eq!(b[0].1, "nk-runtime list\n");
}
