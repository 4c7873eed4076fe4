//! Load test of weave-dns next to its peers, in one run: queries per second and latency
//! percentiles for A queries of container names, from a second process.
//!
//! Not a test (nothing is asserted): run as root with
//!     cargo bench -p weave-dns --bench load
//! It builds a throwaway pair of network namespaces joined by a veth: a "host" (10.32.0.1,
//! where the servers listen) and a "container" (10.32.0.5, where this program runs its
//! client, as a second process). Servers, all answering the same 100 names with TTL 1:
//! weave-dns (port 53, names from 100 weave-hook records), weave-dns with 10,000 more names
//! of other hosts of a mesh (port 5300: the same 100 records, and the mirror files a
//! weave-mesh agent writes, 10 hosts of 1,000 containers; its clients ask for all 10,100
//! names, so 99% of the answers are remote ones), dnsmasq (port 5353, names from an
//! addn-hosts file, `weave.local` local-only) and podman's aardvark-dns (port 5533) when
//! installed. Rounds alternate between them, so drift hits all alike. Everything it starts
//! is stopped by pid, and the namespaces deleted, also on failure.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use weave_core::mesh::{NamedContainer, RemoteNames};
use weave_core::process::ProcessId;
use weave_core::store::Record;

const CLIENT_ENV: &str = "WEAVE_DNS_BENCH_CLIENT";
const SERVER_IP: &str = "10.32.0.1";
const CLIENT_IP: &str = "10.32.0.5";
const NAMES: usize = 100;
/// Other hosts' names in the mesh case: `REMOTE_HOSTS` mirror files of
/// `REMOTE_NAMES / REMOTE_HOSTS` containers each.
const REMOTE_NAMES: usize = 10_000;
const REMOTE_HOSTS: usize = 10;
const ROUNDS: usize = 3;
const SECONDS: u64 = 5;
/// Closed-loop clients: each sends a query, waits for its answer, sends the next.
const CLIENTS: usize = 16;
const AARDVARK: &str = "/usr/lib/podman/aardvark-dns";

