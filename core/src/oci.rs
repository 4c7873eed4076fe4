//! The OCI runtime state a hook receives on stdin, and the bits of the bundle's
//! config.json weave reads, turned into typed values at the edge.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::id::{ContainerId, IdError};

/// Larger states are refused: runc's are a few hundred bytes, podman's a few KiB.
pub const MAX_STATE_BYTES: u64 = 1024 * 1024;
/// config.json files are read up to this size.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum OciError {
    #[error("cannot read the OCI state from stdin: {0}")]
    ReadState(#[source] std::io::Error),
    #[error("the OCI state on stdin is larger than {MAX_STATE_BYTES} bytes")]
    StateTooLarge,
    #[error("the OCI state on stdin is empty (a hook gets the container state as JSON on stdin)")]
    EmptyState,
    #[error("the OCI state on stdin is not valid JSON: {0}")]
    BadState(#[source] serde_json::Error),
    #[error(transparent)]
    BadId(#[from] IdError),
    #[error("cannot read {0}: {1}")]
    ReadConfig(PathBuf, #[source] std::io::Error),
    #[error("{0} is larger than {MAX_CONFIG_BYTES} bytes")]
    ConfigTooLarge(PathBuf),
    #[error("{0} is not valid JSON: {1}")]
    BadConfig(PathBuf, #[source] serde_json::Error),
    #[error("{0} is not a regular file")]
    ConfigNotAFile(PathBuf),
}

/// The lifecycle phase the state reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
    Other,
}

impl Status {
    fn of(text: &str) -> Self {
        match text {
            "creating" => Self::Creating,
            "created" => Self::Created,
            "running" => Self::Running,
            "stopped" => Self::Stopped,
            _ => Self::Other,
        }
    }
}

/// Reads the state's bytes from a reader (stdin in the binary), at most [`MAX_STATE_BYTES`].
pub fn read_state_bytes(input: impl Read) -> Result<Vec<u8>, OciError> {
    let mut text = Vec::new();
    input
        .take(MAX_STATE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(OciError::ReadState)?;
    if text.len() as u64 > MAX_STATE_BYTES {
        return Err(OciError::StateTooLarge);
    }
    Ok(text)
}

/// The status of a state whose id may not be one weave accepts.
pub fn status_of(text: &[u8]) -> Option<Status> {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        status: String,
    }
    serde_json::from_slice::<Only>(text)
        .ok()
        .map(|s| Status::of(&s.status))
}

/// The OCI state, typed.
#[derive(Debug, Clone)]
pub struct State {
    pub id: ContainerId,
    pub status: Status,
    pub pid: Option<i32>,
    pub bundle: Option<PathBuf>,
    pub annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct RawState {
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    pid: Option<i32>,
    #[serde(default)]
    bundle: Option<PathBuf>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
}

impl State {
    /// Reads and parses the state from a reader (stdin in the binary).
    pub fn read(input: impl Read) -> Result<Self, OciError> {
        Self::parse(&read_state_bytes(input)?)
    }

    pub fn parse(text: &[u8]) -> Result<Self, OciError> {
        if text.iter().all(u8::is_ascii_whitespace) {
            return Err(OciError::EmptyState);
        }
        let raw: RawState = serde_json::from_slice(text).map_err(OciError::BadState)?;
        Ok(Self {
            id: ContainerId::parse(&raw.id)?,
            status: Status::of(&raw.status),
            // pid 0 is what some runtimes send when there is no process.
            pid: raw.pid.filter(|p| *p > 0),
            bundle: raw.bundle.filter(|b| !b.as_os_str().is_empty()),
            annotations: raw.annotations.unwrap_or_default(),
        })
    }
}

/// The parts of config.json weave looks at.
#[derive(Debug, Default, Clone)]
pub struct BundleConfig {
    pub annotations: HashMap<String, String>,
    pub env: Vec<String>,
    pub hostname: Option<String>,
    /// `linux.namespaces` has a `uts` entry with a path: the container joins a UTS namespace
    /// that exists already (a pod's), whose hostname it has. Without one it gets a copy of
    /// the runtime's (the host's) or shares the host's.
    pub joins_uts: bool,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    process: Option<RawProcess>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    linux: Option<RawLinux>,
}

#[derive(Deserialize)]
struct RawLinux {
    #[serde(default)]
    namespaces: Option<Vec<RawNamespace>>,
}

#[derive(Deserialize)]
struct RawNamespace {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<String>,
}

impl RawConfig {
    fn joins_uts(&self) -> bool {
        let namespaces = self.linux.as_ref().and_then(|l| l.namespaces.as_deref());
        namespaces
            .unwrap_or_default()
            .iter()
            .any(|n| n.kind == "uts" && n.path.as_deref().is_some_and(|p| !p.is_empty()))
    }
}

#[derive(Deserialize)]
struct RawProcess {
    #[serde(default)]
    env: Option<Vec<String>>,
}

impl BundleConfig {
    /// Reads `<bundle>/config.json`.
    pub fn read(bundle: &Path) -> Result<Self, OciError> {
        let path = bundle.join("config.json");
        // Non-blocking, then checked: a FIFO planted as config.json must not hang the hook.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| OciError::ReadConfig(path.clone(), e))?;
        let meta = file
            .metadata()
            .map_err(|e| OciError::ReadConfig(path.clone(), e))?;
        if !meta.is_file() {
            return Err(OciError::ConfigNotAFile(path));
        }
        let mut text = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| OciError::ReadConfig(path.clone(), e))?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(OciError::ConfigTooLarge(path));
        }
        let raw: RawConfig =
            serde_json::from_slice(&text).map_err(|e| OciError::BadConfig(path.clone(), e))?;
        let joins_uts = raw.joins_uts();
        Ok(Self {
            joins_uts,
            annotations: raw.annotations.unwrap_or_default(),
            env: raw.process.and_then(|p| p.env).unwrap_or_default(),
            hostname: raw.hostname.filter(|h| !h.is_empty()),
        })
    }

    /// The value of an environment variable of the container's process (see
    /// [`crate::options::env_var`] for which definition counts).
    pub fn env_var(&self, name: &str) -> Option<&str> {
        crate::options::env_var(self.env.iter().map(String::as_str), name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_as_config_json_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Without O_NONBLOCK the open alone would wait for a writer forever.
        let (tx, rx) = std::sync::mpsc::channel();
        let bundle = dir.path().to_path_buf();
        std::thread::spawn(move || tx.send(BundleConfig::read(&bundle)).unwrap());
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the read returned");
        assert!(matches!(got, Err(OciError::ConfigNotAFile(_))), "{got:?}");
    }

    #[test]
    fn runc_state() {
        let s = State::parse(br#"{"ociVersion":"1.0.2-dev","id":"t1","status":"creating","pid":2362,"bundle":"/tmp/b1","annotations":{"weave.cidr":"10.2.0.1/24"}}"#).unwrap();
        assert_eq!(s.id.as_str(), "t1");
        assert_eq!(s.status, Status::Creating);
        assert_eq!(s.pid, Some(2362));
        assert_eq!(s.bundle.as_deref(), Some(Path::new("/tmp/b1")));
        assert_eq!(s.annotations["weave.cidr"], "10.2.0.1/24");
    }

    #[test]
    fn poststop_state_has_no_pid() {
        let s =
            State::parse(br#"{"ociVersion":"1.0.2","id":"t1","status":"stopped","bundle":"/b"}"#)
                .unwrap();
        assert_eq!(s.status, Status::Stopped);
        assert_eq!(s.pid, None);
        assert!(s.annotations.is_empty());
    }

    #[test]
    fn bad_states() {
        assert!(matches!(State::parse(b""), Err(OciError::EmptyState)));
        assert!(matches!(State::parse(b" \n"), Err(OciError::EmptyState)));
        assert!(matches!(
            State::parse(b"{\"id\":"),
            Err(OciError::BadState(_))
        ));
        assert!(matches!(State::parse(b"[]"), Err(OciError::BadState(_))));
        assert!(matches!(
            State::parse(b"{\"status\":\"creating\"}"),
            Err(OciError::BadState(_))
        ));
        assert!(matches!(
            State::parse(b"{\"id\":\"../../etc\"}"),
            Err(OciError::BadId(..))
        ));
        assert!(matches!(
            State::parse(b"{\"id\":\"..\"}"),
            Err(OciError::BadId(..))
        ));
        assert!(matches!(
            State::parse(b"{\"id\":\"a/b\"}"),
            Err(OciError::BadId(..))
        ));
        assert!(matches!(
            State::parse(b"{\"id\":\"\"}"),
            Err(OciError::BadId(..))
        ));
        assert!(matches!(
            State::parse(b"{\"id\":\"a\\u0000b\"}"),
            Err(OciError::BadId(..))
        ));
        let huge = format!(
            "{{\"id\":\"t\",\"annotations\":{{\"x\":\"{}\"}}}}",
            "a".repeat(2 << 20)
        );
        assert!(matches!(
            State::read(huge.as_bytes()),
            Err(OciError::StateTooLarge)
        ));
    }

    #[test]
    fn env_lookup_takes_the_last_definition() {
        let c = BundleConfig {
            env: vec![
                "PATH=/bin".into(),
                "WEAVE_CIDR=net:default".into(),
                "WEAVE_CIDR=10.2.0.1/24".into(),
            ],
            ..Default::default()
        };
        assert_eq!(c.env_var("WEAVE_CIDR"), Some("10.2.0.1/24"));
        assert_eq!(c.env_var("WEAVE"), None);
    }
}
