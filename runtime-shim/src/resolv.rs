//! The resolv.conf a weave DNS container gets: weave's DNS server first, `weave.local.` first
//! in the search list, and the container's original settings after them.
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

use crate::request::WEAVE_DOMAIN;

/// resolv.conf(5): resolvers read at most this many nameserver lines.
const MAX_NAMESERVERS: usize = 3;

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
    /// given, the search list `search` instead of the original one.
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
        let mut domains = vec![WEAVE_DOMAIN.to_owned()];
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

    pub fn render(&self, container: &str) -> String {
        let mut out = format!("# Written by weave-runtime for container {container}\n");
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
