//! weave-hook: the OCI hook binary. Thin: parse flags, set up logging, dispatch, report.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ipnet::Ipv4Net;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use weave_core::id::IdError;
use weave_core::mesh::{MeshState, Peers};
use weave_core::oci::{self, OciError, State, Status};
use weave_core::settings::{self, DnsSettings, Settings};
use weave_core::store::Store;
use weave_hook::error::Error;
use weave_hook::{attach, detach, expose, gc, privileges, reset, resolv};

/// Attach OCI containers to a weave bridge network before their process starts.
///
/// As an OCI hook, put it in config.json's hooks.createRuntime and hooks.poststop (or let
/// weave-runtime or podman's hooks.d do it): it reads the container state on stdin, attaches
/// the container at status "creating" and detaches it at "stopped". Per-container options
/// come from the weave.cidr, weave.dns, weave.dns.names and weave.dns.shared annotations, or
/// WEAVE_CIDR in the environment. For a weave.dns=true container the hook also puts weave DNS's address on
/// the bridge and starts weave-dns when none serves the state directory yet.
#[derive(Parser, Debug)]
#[command(name = "weave-hook", version, about, long_about)]
struct Cli {
    /// Name of the bridge containers are attached to (created on first use).
    #[arg(long, global = true, default_value = settings::DEFAULT_BRIDGE, value_parser = settings::parse_bridge)]
    bridge: String,
    /// Range that `net:default` (and an empty weave.cidr) allocates from. Its first host
    /// address is kept for weave itself.
    #[arg(long, global = true, default_value = settings::DEFAULT_RANGE, value_parser = settings::parse_range)]
    ipalloc_range: Ipv4Net,
    /// Directory of the address store and attachment records (tmpfs, so a reboot clears it).
    #[arg(long, global = true, default_value = settings::DEFAULT_STATE_DIR, value_parser = settings::parse_state_dir)]
    state_dir: PathBuf,
    /// MTU of the bridge (when weave-hook creates it) and of both veth ends; kernel default
    /// (1500) when not given.
    #[arg(long, global = true, value_parser = settings::parse_mtu)]
    mtu: Option<u32>,
    /// Log level: error, warn, info, debug or trace. Logs go to journald when its socket
    /// exists, else to stderr.
    #[arg(long, global = true, default_value = settings::DEFAULT_LOG_LEVEL, value_parser = settings::parse_log_level)]
    log_level: String,
    /// Weave DNS's address with its prefix, put on the bridge for weave.dns=true containers;
    /// weave-dns listens there. Default: the first host of --ipalloc-range with the range's
    /// prefix (10.32.0.1/12). Inside the range only that address is allowed (allocation
    /// never hands it out).
    #[arg(long, global = true, value_parser = settings::parse_dns_addr)]
    dns_addr: Option<Ipv4Net>,
    /// The weave-dns program started when no server serves the state directory yet.
    /// Default: weave-dns next to weave-hook's own executable.
    #[arg(long, global = true)]
    dns_server_path: Option<PathBuf>,
    /// Upstream resolver (IP or IP:PORT) of a weave-dns this hook starts, for names outside
    /// weave.local; repeat it for several. Default: weave-dns reads /etc/resolv.conf.
    #[arg(long = "dns-upstream", global = true, value_parser = settings::parse_upstream)]
    dns_upstreams: Vec<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Act on the OCI state on stdin: attach at status "creating"/"created", detach at
    /// "stopped" (the default command).
    Hook,
    /// Attach the container whose OCI state is on stdin.
    Attach,
    /// Detach the container whose OCI state is on stdin (idempotent).
    Detach,
    /// List attached containers: id, host veth, addresses. With weave-mesh running, each
    /// line starts with the host that holds it (this host's name for its own containers).
    Ps {
        /// With weave-mesh: also the addresses other hosts hold (as weave-mesh last saw
        /// them), one line per container: host, container, `-` (no veth here), addresses.
        #[arg(long)]
        all: bool,
    },
    /// Release reservations of containers that are gone; delete orphaned host veths, torn
    /// store temp files and stale weave-runtime resolv.conf files; put back what a firewall
    /// reload took (the FORWARD rule, weave's nftables tables and the ports' guards).
    Gc,
    /// Stop weave-dns, hide the host, delete the bridge and its firewall rule and nftables
    /// elements; refused while containers are attached, and for a bridge another state
    /// directory owns or that has ports weave-hook did not make.
    Reset,
    /// Give the host an address on the bridge that containers reach (everything on it; on
    /// weave DNS's address only port 53 is open). Default: the last host address of
    /// --ipalloc-range, with its prefix. No container gets it while it is exposed; it
    /// survives `gc`. Prints the address. Idempotent.
    Expose {
        /// The host's address with its prefix, e.g. 10.2.0.254/24.
        #[arg(value_parser = settings::parse_dns_addr)]
        cidr: Option<Ipv4Net>,
    },
    /// Take the host's exposed address (all of them when none is named) off the bridge.
    Hide {
        #[arg(value_parser = settings::parse_dns_addr)]
        cidr: Option<Ipv4Net>,
    },
}

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let cli = runtime_args(&args).unwrap_or_else(Cli::parse);
    if let Err(msg) = settings::check_dns_addr(cli.ipalloc_range, cli.dns_addr) {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, msg)
            .exit();
    }
    // netlink-packet-route warns about every attribute newer than itself (kernel 6.x adds
    // some): not actionable for a user.
    let level = cli.log_level.parse().expect("validated by parse_log_level");
    weave_core::logging::init(level, &["netlink_packet_route"]);
    let settings = Settings {
        bridge: cli.bridge,
        ipalloc_range: cli.ipalloc_range,
        state_dir: cli.state_dir,
        mtu: cli.mtu,
        dns: DnsSettings {
            addr: cli.dns_addr,
            server_path: cli.dns_server_path,
            upstreams: cli.dns_upstreams,
        },
    };
    match run(&settings, cli.command.unwrap_or(Command::Hook)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // One line on stderr: the runtime shows it to the user when it refuses to start.
            let _ = writeln!(io::stderr(), "weave-hook: {failure}");
            ExitCode::FAILURE
        }
    }
}

