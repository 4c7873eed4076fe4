//! Where the benchmark runs, away from the machine's real network.
//!
//! A [`Host`] is an anonymous network namespace standing in for the machine: the bridges,
//! host veths and firewall rules of every method live there. A [`Container`] is a sleeping
//! process in a fresh network namespace of its own. Nothing gets a name under /run/netns and
//! nothing is mounted: a namespace lives as long as a process or an open file of weave-bench
//! holds it, container processes are killed by the kernel when weave-bench dies
//! (PR_SET_PDEATHSIG), so even a crash leaves no namespace, bridge, veth or rule behind.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// Enters the network namespace of `ns` on the calling thread.
fn setns(ns: &File) -> io::Result<()> {
    // SAFETY: setns on a file descriptor we own.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The network namespace the calling thread is in.
fn current_netns() -> io::Result<File> {
    File::open("/proc/thread-self/ns/net")
}

/// A throwaway host network namespace.
pub struct Host {
    ns: File,
}

impl Host {
    /// A new namespace with `lo` up and, where the kernel has br_netfilter, a Docker host's
    /// firewall: bridged traffic through iptables and FORWARD policy DROP (weave-hook then
    /// does its firewall check on every attach, as on a real Docker host).
    pub fn create() -> Result<Self> {
        // A short-lived thread makes the namespace, so the caller's own stays as it was.
        let ns = std::thread::spawn(|| -> io::Result<File> {
            // SAFETY: unshare of this thread's network namespace only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            current_netns()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the namespace-creating thread panicked"))?
        .context("create a network namespace (weave-bench must run as root)")?;
        let host = Self { ns };
        host.in_it(|| -> Result<()> {
            run_quiet(Command::new("ip").args(["link", "set", "lo", "up"]))?;
            let br_nf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
            if std::path::Path::new(br_nf).exists() {
                std::fs::write(br_nf, "1").with_context(|| format!("write {br_nf}"))?;
                run_quiet(Command::new("iptables").args(["-w", "-P", "FORWARD", "DROP"]))?;
            }
            Ok(())
        })??;
        Ok(host)
    }

    /// Runs `f` with the calling thread in this namespace; returns to where it was after.
    /// Processes spawned by `f` start in this namespace.
    pub fn in_it<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let home = current_netns().context("open own network namespace")?;
        setns(&self.ns).context("enter the benchmark's host namespace")?;
        let result = f();
        setns(&home).context("return from the benchmark's host namespace")?;
        Ok(result)
    }
}

/// A "container": `sleep` in a fresh network namespace, killed when dropped.
pub struct Container {
    child: Child,
    /// Keeps the namespace alive after the process exits, as Docker's sandbox does.
    held: Option<File>,
}

impl Container {
    pub fn start() -> Result<Self> {
        let mut cmd = Command::new("sleep");
        cmd.arg("infinity")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                    || libc::unshare(libc::CLONE_NEWNET) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // spawn returns once exec succeeded, so the namespace exists by then.
        let child = cmd
            .spawn()
            .context("start a container process (sleep in a new netns)")?;
        Ok(Self { child, held: None })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// Keeps the network namespace alive past the process, until the container is dropped
    /// (dockerd holds a container's namespace until after the runtime's delete).
    pub fn hold_netns(&mut self) -> Result<()> {
        let path = self.netns_path();
        self.held = Some(File::open(&path).with_context(|| format!("open {}", path.display()))?);
        Ok(())
    }

    /// Kills the process and waits for it. Unless held, its namespace is then on its way out
    /// (the kernel frees it, and the veth end in it, asynchronously).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a setup command; fails with its stderr.
pub fn run_quiet(cmd: &mut Command) -> Result<()> {
    output(cmd).map(drop)
}

/// Runs a command; its stdout, or an error with its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
