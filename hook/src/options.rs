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
pub const CIDR_ENV: &str = "WEAVE_CIDR";

#[derive(Debug, Error)]
pub enum OptionsError {
    #[error("bad {source_name} {value:?}: {error}")]
    Cidr {
        source_name: &'static str,
        value: String,
        error: CidrError,
    },
    #[error("bad {DNS_ANNOTATION} annotation {0:?}: use true or false")]
    Dns(String),
    #[error("the state names no bundle, so config.json cannot be read")]
    NoBundle,
    #[error(transparent)]
    Bundle(#[from] OciError),
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
}

/// Resolves the container's weave options from its state, reading config.json only when
/// the state's annotations do not say.
pub fn resolve(state: &State) -> Result<Wanted, OptionsError> {
    let state_dns = state.annotations.get(DNS_ANNOTATION).map(String::as_str);
    if let Some(cidr) = state.annotations.get(CIDR_ANNOTATION) {
        return decide(Some(("annotation weave.cidr", cidr)), state_dns);
    }
    let bundle = state.bundle.as_deref().ok_or(OptionsError::NoBundle)?;
    let config = BundleConfig::read(bundle)?;
    let dns = state_dns.or(config.annotations.get(DNS_ANNOTATION).map(String::as_str));
    let cidr = match config.annotations.get(CIDR_ANNOTATION) {
        Some(v) => Some(("annotation weave.cidr", v.as_str())),
        None => config
            .env_var(CIDR_ENV)
            .map(|v| ("environment variable WEAVE_CIDR", v)),
    };
    decide(cidr, dns)
}

fn decide(cidr: Option<(&'static str, &str)>, dns: Option<&str>) -> Result<Wanted, OptionsError> {
    let dns = match dns.map(str::trim) {
        None | Some("false") | Some("") => false,
        Some("true") => true,
        Some(other) => return Err(OptionsError::Dns(other.to_string())),
    };
    let spec = match cidr {
        Some((source_name, value)) => cidr::parse(value).map_err(|error| OptionsError::Cidr {
            source_name,
            value: value.to_string(),
            error,
        })?,
        // weave.dns alone still needs the network to reach weave's DNS.
        None if dns => CidrSpec::Attach(vec![AddrRequest::DefaultRange]),
        None => return Ok(Wanted::Nothing),
    };
    Ok(match spec {
        CidrSpec::None => Wanted::Nothing,
        CidrSpec::Attach(addrs) => Wanted::Attach(Request { addrs, dns }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    fn state(annotations: &[(&str, &str)], bundle: Option<&Path>) -> State {
        State {
            id: crate::oci::ContainerId::parse("c1").unwrap(),
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
