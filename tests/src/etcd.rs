//! Real etcd clusters for the tests: members started from Debian's `etcd` in a network
//! namespace, with data directories in a tempdir, optionally with TLS (a CA, server and client
//! certificates made with `openssl`) and `--client-cert-auth`.
//!
//! Members are stopped by the pid this harness started (checked against /proc/PID/cmdline) when
//! the cluster is dropped, also when the test panicked; a namespace the harness made is deleted.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{run_ok, unique};

/// How long a cluster may take to become healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

struct Member {
    name: String,
    ip: Ipv4Addr,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// Certificates of a TLS cluster.
pub struct Tls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub struct EtcdCluster {
    netns: String,
    /// True when this harness made the namespace (and so deletes it).
    own_netns: bool,
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    tls: Option<Tls>,
}

impl EtcdCluster {
    /// `members` members in a namespace of their own with only `lo` up, all on 127.0.0.1
    /// with distinct ports. Returns once every member is healthy.
    pub fn start(members: usize, tls: bool) -> EtcdCluster {
        let netns = unique("wve");
        run_ok(Command::new("ip").args(["netns", "add", &netns]));
        let cluster = Self::new(netns, true, &vec![Ipv4Addr::LOCALHOST; members], tls);
        cluster.in_netns_sh("ip link set lo up");
        cluster.launch_all()
    }

    /// One member on each of `ips`, which the caller has put on an interface of `netns` (and
    /// removes with it). Ports 2379 (clients) and 2380 (peers) on each address.
    pub fn start_in(netns: &str, ips: &[Ipv4Addr], tls: bool) -> EtcdCluster {
        Self::new(netns.to_string(), false, ips, tls).launch_all()
    }

