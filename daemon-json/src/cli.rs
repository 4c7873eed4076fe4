//! Command line of weave-setup.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use weave_core::settings;

pub const DEFAULT_DAEMON_JSON: &str = "/etc/docker/daemon.json";
pub const DEFAULT_HOOKS_DIR: &str = "/usr/share/containers/oci/hooks.d";
pub const DEFAULT_PIDFILE: &str = "/var/run/docker.pid";

/// Installs and uninstalls the weave network integration: a `weave` runtime in Docker's
/// daemon.json, and an OCI hook file in podman's (and CRI-O's) hooks.d.
///
/// Every command can be run twice: the second run changes nothing. Files are replaced
/// atomically and the previous version is kept as `<file>.weave-backup`.
#[derive(Debug, Parser)]
#[command(name = "weave-setup", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add the weave runtime (weave-runtime) to Docker's daemon.json.
    ///
    /// Every other key and value of the file is kept exactly. Then either pass --reload or
    /// send dockerd a SIGHUP yourself; `docker run --runtime weave --annotation
    /// weave.cidr=10.2.0.5/24 ...` attaches the container.
    Docker(DockerInstall),
    /// Write the weave OCI hook file for podman and CRI-O (hooks.d).
    ///
    /// The hook runs at createRuntime and poststop for containers that have a weave.cidr or
    /// weave.dns annotation: `podman run --annotation weave.cidr=10.2.0.5/24 ...`.
    Podman(PodmanInstall),
    /// Remove exactly what `docker` or `podman` installed.
    #[command(subcommand)]
    Uninstall(Uninstall),
    /// Show what is installed where, and whether the running dockerd knows the runtime.
    Status(StatusArgs),
}

#[derive(Debug, Subcommand)]
pub enum Uninstall {
    /// Remove the runtime from daemon.json; restore the default-runtime it replaced.
    Docker(DockerUninstall),
    /// Remove the hook file from hooks.d.
    Podman(PodmanUninstall),
}

/// Which daemon.json and which runtime name.
#[derive(Debug, Args)]
pub struct DockerTarget {
    /// Docker daemon configuration file (dockerd's --config-file); `docker` creates it if missing.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DAEMON_JSON)]
    pub config: PathBuf,
    /// Name of the runtime in daemon.json, as given to `docker run --runtime NAME`.
    #[arg(long, value_name = "NAME", default_value = "weave")]
    pub runtime_name: String,
}

/// Finding the running dockerd, for --reload and status.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// dockerd's pidfile; when it is missing, the one running dockerd that reads --config is used.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PIDFILE)]
    pub pidfile: PathBuf,
    /// Docker API address used to check the runtime (`docker -H`), e.g. unix:///run/docker.sock.
    #[arg(long, value_name = "HOST", env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
}

#[derive(Debug, Args)]
pub struct DockerInstall {
    #[command(flatten)]
    pub target: DockerTarget,
    /// Absolute path of weave-runtime [default: weave-runtime next to weave-setup if it
    /// exists, else /usr/local/bin/weave-runtime].
    #[arg(long, value_name = "PATH")]
    pub runtime_path: Option<PathBuf>,
    /// A flag of weave-runtime, written to daemon.json `runtimeArgs` (repeatable, in order):
    /// --runtime-arg=--weave-bridge=weave, or the value as the next --runtime-arg. Checked
    /// as weave-runtime reads it; anything else is refused.
    #[arg(long = "runtime-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub runtime_args: Vec<String>,
    /// Also make it dockerd's `default-runtime` (uninstall restores the previous one).
    #[arg(long)]
    pub set_as_default: bool,
    /// Replace a runtime of the same name that points elsewhere.
    #[arg(long)]
    pub force: bool,
    /// Print the resulting daemon.json and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Send SIGHUP to the running dockerd and check that `docker info` lists the runtime.
    #[arg(long)]
    pub reload: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Debug, Args)]
