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
mod vm_mode;

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
        Command::VmMonitor(a) => vm_mode::monitor_main(g, &a.args),
    }
}

/// Options for the library's create from the command line.
pub fn create_options(
    c: &crate::cli::CreateCommon,
    foreground: bool,
) -> sandbox::container::CreateOptions {
    sandbox::container::CreateOptions {
        id: c.id.clone(),
        bundle: c.bundle.clone(),
        pid_file: c.pid_file.clone(),
        console_socket: c.console_socket.clone(),
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: c.preserve_fds,
        foreground,
    }
}

/// The isolation mode asked for: --mode, the binary name, or the bundle's annotation.
pub fn mode_of(c: &crate::cli::CreateCommon) -> anyhow::Result<String> {
    if let Some(m) = &c.mode {
        return match m.as_str() {
            "container" | "vm" => Ok(m.clone()),
            other => anyhow::bail!("--mode {other:?}: use container or vm"),
        };
    }
    let argv0 = std::env::args().next().unwrap_or_default();
    if std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "nk-runtime-vm")
    {
        return Ok("vm".into());
    }
    let cfg = c.bundle.join("config.json");
    // Only a regular file: reading a FIFO planted there would block forever
    // (create then refuses it with a clear error).
    let regular = std::fs::metadata(&cfg).is_ok_and(|m| m.is_file());
    if let Some(raw) = regular.then(|| std::fs::read(&cfg).ok()).flatten() {
        // Cheap check before a full parse: the annotation is rare.
        if raw.windows(22).any(|w| w == b"org.nano-sandbox.mode\"") {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&raw) {
                if v.pointer("/annotations/org.nano-sandbox.mode")
                    .and_then(|m| m.as_str())
                    == Some("vm")
                {
                    return Ok("vm".into());
                }
            }
        }
    }
    Ok("container".into())
}
