//! createContainer hooks in the guest. The spec runs them in the
//! container's namespaces before pivot_root, with a path that resolves in
//! the runtime's namespace. In a VM the runtime's namespace is the guest's
//! tmpfs root, which holds nothing but the agent: a hook there could not
//! even find its ELF interpreter or `#!` shell. So the path resolves in the
//! container's rootfs instead: the hook runs through the agent, which
//! chroots into the rootfs (the library starts it there) and executes it.
//! startContainer hooks need nothing: the library runs them after
//! pivot_root, where the spec resolves their path anyway.

use oci_spec::runtime::{Hook, Spec};

/// The agent's argument that makes it this wrapper.
pub const WRAPPER: &str = "hook-in-rootfs";

/// Route the config's createContainer hooks through the wrapper.
pub fn route_through_rootfs(config: &mut Spec) -> std::io::Result<()> {
    let Some(mut hooks) = config.hooks().clone() else {
        return Ok(());
    };
    let Some(list) = hooks.create_container().clone() else {
        return Ok(());
    };
    crate::guest::install_self()?;
    let wrapped: Vec<Hook> = list
        .into_iter()
        .map(|mut h| {
            let path = h.path().display().to_string();
            let argv = h.args().clone().unwrap_or_else(|| vec![path.clone()]);
            let mut args = vec!["nk-agent".to_string(), WRAPPER.into(), path];
            args.extend(argv);
            h.set_path(crate::guest::SELF_COPY.into());
            h.set_args(Some(args));
            h
        })
        .collect();
    hooks.set_create_container(Some(wrapped));
    config.set_hooks(Some(hooks));
    Ok(())
}

/// `nk-agent hook-in-rootfs PATH ARGV0 ARGS...`, started in the container's
/// rootfs: chroot there and execute the hook. Returns only on failure.
pub fn main(args: &[String]) -> i32 {
    let [path, argv @ ..] = args else {
        eprintln!("nk-agent {WRAPPER}: usage: {WRAPPER} PATH ARGV0 [ARGS...]");
        return 2;
    };
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let (dot, slash) = (c("."), c("/"));
    // SAFETY: chroot and chdir with NUL-terminated paths.
    if unsafe { libc::chroot(dot.as_ptr()) != 0 || libc::chdir(slash.as_ptr()) != 0 } {
        eprintln!(
            "nk-agent {WRAPPER}: chroot into the container's rootfs: {}",
            std::io::Error::last_os_error()
        );
        return 127;
    }
    let prog = c(path);
    let owned: Vec<std::ffi::CString> = argv.iter().map(|a| c(a)).collect();
    let mut ptrs: Vec<*const libc::c_char> = owned.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: execv with a NUL-terminated path and a NULL-terminated array
    // of NUL-terminated strings that outlive the call; the environment is ours.
    unsafe { libc::execv(prog.as_ptr(), ptrs.as_ptr()) };
    eprintln!(
        "nk-agent {WRAPPER}: execute {path} in the container's rootfs: {}",
        std::io::Error::last_os_error()
    );
    127
}
