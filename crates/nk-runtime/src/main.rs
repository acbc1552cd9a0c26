//! nk-runtime: parse the command line and dispatch to one file per command.
//! Nothing else lives here.
//!
//! The entry point is the C `main`, not Rust's: std's start-up before a
//! Rust `main` also installs the handler that reports a stack overflow,
//! and finding the main thread's stack for it makes glibc read and parse
//! /proc/self/maps. Every command pays that, and a `run` twice (the
//! runtime, then the init it re-executes): 19 system calls and 6 page
//! faults per process. What else that start-up does is done here, the
//! same way ([`std_start`]); a stack overflow is then a plain SIGSEGV.
#![cfg_attr(not(test), no_main)]

mod backend;
mod cli;
mod commands;
mod report;

use clap::Parser;

/// What std's start-up does before a Rust `main` that the runtime relies
/// on: descriptors 0, 1 and 2 are open (on /dev/null when they were not, so
/// no file the runtime opens becomes stdout), and SIGPIPE is ignored (a
/// write to a closed pipe fails with EPIPE instead of killing us). The
/// arguments need nothing: std takes them from glibc's init_array.
fn std_start() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll over an array that lives for the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    for p in &fds {
        let closed = if n < 0 {
            // poll itself failed: ask each descriptor (as std does).
            // SAFETY: fcntl(F_GETFD) on a descriptor number takes no pointers.
            unsafe { libc::fcntl(p.fd, libc::F_GETFD) < 0 }
        } else {
            p.revents & libc::POLLNVAL != 0
        };
        if closed {
            // SAFETY: open(2) of a constant NUL-terminated path; it returns
            // the lowest free descriptor, this one.
            if unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } < 0 {
                std::process::abort();
            }
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN takes no pointers.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// The process's entry point (see the module's comment).
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    std_start();
    // The container side of clone is `nk-runtime init`: dispatch before any
    // parsing, it is the hot path of every create and exec.
    if std::env::args_os().nth(1).is_some_and(|a| a == "init") {
        sandbox::process::init::main();
    }
    command()
}

/// Parse the command line and run the command. A frame of its own, which
/// the init never enters: the dispatch inlined here needs some 15 KiB of
/// stack, and every page of a frame is touched (a page fault each, on this
/// kind of host several microseconds) when it is entered.
#[inline(never)]
fn command() -> ! {
    let argv = cli::normalize(std::env::args().collect());
    let cli = match cli::Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let g = report::Globals::setup(&cli);
    let code = match commands::dispatch(&g, cli.command) {
        Ok(code) => code,
        Err(e) => g.fail(&e),
    };
    g.finish();
    std::process::exit(code);
}