fn main() {
    if let Ok(spec) = std::env::var(CLIENT_ENV) {
        return client(&spec);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the DNS load test needs root (network namespaces, port 53)");
        std::process::exit(1);
    }
    let lab = Lab::new();
    let mut servers = vec![lab.weave_dns(), lab.weave_dns_mesh(), lab.dnsmasq()];
    if Path::new(AARDVARK).exists() {
        servers.push(lab.aardvark());
    } else {
        eprintln!("{AARDVARK} not installed: measuring weave-dns and dnsmasq only");
    }
    for s in &servers {
        s.check(&lab);
    }
    let mut results: Vec<Vec<Sample>> = vec![Vec::new(); servers.len()];
    for round in 0..ROUNDS {
        for (i, s) in servers.iter().enumerate() {
            let sample = lab.load(s);
            eprintln!(
                "round {round}: {:<12} {:>8.0} q/s  p50 {:>6.0} us  p99 {:>6.0} us  errors {}",
                s.name, sample.qps, sample.p50_us, sample.p99_us, sample.errors
            );
            results[i].push(sample);
        }
    }
    println!(
        "\n| server | queries/s (median of {ROUNDS} rounds of {SECONDS} s) | p50 latency | p99 latency | errors |"
    );
    println!("|---|---|---|---|---|");
    for (s, samples) in servers.iter().zip(&results) {
        let median = |f: fn(&Sample) -> f64| {
            let mut v: Vec<f64> = samples.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let errors: u64 = samples.iter().map(|s| s.errors).sum();
        println!(
            "| {} | {:.0} | {:.0} µs | {:.0} µs | {errors} |",
            s.name,
            median(|s| s.qps),
            median(|s| s.p50_us),
            median(|s| s.p99_us)
        );
    }
}

#[derive(Clone, Debug)]
struct Sample {
    qps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

struct Server {
    name: &'static str,
    port: u16,
    /// The domain its names are in: weave.local, or podman's dns.podman for aardvark-dns.
    domain: &'static str,
    /// How many names (`c0`...) its clients ask for.
    names: usize,
    process: Child,
}

impl Server {
    /// Every server must answer a name right before it is measured.
    fn check(&self, lab: &Lab) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while lab.load_for(self, "1").errors > 0 {
            assert!(Instant::now() < deadline, "{} does not answer", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// The two namespaces and the files of the servers; removed when dropped.
struct Lab {
    host: String,
    container: String,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        let id = std::process::id();
        let lab = Self {
            host: format!("wvbh{id}"),
            container: format!("wvbc{id}"),
            dir: tempfile::tempdir().unwrap(),
        };
        let (h, c) = (&lab.host, &lab.container);
        sh(&format!(
            "ip netns add {h} && ip netns add {c} && \
             ip -n {h} link add wvb0 type veth peer name wvb1 netns {c} && \
             ip -n {h} addr add {SERVER_IP}/12 dev wvb0 && ip -n {c} addr add {CLIENT_IP}/12 dev wvb1 && \
             ip -n {h} link set wvb0 up && ip -n {c} link set wvb1 up && \
             ip -n {h} link set lo up && ip -n {c} link set lo up"
        ));
        lab
    }

    fn name_addr(i: usize) -> String {
        format!("10.32.{}.{}", 1 + i / 200, 10 + i % 200)
    }

    fn spawn(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.host])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn weave_dns(&self) -> Server {
        self.weave_dns_in("weave", "weave-dns", 53, NAMES)
    }

    /// weave-dns with the same records, and 10,000 names of other hosts in the mirror
    /// directory of a mesh agent (`c100`... on 10 hosts).
    fn weave_dns_mesh(&self) -> Server {
        let state = self.dir.path().join("weave-mesh");
        let mirror = state.join("mesh/names");
        std::fs::create_dir_all(&mirror).unwrap();
        let per_host = REMOTE_NAMES / REMOTE_HOSTS;
        for h in 0..REMOTE_HOSTS {
            let containers = (0..per_host)
                .map(|j| {
                    let i = NAMES + h * per_host + j;
                    NamedContainer {
                        id: format!("c{i}"),
                        names: vec![format!("c{i}")],
                        addrs: vec![Self::name_addr(i).parse().unwrap()],
                        shared: false,
                        started_ms: 1_700_000_000_000 + i as u64,
                        pid: 1000 + i as i32,
                    }
                })
                .collect();
            let names = RemoteNames {
                version: weave_core::mesh::VERSION,
                host: format!("host{h}"),
                containers,
            };
            std::fs::write(
                mirror.join(format!("host{h}.json")),
                serde_json::to_vec(&names).unwrap(),
            )
            .unwrap();
        }
        self.weave_dns_in(
            "weave-mesh",
            "weave-dns +10k remote",
            5300,
            NAMES + REMOTE_NAMES,
        )
    }

    fn weave_dns_in(&self, dir: &str, name: &'static str, port: u16, names: usize) -> Server {
        let state = self.dir.path().join(dir);
        let records = state.join("containers");
        std::fs::create_dir_all(&records).unwrap();
        let owner = ProcessId::of(std::process::id() as i32).ok();
        for i in 0..NAMES {
            let record = Record {
                id: format!("c{i}"),
                veth_index: None,
                mac: None,
                bridge: "weave".into(),
                veth: format!("vethwe{i}"),
                addrs: vec![format!("{}/12", Self::name_addr(i)).parse().unwrap()],
                owner,
                names: vec![format!("c{i}")],
                shared: false,
                route: false,
                netns: None,
            };
            std::fs::write(
                records.join(format!("c{i}.json")),
                serde_json::to_vec(&record).unwrap(),
            )
            .unwrap();
        }
        let state = state.display().to_string();
        let port_arg = port.to_string();
        Server {
            name,
            port,
            domain: "weave.local",
            names,
            process: self.spawn(&[
                env!("CARGO_BIN_EXE_weave-dns"),
                "--state-dir",
                &state,
                "--listen",
                SERVER_IP,
                "--port",
                &port_arg,
                "--upstream",
                "127.0.0.1:9",
                // All 16 clients share one address: a rate far above what they reach keeps
                // the per-client accounting on the path without ever dropping a query.
                "--client-qps",
                "100000000",
            ]),
        }
    }

    fn dnsmasq(&self) -> Server {
        let hosts = self.dir.path().join("hosts");
        let mut file = std::fs::File::create(&hosts).unwrap();
        for i in 0..NAMES {
            writeln!(file, "{} c{i}.weave.local", Self::name_addr(i)).unwrap();
        }
        let hosts = format!("--addn-hosts={}", hosts.display());
        let listen = format!("--listen-address={SERVER_IP}");
        Server {
            name: "dnsmasq",
            port: 5353,
            domain: "weave.local",
            names: NAMES,
            process: self.spawn(&[
                "dnsmasq",
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--user=root",
                "--pid-file=",
                "--bind-interfaces",
                &listen,
                "--port=5353",
                &hosts,
                "--local=/weave.local/",
                "--local-ttl=1",
            ]),
        }
    }

    /// aardvark-dns reads a directory with one file per network: the listen address first,
    /// then `id ipv4 ipv6 names`; it answers only clients that are containers of the network.
    fn aardvark(&self) -> Server {
        let config = self.dir.path().join("aardvark");
        std::fs::create_dir_all(&config).unwrap();
        let mut text = format!("{SERVER_IP}\n");
        text.push_str(&format!("client {CLIENT_IP}  client\n"));
        for i in 0..NAMES {
            text.push_str(&format!("c{i} {}  c{i}\n", Self::name_addr(i)));
        }
        std::fs::write(config.join("weave"), text).unwrap();
        let config = config.display().to_string();
        Server {
            name: "aardvark-dns",
            port: 5533,
            domain: "dns.podman",
            names: NAMES,
            process: self.spawn(&[AARDVARK, "--config", &config, "--port", "5533", "run"]),
        }
    }

    fn load(&self, server: &Server) -> Sample {
        self.load_for(server, &SECONDS.to_string())
    }

    /// Runs the client as a second process, in the "container" namespace.
    fn load_for(&self, server: &Server, seconds: &str) -> Sample {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.container])
            .arg(std::env::current_exe().unwrap())
            .env(
                CLIENT_ENV,
                format!(
                    "{SERVER_IP}:{} {seconds} {} {}",
                    server.port, server.domain, server.names
                ),
            )
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<f64> = text
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect();
        assert_eq!(f.len(), 4, "client output {text:?}");
        Sample {
            qps: f[0],
            p50_us: f[1],
            p99_us: f[2],
            errors: f[3] as u64,
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.host, &self.container] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // aardvark-dns daemonizes: its pid is in its config directory.
        let pid_file: PathBuf = self.dir.path().join("aardvark/aardvark.pid");
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn sh(script: &str) {
    let status = Command::new("sh").arg("-c").arg(script).status().unwrap();
    assert!(status.success(), "{script}");
}

/// The client: CLIENTS threads, each a closed loop of A queries for names spread over the
/// table, for the given seconds. Prints queries/s, p50 and p99 latency in µs, and errors (timeouts and
/// answers that are not NOERROR with an address).
fn client(spec: &str) {
    let [server, seconds, domain, names] = spec.split(' ').collect::<Vec<_>>()[..] else {
        panic!("{CLIENT_ENV}={spec:?}: expected SERVER SECONDS DOMAIN NAMES");
    };
    let names: usize = names.parse().unwrap();
    let server: SocketAddr = server.parse().unwrap();
    let duration = Duration::from_secs(seconds.parse().unwrap());
    let start = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let domain = domain.to_string();
            std::thread::spawn(move || client_loop(server, &domain, names, start + duration, t))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().unwrap();
        latencies.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1e6)
    };
    println!(
        "{} {} {} {errors}",
        latencies.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
}

fn client_loop(
    server: SocketAddr,
    domain: &str,
    names: usize,
    until: Instant,
    thread: usize,
) -> (Vec<Duration>, u64) {
    let socket = UdpSocket::bind((CLIENT_IP, 0)).unwrap();
    socket.connect(server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut buf = [0; 1500];
    let mut n = thread;
    while Instant::now() < until {
        n = (n * 7 + 13) % names;
        let mut q = Message::query();
        q.metadata.recursion_desired = true;
        let name = Name::from_ascii(format!("c{n}.{domain}.")).unwrap();
        q.add_query(Query::query(name, RecordType::A));
        let id = q.metadata.id;
        let packet = q.to_vec().unwrap();
        let sent = Instant::now();
        socket.send(&packet).unwrap();
        let ok = loop {
            match socket.recv(&mut buf) {
                Ok(len) => match Message::from_vec(&buf[..len]) {
                    Ok(m) if m.metadata.id == id => {
                        break m.metadata.response_code == ResponseCode::NoError
                            && !m.answers.is_empty()
                    }
                    // A late answer to an earlier query that timed out.
                    _ => continue,
                },
                Err(_) => break false,
            }
        };
        match ok {
            true => latencies.push(sent.elapsed()),
            false => errors += 1,
        }
    }
    (latencies, errors)
}
