//! Weave DNS names: the one rule for what a container may register, shared by weave-hook
//! (which records the names) and weave-dns (which answers them).

use thiserror::Error;

use crate::oci::{BundleConfig, OciError, State};
use crate::options::{NAMES_ANNOTATION, SHARED_ANNOTATION};

/// The domain weave DNS answers for (weave's own).
pub const DOMAIN: &str = "weave.local";
/// At most this many names in `weave.dns.names`.
pub const MAX_NAMES: usize = 16;
/// A DNS label's limit (RFC 1035).
pub const MAX_LABEL: usize = 63;
const MAX_NAMES_TEXT: usize = 1024;

#[derive(Debug, Error)]
pub enum NamesError {
    #[error("bad {NAMES_ANNOTATION} annotation {value:?}: {why}")]
    BadNames { value: String, why: String },
    #[error("bad {SHARED_ANNOTATION} annotation {0:?}: use true or false")]
    BadShared(String),
    #[error("the state names no bundle, so the hostname in config.json cannot be read")]
    NoBundle,
    #[error(transparent)]
    Bundle(#[from] OciError),
    #[error("the container has no hostname in config.json and joins another UTS namespace (a pod's), whose hostname cannot be read: {0}")]
    JoinedHostname(#[source] std::io::Error),
}

/// Reduces a name to the one lowercase label weave stores: letters, digits and '-' (not at
/// either end), 1 to 63 bytes. `web.weave.local` and a trailing dot are accepted as `web`.
pub fn label(text: &str) -> Result<String, &'static str> {
    let lower = text.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let name = name
        .strip_suffix(DOMAIN)
        .and_then(|n| n.strip_suffix('.'))
        .unwrap_or(name);
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > MAX_LABEL {
        return Err("is longer than 63 bytes, a DNS label's limit");
    }
    if name.contains('.') {
        return Err("has a dot: give one label, as in web (found as web.weave.local)");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may only hold letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("may not start or end with '-'");
    }
    Ok(name.to_string())
}

/// The names a weave DNS container registers: its hostname, when that is a valid name (a
/// hostname is not a weave option, so one that is not a DNS label is skipped, not refused),
/// then the names of `weave.dns.names` (spaces or commas between them), without duplicates.
pub fn names(hostname: Option<&str>, annotation: Option<&str>) -> Result<Vec<String>, NamesError> {
    let mut names = Vec::new();
    if let Some(host) = hostname {
        match label(host) {
            Ok(name) => names.push(name),
            Err(why) => tracing::info!(%host, why, "hostname is not a DNS name; not registered"),
        }
    }
    let Some(value) = annotation else {
        return Ok(names);
    };
    let bad = |why: String| NamesError::BadNames {
        value: value.chars().take(80).collect(),
        why,
    };
    if value.len() > MAX_NAMES_TEXT {
        return Err(bad(format!("longer than {MAX_NAMES_TEXT} bytes")));
    }
    let words: Vec<&str> = value
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    if words.len() > MAX_NAMES {
        return Err(bad(format!("more than {MAX_NAMES} names")));
    }
    for word in words {
        let name = label(word).map_err(|why| bad(format!("{word:?} {why}")))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// What a weave DNS container claims: its names, and whether it shares them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    pub names: Vec<String>,
    /// `weave.dns.shared=true`: answered together with the other containers that share the
    /// name. Otherwise the first live claimant holds a name alone (weave-dns decides, from
    /// every record, at each answer).
    pub shared: bool,
}

/// `weave.dns.shared`: absent, empty or `false` is off, `true` on (spaces around ignored).
pub fn parse_shared(value: Option<&str>) -> Result<bool, NamesError> {
    match value.map(str::trim) {
        None | Some("false" | "") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(NamesError::BadShared(other.chars().take(80).collect())),
    }
}

/// The claim of the container the state describes: hostname from its config.json (when it has
/// none and joins an existing UTS namespace, as a pod's containers join the pod's, that
/// namespace's hostname, which `joined_hostname` reads: it is called only then), and the
/// `weave.dns.names` and `weave.dns.shared` annotations of the state, else of config.json.
pub fn claim_of(
    state: &State,
    joined_hostname: impl FnOnce() -> std::io::Result<Option<String>>,
) -> Result<Claim, NamesError> {
    let bundle = state.bundle.as_deref().ok_or(NamesError::NoBundle)?;
    let config = BundleConfig::read(bundle)?;
    let hostname = match (&config.hostname, config.joins_uts) {
        (None, true) => joined_hostname().map_err(NamesError::JoinedHostname)?,
        (hostname, _) => hostname.clone(),
    };
    let annotation = |key: &str| {
        state
            .annotations
            .get(key)
            .or_else(|| config.annotations.get(key))
            .map(String::as_str)
    };
    Ok(Claim {
        names: names(hostname.as_deref(), annotation(NAMES_ANNOTATION))?,
        shared: parse_shared(annotation(SHARED_ANNOTATION))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(label("Web").unwrap(), "web");
        assert_eq!(label("web.weave.local").unwrap(), "web");
        assert_eq!(label("WEB.Weave.Local.").unwrap(), "web");
        assert_eq!(label("a-1").unwrap(), "a-1");
        assert_eq!(label("0123456789ab").unwrap(), "0123456789ab");
        assert_eq!(label(&"a".repeat(63)).unwrap().len(), 63);
        for bad in [
            "",
            ".",
            "weave.local",
            &"a".repeat(64),
            "a.b",
            "a_b",
            "-a",
            "a-",
            "é",
            "a b",
            "a\0",
            "web.example.com",
        ] {
            assert!(label(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_from_hostname_and_annotation() {
        assert_eq!(
            names(Some("Web"), Some("db, cache  web,api.weave.local")).unwrap(),
            ["web", "db", "cache", "api"]
        );
        // A hostname that is no DNS label is skipped; the container still gets its names.
        assert_eq!(names(Some("host.example.com"), Some("b")).unwrap(), ["b"]);
        assert_eq!(names(None, None).unwrap(), Vec::<String>::new());
        assert_eq!(names(None, Some(" , ")).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn bad_annotation_names_are_refused_with_the_culprit() {
        let err = names(None, Some("ok, bad_name")).unwrap_err().to_string();
        assert!(err.contains("weave.dns.names"), "{err}");
        assert!(err.contains("\"bad_name\""), "{err}");
        let many = (0..17)
            .map(|i| format!("n{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(names(None, Some(&many))
            .unwrap_err()
            .to_string()
            .contains("more than 16"));
        let long = "a,".repeat(600);
        assert!(names(None, Some(&long))
            .unwrap_err()
            .to_string()
            .contains("1024 bytes"));
    }

    fn not_asked() -> std::io::Result<Option<String>> {
        panic!("the joined UTS namespace's hostname was read")
    }

    #[test]
    fn a_pod_member_without_hostname_gets_its_joined_namespace_s() {
        let dir = tempfile::tempdir().unwrap();
        let config = |text: &str| std::fs::write(dir.path().join("config.json"), text).unwrap();
        let mut state = State::parse(br#"{"id":"c","status":"creating","pid":1}"#).unwrap();
        state.bundle = Some(dir.path().to_path_buf());
        let pod = r#"{"hostname":null,"linux":{"namespaces":[{"type":"network","path":"/proc/9/ns/net"},{"type":"uts","path":"/proc/9/ns/uts"}]}}"#;
        config(pod);
        let claim = claim_of(&state, || Ok(Some("MyPod".into()))).unwrap();
        assert_eq!(claim.names, ["mypod"]);
        // The namespace's hostname obeys the same rule as config.json's.
        let claim = claim_of(&state, || Ok(Some("pod.example.com".into()))).unwrap();
        assert!(claim.names.is_empty());
        let err = claim_of(&state, || {
            Err(std::io::Error::from_raw_os_error(libc::ESRCH))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("joins another UTS namespace"), "{err}");
        // A hostname of its own wins; a new UTS namespace (no path) or none has the host's
        // name, which is not the container's: neither is read.
        config(
            r#"{"hostname":"web","linux":{"namespaces":[{"type":"uts","path":"/proc/9/ns/uts"}]}}"#,
        );
        assert_eq!(claim_of(&state, not_asked).unwrap().names, ["web"]);
        config(r#"{"linux":{"namespaces":[{"type":"uts"},{"type":"network","path":"/x"}]}}"#);
        assert!(claim_of(&state, not_asked).unwrap().names.is_empty());
        config(r#"{"linux":{"namespaces":[{"type":"uts","path":""}]}}"#);
        assert!(claim_of(&state, not_asked).unwrap().names.is_empty());
        config(r#"{"hostname":"","linux":{}}"#);
        assert!(claim_of(&state, not_asked).unwrap().names.is_empty());
    }

    #[test]
    fn claim_of_reads_hostname_and_annotations_from_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"hostname":"c0ffee123456","annotations":{"weave.dns.names":"web","weave.dns.shared":"true"}}"#,
        )
        .unwrap();
        let mut state = State::parse(br#"{"id":"c","status":"creating","pid":1}"#).unwrap();
        state.bundle = Some(dir.path().to_path_buf());
        let claim = claim_of(&state, not_asked).unwrap();
        assert_eq!(claim.names, ["c0ffee123456", "web"]);
        assert!(claim.shared);
        state
            .annotations
            .insert(NAMES_ANNOTATION.into(), "api".into());
        state
            .annotations
            .insert(SHARED_ANNOTATION.into(), "false".into());
        let claim = claim_of(&state, not_asked).unwrap();
        assert_eq!(claim.names, ["c0ffee123456", "api"]);
        assert!(!claim.shared);
        state
            .annotations
            .insert(SHARED_ANNOTATION.into(), "yes".into());
        let err = claim_of(&state, not_asked).unwrap_err().to_string();
        assert!(
            err.contains("bad weave.dns.shared annotation \"yes\""),
            "{err}"
        );
        state.bundle = None;
        assert!(matches!(
            claim_of(&state, not_asked),
            Err(NamesError::NoBundle)
        ));
    }
}
