//! weave-mesh: the per-host agent of the weave mesh, and its status and rmhost commands.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipnet::Ipv4Net;
use nix::sys::signal::{SigSet, Signal};
use weave_core::mesh::DEFAULT_BLOCK_PREFIX;
use weave_core::settings::{self, DEFAULT_BRIDGE, DEFAULT_RANGE, DEFAULT_STATE_DIR};

use weave_mesh::agent::{Agent, Config};
use weave_mesh::cluster::Cluster;
use weave_mesh::datapath::{DataPath, NoOverlay};
use weave_mesh::etcd::{Etcd, EtcdConfig};
use weave_mesh::keys::{self, Keys, DEFAULT_PREFIX};

const ABOUT: &str = "The per-host agent of the weave mesh: one weave network across hosts, on the \
kernel's VXLAN, coordinated through etcd.

`run` registers this host in etcd with a lease, keeps a VXLAN device on the weave bridge in step \
with the other live hosts, claims address blocks for weave-hook (which allocates from them \
locally), gives back those that stayed empty, and publishes the host's addresses. Stopping it (SIGTERM, SIGINT) keeps the lease \
and the blocks: running containers keep their addresses and keep talking. A host whose agent \
stays away longer than the lease TTL plus --reclaim-after loses its blocks and addresses to \
the others; `rmhost` does that at once.";

#[derive(Parser, Debug)]
#[command(name = "weave-mesh", version, about = ABOUT)]
struct Cli {
    /// etcd endpoints, comma-separated (http://IP:2379 or https://...); required
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        value_name = "URL[,URL...]"
    )]
    etcd: Vec<String>,
    /// CA certificate that signed the etcd members' certificates
    #[arg(long, global = true, value_name = "FILE")]
    etcd_cacert: Option<PathBuf>,
    /// Client certificate for etcd (members run with --client-cert-auth)
    #[arg(long, global = true, value_name = "FILE", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// Key of the client certificate
    #[arg(long, global = true, value_name = "FILE", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// Key prefix in etcd: several weave networks can share one etcd with different prefixes
    #[arg(long, global = true, default_value = DEFAULT_PREFIX, value_parser = keys::parse_prefix)]
    prefix: String,
    /// Bound on one etcd request
    #[arg(long, global = true, default_value = "5", value_name = "SECONDS", value_parser = parse_secs)]
    etcd_timeout: Duration,
    /// Length of the address blocks hosts claim (all hosts of a network must agree)
    #[arg(long, global = true, default_value_t = DEFAULT_BLOCK_PREFIX, value_parser = clap::value_parser!(u8).range(8..=30))]
    block_prefix: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent in the foreground (logs to stderr, or journald under systemd)
    Run(RunArgs),
    /// Show the hosts, their underlay addresses and leases, blocks and addresses in use
    Status,
    /// Remove a dead host at once: end its lease, free its blocks and addresses (safe to run
    /// twice, from any host)
    Rmhost {
        /// The host's --name
        #[arg(value_parser = keys::parse_host_name)]
        host: String,
        /// Remove it even though its agent still renews its lease (its running containers'
        /// addresses may then be handed out twice)
        #[arg(long)]
        force: bool,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// This host's name in the mesh (unique; letters, digits, '.', '_', '-')
    #[arg(long, value_parser = keys::parse_host_name)]
    name: String,
    /// This host's underlay address: where the other hosts send its VXLAN traffic
    #[arg(long, value_name = "IP")]
    advertise: Ipv4Addr,
    /// The weave bridge (as weave-hook's --bridge)
    #[arg(long, default_value = DEFAULT_BRIDGE, value_parser = settings::parse_bridge)]
    bridge: String,
    /// weave-hook's state directory (the agent keeps its files in <state-dir>/mesh)
    #[arg(long, default_value = DEFAULT_STATE_DIR, value_parser = settings::parse_state_dir)]
    state_dir: PathBuf,
    /// The default allocation range (as weave-hook's --ipalloc-range)
    #[arg(long, default_value = DEFAULT_RANGE, value_parser = settings::parse_range)]
    ipalloc_range: Ipv4Net,
    /// VXLAN network identifier (all hosts of a network must agree)
    #[arg(long, default_value_t = 4242, value_parser = clap::value_parser!(u32).range(1..16_777_216))]
    vni: u32,
    /// VXLAN UDP port (all hosts of a network must agree)
    #[arg(long, default_value_t = 4789)]
    port: u16,
    /// weave DNS's address on the bridge (as weave-hook's --dns-addr): kept off the VXLAN port
    #[arg(long, value_name = "IP/PREFIX", value_parser = settings::parse_dns_addr)]
    dns_addr: Option<Ipv4Net>,
    /// Overlay MTU instead of the underlay's minus 50
    #[arg(long, value_parser = settings::parse_mtu)]
    mtu: Option<u32>,
    /// TTL of this host's lease: another host's FDB drops it within TTL + 5 s of its agent's death
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_secs)]
    lease_ttl: Duration,
    /// How long a host must stay unregistered before the others reclaim its blocks and
    /// addresses (covers agent restarts and etcd outages; `rmhost` does it at once)
    #[arg(long, default_value = "300", value_name = "SECONDS", value_parser = parse_secs)]
    reclaim_after: Duration,
    /// The most address blocks this host may own: containers choose the subnets they
    /// allocate in, and every new subnet costs a block (64 /26 blocks: 3968 addresses)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_blocks: u32,
    /// Give back a block that held none of this host's addresses this long (one empty block
    /// of --ipalloc-range stays): another host may then claim it
    #[arg(long, default_value = "600", value_name = "SECONDS", value_parser = parse_secs)]
    release_empty_after: Duration,
    /// Keep membership, blocks and addresses, but manage no VXLAN device (something else does)
    #[arg(long)]
    no_overlay: bool,
    /// Log level: error, warn, info, debug, trace
    #[arg(long, default_value = "info", value_parser = settings::parse_log_level)]
    log_level: String,
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a number of seconds above 0 and at most 86400"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weave-mesh: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cluster(cli: &Cli) -> anyhow::Result<Cluster> {
    if cli.etcd.is_empty() {
        anyhow::bail!(
            "--etcd URL[,URL...] is required (etcd's client URLs, e.g. http://10.0.0.5:2379)"
        );
    }
    let etcd = Etcd::connect(&EtcdConfig {
        endpoints: cli.etcd.clone(),
        cacert: cli.etcd_cacert.clone(),
        cert: cli.etcd_cert.clone(),
        key: cli.etcd_key.clone(),
        timeout: cli.etcd_timeout,
    })?;
    Ok(Cluster {
        etcd,
        keys: Keys::new(&cli.prefix),
        block_prefix: cli.block_prefix,
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cluster = cluster(&cli)?;
    match cli.command {
        Command::Status => {
            let view = cluster.snapshot()?;
            print!("{}", weave_mesh::status::render(&view));
            Ok(())
        }
        Command::Rmhost { host, force } => {
            let done = cluster.rmhost(&host, force)?;
            match done.blocks.is_empty() && done.addrs.is_empty() {
                true => println!("host {host}: nothing left to remove"),
                false => println!(
                    "host {host}: removed {} block(s) and {} address(es)",
                    done.blocks.len(),
                    done.addrs.len()
                ),
            }
            Ok(())
        }
        Command::Run(args) => run_agent(cluster, args),
    }
}

fn run_agent(cluster: Cluster, args: RunArgs) -> anyhow::Result<()> {
    let level = args.log_level.parse().unwrap_or(tracing::Level::INFO);
    weave_core::logging::init(level, &["ureq", "rustls", "netlink_packet_route"]);
    // Signals are taken by sigwait below; every thread inherits the mask.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block()?;
    settings::check_dns_addr(args.ipalloc_range, args.dns_addr).map_err(anyhow::Error::msg)?;
    let datapath = datapath(&args)?;
    let cfg = Config {
        cluster,
        name: args.name,
        advertise: args.advertise,
        state_dir: args.state_dir,
        lease_ttl: args.lease_ttl,
        reclaim_after: args.reclaim_after,
        max_blocks: args.max_blocks as usize,
        release_empty_after: args.release_empty_after,
        default_range: args.ipalloc_range,
        bridge: args.bridge.clone(),
    };
    let socket_path = cfg.layout().mesh_socket();
    let agent = Arc::new(Agent::new(cfg, datapath));
    weave_core::fsutil::ensure_private_dir(agent.cfg.layout().root())?;
    weave_core::fsutil::ensure_private_dir(&agent.cfg.layout().mesh_dir())?;
    // Refuse before registering when another agent serves this state directory.
    let listener = weave_mesh::server::bind(&socket_path)?;
    let stopper = agent.clone();
    let path = socket_path.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || stop_on_signal(&stopper, signals, &path))?;
    // Served at once: until registered, claims are refused with a reason.
    let server = agent.clone();
    std::thread::Builder::new()
        .name("socket".into())
        .spawn(move || weave_mesh::server::serve(server, listener))?;
    if let Err(e) = agent.start() {
        let _ = std::fs::remove_file(&socket_path);
        return Err(e.into());
    }
    spawn("keepalive", &agent, |a| a.keepalive_loop());
    spawn("watch", &agent, |a| a.watch_loop());
    spawn("maintenance", &agent, |a| a.maintenance_loop());
    spawn("names", &agent, |a| a.names_loop());
    tracing::info!("serving {}", socket_path.display());
    loop {
        std::thread::park();
    }
}