/// The argument vectors runtimes pass (`[--FLAG=VALUE | --FLAG VALUE]... [hook|attach|detach]`,
/// flags before or after the command), parsed without clap: building clap's command and
/// matching against it is about a quarter of a millisecond of every container start. The
/// values go through the same validators clap uses. Anything else (help, another command,
/// an unknown or repeated flag, a value a validator refuses, an argument that is not UTF-8)
/// gives None, and clap parses it, so its help and errors are unchanged.
fn runtime_args(args: &[std::ffi::OsString]) -> Option<Cli> {
    let mut cli = Cli {
        bridge: settings::parse_bridge(settings::DEFAULT_BRIDGE).ok()?,
        ipalloc_range: settings::parse_range(settings::DEFAULT_RANGE).ok()?,
        state_dir: settings::parse_state_dir(settings::DEFAULT_STATE_DIR).ok()?,
        mtu: None,
        log_level: settings::parse_log_level(settings::DEFAULT_LOG_LEVEL).ok()?,
        dns_addr: None,
        dns_server_path: None,
        dns_upstreams: Vec::new(),
        command: None,
    };
    let mut seen = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let arg = arg.to_str()?;
        let Some(flag) = arg.strip_prefix("--") else {
            if cli.command.is_some() {
                return None;
            }
            cli.command = Some(match arg {
                "hook" => Command::Hook,
                "attach" => Command::Attach,
                "detach" => Command::Detach,
                _ => return None,
            });
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, value),
            None => (flag, rest.next()?.to_str().filter(|v| !v.starts_with('-'))?),
        };
        if name != "dns-upstream" && seen.contains(&name) {
            return None;
        }
        seen.push(name);
        match name {
            "bridge" => cli.bridge = settings::parse_bridge(value).ok()?,
            "ipalloc-range" => cli.ipalloc_range = settings::parse_range(value).ok()?,
            "state-dir" => cli.state_dir = settings::parse_state_dir(value).ok()?,
            "mtu" => cli.mtu = Some(settings::parse_mtu(value).ok()?),
            "log-level" => cli.log_level = settings::parse_log_level(value).ok()?,
            "dns-addr" => cli.dns_addr = Some(settings::parse_dns_addr(value).ok()?),
            "dns-server-path" if !value.is_empty() => {
                cli.dns_server_path = Some(PathBuf::from(value))
            }
            "dns-upstream" => cli
                .dns_upstreams
                .push(settings::parse_upstream(value).ok()?),
            _ => return None,
        }
    }
    Some(cli)
}

