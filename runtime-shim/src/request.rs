//! What a container asks of weave, read from its config.json: the `weave.*` annotations, else
//! `WEAVE_CIDR` in `process.env` (the env fallback of Docker < 24, which has no
//! `--annotation`).
//!
//! The options are read and decided by weave-core's rules, the hook's own, so the shim and the
//! hook agree on what opts out (`none`), which of repeated `WEAVE_CIDR` counts, and a bad value
//! fails the create before runc runs, config.json untouched.

use serde_json::Value;
use weave_core::options::{
    self, OptionsError, Wanted, CIDR_ANNOTATION as CIDR, DNS_ANNOTATION as DNS,
    DNS_SEARCH_ANNOTATION as DNS_SEARCH, DNS_SERVER_ANNOTATION as DNS_SERVER,
};
use weave_core::resolv::{Choice, ChoiceError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// No weave options, or `weave.cidr=none`: leave the bundle exactly as it is.
    Nothing,
    Attach {
        dns: Option<Choice>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("config.json: \"annotations\" is not an object of strings")]
    AnnotationsNotObject,
    #[error("annotation {0} is not a string")]
    NotAString(&'static str),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(transparent)]
    Dns(#[from] ChoiceError),
}

impl Request {
    pub fn from_config(config: &Value) -> Result<Self, RequestError> {
        let annotations = Annotations::of(config)?;
        let env = env_entries(config);
        let cidr = options::cidr_option(annotations.get(CIDR)?, env.iter().copied());
        let route = annotations.get(options::ROUTE_ANNOTATION)?;
        let wanted = options::decide(cidr, annotations.get(DNS)?, route)?;
        let dns = match wanted {
            Wanted::Nothing => return Ok(Request::Nothing),
            Wanted::Attach(request) => request.dns,
        };
        let dns = match dns {
            true => Some(Choice::parse(
                annotations.get(DNS_SERVER)?,
                annotations.get(DNS_SEARCH)?,
            )?),
            false => None,
        };
        Ok(Request::Attach { dns })
    }
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

/// The strings of `process.env` (what is not a string is not a variable runc would set).
fn env_entries(config: &Value) -> Vec<&str> {
    config
        .pointer("/process/env")
        .and_then(Value::as_array)
        .map(|env| env.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}
