//! The resolv.conf a weave DNS container gets, by one rule for every engine (weave-runtime
//! writes it for Docker, weave-hook for podman): weave's DNS server first, `weave.local.`
//! first in the search list, and the container's original settings after them.
//!
//! Rules, so that names outside weave keep resolving:
//! - nameservers: weave's, then the original ones (minus a duplicate of weave's), cut at
//!   three because glibc and musl read no more (MAXNS). A resolver tries the next server only
//!   when one does not answer, so the originals are a fallback for when weave DNS is down.
//! - search: `weave.local.`, then `weave.dns.search` if the container set it, else the
//!   original list; duplicates dropped.
//! - options: kept as they were (Docker writes e.g. `ndots:0` there).

use std::fmt::Write;
use std::net::IpAddr;

use thiserror::Error;

use crate::options::{DNS_SEARCH_ANNOTATION as DNS_SEARCH, DNS_SERVER_ANNOTATION as DNS_SERVER};

/// The domain every weave DNS container searches first ([`crate::dns::DOMAIN`], rooted).
pub const SEARCH_DOMAIN: &str = "weave.local.";
/// Where a container's resolver reads its configuration.
pub const PATH: &str = "/etc/resolv.conf";
/// resolv.conf(5): resolvers read at most this many nameserver lines.
const MAX_NAMESERVERS: usize = 3;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChoiceError {
    #[error("annotation {DNS_SERVER}={0:?}: not an IP address")]
    BadDnsServer(String),
    #[error("annotation {DNS_SEARCH}={0:?}: {1:?} is not a domain name")]
    BadSearchDomain(String, String),
}

/// What a weave DNS container chose with its annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// `weave.dns.server`; `None` means weave DNS's own address.
    pub server: Option<IpAddr>,
    /// `weave.dns.search`: replaces the container's original search list (weave.local.
    /// stays first); `None` keeps the original list.
    pub search: Option<Vec<String>>,
}

impl Choice {
    /// Reads the values of `weave.dns.server` and `weave.dns.search`, when set.
    pub fn parse(server: Option<&str>, search: Option<&str>) -> Result<Self, ChoiceError> {
        let server = server
            .map(|s| {
                s.trim()
                    .parse()
                    .map_err(|_| ChoiceError::BadDnsServer(s.chars().take(80).collect()))
            })
            .transpose()?;
        let search = search.map(parse_search).transpose()?;
        Ok(Choice { server, search })
    }
}

