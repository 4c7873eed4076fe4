//! weave-runtime's own settings: the `--weave-*` flags (which can sit in daemon.json
//! `runtimeArgs`) and the environment variables, turned into typed values. The flags it passes
//! on to weave-hook are checked with the hook's own validators (weave-core's), so a value the
//! hook would refuse fails the `create` with one `weave-runtime:` line instead of every
//! container failing at its hook.

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use weave_core::runtime_flags::{self, RuntimeFlag};
use weave_core::settings::{self as core, HookFlag};

use crate::runc_args::ShimFlag;

/// Environment variable naming the real runtime (a flag wins over it).
pub const RUNTIME_ENV: &str = "WEAVE_RUNTIME";
/// Environment variable naming the weave-hook binary (a flag wins over it).
pub const HOOK_PATH_ENV: &str = "WEAVE_HOOK_PATH";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error(
        "unknown flag --weave-{0} (known: {known}; --weave-help, first, prints weave-runtime's usage)",
        known = runtime_flags::known()
    )]
    UnknownFlag(String),
    #[error("--weave-{flag} {value:?}: {why}")]
    BadValue {
        flag: String,
        value: String,
        why: String,
    },
    #[error("--weave-dns-addr: {0}")]
    DnsAddrInRange(String),
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
        core::check_dns_addr(settings.hook.range(), settings.hook.dns_addr)
            .map_err(SettingsError::DnsAddrInRange)?;
        Ok(settings)
    }

    fn apply(&mut self, ShimFlag { name, value }: ShimFlag) -> Result<(), SettingsError> {
        let bad = |why: String| SettingsError::BadValue {
            flag: name.clone(),
            value: value.to_string_lossy().chars().take(200).collect(),
            why,
        };
        let flag = RuntimeFlag::from_name(&name)
            .ok_or_else(|| SettingsError::UnknownFlag(name.clone()))?;
        let utf8 = || value.to_str().ok_or_else(|| bad("must be UTF-8".into()));
        match flag {
            // The real runtime is only exec'd, so its path need not be UTF-8.
            RuntimeFlag::Runtime => {
                runtime_flags::check_runtime(&value.to_string_lossy()).map_err(bad)?;
                self.runtime = value;
            }
            RuntimeFlag::HookPath => {
                self.hook_path = Some(runtime_flags::parse_hook_path(utf8()?).map_err(bad)?)
            }
            RuntimeFlag::Hook(flag) => self.hook.set(flag, utf8()?).map_err(bad)?,
        }
        Ok(())
    }

    pub fn state_dir(&self) -> &Path {
        self.hook
            .state_dir
            .as_deref()
            .unwrap_or(Path::new(core::DEFAULT_STATE_DIR))
    }

    /// The DNS address containers get when their annotations do not name one: the flag
    /// (also given to the hook, which puts it on the bridge), else the first host address of
    /// the allocation range (10.32.0.1 by default), the hook's own default.
    pub fn default_dns_server(&self) -> IpAddr {
        let dns = self
            .hook
            .dns_addr
            .unwrap_or_else(|| core::first_host(self.hook.range()));
        IpAddr::V4(dns.addr())
    }
}

impl HookSettings {
    /// Sets one flag from its text, checked with weave-hook's own validator.
    fn set(&mut self, flag: HookFlag, text: &str) -> Result<(), String> {
        match flag {
            HookFlag::Bridge => self.bridge = Some(core::parse_bridge(text)?),
            HookFlag::IpallocRange => self.ipalloc_range = Some(core::parse_range(text)?),
            HookFlag::StateDir => self.state_dir = Some(core::parse_state_dir(text)?),
            HookFlag::Mtu => self.mtu = Some(core::parse_mtu(text)?),
            HookFlag::LogLevel => self.log_level = Some(core::parse_log_level(text)?),
            HookFlag::DnsAddr => self.dns_addr = Some(core::parse_dns_addr(text)?),
        }
        Ok(())
    }

    /// The allocation range the hook will use.
    fn range(&self) -> Ipv4Net {
        self.ipalloc_range
            .unwrap_or_else(|| core::DEFAULT_RANGE.parse().expect("default range is valid"))
    }

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