    fn new(netns: String, own_netns: bool, ips: &[Ipv4Addr], tls: bool) -> EtcdCluster {
        assert!(!ips.is_empty(), "an etcd cluster needs a member");
        let dir = tempfile::Builder::new()
            .prefix("weave-etcd-")
            .tempdir()
            .unwrap();
        let members = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                // Members sharing an address get ports of their own.
                let shared = ips.iter().filter(|other| *other == ip).count() > 1;
                let offset = if shared { 10 * i as u16 } else { 0 };
                Member {
                    name: format!("m{i}"),
                    ip: *ip,
                    client_port: 2379 + offset,
                    peer_port: 2380 + offset,
                    child: None,
                }
            })
            .collect();
        let mut cluster = EtcdCluster {
            token: unique("weave-etcd-"),
            netns,
            own_netns,
            dir,
            members,
            tls: None,
        };
        if tls {
            cluster.tls = Some(make_certificates(cluster.dir.path(), ips));
        }
        cluster
    }

    /// The namespace the members run in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    fn scheme(&self) -> &str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The client URL of every member, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    pub fn endpoint(&self, i: usize) -> String {
        let m = &self.members[i];
        format!("{}://{}:{}", self.scheme(), m.ip, m.client_port)
    }

    /// (CA, client certificate, client key) of a TLS cluster.
    pub fn client_tls(&self) -> (PathBuf, PathBuf, PathBuf) {
        let tls = self.tls.as_ref().expect("this cluster has no TLS");
        (
            tls.ca.clone(),
            tls.client_cert.clone(),
            tls.client_key.clone(),
        )
    }

    /// The flags that point a weave-mesh at this cluster, with its client certificate
    /// (`--etcd`, `--etcd-cacert`, `--etcd-cert`, `--etcd-key`).
    pub fn mesh_flags(&self) -> Vec<std::ffi::OsString> {
        let (ca, cert, key) = self.client_tls();
        vec![
            "--etcd".into(),
            self.endpoints().join(",").into(),
            "--etcd-cacert".into(),
            ca.into(),
            "--etcd-cert".into(),
            cert.into(),
            "--etcd-key".into(),
            key.into(),
        ]
    }

    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// A command run inside the members' namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `f` on a thread inside the members' namespace (where 127.0.0.1 is theirs), with
    /// threads it spawns there too; the calling thread stays where it is.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.netns);
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_netns(&path);
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn in_netns_sh(&self, script: &str) -> String {
        run_ok(self.command("sh").arg("-c").arg(script))
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://{}:{}", m.name, m.ip, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    fn spawn_member(&mut self, i: usize) {
        assert!(
            self.members[i].child.is_none(),
            "member {i} is already running"
        );
        let m = &self.members[i];
        let client = format!("{}://{}:{}", self.scheme(), m.ip, m.client_port);
        let peer = format!("http://{}:{}", m.ip, m.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .unwrap();
        let mut cmd = self.command("etcd");
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster()])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            // etcd 3.4 serves the v3 JSON gateway only when asked; 3.5 accepts the flag.
            .arg("--enable-grpc-gateway")
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"]);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        // nsenter execs etcd in place: the child's pid is etcd's.
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start etcd: run scripts/deps-etcd.sh");
        self.members[i].child = Some(child);
    }

    fn launch_all(mut self) -> Self {
        for i in 0..self.members.len() {
            self.spawn_member(i);
        }
        self.wait_healthy();
        self
    }

    /// Waits until every running member answers a linearizable read (needs a quorum).
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                continue;
            }
            while !self.member_healthy(i) {
                assert!(
                    Instant::now() < deadline,
                    "etcd member {i} is not healthy after {HEALTHY_WITHIN:?}; its log:\n{}",
                    self.log(i)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn member_healthy(&self, i: usize) -> bool {
        let mut cmd = self.command("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint(i)))
            .args(["--dial-timeout=1s", "--command-timeout=2s"]);
        if let Some(tls) = &self.tls {
            cmd.arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client_cert)
                .arg("--key")
                .arg(&tls.client_key);
        }
        cmd.args(["endpoint", "health"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Member `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        let path = self
            .dir
            .path()
            .join(format!("{}.log", self.members[i].name));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Kills member `i` (SIGKILL) and reaps it.
    pub fn kill_member(&mut self, i: usize) {
        let data_dir = self.data_dir(i);
        if let Some(mut child) = self.members[i].child.take() {
            stop_child(&mut child, &data_dir);
        }
    }

    /// Kills every member.
    pub fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }

    /// Starts every stopped member again on its data directory, and waits until all are
    /// healthy.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn_member(i);
            }
        }
        self.wait_healthy();
    }

    /// Starts member `i` again on its data directory (does not wait).
    pub fn restart_member(&mut self, i: usize) {
        self.spawn_member(i);
    }
}

/// Moves the calling thread (only) into the network namespace at `path`.
fn enter_netns(path: &str) {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: setns(2) on a valid descriptor; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Kills a member the harness started: the pid is still our unreaped child, so it cannot have
/// been reused, and its command line must still name its data directory.
fn stop_child(child: &mut Child, data_dir: &Path) {
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
    let ours = String::from_utf8_lossy(&cmdline).contains(&*data_dir.to_string_lossy());
    if ours {
        let _ = child.kill();
    }
    let _ = child.wait();
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop_all();
        if self.own_netns {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns])
                .status();
        }
    }
}

/// A CA, one server certificate for every member's address (and 127.0.0.1) and a client
/// certificate, all P-256, made with openssl in `dir`.
fn make_certificates(dir: &Path, ips: &[Ipv4Addr]) -> Tls {
    let p = |name: &str| dir.join(name);
    let tls = Tls {
        ca: p("ca.pem"),
        server_cert: p("server.pem"),
        server_key: p("server.key"),
        client_cert: p("client.pem"),
        client_key: p("client.key"),
    };
    let newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "2"])
            .args(newkey)
            .args(["-subj", "/CN=weave test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(&tls.ca),
    );
    let mut sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
    sans.push("IP:127.0.0.1".into());
    sans.dedup();
    let server_ext = format!(
        "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        sans.join(",")
    );
    sign(dir, "server", "etcd member", &server_ext, &tls.ca);
    let client_ext =
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n";
    sign(dir, "client", "weave-mesh", client_ext, &tls.ca);
    tls
}

/// Makes `<name>.key` and `<name>.pem`, signed by the CA in `dir`.
fn sign(dir: &Path, name: &str, cn: &str, ext: &str, ca: &Path) {
    let p = |file: String| dir.join(file);
    std::fs::write(p(format!("{name}.ext")), ext).unwrap();
    run_ok(
        Command::new("openssl")
            .args(["req", "-nodes"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .args(["-subj", &format!("/CN={cn}")])
            .arg("-keyout")
            .arg(p(format!("{name}.key")))
            .arg("-out")
            .arg(p(format!("{name}.csr"))),
    );
    run_ok(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p(format!("{name}.csr")))
            .arg("-CA")
            .arg(ca)
            .arg("-CAkey")
            .arg(p("ca.key".into()))
            .arg("-extfile")
            .arg(p(format!("{name}.ext")))
            .arg("-out")
            .arg(p(format!("{name}.pem"))),
    );
}
