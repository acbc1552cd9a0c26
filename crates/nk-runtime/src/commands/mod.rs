//! One file per command, as in runc and crun.

mod check;
mod checkpoint;
mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod resume;
mod run;
mod spec;
mod start;
mod state;
mod update;
mod vm_image;

use crate::cli::Command;
use crate::report::Globals;

/// Run one command; the result is the process exit code.
pub fn dispatch(g: &Globals, cmd: Option<Command>) -> anyhow::Result<i32> {
    let Some(cmd) = cmd else {
        return Ok(0);
    };
    // Commands whose job is printing stop quietly when the reader goes away
    // (`nk-runtime state x | head -1`), as other CLI tools do. The others keep
    // Rust's SIGPIPE-ignored default: they write to hooks and ptys, and must
    // not die halfway through a lifecycle step because a reader left.
    if matches!(
        cmd,
        Command::State(_)
            | Command::List(_)
            | Command::Ps(_)
            | Command::Features
            | Command::Events(_)
            | Command::Check(_)
    ) {
        // SAFETY: resetting a signal disposition before any other thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // Each command's entry is #[inline(never)]: inlined here, their locals
    // made one 21 KiB frame, which every command touched page by page.
    match cmd {
        Command::Create(a) => create::run(g, a),
        Command::Start(a) => start::run(g, a),
        Command::Run(a) => run::run(g, a),
        Command::State(a) => state::run(g, a),
        Command::Kill(a) => kill::run(g, a),
        Command::Delete(a) => delete::run(g, a),
        Command::List(a) => list::run(g, a),
        Command::Spec(a) => spec::run(g, a),
        Command::Exec(a) => exec::run(g, a),
        Command::Ps(a) => ps::run(g, a),
        Command::Pause(a) => pause::run(g, a),
        Command::Resume(a) => resume::run(g, a),
        Command::Update(a) => update::run(g, a),
        Command::Events(a) => events::run(g, a),
        Command::Features => features::run(g),
        Command::Checkpoint(a) => checkpoint::checkpoint(g, a),
        Command::Restore(a) => checkpoint::restore(g, a),
        Command::Check(a) => check::run(g, a),
        Command::VmImage(a) => vm_image::run(g, a),
        Command::Init => sandbox::process::init::main(),
        Command::VmMonitor(a) => crate::backend::vm_monitor(g, &a.args),
    }
}