pub struct DockerUninstall {
    #[command(flatten)]
    pub target: DockerTarget,
    /// Print the resulting daemon.json and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Send SIGHUP to the running dockerd and check that `docker info` no longer lists the runtime.
    #[arg(long)]
    pub reload: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// Where the hook file goes.
#[derive(Debug, Args)]
pub struct HooksTarget {
    /// OCI hooks directory. podman reads only /usr/share/containers/oci/hooks.d unless
    /// containers.conf sets `hooks_dir`.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_HOOKS_DIR)]
    pub hooks_dir: PathBuf,
}

/// weave-hook's global options, written into the hook's arguments when given, and checked
/// here with weave-hook's own validators (weave-core's): at install time, not at the first
/// container start.
#[derive(Debug, Args)]
pub struct HookOptions {
    /// Bridge name (weave-hook --bridge; its default: weave).
    #[arg(long, value_name = "NAME", value_parser = settings::parse_bridge)]
    pub bridge: Option<String>,
    /// Range addresses are allocated from (weave-hook --ipalloc-range; its default: 10.32.0.0/12).
    #[arg(long, value_name = "CIDR", value_parser = range)]
    pub ipalloc_range: Option<String>,
    /// Reservation state directory (weave-hook --state-dir; its default: /run/weave).
    #[arg(long, value_name = "DIR", value_parser = settings::parse_state_dir)]
    pub state_dir: Option<PathBuf>,
    /// MTU of the bridge and veths (weave-hook --mtu).
    #[arg(long, value_name = "N", value_parser = settings::parse_mtu)]
    pub mtu: Option<u32>,
    /// weave-hook log level (weave-hook --log-level).
    #[arg(long, value_name = "LEVEL", value_parser = settings::parse_log_level)]
    pub log_level: Option<String>,
}

#[derive(Debug, Args)]
pub struct PodmanInstall {
    #[command(flatten)]
    pub target: HooksTarget,
    /// Absolute path of weave-hook [default: weave-hook next to weave-setup if it exists,
    /// else /usr/local/bin/weave-hook].
    #[arg(long, value_name = "PATH")]
    pub hook_path: Option<PathBuf>,
    #[command(flatten)]
    pub options: HookOptions,
    /// Replace a weave.json hook file with different contents.
    #[arg(long)]
    pub force: bool,
    /// Print the hook file and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PodmanUninstall {
    #[command(flatten)]
    pub target: HooksTarget,
    /// Remove weave.json even if weave-setup did not write it.
    #[arg(long)]
    pub force: bool,
    /// Say what would be removed and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub docker: DockerTarget,
    /// OCI hooks directory to check, and say whether podman reads it [default: the
    /// directories podman reads, from containers.conf].
    #[arg(long, value_name = "DIR")]
    pub hooks_dir: Option<PathBuf>,
    /// podman's containers.conf; podman then reads only this file [default: $CONTAINERS_CONF
    /// when set and not empty, as podman reads it; else the system files
    /// /usr/share/containers/containers.conf, /etc/containers/containers.conf and
    /// /etc/containers/containers.conf.d/*.conf].
    #[arg(long, value_name = "FILE")]
    pub containers_conf: Option<PathBuf>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// An allocation range, as the hook will be given it.
fn range(text: &str) -> Result<String, String> {
    settings::parse_range(text).map(|net| net.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn hook_options_are_checked_at_install_time() {
        let parse = |args: &[&str]| {
            let mut all = vec!["weave-setup", "podman"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
        };
        assert!(parse(&["--bridge", "wv0", "--ipalloc-range", "10.40.0.0/16"]).is_ok());
        assert!(parse(&["--bridge", "a-name-longer-than-15"]).is_err());
        assert!(parse(&["--bridge", "we/ave"]).is_err());
        assert!(parse(&["--ipalloc-range", "10.40.0.0"]).is_err());
        assert!(parse(&["--ipalloc-range", "10.40.0.0/33"]).is_err());
        // Refused by weave-hook at every container: host bits set, or a /30.
        assert!(parse(&["--ipalloc-range", "10.32.5.0/12"]).is_err());
        assert!(parse(&["--ipalloc-range", "10.40.0.0/30"]).is_err());
        assert!(parse(&["--bridge", ".."]).is_err());
        assert!(parse(&["--state-dir", "relative/dir"]).is_err());
        assert!(parse(&["--mtu", "20"]).is_err());
        assert!(parse(&["--log-level", "loud"]).is_err());
    }

    #[test]
    fn runtime_args_may_start_with_dashes() {
        let cli = Cli::try_parse_from([
            "weave-setup",
            "docker",
            "--runtime-arg",
            "--weave-bridge=wv0",
            "--runtime-arg=--weave-state-dir=/x",
        ])
        .unwrap();
        let Command::Docker(docker) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(
            docker.runtime_args,
            ["--weave-bridge=wv0", "--weave-state-dir=/x"]
        );
        assert_eq!(docker.target.config, PathBuf::from(DEFAULT_DAEMON_JSON));
    }
}
