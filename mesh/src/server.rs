//! The agent's socket (`<state-dir>/mesh/agent.sock`, mode 0600 in the 0700 state
//! directory): one request line in, one reply line out (weave-core's `mesh` contract).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weave_core::id::ContainerId;
use weave_core::mesh::{Reply, Request};

use crate::agent::Agent;
use crate::cluster::{Claim, MeshError};

/// A request line is far shorter than this.
const MAX_REQUEST: u64 = 64 * 1024;
/// A client that does not send its line in this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "another weave-mesh already serves {0}; stop it first (one agent per state directory)"
    )]
    InUse(String),
    #[error("cannot serve {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Binds the socket, removing a stale one only when no agent answers on it.
pub fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let shown = path.display().to_string();
    let io_err = |source| SocketError::Io {
        path: shown.clone(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse(shown));
        }
        if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            return Err(io_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            )));
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    Ok(listener)
}

/// Serves connections until the listener fails: never returns in practice.
pub fn serve(agent: Arc<Agent>, listener: UnixListener) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        while active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            std::thread::sleep(Duration::from_millis(10));
        }
        active.fetch_add(1, Ordering::AcqRel);
        let (agent, active) = (agent.clone(), active.clone());
        std::thread::spawn(move || {
            if let Err(e) = serve_one(&agent, stream) {
                tracing::debug!("socket client: {e}");
            }
            active.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

fn serve_one(agent: &Agent, stream: UnixStream) -> io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut line = Vec::new();
    BufReader::new(&stream)
        .take(MAX_REQUEST)
        .read_until(b'\n', &mut line)?;
    let reply = match serde_json::from_slice::<Request>(&line) {
        Ok(request) => handle(agent, &request),
        Err(e) => Reply::Refused {
            reason: format!("weave-mesh cannot read the request: {e}"),
        },
    };
    let mut out = serde_json::to_vec(&reply).expect("a reply always serializes");
    out.push(b'\n');
    (&stream).write_all(&out)
}

/// The answer to one request.
pub fn handle(agent: &Agent, request: &Request) -> Reply {
    if !wait_ready(agent) {
        return not_ready(agent);
    }
    match request {
        Request::ClaimBlock { subnet } => match agent.claim_block(*subnet) {
            Ok(Claim::Granted(block)) => Reply::Block { block },
            Ok(Claim::Refused(reason)) => Reply::Refused { reason },
            Err(e) => failed(e),
        },
        Request::ClaimAddr { addr, id } => {
            if let Err(e) = ContainerId::parse(id) {
                return Reply::Refused {
                    reason: e.to_string(),
                };
            }
            match agent.claim_addr(*addr, id) {
                Ok(Claim::Granted(())) => Reply::Ok,
                Ok(Claim::Refused(reason)) => Reply::Refused { reason },
                Err(e) => failed(e),
            }
        }
        Request::ReleaseAddr { addr, id } => match agent.release_addr(*addr, id) {
            Ok(()) => Reply::Ok,
            Err(e) => failed(e),
        },
    }
}

/// How long a claim waits for a start that is under way (registered with etcd, setting the
/// overlay up: tens of milliseconds) rather than be turned away: the hook's attach is not
/// retried by any runtime, and a host's first attach may come right after the agent's start.
const START_PATIENCE: Duration = Duration::from_secs(5);

/// Whether the agent is ready, waiting up to [`START_PATIENCE`] while etcd answers (with
/// etcd out of reach the start may take any time: the claim is answered at once).
fn wait_ready(agent: &Agent) -> bool {
    let deadline = Instant::now() + START_PATIENCE;
    while !agent.is_ready() {
        if !agent.etcd_reachable() || Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The answer while the agent starts: it has not registered this host yet (etcd is out of
/// reach, or it is setting the overlay up).
fn not_ready(agent: &Agent) -> Reply {
    match agent.etcd_reachable() {
        false => Reply::Unreachable {
            reason: "etcd is unreachable: weave-mesh is starting and waits for it to register this host; nothing can be proven unique until then".into(),
        },
        true => Reply::Refused {
            reason: "weave-mesh is starting (registering this host, setting up the overlay); try again in a few seconds".into(),
        },
    }
}

fn failed(e: MeshError) -> Reply {
    match e.is_unreachable() {
        true => Reply::Unreachable {
            reason: format!("{e}; weave-mesh cannot prove it unique until etcd is back"),
        },
        false => Reply::Refused {
            reason: e.to_string(),
        },
    }
}
