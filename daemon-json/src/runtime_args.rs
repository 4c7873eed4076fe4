//! `--runtime-arg` values, checked as weave-runtime will read them from daemon.json
//! `runtimeArgs` (weave-core's one definition of its flags and their validators): a value it
//! would refuse is refused here, before anything is written or reloaded, instead of failing
//! every `docker run --runtime weave` afterwards.
//!
//! dockerd puts `runtimeArgs` before runc's own global flags, so weave-runtime would hand
//! anything that is not one of its `--weave-*` flags to runc; weave-setup accepts only its
//! flags, each as `--weave-NAME=VALUE` or as `--weave-NAME` followed by the value.

use thiserror::Error;
use weave_core::runtime_flags::{self, RuntimeFlag, PREFIX};
use weave_core::settings::{self as core, HookFlag};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RuntimeArgError {
    #[error(
        "--runtime-arg={given}: weave-runtime's flags start with {PREFIX}: use \
         --runtime-arg={suggestion}; nothing was changed"
    )]
    MissingPrefix { given: String, suggestion: String },
    #[error(
        "--runtime-arg={0}: not a flag of weave-runtime (known: {known}); nothing was changed",
        known = runtime_flags::known()
    )]
    Unknown(String),
    #[error(
        "--runtime-arg={0} needs a value: --runtime-arg={0}=VALUE, or the value as the next \
         --runtime-arg; nothing was changed"
    )]
    MissingValue(RuntimeFlag),
    #[error("--runtime-arg={flag}={value}: {why}; nothing was changed")]
    BadValue {
        flag: RuntimeFlag,
        value: String,
        why: String,
    },
    #[error("--runtime-arg={flag}: {0}; nothing was changed", flag = RuntimeFlag::Hook(HookFlag::DnsAddr))]
    DnsAddrInRange(String),
}

/// Checks `args` in order, as weave-runtime scans them (the last of a repeated flag wins).
pub fn check(args: &[String]) -> Result<(), RuntimeArgError> {
    let mut range = None;
    let mut dns_addr = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, value) = flag_and_value(arg, &mut iter)?;
        flag.check(value).map_err(|why| RuntimeArgError::BadValue {
            flag,
            value: value.chars().take(200).collect(),
            why,
        })?;
        // Both parses succeed: the values were just checked.
        match flag {
            RuntimeFlag::Hook(HookFlag::IpallocRange) => range = core::parse_range(value).ok(),
            RuntimeFlag::Hook(HookFlag::DnsAddr) => dns_addr = core::parse_dns_addr(value).ok(),
            _ => {}
        }
    }
    let range =
        range.unwrap_or_else(|| core::DEFAULT_RANGE.parse().expect("default range is valid"));
    core::check_dns_addr(range, dns_addr).map_err(RuntimeArgError::DnsAddrInRange)
}

/// The weave-hook path `args` give weave-runtime (`--weave-hook-path`, the last one wins), if
/// any; arguments that are not weave-runtime's flags are passed over.
pub fn hook_path(args: &[String]) -> Option<&str> {
    let mut found = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if let Ok((RuntimeFlag::HookPath, value)) = flag_and_value(arg, &mut iter) {
            found = Some(value);
        }
    }
    found
}

/// The flag `arg` names and its value: after `=`, or the next argument.
fn flag_and_value<'a>(
    arg: &'a str,
    rest: &mut impl Iterator<Item = &'a String>,
) -> Result<(RuntimeFlag, &'a str), RuntimeArgError> {
    let Some(body) = arg.strip_prefix(PREFIX) else {
        return Err(misspelled(arg, rest));
    };
    let (name, inline) = split(body);
    let flag = RuntimeFlag::from_name(name).ok_or_else(|| RuntimeArgError::Unknown(arg.into()))?;
    match inline.or_else(|| rest.next().map(String::as_str)) {
        Some(value) => Ok((flag, value)),
        None => Err(RuntimeArgError::MissingValue(flag)),
    }
}

