//! weave-hook: the OCI hook binary. Thin: parse flags, set up logging, dispatch, report.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use ipnet::Ipv4Net;

use weave_hook::error::Error;
use weave_hook::oci::{State, Status};
use weave_hook::settings::{self, DnsSettings, Settings};
use weave_hook::{attach, detach, dns, gc, privileges, reset, store::Store};

/// Attach OCI containers to a weave bridge network before their process starts.
///
/// As an OCI hook, put it in config.json's hooks.createRuntime and hooks.poststop (or let
/// weave-runtime or podman's hooks.d do it): it reads the container state on stdin, attaches
/// the container at status "creating" and detaches it at "stopped". Per-container options
/// come from the weave.cidr, weave.dns and weave.dns.names annotations, or WEAVE_CIDR in the
/// environment. For a weave.dns=true container the hook also puts weave DNS's address on
/// the bridge and starts weave-dns when none serves the state directory yet.
#[derive(Parser, Debug)]
#[command(name = "weave-hook", version, about, long_about)]
struct Cli {
    /// Name of the bridge containers are attached to (created on first use).
    #[arg(long, global = true, default_value = settings::DEFAULT_BRIDGE, value_parser = parse_bridge)]
    bridge: String,
    /// Range that `net:default` (and an empty weave.cidr) allocates from. Its first host
    /// address is kept for weave itself.
    #[arg(long, global = true, default_value = settings::DEFAULT_RANGE, value_parser = parse_range)]
    ipalloc_range: Ipv4Net,
    /// Directory of the address store and attachment records (tmpfs, so a reboot clears it).
    #[arg(long, global = true, default_value = settings::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// MTU of the bridge (when weave-hook creates it) and of both veth ends; kernel default
    /// (1500) when not given.
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(68..=65535))]
    mtu: Option<u32>,
    /// Log level: error, warn, info, debug or trace. Logs go to journald when its socket
    /// exists, else to stderr.
    #[arg(long, global = true, default_value = "warn")]
    log_level: tracing::Level,
    /// Weave DNS's address with its prefix, put on the bridge for weave.dns=true containers;
    /// weave-dns listens there. Default: the first host of --ipalloc-range with the range's
    /// prefix (10.32.0.1/12). Inside the range only that address is allowed (allocation
    /// never hands it out).
    #[arg(long, global = true, value_parser = parse_dns_addr)]
    dns_addr: Option<Ipv4Net>,
    /// The weave-dns program started when no server serves the state directory yet.
    /// Default: weave-dns next to weave-hook's own executable.
    #[arg(long, global = true)]
    dns_server_path: Option<PathBuf>,
    /// Upstream resolver (IP or IP:PORT) of a weave-dns this hook starts, for names outside
    /// weave.local; repeat it for several. Default: weave-dns reads /etc/resolv.conf.
    #[arg(long = "dns-upstream", global = true, value_parser = dns::parse_upstream)]
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
    /// List attached containers: id, host veth, addresses.
    Ps,
    /// Release reservations of containers that are gone; delete orphaned host veths, torn
    /// store temp files and stale weave-runtime resolv.conf files.
    Gc,
    /// Stop weave-dns, delete the bridge and its firewall rule; refused while containers are
    /// attached.
    Reset,
}

fn parse_bridge(name: &str) -> Result<String, String> {
    settings::check_ifname(name).map(|()| name.to_string())
}

fn parse_range(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IPv4 subnet like 10.32.0.0/12"))?;
    if net != net.trunc() {
        return Err(format!(
            "{text:?} has host bits set; the subnet is {}",
            net.trunc()
        ));
    }
    if net.prefix_len() > 29 || net.prefix_len() == 0 {
        return Err(format!("{text:?}: use a prefix length from /1 to /29"));
    }
    Ok(net)
}

