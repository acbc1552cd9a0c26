//! The layering docs/architecture-overview.md draws, kept true: crates
//! depend downwards only (nk-runtime -> vm -> sandbox; vm-protocol is
//! shared by vm and agent), inside `sandbox` a module uses only its own
//! layer and those below it, and no crate has a module cycle (two files
//! that each use the other). Read from the sources: `crate::` and `super::`
//! paths (with `use` groups) between files, and the path dependencies of
//! each crate's Cargo.toml. Test modules (`#[cfg(test)]` onwards) are
//! left out: a test may reach anywhere.

use nk_tests::workspace;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Crates by height: a crate may depend only on crates that are lower.
const CRATES: &[(&str, u32)] = &[
    ("sandbox", 0),
    ("regex-lite-shim", 0),
    ("vm-protocol", 1),
    ("vm", 2),
    ("agent", 2),
    ("nk-runtime", 3),
];

/// The layers of `crates/sandbox`, lowest first, by top-level module. A
/// module may use modules of its own layer (without a cycle) and of the
/// layers before it; the crate root (lib.rs: re-exports, OCI_VERSION) is
/// below them all.
const SANDBOX_LAYERS: &[(&str, &[&str])] = &[
    ("base", &["error", "logging", "time", "files", "explain"]),
    ("kernel mechanisms", &["linux", "criu"]),
    ("cgroups", &["cgroups"]),
    ("records", &["spec", "state", "features"]),
    ("processes", &["process"]),
    ("verbs", &["container"]),
];

/// Module cycles tolerated for now: the ONE place to list an exception
/// (none today). The test fails on an entry that no longer exists, too.
const KNOWN_CYCLES: &[&str] = &[];

/// The module graph of one crate: module path -> modules its file uses.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    collect(src, src, &mut files);
    let mods: BTreeSet<String> = files.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (m, file) in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let text = strip(&text);
        // What `super` means in this file: the parent of its module (a
        // mod.rs or a leaf file alike, as both are the module itself).
        let parent: Vec<&str> = match m.rsplit_once("::") {
            Some((p, _)) => p.split("::").collect(),
            None => Vec::new(),
        };
        let mut uses = BTreeSet::new();
        for path in paths(&text) {
            let abs: Vec<String> = match path.first().map(String::as_str) {
                Some("crate") => path[1..].to_vec(),
                Some("super") => {
                    let mut base: Vec<String> = parent.iter().map(|s| s.to_string()).collect();
                    let mut rest = &path[1..];
                    while rest.first().map(String::as_str) == Some("super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    base.extend(rest.iter().cloned());
                    base
                }
                _ => continue,
            };
            // The longest prefix that is a module of this crate.
            let target = (1..=abs.len())
                .rev()
                .map(|k| abs[..k].join("::"))
                .find(|c| mods.contains(c));
            if let Some(t) = target {
                let related =
                    t == *m || m.starts_with(&format!("{t}::")) || t.starts_with(&format!("{m}::"));
                if !related && !t.is_empty() {
                    uses.insert(t);
                }
            }
        }
        graph.insert(m.clone(), uses);
    }
    graph
}

/// Every .rs file under `dir` by module path (lib.rs, main.rs: "").
fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.insert(parts.join("::"), p);
        }
    }
}

