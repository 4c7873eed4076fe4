//! weave-setup: turns the weave network integration on and off for Docker and podman.

mod atomic;
mod cli;
mod daemon_json;
mod docker;
mod dockerd;
mod jsonfmt;
mod paths;
mod podman;
mod record;
mod status;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, Uninstall};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each error's message already ends with its cause: one line, no chain to append.
            eprintln!("weave-setup: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Docker(args) => docker::install(args)?,
        Command::Podman(args) => podman::install(args)?,
        Command::Uninstall(Uninstall::Docker(args)) => docker::uninstall(args)?,
        Command::Uninstall(Uninstall::Podman(args)) => podman::uninstall(args)?,
        Command::Status(args) => status::run(args),
    }
    Ok(())
}