fn parse_dns_addr(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IPv4 address with prefix like 10.32.0.1/12"))?;
    let ip = net.addr();
    if ip.is_loopback() || ip.is_multicast() || ip.is_unspecified() || ip.is_broadcast() {
        return Err(format!("{text:?} cannot be a bridge address"));
    }
    if net.prefix_len() < 31 && (ip == net.network() || ip == net.broadcast()) {
        return Err(format!(
            "{text:?} is the network or broadcast address of its prefix"
        ));
    }
    Ok(net)
}

/// Inside the allocation range only the address allocation keeps free may serve DNS.
fn check_dns_addr(cli: &Cli) -> Result<(), String> {
    let Some(addr) = cli.dns_addr else {
        return Ok(());
    };
    let kept = settings::first_host(cli.ipalloc_range);
    if cli.ipalloc_range.contains(&addr.addr()) && addr.addr() != kept.addr() {
        return Err(format!(
            "--dns-addr {addr} is inside --ipalloc-range {}, where containers get addresses; use {} (kept free for weave) or an address outside the range",
            cli.ipalloc_range,
            kept.addr()
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(msg) = check_dns_addr(&cli) {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, msg)
            .exit();
    }
    // netlink-packet-route warns about every attribute newer than itself (kernel 6.x adds
    // some): not actionable for a user.
    weave_hook::logging::init(cli.log_level, &["netlink_packet_route"]);
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
        Command::Ps => ps(settings).map_err(fail(None)),
        Command::Gc => {
            privileges::check().map_err(fail(None))?;
            let report = gc::collect(settings).map_err(fail(None))?;
            println!(
                "released {} container(s), {} orphaned address(es), deleted {} veth(s), {} stale resolv.conf file(s)",
                report.released.len(),
                report.orphan_addrs,
                report.deleted_veths.len(),
                report.stale_resolv_files
            );
            Ok(())
        }
        Command::Reset => {
            privileges::check().map_err(fail(None))?;
            reset::reset(settings).map_err(fail(None))
        }
        Command::Hook | Command::Attach | Command::Detach => {
            let state = State::read(io::stdin().lock()).map_err(|e| fail(None)(e.into()))?;
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
                attach::attach(settings, &state).map(drop).map_err(on)
            } else {
                detach::detach(settings, &state.id).map_err(on)
            }
        }
    }
}

fn ps(settings: &Settings) -> Result<(), Error> {
    let mut out = io::stdout().lock();
    for record in Store::existing(&settings.state_dir).records()? {
        let addrs: Vec<String> = record.addrs.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "{} {} {}", record.id, record.veth, addrs.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("weave-hook").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn dns_addr_values() {
        assert_eq!(
            parse_dns_addr("10.40.0.53/24").unwrap(),
            "10.40.0.53/24".parse::<Ipv4Net>().unwrap()
        );
        assert!(parse_dns_addr("10.40.0.53/32").is_ok());
        for bad in [
            "10.40.0.53",
            "10.40.0.0/24",
            "10.40.0.255/24",
            "127.0.0.1/8",
            "x",
        ] {
            assert!(parse_dns_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_addr_inside_the_range_must_be_its_kept_first_host() {
        assert!(check_dns_addr(&cli(&["ps"])).is_ok());
        assert!(check_dns_addr(&cli(&["--dns-addr", "10.32.0.1/12", "ps"])).is_ok());
        assert!(check_dns_addr(&cli(&["--dns-addr", "10.2.0.53/24", "ps"])).is_ok());
        let err = check_dns_addr(&cli(&["--dns-addr", "10.32.0.7/12", "ps"])).unwrap_err();
        assert!(err.contains("use 10.32.0.1"), "{err}");
        let err = check_dns_addr(&cli(&[
            "--ipalloc-range",
            "10.40.0.0/16",
            "--dns-addr",
            "10.40.9.9/16",
            "ps",
        ]))
        .unwrap_err();
        assert!(err.contains("use 10.40.0.1"), "{err}");
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
