//! `exec`: run another process inside a running container.

use crate::cli::ExecArgs;
use crate::report::{ExitCode, Globals};
use sandbox::container::{merge_process, ExecOptions};
use sandbox::process::wait::{self, Blocked, Foreground};

/// runc exits 255 when exec itself fails (not the program).
const EXEC_FAILED: i32 = 255;

fn build_process(g: &Globals, a: &ExecArgs) -> anyhow::Result<oci_spec::runtime::Process> {
    if let Some(p) = &a.process {
        let raw =
            std::fs::read(p).map_err(|e| anyhow::anyhow!("--process {}: {e}", p.display()))?;
        let proc: oci_spec::runtime::Process = sandbox::spec::from_slice_named(&raw, p)?;
        return Ok(proc);
    }
    let rt = g.runtime();
    let base = rt.config_process(&a.id)?;
    let stdin_tty = sandbox::linux::console::is_tty(sandbox::linux::console::stdio(0));
    let (args, tty) = if let Some(cmd) = &a.exec_cmd {
        (
            vec!["/bin/sh".to_string(), "-c".to_string(), cmd.clone()],
            a.tty,
        )
    } else if a.command.is_empty() {
        // The seed's form: no command opens an interactive shell.
        (
            vec!["/bin/sh".to_string()],
            a.tty || (stdin_tty && a.console_socket.is_none() && !a.detach),
        )
    } else {
        (a.command.clone(), a.tty)
    };
    let user = match &a.user {
        None => None,
        Some(u) => {
            let (uid, gid) = match u.split_once(':') {
                Some((u, g)) => (u, Some(g)),
                None => (u.as_str(), None),
            };
            let uid: u32 = uid
                .parse()
                .map_err(|_| anyhow::anyhow!("--user {u:?}: give a numeric UID[:GID]"))?;
            let gid: Option<u32> = match gid {
                Some(g) => Some(
                    g.parse()
                        .map_err(|_| anyhow::anyhow!("--user {u:?}: give a numeric UID[:GID]"))?,
                ),
                None => None,
            };
            Some((uid, gid))
        }
    };
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
        user,
        additional_gids: gids,
        caps: a.cap.clone(),
        tty,
        no_new_privs: a.no_new_privs,
        apparmor: a.apparmor.clone(),
    };
    Ok(merge_process(&base, &o)?)
}

pub fn run(g: &Globals, a: ExecArgs) -> anyhow::Result<i32> {
    let fail = |e: anyhow::Error| {
        anyhow::Error::new(ExitCode(EXEC_FAILED, anyhow::anyhow!("exec failed: {e:#}")))
    };
    let process = build_process(g, &a).map_err(fail)?;
    if super::vm_mode::is_vm(g, &a.id) {
        return super::vm_mode::exec(g, &a, process);
    }
    let rt = g.runtime();
    let opts = ExecOptions {
        id: a.id.clone(),
        process: Some(process),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        detach: a.detach,
        preserve_fds: a.preserve_fds,
    };
    if a.detach {
        rt.exec(&opts).map_err(|e| fail(e.into()))?;
        return Ok(0);
    }
    let _blocked = Blocked::new()?;
    let h = rt.exec(&opts).map_err(|e| fail(e.into()))?;
    Ok(wait::wait(Foreground {
        pid: h.pid,
        pidfd: &h.pidfd,
        forward_to: h.pid,
        pty: h.pty,
        reap_orphans: false,
    })?)
}