/// The text before `#[cfg(test)]`, without comments and string literals
/// (a path inside either is not a use).
fn strip(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'r'
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
            && matches!(b.get(i + 1), Some(b'"' | b'#'))
        {
            // A raw string r"..." or r#"..."#.
            let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal ('"'); a lifetime has no closing quote there.
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // An escaped char literal ('\'', '\x7f'): skip the escaped char.
            i += 3;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Every path that starts with `crate::` or `super::`, `use` groups
/// expanded (`crate::a::{b, c::d}` gives crate::a::b and crate::a::c::d).
fn paths(text: &str) -> Vec<Vec<String>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let at_word = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if at_word && (b[i..].starts_with(b"crate::") || b[i..].starts_with(b"super::")) {
            i = path_at(b, i, Vec::new(), &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// Read a path (and its group) at `i`, after `prefix`; returns the end.
fn path_at(b: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut segs = prefix;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            // A group: each comma-separated item continues `segs`.
            i += 1;
            loop {
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return i + 1;
                }
                let start = i;
                i = path_at(b, i, segs.clone(), out);
                // Skip `as name` and anything else up to the item's end.
                let mut depth = 0;
                while i < b.len() && !(depth == 0 && (b[i] == b',' || b[i] == b'}')) {
                    match b[i] {
                        b'{' => depth += 1,
                        b'}' => depth -= 1,
                        _ => {}
                    }
                    i += 1;
                }
                if i == start {
                    i += 1;
                }
            }
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i == start {
            break;
        }
        segs.push(String::from_utf8_lossy(&b[start..i]).into_owned());
        if b[i..].starts_with(b"::") {
            i += 2;
        } else {
            break;
        }
    }
    if segs.iter().any(|s| s != "self") {
        out.push(segs.into_iter().filter(|s| s != "self").collect());
    }
    i
}

/// The module cycles of a graph (strongly connected groups of two or
/// more), each as "a <-> b <-> c", sorted.
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    // Two modules are in one cycle when each reaches the other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in g.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(m))).collect();
    let mut groups = BTreeSet::new();
    for m in g.keys() {
        let group: Vec<&str> = g
            .keys()
            .filter(|n| *n == m || (reaches[m].contains(*n) && reaches[n].contains(m)))
            .map(String::as_str)
            .collect();
        if group.len() > 1 {
            groups.insert(group.join(" <-> "));
        }
    }
    groups.into_iter().collect()
}

fn crate_dirs() -> Vec<(String, PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    v
}

#[test]
fn crates_depend_downwards_only() {
    let height = |name: &str| {
        CRATES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| *h)
            .unwrap_or_else(|| panic!("crates/{name} is in no layer: add it to CRATES in tests/layering.rs (and to docs/architecture-overview.md)"))
    };
    let mut bad = Vec::new();
    for (name, dir) in crate_dirs() {
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        for line in toml.lines() {
            let Some(dep) = line
                .split("path = \"../")
                .nth(1)
                .and_then(|r| r.split('"').next())
            else {
                continue;
            };
            if height(dep) >= height(&name) {
                bad.push(format!("crates/{name} depends on crates/{dep}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "a crate depends on one at its own height or above (the order is nk-runtime -> vm and agent -> vm-protocol -> sandbox): {bad:?}"
    );
}

#[test]
fn sandbox_modules_use_only_their_layer_and_those_below() {
    let g = module_graph(&workspace().join("crates/sandbox/src"));
    let layer = |m: &str| {
        let top = m.split("::").next().unwrap_or("");
        SANDBOX_LAYERS
            .iter()
            .position(|(_, mods)| mods.contains(&top))
            .unwrap_or_else(|| panic!("sandbox module {top} is in no layer: add it to SANDBOX_LAYERS in tests/layering.rs (and to docs/architecture-overview.md)"))
    };
    let mut up = Vec::new();
    for (m, uses) in &g {
        if m.is_empty() {
            continue;
        }
        for t in uses {
            if layer(t) > layer(m) {
                up.push(format!(
                    "{m} ({}) uses {t} ({})",
                    SANDBOX_LAYERS[layer(m)].0,
                    SANDBOX_LAYERS[layer(t)].0
                ));
            }
        }
    }
    assert!(
        up.is_empty(),
        "lower layers of crates/sandbox use higher ones; move what they share down (a type into its own lower module) or the caller up:\n{}",
        up.join("\n")
    );
}

#[test]
fn no_crate_has_a_module_cycle() {
    let mut found = Vec::new();
    for (name, dir) in crate_dirs() {
        let src = dir.join("src");
        if src.is_dir() {
            found.extend(
                cycles(&module_graph(&src))
                    .into_iter()
                    .map(|c| format!("{name}: {c}")),
            );
        }
    }
    let new: Vec<_> = found
        .iter()
        .filter(|c| !KNOWN_CYCLES.contains(&c.as_str()))
        .collect();
    assert!(
        new.is_empty(),
        "module cycles (files that use each other, directly or around a loop); break them by moving what both need into a lower module:\n{}",
        new.iter().map(|c| c.as_str()).collect::<Vec<_>>().join("\n")
    );
    let gone: Vec<_> = KNOWN_CYCLES
        .iter()
        .filter(|k| !found.iter().any(|f| f == *k))
        .collect();
    assert!(
        gone.is_empty(),
        "KNOWN_CYCLES in tests/layering.rs lists cycles that are gone: remove {gone:?}"
    );
}

#[test]
fn the_reader_finds_paths_and_cycles() {
    let p = paths(&strip(
        "use crate::a::{b, c::{d, e as f}, self};\nlet x = super::super::g::h(); // crate::not\n\"crate::nor\"",
    ));
    let p: Vec<String> = p.iter().map(|s| s.join("::")).collect();
    assert_eq!(
        p,
        vec![
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e",
            "crate::a",
            "super::super::g::h"
        ]
    );
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&g), vec!["a <-> b <-> c"]);
}
