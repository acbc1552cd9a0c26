//! `exec`: run another process inside a running container, in runc's shape.
//!
//! The process is either `--process F` (what engines send) or the
//! container's own process with the command-line overrides on top. Every
//! failure of exec itself exits 255, as runc does, so callers can tell it
//! from the program's own status.

use crate::backend::{exec_failed, Backend};
use crate::cli::ExecArgs;
use crate::report::Globals;
use sandbox::container::{exec::validate_process, merge_process, ExecOptions, ExecTarget};
use sandbox::linux::console;

/// Parse `UID[:GID]` (numbers only, as runc).
fn parse_user(u: &str) -> anyhow::Result<(u32, Option<u32>)> {
    let bad = || anyhow::anyhow!("--user {u:?}: give a numeric UID[:GID]");
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let uid = uid.parse().map_err(|_| bad())?;
    let gid = match gid {
        Some(g) => Some(g.parse().map_err(|_| bad())?),
        None => None,
    };
    Ok((uid, gid))
}

/// The command to run: `--exec CMD` through /bin/sh -c, the given command,
/// or (the seed's form) an interactive /bin/sh; and whether it gets a pty.
fn command_and_tty(a: &ExecArgs) -> anyhow::Result<(Vec<String>, bool)> {
    let sh = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    if let Some(cmd) = &a.exec_cmd {
        if !a.command.is_empty() {
            anyhow::bail!(
                "--exec {cmd:?} and a command ({}) were both given: use one",
                a.command.join(" ")
            );
        }
        return Ok((sh(&["/bin/sh", "-c", cmd]), a.tty));
    }
    if a.command.is_empty() {
        // An interactive shell: on a pty when we are at a terminal.
        let at_tty = console::is_tty(console::stdio(0));
        let tty = a.tty || (at_tty && a.console_socket.is_none() && !a.detach);
        return Ok((sh(&["/bin/sh"]), tty));
    }
    Ok((a.command.clone(), a.tty))
}

/// The process to run; the container's own (from `target`, or its config
/// copy in VM mode) is the base of the command-line overrides.
fn build_process(
    g: &Globals,
    a: &ExecArgs,
    target: Option<&ExecTarget>,
) -> anyhow::Result<oci_spec::runtime::Process> {
    if let Some(p) = &a.process {
        // A regular file of at most a config's size: a FIFO or /dev/zero
        // is refused at once.
        let raw = sandbox::linux::fs::read_path(p, sandbox::spec::MAX_CONFIG_BYTES)
            .map_err(|e| anyhow::anyhow!("--process {}: {e}", p.display()))?;
        let proc: oci_spec::runtime::Process = sandbox::spec::from_slice_named(&raw, p)?;
        validate_process(&proc).map_err(|e| anyhow::anyhow!("--process {}: {e}", p.display()))?;
        return Ok(proc);
    }
    let base = match target {
        Some(t) => t.process()?,
        None => g.runtime().config_process(&a.id)?,
    };
    let (args, tty) = command_and_tty(a)?;
    let mut gids = Vec::new();
    for g in &a.additional_gids {
        for part in g.split(',').filter(|s| !s.is_empty()) {
            gids.push(
                part.parse::<u32>()
                    .map_err(|_| anyhow::anyhow!("--additional-gids {part:?} is not a number"))?,
            );
        }
    }
    let o = sandbox::container::exec::ProcessOverrides {
        args,
        env: a.env.clone(),
        cwd: a.cwd.clone(),
        user: a.user.as_deref().map(parse_user).transpose()?,
        additional_gids: gids,
        caps: a.cap.clone(),
        tty,
        no_new_privs: a.no_new_privs,
        apparmor: a.apparmor.clone(),
    };
    Ok(merge_process(&base, &o)?)
}

#[inline(never)] // its own frame, not a share of dispatch's (see there)
pub fn run(g: &Globals, a: ExecArgs) -> anyhow::Result<i32> {
    // The record and the config copy are read once, here: an unknown id is
    // reported as such before anything else is read, and the status is
    // derived once, by the exec itself.
    let (b, st) = Backend::loaded(g, &a.id);
    let st = st.map_err(|e| exec_failed(e.into()))?;
    let target = match &b {
        Backend::Container(rt) => Some(rt.exec_target(st).map_err(|e| exec_failed(e.into()))?),
        Backend::Vm(_) => None,
    };
    let mut process = build_process(g, &a, target.as_ref()).map_err(exec_failed)?;
    // Applied (or refused when SELinux is off) by the exec'd init.
    if let Some(l) = a.process_label.as_ref().filter(|l| !l.is_empty()) {
        process.set_selinux_label(Some(l.clone()));
    }
    b.exec(
        &ExecOptions {
            id: a.id.clone(),
            process: Some(process),
            pid_file: a.pid_file.clone(),
            console_socket: a.console_socket.clone(),
            detach: a.detach,
            preserve_fds: a.preserve_fds,
            ignore_paused: a.ignore_paused,
        },
        target.as_ref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:50").unwrap(), (1000, Some(50)));
        assert!(parse_user("nobody").is_err());
        assert!(parse_user("1:x").is_err());
    }
}