/// An error, and the container it concerns when one is known.
struct Failure {
    container: Option<String>,
    error: Error,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(id) = &self.container {
            write!(f, "container {id}: ")?;
        }
        write!(f, "{}", self.error)?;
        let mut source = std::error::Error::source(&self.error);
        while let Some(s) = source {
            // thiserror's messages already embed their direct source; only add what is new.
            if !self.error.to_string().contains(&s.to_string()) {
                write!(f, ": {s}")?;
            }
            source = s.source();
        }
        Ok(())
    }
}

fn fail(container: Option<String>) -> impl FnOnce(Error) -> Failure {
    move |error| Failure { container, error }
}

fn run(settings: &Settings, command: Command) -> Result<(), Failure> {
    match command {
        Command::Ps { all } => ps(settings, all).map_err(fail(None)),
        Command::Gc => {
            privileges::check().map_err(fail(None))?;
            let report = gc::collect(settings).map_err(fail(None))?;
            for skipped in &report.skipped {
                eprintln!("weave-hook: gc: skipped: {skipped}");
            }
            println!(
                "released {} container(s), {} orphaned address(es), deleted {} veth(s), {} stale resolv.conf file(s), {} guard(s) of gone ports",
                report.released.len(),
                report.orphan_addrs,
                report.deleted_veths.len(),
                report.stale_resolv_files,
                report.unguarded_ports
            );
            Ok(())
        }
        Command::Reset => {
            privileges::check().map_err(fail(None))?;
            reset::reset(settings).map_err(fail(None))
        }
        Command::Expose { cidr } => {
            privileges::check().map_err(fail(None))?;
            let net = expose::expose(settings, cidr).map_err(fail(None))?;
            println!("{net}");
            Ok(())
        }
        Command::Hide { cidr } => {
            privileges::check().map_err(fail(None))?;
            for net in expose::hide(settings, cidr).map_err(fail(None))? {
                println!("{net}");
            }
            Ok(())
        }
        Command::Hook | Command::Attach | Command::Detach => {
            let input =
                oci::read_state_bytes(io::stdin().lock()).map_err(|e| fail(None)(e.into()))?;
            let state = match State::parse(&input) {
                Ok(state) => state,
                // No container with such an id was ever attached (attach refuses it), so
                // there is nothing to detach.
                Err(OciError::BadId(IdError::TooLong { .. }))
                    if matches!(command, Command::Detach)
                        || (matches!(command, Command::Hook)
                            && oci::status_of(&input) == Some(Status::Stopped)) =>
                {
                    return Ok(())
                }
                Err(e) => return Err(fail(None)(e.into())),
            };
            let on = fail(Some(state.id.to_string()));
            let wants_attach = match command {
                Command::Attach => true,
                Command::Detach => false,
                _ => match state.status {
                    Status::Creating | Status::Created => true,
                    Status::Stopped => false,
                    _ => {
                        return Err(on(Error::WrongStage(
                            format!("{:?}", state.status).to_lowercase(),
                        )))
                    }
                },
            };
            privileges::check().map_err(fail(Some(state.id.to_string())))?;
            if wants_attach {
                // Before attach: the file is the container's own and goes with it if attach
                // then fails, so there is nothing to undo.
                resolv::apply(settings, &state)
                    .map_err(|e| fail(Some(state.id.to_string()))(e.into()))?;
                attach::attach(settings, &state).map(drop).map_err(on)
            } else {
                let left = detach::detach(settings, &state.id).map_err(on)?;
                // This binary is single-threaded: the deletion may outlive it.
                detach::delete_in_background(&left);
                Ok(())
            }
        }
    }
}

