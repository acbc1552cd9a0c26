//! nk-runtime: parse the command line and dispatch to one file per command.
//! Nothing else lives here.

mod backend;
mod cli;
mod commands;
mod report;

use clap::Parser;

fn main() {
    // The container side of clone is `nk-runtime init`: dispatch before any
    // parsing, it is the hot path of every create and exec.
    if std::env::args_os().nth(1).is_some_and(|a| a == "init") {
        sandbox::process::init::main();
    }
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
