//! What a container asks of weave, read from its config.json: the `weave.*` annotations, else
//! `WEAVE_CIDR` in `process.env` (the env fallback of Docker < 24, which has no
//! `--annotation`).
//!
//! `weave.cidr` is parsed with weave-hook's own parser, so the shim and the hook agree on what
//! opts out (`none`) and a bad value fails the create before runc runs, config.json untouched.

use std::net::IpAddr;

use serde_json::Value;
use weave_hook::cidr::{self, CidrError, CidrSpec};

pub const CIDR: &str = "weave.cidr";
pub const DNS: &str = "weave.dns";
pub const DNS_SERVER: &str = "weave.dns.server";
pub const DNS_SEARCH: &str = "weave.dns.search";
pub const CIDR_ENV: &str = "WEAVE_CIDR";

/// The domain every weave DNS container searches first.
pub const WEAVE_DOMAIN: &str = "weave.local.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// No weave options, or `weave.cidr=none`: leave the bundle exactly as it is.
    Nothing,
    Attach {
        dns: Option<DnsRequest>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRequest {
    /// `weave.dns.server`; `None` means the shim's default.
    pub server: Option<IpAddr>,
    /// `weave.dns.search`: replaces the container's original search list (weave.local.
    /// stays first); `None` keeps the original list.
    pub search: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("config.json: \"annotations\" is not an object of strings")]
    AnnotationsNotObject,
    #[error("annotation {0} is not a string")]
    NotAString(&'static str),
    #[error("{source_name}={value:?}: {error}")]
    BadCidr {
        source_name: &'static str,
        value: String,
        error: CidrError,
    },
    #[error("annotation {DNS}={0:?}: expected \"true\" or \"false\"")]
    BadDnsFlag(String),
    #[error("annotation {DNS_SERVER}={0:?}: not an IP address")]
    BadDnsServer(String),
    #[error("annotation {DNS_SEARCH}={0:?}: {1:?} is not a domain name")]
    BadSearchDomain(String, String),
}

impl Request {
    pub fn from_config(config: &Value) -> Result<Self, RequestError> {
        let annotations = Annotations::of(config)?;
        let asked = match annotations.get(CIDR)? {
            Some(c) => Some(("annotation weave.cidr", c.to_owned())),
            None => env_var(config, CIDR_ENV).map(|c| ("environment variable WEAVE_CIDR", c)),
        };
        if let Some((source_name, value)) = &asked {
            let spec = cidr::parse(value).map_err(|error| RequestError::BadCidr {
                source_name,
                value: value.clone(),
                error,
            })?;
            if spec == CidrSpec::None {
                return Ok(Request::Nothing);
            }
        }
        let dns = match annotations.get(DNS)?.map(str::trim) {
            None | Some("false" | "") => false,
            Some("true") => true,
            Some(other) => return Err(RequestError::BadDnsFlag(other.to_owned())),
        };
        // weave.dns alone attaches too: the container needs the network to reach weave DNS.
        if asked.is_none() && !dns {
            return Ok(Request::Nothing);
        }
        let dns = if dns {
            Some(DnsRequest::from_annotations(&annotations)?)
        } else {
            None
        };
        Ok(Request::Attach { dns })
    }
}

impl DnsRequest {
    fn from_annotations(annotations: &Annotations) -> Result<Self, RequestError> {
        let server = annotations
            .get(DNS_SERVER)?
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|_| RequestError::BadDnsServer(s.to_owned()))
            })
            .transpose()?;
        let search = annotations.get(DNS_SEARCH)?.map(parse_search).transpose()?;
        Ok(DnsRequest { server, search })
    }
}

/// A list separated by spaces or commas; `.` alone (Docker's `--dns-search=.`) means none.
fn parse_search(value: &str) -> Result<Vec<String>, RequestError> {
    let mut domains = Vec::new();
    for d in value
        .split([' ', ',', '\t'])
        .filter(|d| !d.is_empty() && *d != ".")
    {
        if !is_domain(d) {
            return Err(RequestError::BadSearchDomain(
                value.to_owned(),
                d.to_owned(),
            ));
        }
        domains.push(d.to_owned());
    }
    Ok(domains)
}

fn is_domain(d: &str) -> bool {
    let labels_ok = d.trim_end_matches('.').split('.').all(|l| {
        (1..=63).contains(&l.len())
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    d.len() <= 253 && labels_ok
}

struct Annotations<'a>(Option<&'a serde_json::Map<String, Value>>);

impl<'a> Annotations<'a> {
    fn of(config: &'a Value) -> Result<Self, RequestError> {
        match config.get("annotations") {
            None | Some(Value::Null) => Ok(Annotations(None)),
            Some(Value::Object(map)) => Ok(Annotations(Some(map))),
            Some(_) => Err(RequestError::AnnotationsNotObject),
        }
    }

    fn get(&self, key: &'static str) -> Result<Option<&'a str>, RequestError> {
        match self.0.and_then(|m| m.get(key)) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(RequestError::NotAString(key)),
        }
    }
}

/// First `NAME=value` in `process.env`, as getenv(3) would find it in the container.
fn env_var(config: &Value, name: &str) -> Option<String> {
    config
        .pointer("/process/env")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_owned)
}
