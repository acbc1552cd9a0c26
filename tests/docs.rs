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
//! 4. A ```` ```text expected ```` block right after a runnable block says
//!    what that block prints: each of its lines must appear in the block's
//!    standard output then standard error, in order (`...` stands for any
//!    text; lines starting with `# ` are comments, for what depends on the
//!    host).
//! 5. Every Mermaid block renders with Mermaid itself (in Chromium, one
//!    browser for all of them), no wider than a page; the SVGs land in
//!    build/docs/, and docs/README.md's diagram index lists each one.
//! 6. Every technical term of the `-E` narration has an entry in
//!    docs/glossary.md (see `narration_terms` for what counts as a term).

use nk_tests::*;
use sandbox::explain::catalog;
use std::collections::BTreeSet;
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

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-`
/// and `_`), spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Relative links with an anchor, as (file, anchor); `#x` alone is the page itself.
fn anchored_links(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        rest = &rest[end..];
        if target.contains("://") || target.contains(' ') {
            continue;
        }
        if let Some((file, anchor)) = target.split_once('#') {
            out.push((file.to_string(), anchor.to_string()));
        }
    }
    out
}

#[test]
fn anchors_lead_to_headings() {
    let mut bad = Vec::new();
    for page in pages() {
        let Ok(text) = std::fs::read_to_string(&page) else {
            continue;
        };
        for (file, anchor) in anchored_links(&text) {
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(&file)
            };
            let Ok(t) = std::fs::read_to_string(&target) else {
                continue; // a missing file is named_paths_and_links_exist's
            };
            if !anchors(&t).contains(&anchor) {
                bad.push(format!(
                    "{}: #{anchor} is no heading of {file}",
                    page.display()
                ));
            }
        }
    }
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
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
        // Reference pages (terms, exercises) need no picture.
        let drawn = !["glossary.md", "exercises.md"].contains(&name.as_str());
        if explains_code && drawn && !text.contains("```mermaid") {
            missing.push(format!("{l}: has no Mermaid diagram"));
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "{missing:?}");
}

/// A runnable block: its body, its fence's line, and what it must print
/// (the ```` ```text expected ```` block right after it, if any).
struct Runnable {
    body: String,
    line: usize,
    expected: Option<(String, usize)>,
}

fn runnable(text: &str) -> Vec<Runnable> {
    let all = blocks(text);
    let mut out = Vec::new();
    for (i, (info, body, line)) in all.iter().enumerate() {
        let mut w = info.split_whitespace();
        if !(matches!(w.next(), Some("sh" | "bash")) && w.any(|x| x == "runnable")) {
            continue;
        }
        let expected = all.get(i + 1).and_then(|(info, body, line)| {
            let mut w = info.split_whitespace();
            (w.next() == Some("text") && w.any(|x| x == "expected")).then(|| (body.clone(), *line))
        });
        out.push(Runnable {
            body: body.clone(),
            line: *line,
            expected,
        });
    }
    out
}

/// Does `line` match `pattern`, where `...` stands for any text?
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    if parts.len() == 1 {
        return line == pattern;
    }
    let mut rest = line;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// The expected lines missing from `output` (in order, as a subsequence).