/// A list separated by spaces or commas; `.` alone (Docker's `--dns-search=.`) means none.
fn parse_search(value: &str) -> Result<Vec<String>, ChoiceError> {
    let mut domains = Vec::new();
    for d in value
        .split([' ', ',', '\t'])
        .filter(|d| !d.is_empty() && *d != ".")
    {
        if !is_domain(d) {
            return Err(ChoiceError::BadSearchDomain(
                value.chars().take(80).collect(),
                d.chars().take(80).collect(),
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

/// Where a container's /etc/resolv.conf comes from, in config.json's `mounts`: the source of
/// the last mount on it (mounted last, so the one the container sees), as written there.
pub fn mount_source(mounts: &[serde_json::Value]) -> Option<&str> {
    mounts
        .iter()
        .rev()
        .filter(|m| is_resolv_mount(m))
        .find_map(|m| m.get("source").and_then(serde_json::Value::as_str))
}

/// Whether a `mounts` entry mounts something on /etc/resolv.conf.
pub fn is_resolv_mount(mount: &serde_json::Value) -> bool {
    mount
        .get("destination")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|d| std::path::Path::new(d) == std::path::Path::new(PATH))
}

/// The parts of a resolv.conf that weave keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text leniently, like the C resolver: unknown lines are ignored and,
    /// of several `search`/`domain` lines, the last one wins.
    pub fn parse(text: &str) -> Self {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(str::to_owned)),
                Some("search" | "domain") => conf.search = words.map(str::to_owned).collect(),
                Some("options") => conf.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        conf
    }

    /// The weave version of `self` for a container using the DNS server `server` and, when
    /// given, the search list `search` instead of the original one. Applying it to its own
    /// result changes nothing, so a container started again keeps the same file.
    pub fn for_weave(&self, server: IpAddr, search: Option<&[String]>) -> ResolvConf {
        let server = server.to_string();
        let mut nameservers = vec![server.clone()];
        for ns in &self.nameservers {
            if nameservers.len() == MAX_NAMESERVERS {
                break;
            }
            if !nameservers.contains(ns) {
                nameservers.push(ns.clone());
            }
        }
        let mut domains = vec![SEARCH_DOMAIN.to_owned()];
        for d in search.unwrap_or(&self.search) {
            let same = |known: &String| known.trim_end_matches('.') == d.trim_end_matches('.');
            if !domains.iter().any(same) {
                domains.push(d.clone());
            }
        }
        ResolvConf {
            nameservers,
            search: domains,
            options: self.options.clone(),
        }
    }

    /// The file's text, headed by a comment naming the program that wrote it.
    pub fn render(&self, program: &str, container: &str) -> String {
        let mut out = format!("# Written by {program} for container {container}\n");
        for ns in &self.nameservers {
            let _ = writeln!(out, "nameserver {ns}");
        }
        if !self.search.is_empty() {
            let _ = writeln!(out, "search {}", self.search.join(" "));
        }
        if !self.options.is_empty() {
            let _ = writeln!(out, "options {}", self.options.join(" "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_domain_is_weaves_rooted() {
        assert_eq!(SEARCH_DOMAIN, format!("{}.", crate::dns::DOMAIN));
    }

    #[test]
    fn parsing_ignores_comments_and_unknown_lines_and_keeps_the_last_search() {
        let conf = ResolvConf::parse(
            "# comment\nnameserver 1.1.1.1 # trailing\n; other comment\nsortlist 10.0.0.0\n\
             domain old.example\nsearch a.example b.example\nnameserver 8.8.8.8\n\
             options ndots:1\noptions edns0\n",
        );
        assert_eq!(conf.nameservers, ["1.1.1.1", "8.8.8.8"]);
        assert_eq!(conf.search, ["a.example", "b.example"]);
        assert_eq!(conf.options, ["ndots:1", "edns0"]);
    }

    #[test]
    fn weave_comes_first_duplicates_go_and_three_nameservers_at_most() {
        let conf = ResolvConf::parse(
            "nameserver 10.32.0.1\nnameserver 1.1.1.1\nnameserver 8.8.8.8\nnameserver 9.9.9.9\n\
             search weave.local corp.example\n",
        );
        let weave = conf.for_weave("10.32.0.1".parse().unwrap(), None);
        assert_eq!(weave.nameservers, ["10.32.0.1", "1.1.1.1", "8.8.8.8"]);
        assert_eq!(weave.search, ["weave.local.", "corp.example"]);
    }

    #[test]
    fn the_rules_applied_twice_give_the_same_file() {
        let conf = ResolvConf::parse("nameserver 1.1.1.1\nsearch a.example\noptions ndots:0\n");
        let once = conf.for_weave("10.32.0.1".parse().unwrap(), None);
        let text = once.render("weave-hook", "c1");
        let twice = ResolvConf::parse(&text).for_weave("10.32.0.1".parse().unwrap(), None);
        assert_eq!(once, twice);
    }

    #[test]
    fn an_explicit_search_list_replaces_the_original_one() {
        let conf = ResolvConf::parse("search corp.example\n");
        let search = vec!["a.example".to_owned()];
        let weave = conf.for_weave("10.2.0.53".parse().unwrap(), Some(&search));
        assert_eq!(weave.search, ["weave.local.", "a.example"]);
        assert_eq!(
            weave.render("weave-runtime", "c1"),
            "# Written by weave-runtime for container c1\nnameserver 10.2.0.53\nsearch weave.local. a.example\n"
        );
    }

    #[test]
    fn ipv6_servers_are_written_as_such() {
        let weave = ResolvConf::default().for_weave("fd00::53".parse().unwrap(), None);
        assert_eq!(weave.nameservers, ["fd00::53"]);
    }

    #[test]
    fn choices_are_checked() {
        let c = Choice::parse(Some(" 10.2.0.53 "), Some("a.example, b.example .")).unwrap();
        assert_eq!(c.server, Some("10.2.0.53".parse().unwrap()));
        assert_eq!(c.search.unwrap(), ["a.example", "b.example"]);
        assert!(matches!(
            Choice::parse(Some("dns.example"), None),
            Err(ChoiceError::BadDnsServer(_))
        ));
        assert!(matches!(
            Choice::parse(None, Some("a..b")),
            Err(ChoiceError::BadSearchDomain(..))
        ));
        assert_eq!(Choice::parse(None, None).unwrap(), Choice::default());
    }
}
