//! Decides, without touching the file system, what `create`/`run` must change in a bundle:
//! the new config.json bytes and, for weave DNS, the resolv.conf file to write. Reading the
//! container's original resolv.conf goes through a caller-supplied function so that the
//! decision can be tested with golden files.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::hooks::{self, HooksError};
use crate::mounts::{self, MountsError};
use crate::request::{Request, RequestError};
use crate::settings::Settings;
use weave_core::id::{ContainerId, IdError};
use weave_core::layout::StateDir;
use weave_core::resolv::{Choice, ResolvConf};

/// What to do to one bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// New config.json contents; `None` leaves the file byte-for-byte as it is.
    pub config: Option<Vec<u8>>,
    pub resolv: Option<ResolvFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvFile {
    pub path: PathBuf,
    pub contents: String,
}

/// Everything `plan` needs to know about the invocation.
pub struct Inputs<'a> {
    pub id: &'a OsStr,
    pub bundle: &'a Path,
    pub settings: &'a Settings,
    pub hook_path: &'a Path,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("config.json is not valid JSON: {0}")]
    BadJson(#[source] serde_json::Error),
    #[error("config.json is not a JSON object")]
    NotObject,
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("invalid container id {0:?}: not UTF-8")]
    IdNotUtf8(String),
    #[error(transparent)]
    Hooks(#[from] HooksError),
    #[error(transparent)]
    Mounts(#[from] MountsError),
    #[error("cannot read the container's resolv.conf {0}: {1}")]
    ReadResolv(PathBuf, #[source] io::Error),
}

impl Plan {
    pub fn unchanged() -> Self {
        Plan {
            config: None,
            resolv: None,
        }
    }
}

/// Plans the edit of `config_bytes` (the bundle's config.json).
pub fn plan(
    config_bytes: &[u8],
    inputs: &Inputs,
    read_to_string: impl Fn(&Path) -> io::Result<String>,
) -> Result<Plan, PlanError> {
    let original: Value = serde_json::from_slice(config_bytes).map_err(PlanError::BadJson)?;
    if !original.is_object() {
        return Err(PlanError::NotObject);
    }
    let dns = match Request::from_config(&original)? {
        Request::Nothing => return Ok(Plan::unchanged()),
        Request::Attach { dns } => dns,
    };
    let id = parse_id(inputs.id)?;
    let mut config = original.clone();
    hooks::inject(&mut config, inputs.hook_path, &inputs.settings.hook)?;
    let resolv = match dns {
        Some(dns) => resolv_file(&mut config, &id, &dns, inputs, read_to_string)?,
        None => None,
    };
    let config = (config != original)
        .then(|| serde_json::to_vec(&config).expect("a serde_json::Value always serializes"));
    Ok(Plan { config, resolv })
}

fn resolv_file(
    config: &mut Value,
    id: &ContainerId,
    dns: &Choice,
    inputs: &Inputs,
    read_to_string: impl Fn(&Path) -> io::Result<String>,
) -> Result<Option<ResolvFile>, PlanError> {
    let path = StateDir::new(inputs.settings.state_dir()).resolv(id);
    let original = match mounts::resolv_source(config, inputs.bundle)? {
        // Our own file, from an earlier run of this bundle: parsing it again gives the same
        // result; it is gone once that container stopped.
        Some(source) if source == path => read_to_string(&source)
            .map(|text| ResolvConf::parse(&text))
            .unwrap_or_default(),
        Some(source) => {
            let text = read_to_string(&source).map_err(|e| PlanError::ReadResolv(source, e))?;
            ResolvConf::parse(&text)
        }
        None => ResolvConf::default(),
    };
    let server = dns
        .server
        .unwrap_or_else(|| inputs.settings.default_dns_server());
    // `docker run --dns <weave DNS>` (compose: `dns:`) already made weave DNS the first
    // server. On a user-defined network Docker then keeps its embedded DNS (127.0.0.11) in
    // the file and forwards the names it does not know to weave DNS from inside the
    // container: both Docker's names and weave's resolve, which a file of weave's would
    // break. So Docker's file stays.
    if original.nameservers.first() == Some(&server.to_string()) {
        return Ok(None);
    }
    let contents = original
        .for_weave(server, dns.search.as_deref())
        .render("weave-runtime", id.as_str());
    mounts::point_resolv_at(config, &path)?;
    Ok(Some(ResolvFile { path, contents }))
}

/// The container id of the runtime's command line, by weave's one rule.
pub fn parse_id(raw: &OsStr) -> Result<ContainerId, PlanError> {
    let text = raw
        .to_str()
        .ok_or_else(|| PlanError::IdNotUtf8(raw.to_string_lossy().chars().take(80).collect()))?;
    Ok(ContainerId::parse(text)?)
}
