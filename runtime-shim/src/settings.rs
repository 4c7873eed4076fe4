//! weave-runtime's own settings: the `--weave-*` flags (which can sit in daemon.json
//! `runtimeArgs`) and the environment variables, turned into typed values.

use std::ffi::{OsStr, OsString};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use crate::runc_args::ShimFlag;

/// Environment variable naming the real runtime (a flag wins over it).
pub const RUNTIME_ENV: &str = "WEAVE_RUNTIME";
/// Environment variable naming the weave-hook binary (a flag wins over it).
pub const HOOK_PATH_ENV: &str = "WEAVE_HOOK_PATH";

/// Defaults shared with weave-hook: the shim needs them to place resolv.conf files and to
/// derive the DNS address, the hook to allocate addresses and delete those files.
pub const DEFAULT_STATE_DIR: &str = "/run/weave";
pub const DEFAULT_IPALLOC_RANGE: &str = "10.32.0.0/12";

const KNOWN_FLAGS: &str = "--weave-runtime, --weave-hook-path, --weave-bridge, \
--weave-ipalloc-range, --weave-state-dir, --weave-mtu, --weave-log-level, --weave-dns-addr; --weave-help, first, prints weave-runtime's usage";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("unknown flag --weave-{0} (known: {KNOWN_FLAGS})")]
    UnknownFlag(String),
    #[error("--weave-{flag} {value:?}: {why}")]
    BadValue {
        flag: String,
        value: String,
        why: &'static str,
    },
    #[error("{HOOK_PATH_ENV}={0:?}: must be an absolute UTF-8 path")]
    RelativeHookPathEnv(PathBuf),
}

/// The settings weave-hook is started with; each is passed on only when it was given, so the
/// hook's own defaults apply otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookSettings {
    pub bridge: Option<String>,
    pub ipalloc_range: Option<Ipv4Net>,
    pub state_dir: Option<PathBuf>,
    pub mtu: Option<u32>,
    pub log_level: Option<String>,
    /// weave DNS's address on the bridge (`--dns-addr`), and the containers' nameserver.
    pub dns_addr: Option<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Program name (looked up on PATH) or path of the real runtime.
    pub runtime: OsString,
    /// Explicit weave-hook path; `None` means next to weave-runtime's own executable.
    pub hook_path: Option<PathBuf>,
    pub hook: HookSettings,
}

impl Settings {
    /// Builds the settings from the scanned flags (the last of a repeated flag wins, as in
    /// runc) and from `env`, a lookup of the process environment.
    pub fn new(
        flags: Vec<ShimFlag>,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, SettingsError> {
        let mut settings = Settings {
            runtime: env(RUNTIME_ENV)
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "runc".into()),
            hook_path: env(HOOK_PATH_ENV)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            hook: HookSettings::default(),
        };
        if let Some(p) = settings.hook_path.as_ref().filter(|p| p.is_relative()) {
            return Err(SettingsError::RelativeHookPathEnv(p.clone()));
        }
        for flag in flags {
            settings.apply(flag)?;
        }
        Ok(settings)
    }

    fn apply(&mut self, ShimFlag { name, value }: ShimFlag) -> Result<(), SettingsError> {
        let bad = |why| SettingsError::BadValue {
            flag: name.clone(),
            value: value.to_string_lossy().into_owned(),
            why,
        };
        match name.as_str() {
            "runtime" if value.is_empty() => return Err(bad("must not be empty")),
            "runtime" => self.runtime = value,
            "hook-path" => {
                self.hook_path =
                    Some(absolute(&value).ok_or_else(|| bad("must be an absolute UTF-8 path"))?)
            }
            "state-dir" => {
                self.hook.state_dir =
                    Some(absolute(&value).ok_or_else(|| bad("must be an absolute UTF-8 path"))?)
            }
            "bridge" => {
                self.hook.bridge = Some(interface_name(&value).ok_or_else(|| {
                    bad("not a valid interface name (1-15 bytes, no '/', ':' or whitespace)")
                })?)
            }
            "ipalloc-range" => {
                self.hook.ipalloc_range = Some(
                    parsed(&value).ok_or_else(|| bad("not an IPv4 CIDR such as 10.32.0.0/12"))?,
                )
            }
            "mtu" => {
                self.hook.mtu = Some(
                    parsed(&value)
                        .filter(|m| (68..=65535).contains(m))
                        .ok_or_else(|| bad("not an MTU between 68 and 65535"))?,
                )
            }
            "log-level" => {
                self.hook.log_level = Some(
                    utf8(&value)
                        .filter(|l| !l.is_empty())
                        .ok_or_else(|| bad("must be a non-empty word such as info or debug"))?,
                )
            }
            "dns-addr" => {
                self.hook.dns_addr =
                    Some(parsed(&value).ok_or_else(|| {
                        bad("not an IPv4 address with prefix such as 10.32.0.1/12")
                    })?)
            }
            _ => return Err(SettingsError::UnknownFlag(name)),
        }
        Ok(())
    }

    pub fn state_dir(&self) -> &Path {
        self.hook
            .state_dir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_STATE_DIR))
    }

    /// The DNS address containers get when their annotations do not name one: the flag
    /// (also given to the hook, which puts it on the bridge), else the first host address of
    /// the allocation range (10.32.0.1 by default), the hook's own default.
    pub fn default_dns_server(&self) -> IpAddr {
        self.hook
            .dns_addr
            .map(|a| IpAddr::V4(a.addr()))
            .unwrap_or_else(|| {
                let range = self.hook.ipalloc_range.unwrap_or_else(|| {
                    DEFAULT_IPALLOC_RANGE
                        .parse()
                        .expect("default range is a valid CIDR")
                });
                IpAddr::V4(range.trunc().hosts().next().unwrap_or(range.addr()))
            })
    }
}

impl HookSettings {
    /// weave-hook's argv for `command` (`attach` or `detach`): argv[0], the global settings
    /// flags, then the command.
    pub fn hook_args(&self, command: &str) -> Vec<String> {
        let mut args = vec!["weave-hook".to_owned()];
        if let Some(b) = &self.bridge {
            args.push(format!("--bridge={b}"));
        }
        if let Some(r) = &self.ipalloc_range {
            args.push(format!("--ipalloc-range={r}"));
        }
        if let Some(d) = &self.state_dir {
            args.push(format!("--state-dir={}", d.display()));
        }
        if let Some(m) = &self.mtu {
            args.push(format!("--mtu={m}"));
        }
        if let Some(l) = &self.log_level {
            args.push(format!("--log-level={l}"));
        }
        if let Some(a) = &self.dns_addr {
            args.push(format!("--dns-addr={a}"));
        }
        args.push(command.to_owned());
        args
    }
}

fn utf8(value: &OsStr) -> Option<String> {
    value.to_str().map(str::to_owned)
}

fn parsed<T: std::str::FromStr>(value: &OsStr) -> Option<T> {
    value.to_str()?.parse().ok()
}

/// Paths end up in hook args and mount sources, which OCI requires to be absolute UTF-8.
fn absolute(value: &OsStr) -> Option<PathBuf> {
    let s = value.to_str()?;
    s.starts_with('/').then(|| PathBuf::from(s))
}

/// The kernel's rule for interface names (dev_valid_name).
fn interface_name(value: &OsStr) -> Option<String> {
    let s = value.to_str()?;
    let ok = (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
    ok.then(|| s.to_owned())
}