fn unmet(expected: &str, output: &str) -> Vec<String> {
    let lines: Vec<&str> = output.lines().map(|l| l.trim_end()).collect();
    let mut at = 0;
    let mut missing = Vec::new();
    for want in expected
        .lines()
        .map(|l| l.trim_end())
        .filter(|l| !l.is_empty() && !l.starts_with("# "))
    {
        match lines[at..].iter().position(|l| line_matches(want, l)) {
            Some(i) => at += i + 1,
            None => missing.push(want.to_string()),
        }
    }
    missing
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
    let mut checked = 0;
    let mut failures = Vec::new();
    for page in pages() {
        let Ok(text) = std::fs::read_to_string(&page) else {
            continue;
        };
        let runnable = runnable(&text);
        if runnable.is_empty() {
            continue;
        }
        // One session per page; each block announces itself on stderr so a
        // failure can be traced to its line, and on stdout so its output
        // can be told from the others'.
        let mut script = String::from("set -eo pipefail\n");
        for (i, b) in runnable.iter().enumerate() {
            script.push_str(&format!(
                "echo '--- {}:{}' >&2\nprintf '\\n@@nk-docs-block {i}@@\\n'\n{}\n",
                page.display(),
                b.line,
                b.body
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
        let out = stdout(&o);
        let err = stderr(&o);
        if !o.status.success() {
            let at = err
                .lines()
                .rev()
                .find(|l| l.starts_with("--- "))
                .unwrap_or("")
                .to_string();
            failures.push(format!(
                "{}: a runnable block failed ({:?}) at {at}\nstdout:\n{out}\nstderr:\n{err}",
                page.display(),
                o.status,
            ));
        } else {
            for (i, b) in runnable.iter().enumerate() {
                let Some((want, line)) = &b.expected else {
                    continue;
                };
                checked += 1;
                // Its standard output, then its standard error.
                let got_out = out
                    .split(&format!("@@nk-docs-block {i}@@\n"))
                    .nth(1)
                    .and_then(|r| r.split("\n@@nk-docs-block ").next())
                    .unwrap_or("");
                let got_err = err
                    .split(&format!("--- {}:{}\n", page.display(), b.line))
                    .nth(1)
                    .and_then(|r| r.split("\n--- ").next())
                    .unwrap_or("");
                let got = format!("{got_out}\n{got_err}");
                let missing = unmet(want, &got);
                if !missing.is_empty() {
                    failures.push(format!(
                        "{}:{line}: the output of the block at line {} lacks {missing:?}; it printed:\n{got}",
                        page.display(),
                        b.line
                    ));
                }
            }
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
    assert!(
        checked >= 10,
        "only {checked} expected outputs: is the marker still ```text expected?"
    );
}

/// Widest diagram, in CSS pixels, that stays readable at the width of a
/// documentation page (GitHub's is about 1000): wider ones are scaled down
/// until their text is too small to read.
const MAX_DIAGRAM_WIDTH: f64 = 1000.0;

/// Every Mermaid block as (name, page, line, source); the name,
/// `<page>-<n>`, is also its SVG's in build/docs/.
fn diagrams() -> Vec<(String, PathBuf, usize, String)> {
    let mut out = Vec::new();
    for page in pages() {
        let Ok(text) = std::fs::read_to_string(&page) else {
            continue;
        };
        let stem = page
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("page")
            .to_lowercase();
        let mut n = 0;
        for (info, body, line) in blocks(&text) {
            if info == "mermaid" {
                n += 1;
                out.push((format!("{stem}-{n}"), page.clone(), line, body));
            }
        }
    }
    out
}

#[test]
fn every_mermaid_diagram_renders() {
    let ws = workspace();
    let mermaid = ws.join("build/mermaid");
    assert!(
        mermaid.join("node_modules/mermaid").is_dir(),
        "the Mermaid renderer is not installed in {}: run scripts/test-deps.sh",
        mermaid.display()
    );
    let all = diagrams();
    assert!(all.len() >= 20, "only {} Mermaid blocks found", all.len());
    // Render into a private directory, then put it in place of build/docs.
    let tmp = ws.join(format!("build/.docs.tmp.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let mut files = Vec::new();
    for (name, _, _, body) in &all {
        let f = tmp.join(format!("{name}.mmd"));
        std::fs::write(&f, body).unwrap();
        files.push(f);
    }
    let o = run_to_files(
        Command::new("node")
            .arg(ws.join("tests/mermaid/render.mjs"))
            .arg(&tmp)
            .args(&files)
            .current_dir(&mermaid),
    );
    let mut results = std::collections::BTreeMap::new();
    for line in stdout(&o).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{}", stderr(&o)));
        let name = Path::new(v["file"].as_str().unwrap())
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        results.insert(name, v);
    }
    let mut bad = Vec::new();
    for (name, page, line, _) in &all {
        let at = format!("{}:{line} ({name})", page.display());
        match results.get(name) {
            None => bad.push(format!("{at}: not rendered\n{}", stderr(&o))),
            Some(v) if v["ok"] != true => bad.push(format!("{at}: {}", v["error"])),
            Some(v) => {
                let w = v["width"].as_f64().unwrap_or(f64::MAX);
                if w > MAX_DIAGRAM_WIDTH {
                    bad.push(format!(
                        "{at}: {w:.0} px wide (at most {MAX_DIAGRAM_WIDTH}): at page width its text is unreadable; draw it top to bottom, shorten or wrap its labels (<br/>), or split it"
                    ));
                }
            }
        }
    }
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    let dest = ws.join("build/docs");
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&tmp, &dest).unwrap();
    eprintln!(
        "{} Mermaid diagrams rendered into {}",
        results.values().filter(|v| v["ok"] == true).count(),
        dest.display()
    );
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn the_diagram_index_lists_every_diagram() {
    let map = std::fs::read_to_string(workspace().join("docs/README.md")).unwrap();
    let index = map
        .split("## Diagram index")
        .nth(1)
        .expect("docs/README.md has a \"## Diagram index\" section");
    let index = index.split("\n## ").next().unwrap();
    let listed: BTreeSet<String> = index
        .split("build/docs/")
        .skip(1)
        .filter_map(|r| {
            let name: String = r
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            r[name.len()..].starts_with(".svg").then_some(name)
        })
        .collect();
    let all: BTreeSet<String> = diagrams().into_iter().map(|d| d.0).collect();
    let unlisted: Vec<_> = all.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&all).collect();
    assert!(
        unlisted.is_empty() && stale.is_empty(),
        "docs/README.md's diagram index: not listed {unlisted:?}; listed but no such diagram {stale:?}"
    );
}

/// The terms a reader of the `-E` narration meets, as the glossary must
/// know them: in the catalog's texts (and in `extra`, the narration of a
/// real run), every identifier with an underscore (`CLONE_PIDFD`,
/// `pivot_root`), every word used as a call (`setns()`), every word in
/// capitals (`RCU`, `OOM`), outside paths and dotted names; and every entry
/// of the catalog's list of plain-word terms (`catalog::TERMS`: keyring,
/// subreaper...).
fn narration_terms(extra: &str) -> BTreeSet<String> {
    let mut text = String::from(extra);
    for s in catalog::ALL {
        text.push_str(&format!("\n{}\n{}\n", s.what, s.why));
    }
    text.push_str(catalog::ROLES_LEGEND);
    let chars: Vec<char> = text.chars().collect();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        if !word(chars[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && word(chars[i]) {
            i += 1;
        }
        let tok: String = chars[start..i].iter().collect();
        let prev = if start > 0 { chars[start - 1] } else { ' ' };
        let next = chars.get(i).copied().unwrap_or(' ');
        let after = chars.get(i + 1).copied().unwrap_or(' ');
        let in_path = matches!(prev, '/' | '.' | '-' | '<' | '$' | '{' | '"' | '=')
            || next == '/'
            || (next == '.' && after.is_ascii_alphanumeric())
            || next == '-';
        if in_path || !tok.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        if tok.contains('_') {
            out.insert(tok);
        } else if next == '('
            && tok
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            out.insert(format!("{tok}()"));
        } else if tok.len() >= 2
            && tok
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            out.insert(tok);
        }
    }
    for t in catalog::TERMS {
        out.insert(t.to_string());
    }
    out
}

/// Words in capitals every reader knows: not glossary material.
const COMMON: &[&str] = &["CPU", "JSON", "NULL", "ID", "OK"];

/// The glossary's entries: the first cell of each table row, split at
/// commas; an entry ending in `*` covers every term it begins.
fn glossary_entries() -> Vec<String> {
    let g = std::fs::read_to_string(workspace().join("docs/glossary.md")).unwrap();
    let mut out = Vec::new();
    for line in g.lines().filter(|l| l.starts_with('|')) {
        let cell = line.split('|').nth(1).unwrap_or("");
        for t in cell.split(',') {
            let t = t.trim().trim_matches('`').trim().trim_end_matches("()");
            if !t.is_empty() && !t.starts_with("---") && t != "term" {
                out.push(t.to_string());
            }
        }
    }
    out
}

/// Is `term` in the glossary: an entry equal to it (in any case), or a
/// `PREFIX*` entry it begins with (in the same case: `SIG*` covers
/// `SIGKILL`, not signalfd)?
fn in_glossary(entries: &[String], term: &str) -> bool {
    let t = term.trim_end_matches("()");
    entries.iter().any(|e| match e.strip_suffix('*') {
        Some(prefix) => t.starts_with(prefix),
        None => e.eq_ignore_ascii_case(t),
    })
}

#[test]
fn narration_terms_are_in_the_glossary() {
    // The narration of a real run adds the terms its details use.
    let mut extra = String::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let root = Root::new();
        let b = Bundle::new(&["true"]);
        let o = root.run(&["-E", "run", "--bundle", &b.path(), &unique_id("doc-terms")]);
        assert!(o.status.success(), "{}", stderr(&o));
        extra = stderr(&o);
    } else {
        eprintln!("not root: checking the catalog's texts only, not a real run's details");
    }
    let all_text: String = catalog::ALL
        .iter()
        .map(|s| format!("{} {}", s.what, s.why))
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    for t in catalog::TERMS {
        assert!(
            all_text.contains(&t.to_lowercase()),
            "catalog::TERMS lists {t:?}, which no catalog text uses"
        );
    }
    let entries = glossary_entries();
    let missing: Vec<String> = narration_terms(&extra)
        .into_iter()
        .filter(|t| !COMMON.contains(&t.as_str()) && !in_glossary(&entries, t))
        .collect();
    assert!(
        missing.is_empty(),
        "terms of the -E narration with no entry in docs/glossary.md: {missing:?}"
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
    let r = runnable("```sh runnable\necho a\n```\n\n```text expected\na\n```\n");
    assert_eq!(r[0].expected.as_ref().map(|e| e.0.as_str()), Some("a\n"));
    assert!(line_matches("pid ... on ...", "pid 7 on the host"));
    assert!(!line_matches("pid ... on ...", "the pid 7 on"));
    assert!(line_matches("...end", "the end"));
    assert!(!line_matches("exact", "exact!"));
    assert_eq!(unmet("# a comment\nb\na\n", "a\nb\n"), ["a"], "in order");
    assert!(unmet("a\n...c\n", "a\nb\nabc\n").is_empty());
    let t = narration_terms("calls setns() and pivot_root on /proc/self/uid_map, RCU, memory.max");
    for want in ["setns()", "pivot_root", "RCU", "CLONE_PIDFD"] {
        assert!(t.contains(want), "{want}: {t:?}");
    }
    for not in ["uid_map", "memory", "max"] {
        assert!(!t.contains(not), "{not}: {t:?}");
    }
    assert_eq!(
        slug(" One `docker run`, end to end"),
        "one-docker-run-end-to-end"
    );
    assert_eq!(slug("The container's states"), "the-containers-states");
    assert_eq!(slug("pivot_root"), "pivot_root");
    let e = vec!["CLONE_NEW*".to_string(), "setns".to_string(), "SIG*".into()];
    assert!(in_glossary(&e, "CLONE_NEWPID") && in_glossary(&e, "setns()"));
    assert!(!in_glossary(&e, "CLONE_PIDFD"));
    assert!(in_glossary(&e, "SIGKILL") && !in_glossary(&e, "signalfd"));
}