/// The error for an argument without [`PREFIX`]: the right spelling when it names one of
/// weave-runtime's flags anyway (`--bridge=weave`, weave-hook's own spelling, or
/// `-weave-bridge=weave`), else the list of flags.
fn misspelled<'a>(arg: &str, rest: &mut impl Iterator<Item = &'a String>) -> RuntimeArgError {
    // Without a dash it is no flag at all: the empty name matches none.
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'));
    let (name, inline) = split(body.unwrap_or_default());
    let Some(flag) = RuntimeFlag::from_name(name.strip_prefix("weave-").unwrap_or(name)) else {
        return RuntimeArgError::Unknown(arg.into());
    };
    let value = inline.or_else(|| rest.next().map(String::as_str));
    RuntimeArgError::MissingPrefix {
        given: arg.into(),
        suggestion: format!("{flag}={}", value.unwrap_or("VALUE")),
    }
}

/// `NAME=VALUE` or `NAME`.
fn split(body: &str) -> (&str, Option<&str>) {
    match body.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (body, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_strs(args: &[&str]) -> Result<(), RuntimeArgError> {
        check(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn the_last_hook_path_is_the_one_weave_runtime_uses() {
        let args = |a: &[&str]| a.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(hook_path(&args(&["--weave-bridge=wv0"])), None);
        assert_eq!(
            hook_path(&args(&[
                "--weave-hook-path",
                "/a/weave-hook",
                "--bogus",
                "--weave-hook-path=/b/weave-hook",
                "--weave-mtu",
                "1400",
            ])),
            Some("/b/weave-hook")
        );
    }

    #[test]
    fn both_spellings_of_every_flag_are_accepted() {
        assert_eq!(check_strs(&[]), Ok(()));
        assert_eq!(
            check_strs(&[
                "--weave-bridge=wv0",
                "--weave-ipalloc-range",
                "10.40.0.0/16",
                "--weave-dns-addr=10.40.0.1/16",
                "--weave-state-dir=/run/w",
                "--weave-mtu",
                "1400",
                "--weave-log-level=info",
                "--weave-runtime",
                "/usr/bin/runc",
                "--weave-hook-path=/usr/local/bin/weave-hook",
            ]),
            Ok(())
        );
    }

    #[test]
    fn a_flag_without_the_prefix_is_refused_with_the_right_spelling() {
        let suggestion = |args: &[&str]| match check_strs(args) {
            Err(RuntimeArgError::MissingPrefix { suggestion, .. }) => suggestion,
            other => panic!("{args:?}: {other:?}"),
        };
        assert_eq!(suggestion(&["--bridge=weave"]), "--weave-bridge=weave");
        assert_eq!(suggestion(&["-weave-mtu=1400"]), "--weave-mtu=1400");
        assert_eq!(
            suggestion(&["--ipalloc-range", "10.40.0.0/16"]),
            "--weave-ipalloc-range=10.40.0.0/16"
        );
        assert_eq!(suggestion(&["--bridge"]), "--weave-bridge=VALUE");
        assert_eq!(suggestion(&["--state-dir="]), "--weave-state-dir=");
    }

    #[test]
    fn unknown_flags_missing_values_and_bad_values() {
        for arg in [
            "--debug",
            "--weave-colour=x",
            "--weave-help",
            "weave",
            "-",
            "",
        ] {
            assert_eq!(
                check_strs(&[arg]),
                Err(RuntimeArgError::Unknown(arg.into())),
                "{arg:?}"
            );
        }
        assert_eq!(
            check_strs(&["--weave-mtu"]),
            Err(RuntimeArgError::MissingValue(RuntimeFlag::Hook(
                HookFlag::Mtu
            )))
        );
        // As weave-runtime reads it: the next element is the value, whatever it looks like.
        assert!(matches!(
            check_strs(&["--weave-bridge", "--weave-mtu=1400"]),
            Err(RuntimeArgError::BadValue { .. })
        ));
        assert!(matches!(
            check_strs(&["--weave-ipalloc-range=10.32.5.0/12"]),
            Err(RuntimeArgError::BadValue { .. })
        ));
    }

    #[test]
    fn dns_addr_is_checked_against_the_last_range_given() {
        assert!(matches!(
            check_strs(&["--weave-dns-addr=10.32.0.9/12"]),
            Err(RuntimeArgError::DnsAddrInRange(_))
        ));
        assert_eq!(
            check_strs(&[
                "--weave-dns-addr=10.32.0.9/12",
                "--weave-ipalloc-range=10.32.0.0/12",
                "--weave-ipalloc-range=10.40.0.0/16",
            ]),
            Ok(())
        );
    }
}