fn ps(settings: &Settings, all: bool) -> Result<(), Error> {
    let store = Store::existing(&settings.state_dir);
    let listing = store.records()?;
    // `ps` lists what it can: a mesh state it cannot read only costs the HOST column.
    let mesh = MeshState::read(store.layout()).unwrap_or_else(|e| {
        eprintln!(
            "weave-hook: ps: cannot read {}: {e}",
            store.layout().mesh_state().display()
        );
        None
    });
    let mut out = io::stdout().lock();
    let host = mesh.as_ref().map(|m| word(&m.host));
    for record in listing.records {
        let addrs: Vec<String> = record.addrs.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            out,
            "{}",
            ps_line(host.as_deref(), &record.id, &record.veth, &addrs)
        );
    }
    for skipped in &listing.unreadable {
        eprintln!("weave-hook: ps: skipped: {skipped}");
    }
    if let (true, Some(mesh)) = (all, &mesh) {
        for (host, container, addrs) in held_elsewhere(&Peers::read(store.layout()), &mesh.host) {
            let _ = writeln!(out, "{}", ps_line(Some(&host), &container, "-", &addrs));
        }
    }
    Ok(())
}

/// A name from the mesh as one printable word.
fn word(s: &str) -> String {
    s.chars()
        .map(|c| match c.is_control() || c.is_whitespace() {
            true => '?',
            false => c,
        })
        .take(128)
        .collect()
}

/// One line of `ps`: the host first in a mesh; the single-host line is unchanged.
fn ps_line(host: Option<&str>, id: &str, veth: &str, addrs: &[String]) -> String {
    let line = format!("{id} {veth} {}", addrs.join(" "));
    match host {
        Some(host) => format!("{host} {line}"),
        None => line,
    }
}

