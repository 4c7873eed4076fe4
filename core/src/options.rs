//! Which weave options a container asked for, and where they came from.
//!
//! Looked up in the OCI state's annotations (runc and podman copy config.json's there),
//! else in config.json's annotations, else in `WEAVE_CIDR` of the process environment
//! (how Docker < 24, which has no `--annotation`, passes them).

use thiserror::Error;

use crate::cidr::{self, AddrRequest, CidrError, CidrSpec};
use crate::oci::{BundleConfig, OciError, State};

pub const CIDR_ANNOTATION: &str = "weave.cidr";
pub const DNS_ANNOTATION: &str = "weave.dns";
/// Extra weave DNS names (see [`crate::dns::names`]).
pub const NAMES_ANNOTATION: &str = "weave.dns.names";
/// `true`: the container's weave DNS names are shared (see [`crate::dns::claim_of`]).
pub const SHARED_ANNOTATION: &str = "weave.dns.shared";
/// weave-runtime: the nameserver of a weave DNS container's resolv.conf.
pub const DNS_SERVER_ANNOTATION: &str = "weave.dns.server";
/// weave-runtime: the search list of a weave DNS container's resolv.conf.
pub const DNS_SEARCH_ANNOTATION: &str = "weave.dns.search";
pub const CIDR_ENV: &str = "WEAVE_CIDR";
/// `default`: a weave-only container's way out, through the host's exposed address.
pub const ROUTE_ANNOTATION: &str = "weave.route";

#[derive(Debug, Error)]
pub enum OptionsError {
    #[error("bad {source_name} {value:?}: {error}")]
    Cidr {
        source_name: CidrSource,
        value: String,
        error: CidrError,
    },
    #[error("bad {DNS_ANNOTATION} annotation {0:?}: use true or false")]
    Dns(String),
    #[error("bad {ROUTE_ANNOTATION} annotation {0:?}: use default (a default route through the host's exposed address), or leave it out")]
    Route(String),
    #[error("the state names no bundle, so config.json cannot be read")]
    NoBundle,
    #[error(transparent)]
    Bundle(#[from] OciError),
}

/// Where a container's `weave.cidr` came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidrSource {
    Annotation,
    Env,
}

impl std::fmt::Display for CidrSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Annotation => "annotation weave.cidr",
            Self::Env => "environment variable WEAVE_CIDR",
        })
    }
}

/// What the container asked weave to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// No weave option, or `weave.cidr=none`.
    Nothing,
    Attach(Request),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub addrs: Vec<AddrRequest>,
    pub dns: bool,
    /// `weave.route=default`: a default route through the host's exposed address, with the
    /// container's addresses masqueraded on the host's other networks.
    pub route: bool,
}

/// The value of `NAME=value` in a process environment. When a name is defined more than once
/// the **last** definition counts: that is the value runc gives the container's process (it
/// sets the variables in order), and Docker keeps the last of repeated `-e`.
pub fn env_var<'a>(env: impl DoubleEndedIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    env.rev()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The container's `weave.cidr`: the annotation when there is one, else `WEAVE_CIDR` of its
/// environment (how Docker < 24, which has no `--annotation`, passes it).
pub fn cidr_option<'a>(
    annotation: Option<&'a str>,
    env: impl DoubleEndedIterator<Item = &'a str>,
) -> Option<(CidrSource, &'a str)> {
    match annotation {
        Some(value) => Some((CidrSource::Annotation, value)),
        None => env_var(env, CIDR_ENV).map(|value| (CidrSource::Env, value)),
    }
}

/// `weave.dns`: absent, empty or `false` is off, `true` on (spaces around are ignored).
pub fn parse_dns_flag(value: Option<&str>) -> Result<bool, OptionsError> {
    match value.map(str::trim) {
        None | Some("false" | "") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(OptionsError::Dns(other.chars().take(80).collect())),
    }
}

/// Turns the options found into what weave does: the one rule for the hook and weave-runtime.
pub fn decide(
    cidr: Option<(CidrSource, &str)>,
    dns: Option<&str>,
    route: Option<&str>,
) -> Result<Wanted, OptionsError> {
    let dns = parse_dns_flag(dns)?;
    let route = parse_route(route)?;
    let spec = match cidr {
        Some((source_name, value)) => cidr::parse(value).map_err(|error| OptionsError::Cidr {
            source_name,
            value: value.chars().take(200).collect(),
            error,
        })?,
        // weave.dns (or weave.route) alone still needs the network.
        None if dns || route => CidrSpec::Attach(vec![AddrRequest::DefaultRange]),
        None => return Ok(Wanted::Nothing),
    };
    Ok(match spec {
        CidrSpec::None => Wanted::Nothing,
        CidrSpec::Attach(addrs) => Wanted::Attach(Request { addrs, dns, route }),
    })
}

/// `weave.route`: absent or empty is none, `default` a default route through the host.
pub fn parse_route(value: Option<&str>) -> Result<bool, OptionsError> {
    match value.map(str::trim) {
        None | Some("") => Ok(false),
        Some("default") => Ok(true),
        Some(other) => Err(OptionsError::Route(other.chars().take(80).collect())),
    }
}

