//! Where queries outside weave go: the `--upstream` flags, else the nameservers of the
//! host's resolv.conf, re-read when that file changes (a laptop's resolvers come and go,
//! and weave-dns lives long).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// resolv.conf is looked at no more often than this.
const RECHECK: Duration = Duration::from_secs(2);
/// Resolvers read at most three nameservers (MAXNS); so do we.
pub const MAX_UPSTREAMS: usize = 3;

pub enum Upstreams {
    Fixed(Arc<Vec<SocketAddr>>),
    ResolvConf {
        path: PathBuf,
        /// Never forward to ourselves: a host may list weave DNS in its own resolv.conf.
        own: IpAddr,
        cache: Mutex<Cache>,
    },
}

pub struct Cache {
    checked: Option<Instant>,
    modified: Option<SystemTime>,
    servers: Arc<Vec<SocketAddr>>,
}

impl Upstreams {
    pub fn fixed(servers: Vec<SocketAddr>) -> Self {
        Self::Fixed(Arc::new(servers))
    }

    pub fn resolv_conf(path: PathBuf, own: IpAddr) -> Self {
        Self::ResolvConf {
            path,
            own,
            cache: Mutex::new(Cache {
                checked: None,
                modified: None,
                servers: Arc::default(),
            }),
        }
    }

    /// The servers to ask, in order.
    pub fn current(&self) -> Arc<Vec<SocketAddr>> {
        match self {
            Self::Fixed(servers) => servers.clone(),
            Self::ResolvConf { path, own, cache } => {
                let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.checked.is_some_and(|t| t.elapsed() < RECHECK) {
                    return cache.servers.clone();
                }
                cache.checked = Some(Instant::now());
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if modified != cache.modified || cache.modified.is_none() {
                    let text = std::fs::read_to_string(path).unwrap_or_default();
                    cache.servers = Arc::new(nameservers(&text, *own));
                    cache.modified = modified;
                    tracing::info!(path = %path.display(), servers = ?cache.servers, "upstream resolvers");
                }
                cache.servers.clone()
            }
        }
    }
}

/// The usable `nameserver` lines of resolv.conf text, port 53, at most three.
pub fn nameservers(text: &str, own: IpAddr) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            // Scoped IPv6 (fe80::1%eth0) is not parsed by IpAddr: skipped.
            words.next()?.parse::<IpAddr>().ok()
        })
        .filter(|ip| *ip != own && !ip.is_unspecified())
        .map(|ip| SocketAddr::new(ip, 53))
        .take(MAX_UPSTREAMS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let own: IpAddr = "10.32.0.1".parse().unwrap();
        let text = "# comment\nsearch example.com\nnameserver 10.32.0.1\nnameserver 192.0.2.53\n\
                    nameserver fe80::1%eth0\nnameserver 2001:db8::53\nnameserver bogus\n\
                    nameserver 0.0.0.0\nnameserver 192.0.2.54\nnameserver 192.0.2.55\n";
        assert_eq!(
            nameservers(text, own),
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
                "192.0.2.54:53".parse().unwrap(),
            ]
        );
        assert!(nameservers("", own).is_empty());
    }

    #[test]
    fn a_changed_resolv_conf_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 192.0.2.1\n").unwrap();
        let up = Upstreams::resolv_conf(path.clone(), "10.32.0.1".parse().unwrap());
        assert_eq!(up.current()[0], "192.0.2.1:53".parse().unwrap());
        std::fs::write(&path, "nameserver 192.0.2.2\n").unwrap();
        let past = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(past)
            .unwrap();
        if let Upstreams::ResolvConf { cache, .. } = &up {
            cache.lock().unwrap().checked = None;
        }
        assert_eq!(up.current()[0], "192.0.2.2:53".parse().unwrap());
    }
}
