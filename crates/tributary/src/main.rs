//! `tributary`: the binary. Parses flags the way Prometheus does, then either
//! runs the agent or one of the tool subcommands (`check`, `receive`).
//! Wiring only — every capability lives in a library crate.

// Linked for the C math functions it defines (not called by name).
use tributary_cmath as _;

/// Large blocks on transparent huge pages (see `tributary_alloc`).
#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOCATOR: tributary_alloc::HugePageAlloc = tributary_alloc::HugePageAlloc;

mod agent;
mod check;
mod cli;
mod limits;
mod logging;
mod receive;

use std::process::ExitCode;

use clap::Parser;

use cli::{CheckCommand, Cli, Command};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let server_only = cli::server_only_flags(&args);
    if !server_only.is_empty() {
        let quoted: Vec<String> = server_only.iter().map(|f| format!("{f:?}")).collect();
        eprintln!(
            "The following flag(s) can not be used in agent mode: [{}]",
            quoted.join(" ")
        );
        return ExitCode::from(3);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Some(Command::Check(CheckCommand::Config { files })) => check::config(&files),
        Some(Command::Check(CheckCommand::Metrics { format })) => check::metrics(format.as_deref()),
        Some(Command::Check(CheckCommand::Wal { dir, repair })) => check::wal(&dir, repair),
        Some(Command::Receive(args)) => run_async(receive::run(args)),
        None => agent::main(cli.agent),
    }
}

fn run_async(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
