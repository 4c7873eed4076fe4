//! podman of a test's own: its own storage (vfs: no mounts to leak), its own containers.conf
//! (runc, ulimits that fit these machines, the test's hooks directory and network definitions:
//! see MACHINE.md),
//! every command run inside a [`TestHost`] so the hook's bridge lives there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::{run_ok, Rootfs, TestHost};

pub const IMAGE: &str = "localhost/bb:latest";

pub struct Podman<'h> {
    host: &'h TestHost,
    dir: tempfile::TempDir,
}

impl<'h> Podman<'h> {
    /// A podman reading hooks from `hooks_dir` only.
    pub fn new(host: &'h TestHost, hooks_dir: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\n\
             runtime = \"runc\"\n\
             hooks_dir = [\"{}\"]\n\
             tmp_dir = \"{}\"\n\
             [network]\n\
             network_config_dir = \"{}\"\n",
            hooks_dir.display(),
            dir.path().join("tmp").display(),
            dir.path().join("networks").display()
        );
        fs::write(dir.path().join("containers.conf"), conf).unwrap();
        Self { host, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self) -> Command {
        let mut cmd = self.host.command("podman");
        cmd.env("CONTAINERS_CONF", self.path("containers.conf"))
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .args(["--storage-driver", "vfs"])
            .stdin(Stdio::null());
        cmd
    }

    /// Imports `rootfs` as [`IMAGE`] (there is no registry to pull from).
    pub fn import(&self, rootfs: &Rootfs) {
        let tar = self.path("rootfs.tar");
        rootfs.tar_to(&tar);
        run_ok(self.command().arg("import").arg(&tar).arg(IMAGE));
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        // Stops and removes what a failed test left running (its poststop hooks run too).
        let _ = self
            .command()
            .args(["rm", "--all", "--force", "--time", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // vfs needs no mounts, but a container's /dev/shm is one until it is removed.
        let root = self.dir.path().to_string_lossy().into_owned();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for point in mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&root))
        {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
    }
}
