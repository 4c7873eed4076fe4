//! The other hosts' weave DNS containers: the mesh agent mirrors them from etcd into
//! `<state-dir>/mesh/names/<host>.json` (weave-core's `mesh` layout), and this follows that
//! directory by inotify exactly as [`crate::watch`] follows the records, on a thread of its
//! own: answers never wait on etcd, nor on the agent.
//!
//! A changed file is read again alone; a deleted one takes its host's names out at once. The
//! whole directory is read at start, after an event queue overflow and after watching again.
//! While the directory does not exist (no agent runs, or it has not started yet) its absence
//! is checked every second, and no other host's name is answered. The directory must be one
//! only this user can change (as the agent makes it); otherwise nothing in it is believed.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;

use weave_core::fsutil;
use weave_core::layout::StateDir;
use weave_core::mesh::{names_file_host, RemoteNames};
use weave_core::watch::{follow, DirWatch, Follower};

use crate::records::Names;

/// Follows the mirror directory of `state_dir` on a thread of its own, for as long as the
/// process runs.
pub fn start(state_dir: &Path, names: Names) -> io::Result<()> {
    let mut mirror = Mirror {
        dir: StateDir::new(state_dir).mesh_names_dir(),
        names,
    };
    // The first read happens before this returns: a restarted weave-dns answers the other
    // hosts' names from its first query.
    let watch = mirror.rewatch();
    thread::Builder::new()
        .name("remote-names".into())
        .spawn(move || follow(watch, &mut mirror))?;
    Ok(())
}

/// The mirror directory, followed into the other hosts' names. While it is missing, its
/// absence is checked every second (the default [`Follower::LOOK_AGAIN`]).
struct Mirror {
    dir: PathBuf,
    names: Names,
}

impl Follower for Mirror {
    fn rewatch(&mut self) -> Option<DirWatch> {
        let watch = watch(&self.dir).ok();
        // Whatever was missed meanwhile, and nothing at all when the directory is gone.
        reload(&self.dir, &self.names);
        watch
    }

    fn reload(&mut self) {
        reload(&self.dir, &self.names);
    }

    fn changed(&mut self, file_name: &OsStr) {
        apply(&self.dir, file_name, &self.names);
    }
}

fn watch(dir: &Path) -> io::Result<DirWatch> {
    fsutil::check_private_dir(dir).map_err(|e| io::Error::other(e.to_string()))?;
    DirWatch::new(dir)
}

/// Reads one host's file again (it changed, or went away) and applies just that.
fn apply(dir: &Path, file_name: &OsStr, names: &Names) {
    let Some(host) = file_name.to_str().and_then(names_file_host) else {
        return;
    };
    match read(dir, host) {
        Ok(mirror) => names.apply_host(host, mirror.as_ref()),
        Err(e) => {
            tracing::warn!(host, error = %e, "the mesh's names of this host left out");
            names.apply_host(host, None);
        }
    }
}

/// A host's file, checked to be that host's.
fn read(dir: &Path, host: &str) -> io::Result<Option<RemoteNames>> {
    let mirror = RemoteNames::read(&dir.join(file_name(host)))?;
    match mirror {
        Some(m) if m.host != host => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the file of host {host} names host {:?}", m.host),
        )),
        other => Ok(other),
    }
}

fn file_name(host: &str) -> String {
    format!("{host}{}", weave_core::mesh::NAMES_SUFFIX)
}

/// Reads every host's file; with no trustworthy directory, no other host's name.
fn reload(dir: &Path, names: &Names) {
    let mirrors = match read_all(dir) {
        Ok(mirrors) => mirrors,
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "the mesh's names are not answered");
            }
            Vec::new()
        }
    };
    tracing::debug!(hosts = mirrors.len(), "the mesh's names read");
    names.replace_hosts(&mirrors);
}

fn read_all(dir: &Path) -> io::Result<Vec<RemoteNames>> {
    if let Err(e) = fsutil::check_private_dir(dir) {
        return match dir.exists() {
            false => Err(io::ErrorKind::NotFound.into()),
            true => Err(io::Error::other(e.to_string())),
        };
    }
    let mut mirrors = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(host) = name.to_str().and_then(names_file_host) else {
            continue;
        };
        match read(dir, host) {
            Ok(Some(mirror)) => mirrors.push(mirror),
            Ok(None) => {}
            Err(e) => tracing::warn!(host, error = %e, "the mesh's names of this host left out"),
        }
    }
    Ok(mirrors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::tests::{mirror, remote};
    use crate::records::Table;
    use std::net::Ipv4Addr;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    fn put(dir: &Path, m: &RemoteNames) {
        let tmp = dir.join(".tmpX");
        std::fs::write(&tmp, serde_json::to_vec(m).unwrap()).unwrap();
        std::fs::rename(&tmp, dir.join(file_name(&m.host))).unwrap();
    }

    fn eventually(what: &str, f: impl Fn() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{what} not seen in 5 s"
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn mirror_files_come_and_go_with_their_hosts() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = StateDir::new(tmp.path());
        let dir = layout.mesh_names_dir();
        let names = Names::new(Table::empty());
        start(tmp.path(), names.clone()).unwrap();
        // The agent makes the directory after weave-dns started: found within a second.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(layout.mesh_dir(), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        put(
            &dir,
            &mirror("hostb", vec![remote("b1", "10.32.1.2", &["b"], 1)]),
        );
        let b: Ipv4Addr = "10.32.1.2".parse().unwrap();
        eventually("host b's name", || names.current().addresses("b") == [b]);
        put(
            &dir,
            &mirror("hostc", vec![remote("c1", "10.32.2.2", &["c"], 1)]),
        );
        eventually("host c's name", || {
            !names.current().addresses("c").is_empty()
        });
        // A file that says it is another host's is not believed.
        put(
            &dir,
            &mirror("hostb", vec![remote("x", "10.32.9.9", &["x"], 1)]),
        );
        std::fs::rename(dir.join("hostb.json"), dir.join("hostd.json")).unwrap();
        eventually("a lying file left out, host b gone", || {
            let t = names.current();
            t.addresses("b").is_empty() && t.addresses("x").is_empty()
        });
        std::fs::remove_file(dir.join("hostc.json")).unwrap();
        eventually("host c gone", || names.current().addresses("c").is_empty());
        // The directory goes (weave-hook reset): nothing of the mesh is answered; it comes
        // back, and is read in full.
        put(
            &dir,
            &mirror("hoste", vec![remote("e1", "10.32.3.2", &["e"], 1)]),
        );
        eventually("host e", || !names.current().addresses("e").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
        eventually("no host", || names.current().hosts().is_empty());
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        put(
            &dir,
            &mirror("hoste", vec![remote("e1", "10.32.3.2", &["e"], 1)]),
        );
        eventually("host e again", || {
            !names.current().addresses("e").is_empty()
        });
        // A directory others may write to is not believed.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::remove_dir(tmp.path().join("nothing")).ok();
        let start = Instant::now();
        reload(&dir, &names);
        assert!(names.current().hosts().is_empty(), "{:?}", start.elapsed());
    }
}