/// Resolves the container's weave options from its OCI state: the state's annotations (runc
/// and podman copy config.json's there), else config.json's annotations, else its
/// environment. config.json is read only when the state's annotations do not say.
pub fn resolve(state: &State) -> Result<Wanted, OptionsError> {
    let state_dns = state.annotations.get(DNS_ANNOTATION).map(String::as_str);
    let state_route = state.annotations.get(ROUTE_ANNOTATION).map(String::as_str);
    if let Some(cidr) = state.annotations.get(CIDR_ANNOTATION) {
        return decide(Some((CidrSource::Annotation, cidr)), state_dns, state_route);
    }
    let bundle = state.bundle.as_deref().ok_or(OptionsError::NoBundle)?;
    let config = BundleConfig::read(bundle)?;
    let dns = state_dns.or(config.annotations.get(DNS_ANNOTATION).map(String::as_str));
    let cidr = cidr_option(
        config.annotations.get(CIDR_ANNOTATION).map(String::as_str),
        config.env.iter().map(String::as_str),
    );
    let route = state_route.or(config.annotations.get(ROUTE_ANNOTATION).map(String::as_str));
    decide(cidr, dns, route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    fn state(annotations: &[(&str, &str)], bundle: Option<&Path>) -> State {
        State {
            id: crate::id::ContainerId::parse("c1").unwrap(),
            status: crate::oci::Status::Creating,
            pid: Some(1),
            bundle: bundle.map(Path::to_path_buf),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
        }
    }

    fn bundle_with(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    #[test]
    fn state_annotation_wins_without_reading_the_bundle() {
        let got = resolve(&state(
            &[("weave.cidr", "10.2.0.5/24")],
            Some(Path::new("/nonexistent")),
        ))
        .unwrap();
        let Wanted::Attach(req) = got else {
            panic!("expected attach")
        };
        assert_eq!(
            req.addrs,
            vec![AddrRequest::Exact("10.2.0.5/24".parse().unwrap())]
        );
        assert!(!req.dns);
    }

    #[test]
    fn falls_back_to_config_annotation_then_env() {
        let b = bundle_with(
            r#"{"annotations":{"weave.cidr":"net:10.2.0.0/24"},"process":{"env":["WEAVE_CIDR=10.9.0.1/24"]}}"#,
        );
        let Wanted::Attach(req) = resolve(&state(&[], Some(b.path()))).unwrap() else {
            panic!()
        };
        assert_eq!(
            req.addrs,
            vec![AddrRequest::Allocate("10.2.0.0/24".parse().unwrap())]
        );

        let b = bundle_with(r#"{"process":{"env":["A=B","WEAVE_CIDR=10.9.0.1/24"]}}"#);
        let Wanted::Attach(req) = resolve(&state(&[], Some(b.path()))).unwrap() else {
            panic!()
        };
        assert_eq!(
            req.addrs,
            vec![AddrRequest::Exact("10.9.0.1/24".parse().unwrap())]
        );
    }

    #[test]
    fn nothing_asked_or_none() {
        let b = bundle_with(r#"{"process":{"env":["A=B"]},"unknown":{"x":1}}"#);
        assert_eq!(
            resolve(&state(&[], Some(b.path()))).unwrap(),
            Wanted::Nothing
        );
        assert_eq!(
            resolve(&state(&[("weave.cidr", "none")], None)).unwrap(),
            Wanted::Nothing
        );
    }

    #[test]
    fn a_repeated_weave_cidr_counts_by_its_last_definition() {
        let env = [
            "WEAVE_CIDR=10.9.0.1/24",
            "PATH=/bin",
            "WEAVE_CIDR=10.9.0.2/24",
        ];
        assert_eq!(env_var(env.into_iter(), CIDR_ENV), Some("10.9.0.2/24"));
        assert_eq!(env_var(env.into_iter(), "WEAVE"), None);
        assert_eq!(env_var(["WEAVE_CIDRX=1"].into_iter(), CIDR_ENV), None);
        let b = bundle_with(
            r#"{"process":{"env":["WEAVE_CIDR=10.9.0.1/24","WEAVE_CIDR=10.9.0.2/24"]}}"#,
        );
        let Wanted::Attach(req) = resolve(&state(&[], Some(b.path()))).unwrap() else {
            panic!()
        };
        assert_eq!(
            req.addrs,
            vec![AddrRequest::Exact("10.9.0.2/24".parse().unwrap())]
        );
    }

    #[test]
    fn dns_alone_attaches_to_the_default_range() {
        let b = bundle_with(r#"{}"#);
        let Wanted::Attach(req) =
            resolve(&state(&[("weave.dns", "true")], Some(b.path()))).unwrap()
        else {
            panic!()
        };
        assert_eq!(req.addrs, vec![AddrRequest::DefaultRange]);
        assert!(req.dns);
    }

    #[test]
    fn errors_name_the_source_and_value() {
        let err = resolve(&state(&[("weave.cidr", "10.2.0.5")], None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("annotation weave.cidr \"10.2.0.5\""), "{err}");
        let b = bundle_with(r#"{"process":{"env":["WEAVE_CIDR=bogus"]}}"#);
        let err = resolve(&state(&[], Some(b.path())))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("environment variable WEAVE_CIDR \"bogus\""),
            "{err}"
        );
        let err = resolve(&state(
            &[("weave.cidr", "net:default"), ("weave.dns", "yes")],
            None,
        ))
        .unwrap_err();
        assert!(matches!(err, OptionsError::Dns(_)));
    }

    #[test]
    fn unreadable_bundle_is_an_error() {
        let err = resolve(&state(&[], Some(Path::new("/nonexistent-bundle")))).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-bundle/config.json"),
            "{err}"
        );
        let b = bundle_with("{not json");
        assert!(matches!(
            resolve(&state(&[], Some(b.path()))),
            Err(OptionsError::Bundle(OciError::BadConfig(..)))
        ));
        assert!(matches!(
            resolve(&state(&[], None)),
            Err(OptionsError::NoBundle)
        ));
    }
}
