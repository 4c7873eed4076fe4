//! weave-setup: turns the weave network integration on and off for Docker and podman.

mod atomic;
mod cli;
mod containers_conf;
mod daemon_json;
mod docker;
mod dockerd;
mod jsonfmt;
mod paths;
mod podman;
mod record;
mod runtime_args;
mod status;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use cli::{Cli, Command, Uninstall};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and the help shown for a missing subcommand, as clap prints them.
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            // Usage errors as one line too, like every other weave-setup error.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!(
                "weave-setup: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
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
