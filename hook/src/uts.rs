//! The hostname of a container's UTS namespace: a pod's containers have none in config.json
//! and join the pod's namespace, which has the pod's hostname.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use nix::sched::{setns, CloneFlags};

/// The hostname of the UTS namespace of process `pid`, or `None` when that namespace is the
/// hook's own (the host's name is not the container's). Read by a short-lived thread that
/// enters the namespace (a UTS namespace is per thread), so the hook's threads never change
/// theirs. What it returns is chosen by whoever made the namespace, as `--hostname` would be:
/// callers apply the name rules of `weave_core::dns` to it.
pub fn hostname_of(pid: i32) -> io::Result<Option<String>> {
    let theirs = File::open(format!("/proc/{pid}/ns/uts"))?;
    let ours = File::open("/proc/thread-self/ns/uts")?;
    let (a, b) = (theirs.metadata()?, ours.metadata()?);
    if a.dev() == b.dev() && a.ino() == b.ino() {
        return Ok(None);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(theirs.as_fd(), CloneFlags::CLONE_NEWUTS).map_err(io::Error::from)?;
                let name = nix::unistd::gethostname().map_err(io::Error::from)?;
                Ok(Some(name.to_string_lossy().into_owned()))
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the thread reading the hostname panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_s_own_namespace_gives_no_name() {
        assert_eq!(hostname_of(std::process::id() as i32).unwrap(), None);
    }

    /// Kills and reaps the child on every way out of the test.
    struct Reaped(std::process::Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn another_namespace_gives_its_hostname_and_the_hook_keeps_its_own() {
        if !weave_e2e::root_or_skip("another_namespace_gives_its_hostname") {
            return;
        }
        let child = std::process::Command::new("unshare")
            .args(["--uts", "sh", "-c", "hostname Pod-Host && exec sleep 30"])
            .spawn()
            .unwrap();
        let child = Reaped(child);
        let pid = child.0.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep"))
        {
            assert!(std::time::Instant::now() < deadline, "sleep never ran");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let ours = nix::unistd::gethostname().unwrap();
        assert_eq!(
            hostname_of(pid as i32).unwrap().as_deref(),
            Some("Pod-Host")
        );
        assert_eq!(nix::unistd::gethostname().unwrap(), ours);
    }

    #[test]
    fn a_gone_process_is_an_error() {
        assert!(hostname_of(i32::MAX).is_err());
    }
}
