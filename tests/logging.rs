//! Logging on real commands: levels (--log-level, --debug, --quiet,
//! NK_LOG_LEVEL), role-tagged lines with timestamps, JSON with
//! --log-format json, and the engines' default of a single error object in
//! the --log file (DESIGN.md §4).

use nk_tests::*;
use serde_json::{json, Value};

/// `time="2024-01-02T03:04:05Z" level=L role=R msg="..."` → (level, role, msg).
fn parse_text(line: &str) -> (String, String, String) {
    let rest = line
        .strip_prefix("time=\"")
        .unwrap_or_else(|| panic!("no time: {line}"));
    let (time, rest) = rest.split_once("\" ").unwrap();
    assert_rfc3339(time);
    let rest = rest.strip_prefix("level=").expect("level");
    let (level, rest) = rest.split_once(' ').unwrap();
    let rest = rest.strip_prefix("role=").expect("role");
    let (role, rest) = rest.split_once(' ').unwrap();
    let msg = rest.strip_prefix("msg=").expect("msg");
    let msg: String = serde_json::from_str(msg).expect("msg is a quoted string");
    (level.into(), role.into(), msg)
}

fn assert_rfc3339(t: &str) {
    let b = t.as_bytes();
    assert!(
        t.len() == 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && t.ends_with('Z'),
        "not RFC 3339 UTC: {t}"
    );
}

fn lines(s: &str) -> Vec<(String, String, String)> {
    s.lines()
        .filter(|l| l.starts_with("time="))
        .map(parse_text)
        .collect()
}

#[test]
fn errors_are_one_role_tagged_line_by_default() {
    let root = Root::new();
    let o = root.run(&["state", "no-such-container"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let l = lines(&err);
    assert_eq!(l.len(), 1, "{err}");
    assert_eq!(l[0].0, "error");
    assert_eq!(l[0].1, "host");
    assert!(l[0].2.contains("does not exist"), "{err}");
}

#[test]
fn levels_info_and_debug() {
    let root = Root::new();
    let b = Bundle::new(&["true"]);
    let o = root.run(&[
        "--log-level",
        "info",
        "run",
        "--bundle",
        &b.path(),
        &unique_id("log-info"),
    ]);
    assert!(o.status.success());
    let l = lines(&stderr(&o));
    assert!(l.iter().all(|(lv, _, _)| lv == "info"), "{l:?}");
    assert!(l
        .iter()
        .any(|(_, r, m)| r == "host" && m.contains("command line:")));
    assert!(l.iter().any(|(_, _, m)| m.starts_with("done in ")));

    for how in ["flag", "env", "debug"] {
        let mut c = root.cmd();
        match how {
            "flag" => {
                c.args(["--log-level", "debug"]);
            }
            "env" => {
                c.env("NK_LOG_LEVEL", "debug");
            }
            _ => {
                c.arg("--debug");
            }
        }
        c.args(["run", "--bundle", &b.path(), &unique_id("log-debug")]);
        let o = run_to_files(&mut c);
        assert!(o.status.success(), "{how}: {}", stderr(&o));
        let l = lines(&stderr(&o));
        // Steps are logged at debug level, each with the role that did it,
        // including the child's, forwarded over the sync channel.
        for (role, step) in [
            ("host", "step spec.load:"),
            ("parent", "step clone:"),
            ("child", "step pivot_root:"),
        ] {
            assert!(
                l.iter()
                    .any(|(lv, r, m)| lv == "debug" && r == role && m.starts_with(step)),
                "{how}: no {role} line {step}: {l:?}"
            );
        }
    }
}

#[test]
fn quiet_hides_warnings_but_not_errors() {
    let root = Root::new();
    let mut b = Bundle::new(&["true"]);
    // A failing poststart hook is a warning; the container still runs.
    b.edit(|c| c["hooks"] = json!({"poststart": [{"path": "/bin/false"}]}));
    let o = root.run(&["run", "--bundle", &b.path(), &unique_id("log-warn")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let l = lines(&stderr(&o));
    assert!(
        l.iter()
            .any(|(lv, _, m)| lv == "warning" && m.contains("poststart")),
        "{l:?}"
    );
    let o = root.run(&["--quiet", "run", "--bundle", &b.path(), &unique_id("log-q")]);
    assert!(o.status.success());
    assert_eq!(stderr(&o), "");
    let o = root.run(&["-q", "state", "no-such-container"]);
    assert_eq!(lines(&stderr(&o)).len(), 1, "errors still show");
}

#[test]
fn json_log_file_holds_a_single_error_object() {
    let root = Root::new();
    let dir = TempDir::new("nk-log");
    let log = dir.path().join("log.json");
    let logs = log.to_str().unwrap();
    // Success: nothing is written (engines read the file only on failure).
    let b = Bundle::new(&["true"]);
    let id = unique_id("log-json");
    let o = root.run(&[
        "--log",
        logs,
        "--log-format",
        "json",
        "run",
        "--bundle",
        &b.path(),
        &id,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "");
    // Failure: exactly one JSON object, and the bare message on stderr.
    let o = root.run(&[
        "--log",
        logs,
        "--log-format",
        "json",
        "kill",
        "nope",
        "KILL",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"));
    assert_rfc3339(v["time"].as_str().unwrap());
    assert!(stderr(&o).contains("does not exist"));
    assert!(!stderr(&o).contains('{'), "stderr gets the bare message");
}

#[test]
fn json_debug_lines_are_objects_with_role() {
    let root = Root::new();
    let dir = TempDir::new("nk-log");
    let log = dir.path().join("log.json");
    let b = Bundle::new(&["true"]);
    let o = root.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "run",
        "--bundle",
        &b.path(),
        &unique_id("log-jd"),
    ]);
    assert!(o.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let mut roles = std::collections::BTreeSet::new();
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["msg"].is_string(), "{l}");
        assert_rfc3339(v["time"].as_str().unwrap());
        roles.insert(v["role"].as_str().unwrap().to_string());
    }
    assert_eq!(
        roles.into_iter().collect::<Vec<_>>(),
        ["child", "host", "parent"]
    );
}

#[test]
fn bad_values_name_the_flag() {
    let root = Root::new();
    for (args, flag) in [
        (vec!["--log-level", "loud", "list"], "--log-level"),
        (vec!["--log-format", "xml", "list"], "--log-format"),
        (vec!["--trace=yaml", "list"], "--trace"),
    ] {
        let o = root.run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(flag), "{args:?}: {}", stderr(&o));
    }
    // NK_LOG_LEVEL is a convenience: a bad value is ignored.
    let o = run_to_files(root.cmd().env("NK_LOG_LEVEL", "loud").args(["list", "-q"]));
    assert!(o.status.success());
}