/// What the other hosts hold, by host and container, in order; names are shown only as
/// printable single words (peers.json is the agent's, but its names come from etcd).
fn held_elsewhere(peers: &Peers, me: &str) -> Vec<(String, String, Vec<String>)> {
    let mut held: BTreeMap<(String, String), Vec<Ipv4Addr>> = BTreeMap::new();
    for a in peers.addrs.iter().filter(|a| a.host != me) {
        held.entry((word(&a.host), word(&a.container)))
            .or_default()
            .push(a.addr);
    }
    held.into_iter()
        .map(|((host, container), mut addrs)| {
            addrs.sort();
            let addrs = addrs.iter().map(ToString::to_string).collect();
            (host, container, addrs)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("weave-hook").chain(args.iter().copied())).unwrap()
    }

    /// What the fast parse makes of `args`, checked against clap: either it leaves them to
    /// clap, or it gives exactly clap's result.
    fn fast(args: &[&str]) -> Option<Cli> {
        let os: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        let fast = runtime_args(&os)?;
        let clap = Cli::try_parse_from(std::iter::once("weave-hook").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: the fast parse took what clap refuses: {e}"));
        assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{args:?}");
        Some(fast)
    }

    #[test]
    fn the_runtimes_arguments_parse_without_clap_as_clap_parses_them() {
        for args in [
            &[][..],
            &["attach"],
            &["detach"],
            &["hook"],
            &["--bridge=wvb", "--state-dir=/run/x", "attach"],
            &[
                "--bridge",
                "wvb",
                "--ipalloc-range",
                "10.9.0.0/16",
                "detach",
            ],
            &["attach", "--mtu", "1450", "--log-level=INFO"],
            &[
                "--dns-addr=10.9.0.1/16",
                "--ipalloc-range=10.9.0.0/16",
                "hook",
            ],
            &[
                "--dns-upstream=1.1.1.1",
                "--dns-upstream",
                "[::1]:5353",
                "attach",
            ],
            &["--dns-server-path=/usr/bin/weave-dns", "attach"],
        ] {
            assert!(fast(args).is_some(), "{args:?} should not need clap");
        }
    }

    #[test]
    fn everything_else_is_left_to_clap() {
        for args in [
            &["--help"][..],
            &["--version"],
            &["-h"],
            &["ps"],
            &["attach", "detach"],
            &["--bridge", "a", "--bridge", "b", "attach"],
            &["--bridge", "--state-dir=/x", "attach"],
            &["--bridge"],
            &["--bridge=a/b", "attach"],
            &["--mtu=40", "attach"],
            &["--state-dir=relative", "attach"],
            &["--brid=x", "attach"],
            &["--", "attach"],
            &["--dns-server-path=", "attach"],
        ] {
            assert!(fast(args).is_none(), "{args:?} should go to clap");
        }
    }

    #[test]
    fn the_fast_parse_knows_every_global_flag() {
        let command = Cli::command();
        let longs: Vec<_> = command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| !["help", "version"].contains(l))
            .collect();
        for long in longs {
            let value = match long {
                "ipalloc-range" => "10.32.0.0/12",
                "state-dir" | "dns-server-path" => "/run/x",
                "mtu" => "1400",
                "log-level" => "info",
                "dns-addr" => "10.32.0.1/12",
                "dns-upstream" => "1.1.1.1",
                _ => "weave",
            };
            let flag = format!("--{long}={value}");
            assert!(fast(&[&flag, "attach"]).is_some(), "{flag} goes to clap");
        }
    }

    #[test]
    fn bad_values_are_refused_by_the_core_validators() {
        for args in [
            ["--ipalloc-range", "10.32.5.0/12"],
            ["--log-level", "verbose"],
            ["--mtu", "40"],
            ["--state-dir", "relative"],
            ["--bridge", "a/b"],
            ["--dns-addr", "10.2.0.0/24"],
        ] {
            let full = ["weave-hook", args[0], args[1], "ps"];
            assert!(Cli::try_parse_from(full).is_err(), "{args:?}");
        }
        assert_eq!(cli(&["--log-level", "INFO", "ps"]).log_level, "info");
    }

    #[test]
    fn ps_shows_hosts_only_in_a_mesh_and_others_holdings_by_container() {
        let addrs = ["10.32.0.5/12".to_string()];
        assert_eq!(
            ps_line(None, "c1", "vethwe1", &addrs),
            "c1 vethwe1 10.32.0.5/12"
        );
        assert_eq!(
            ps_line(Some("a"), "c1", "vethwe1", &addrs),
            "a c1 vethwe1 10.32.0.5/12"
        );
        let held = |addr: &str, host: &str, container: &str| weave_core::mesh::HeldAddr {
            addr: addr.parse().unwrap(),
            host: host.into(),
            container: container.into(),
        };
        let peers = Peers {
            version: weave_core::mesh::VERSION,
            peers: vec![],
            addrs: vec![
                held("10.32.0.9", "b", "web"),
                held("10.32.0.70", "a", "mine"),
                held("10.2.0.1", "b", "web"),
                held("10.32.0.80", "c\nx y", "db"),
            ],
        };
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            held_elsewhere(&peers, "a"),
            vec![
                (
                    "b".into(),
                    "web".into(),
                    strings(&["10.2.0.1", "10.32.0.9"])
                ),
                ("c?x?y".into(), "db".into(), strings(&["10.32.0.80"])),
            ]
        );
    }

    #[test]
    fn dns_upstreams_repeat() {
        let c = cli(&[
            "--dns-upstream",
            "10.9.0.1",
            "--dns-upstream",
            "10.9.0.2:5353",
            "ps",
        ]);
        assert_eq!(
            c.dns_upstreams,
            [
                "10.9.0.1:53".parse::<SocketAddr>().unwrap(),
                "10.9.0.2:5353".parse().unwrap()
            ]
        );
        assert!(
            Cli::try_parse_from(["weave-hook", "--dns-upstream", "dns.example", "ps"]).is_err()
        );
    }
}
