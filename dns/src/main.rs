//! weave-dns, the binary: flags, logging, bind, claim the state directory, serve until
//! SIGTERM or SIGINT.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

use weave_core::settings::{first_host, parse_upstream, DEFAULT_RANGE, DEFAULT_STATE_DIR};
use weave_core::store::Store;
use weave_dns::answer::Responder;
use weave_dns::device::Device;
use weave_dns::forward::Forwarder;
use weave_dns::limit::{self, Clients, Limits, TcpSlots};
use weave_dns::records::{Names, Table};
use weave_dns::server::{self, Server};
use weave_dns::upstreams::Upstreams;
use weave_dns::{instance, listen, remote, watch};

/// UDP receive loops sharing the socket: one per core of these 2-core hosts.
const UDP_TASKS: usize = 2;
/// After losing the race for the port, how long to wait for the winner's lock.
const RACE_PATIENCE: Duration = Duration::from_secs(1);

/// Weave DNS: answers A and PTR queries for <name>.weave.local. with the weave addresses of
/// live containers, and forwards every other query to upstream resolvers.
///
/// Names come from weave-hook's records in the state directory (the container's hostname
/// and its weave.dns.names annotation), re-read whenever they change; a name resolves only
/// while its container's process lives. Answers have a TTL of 1 s.
///
/// weave-hook starts weave-dns on demand for weave.dns=true containers; it can as well run
/// under a service manager. One instance serves a state directory: another one started for
/// it exits 0 at once.
#[derive(Parser, Debug)]
#[command(name = "weave-dns", version, about, long_about)]
struct Cli {
    /// weave-hook's state directory: records are read from DIR/containers; dns.lock and
    /// dns.pid are kept in DIR.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Address to serve on, UDP and TCP. It need not exist yet (weave-hook puts it on the
    /// bridge). Default: the first host of 10.32.0.0/12, 10.32.0.1, as weave-hook's default
    /// --dns-addr.
    #[arg(long, value_name = "IP")]
    listen: Option<Ipv4Addr>,
    /// Port to serve on.
    #[arg(long, default_value_t = 53)]
    port: u16,
    /// The weave bridge: only queries that come in on it (or on loopback) are answered, and
    /// TCP is bound to it so that its replies reach containers in subnets the host has no
    /// route for. UDP replies always leave through the interface the query came in on.
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Upstream resolver (IP or IP:PORT) for names outside weave.local; repeat it for
    /// several, asked in order. Default: the nameservers of --resolv-conf.
    #[arg(long = "upstream", value_name = "ADDR", value_parser = parse_upstream)]
    upstreams: Vec<SocketAddr>,
    /// Where to read upstream resolvers from when no --upstream is given; re-read when it
    /// changes.
    #[arg(long, value_name = "FILE", default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// Queries per second one client address may send (UDP and TCP, answered or
    /// forwarded); beyond, its queries are dropped, one second's worth at once allowed.
    #[arg(long, value_name = "N", default_value_t = limit::DEFAULT_QUERIES,
          value_parser = clap::value_parser!(u32).range(1..))]
    client_qps: u32,
    /// Queries per second of one client address forwarded upstream; beyond, SERVFAIL.
    #[arg(long, value_name = "N", default_value_t = limit::DEFAULT_FORWARDS,
          value_parser = clap::value_parser!(u32).range(1..))]
    client_forward_qps: u32,
    /// TCP connections one client address may hold open at once; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = limit::DEFAULT_TCP_PER_CLIENT,
          value_parser = clap::value_parser!(u16).range(1..))]
    client_tcp: u16,
    /// Log level: error, warn, info, debug or trace. Logs go to journald when its socket
    /// exists, else to stderr.
    #[arg(long, default_value = "warn")]
    log_level: tracing::Level,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // hickory-proto logs about every odd packet; a flood would fill the log.
    weave_core::logging::init(cli.log_level, &["hickory_proto"]);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "weave-dns: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let listen_ip = cli.listen.unwrap_or_else(|| {
        first_host(DEFAULT_RANGE.parse().expect("a valid default range")).addr()
    });
    let addr = SocketAddrV4::new(listen_ip, cli.port);
    if cli.upstreams.contains(&SocketAddr::V4(addr)) {
        bail!("--upstream {addr} is weave-dns itself");
    }
    let store = Store::open(&cli.state_dir)
        .with_context(|| format!("state directory {}", cli.state_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(UDP_TASKS)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let _entered = runtime.enter();
    let listeners = match listen::bind(addr, cli.device.as_deref()) {
        Ok(listeners) => listeners,
        Err(e) if e.in_use() && instance::other_serves(&cli.state_dir, RACE_PATIENCE) => {
            tracing::info!(%addr, "another weave-dns serves here; exiting");
            return Ok(());
        }
        Err(e) if e.in_use() => {
            bail!("{e}: another program serves there (a DNS server on all addresses?)")
        }
        Err(e) => return Err(e.into()),
    };
    // Names are read before the lock says "serving": a container's first query finds them.
    let names = Names::new(Table::empty());
    remote::start(&cli.state_dir, names.clone()).context("follow the mesh's names")?;
    watch::start(store, names.clone())?;
    let Some(instance) = instance::claim(&cli.state_dir).context("claim the state directory")?
    else {
        tracing::info!("another weave-dns serves this state directory; exiting");
        return Ok(());
    };
    let upstreams = match cli.upstreams.is_empty() {
        true => Upstreams::resolv_conf(cli.resolv_conf.clone(), listen_ip.into()),
        false => Upstreams::fixed(cli.upstreams.clone()),
    };
    let limits = Limits {
        queries: cli.client_qps,
        forwards: cli.client_forward_qps,
        tcp_per_client: usize::from(cli.client_tcp),
    };
    let server = Arc::new(Server {
        responder: Responder::new(),
        names,
        forwarder: Forwarder::new(upstreams),
        device: cli.device.as_deref().and_then(Device::new),
        clients: Clients::new(&limits),
        tcp: TcpSlots::new(limits.tcp_per_client, limit::MAX_TCP),
    });
    tracing::info!(%addr, state_dir = %cli.state_dir.display(), "serving");
    let served = runtime.block_on(serve(server, listeners));
    drop(instance);
    // Forwarded queries may still wait on upstreams: do not wait for them.
    runtime.shutdown_background();
    served
}

/// Serves until SIGTERM or SIGINT.
async fn serve(server: Arc<Server>, listeners: listen::Listeners) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handle SIGINT")?;
    let udp = Arc::new(tokio::net::UdpSocket::from_std(listeners.udp).context("UDP socket")?);
    let tcp = tokio::net::TcpListener::from_std(listeners.tcp).context("TCP socket")?;
    for _ in 0..UDP_TASKS {
        tokio::spawn(server::serve_udp(server.clone(), udp.clone()));
    }
    tokio::spawn(server::serve_tcp(server, tcp));
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: exiting"),
        _ = int.recv() => tracing::info!("SIGINT: exiting"),
    }
    Ok(())
}