/// Waits for SIGTERM or SIGINT (also while the start waits for etcd), then exits: the
/// socket goes, the lease and the blocks stay.
fn stop_on_signal(agent: &Agent, signals: SigSet, socket: &std::path::Path) {
    let signal = match signals.wait() {
        Ok(signal) => format!("{signal:?}"),
        Err(e) => format!("sigwait failed ({e})"),
    };
    tracing::info!(
        "{signal}: stopping; the lease and the blocks are kept (containers keep running; other hosts reclaim them only after the lease TTL and the grace)"
    );
    let _files = agent.freeze_files();
    let _ = std::fs::remove_file(socket);
    std::process::exit(0)
}

/// The kernel overlay of weave-hook's library, or none with --no-overlay.
fn datapath(args: &RunArgs) -> anyhow::Result<Box<dyn DataPath>> {
    if args.no_overlay {
        return Ok(Box::new(NoOverlay));
    }
    let mut settings = settings::Settings::defaults();
    settings.bridge = args.bridge.clone();
    settings.ipalloc_range = args.ipalloc_range;
    settings.state_dir = args.state_dir.clone();
    settings.dns.addr = args.dns_addr;
    let overlay = weave_hook::overlay::Overlay {
        bridge: args.bridge.clone(),
        vni: args.vni,
        port: args.port,
        local: args.advertise,
        mtu: args.mtu,
    };
    Ok(Box::new(weave_mesh::kernel::KernelOverlay {
        settings,
        overlay,
    }))
}

fn spawn(name: &str, agent: &Arc<Agent>, f: fn(&Agent)) {
    let agent = agent.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || f(&agent))
        .expect("threads can be started");
}
