//! Weave DNS's resolv.conf for a container no weave-runtime prepared (podman and CRI-O run
//! the hook from hooks.d): at createRuntime the hook rewrites, by weave-core's rules
//! ([`weave_core::resolv`]), the file the engine made for this one container, so the
//! container's first instruction already resolves `<name>.weave.local`.
//!
//! Only a file that is the container's own, and so goes with it, is written:
//! - podman with a network bind-mounts `…/<id>/userdata/resolv.conf` on /etc/resolv.conf
//!   (`<id>` the container's 64-hex id): that file is rewritten in place (the mount already
//!   holds its inode, so a rename would not reach the container);
//! - podman with `--network none` mounts none: the hook writes /etc/resolv.conf in the
//!   container's root filesystem, the container's own layer under its bundle `…/<id>/userdata`.
//!
//! Anything else (weave-runtime's own file, a plain runc bundle's mount of some host file) is
//! left alone: a config.json may name any host file, and weave must never rewrite the host's.
//! Paths are opened without following symbolic links, and inside the root filesystem (whose
//! contents the image decides) never outside it.

use std::fs::File;
use std::io::{self, Read};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use serde_json::Value;
use thiserror::Error;

use weave_core::fsutil;
use weave_core::oci::{State, MAX_CONFIG_BYTES};
use weave_core::options::{
    self, Wanted, DNS_SEARCH_ANNOTATION as DNS_SEARCH, DNS_SERVER_ANNOTATION as DNS_SERVER,
};
use weave_core::resolv::{self, Choice, ChoiceError, ResolvConf};
use weave_core::settings::Settings;

/// resolv.conf files are read up to this size; resolvers read far less.
const MAX_RESOLV_BYTES: u64 = 64 * 1024;
/// The per-container directory podman names `<id>/userdata`.
const PODMAN_DIR: &str = "userdata";

#[derive(Debug, Error)]
pub enum ResolvError {
    #[error(transparent)]
    Choice(#[from] ChoiceError),
    #[error("the state names no bundle, so config.json cannot be read")]
    NoBundle,
    #[error("cannot read {0}: {1}")]
    ReadConfig(PathBuf, #[source] io::Error),
    #[error("{0} is not valid JSON: {1}")]
    BadConfig(PathBuf, #[source] serde_json::Error),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is not a regular file with a single link; weave DNS writes only the engine's own file for the container")]
    NotOwnFile(PathBuf),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ResolvError + 'a {
    move |source| ResolvError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Which file the hook writes for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The engine's per-container file mounted on /etc/resolv.conf.
    EngineFile(PathBuf),
    /// /etc/resolv.conf inside this root filesystem (nothing is mounted on it).
    Rootfs(PathBuf),
}

/// Gives a weave DNS container weave's resolv.conf, when the engine left the container a file
/// of its own for it; does nothing for other containers.
pub fn apply(settings: &Settings, state: &State) -> Result<(), ResolvError> {
    let Ok(Wanted::Attach(request)) = options::resolve(state) else {
        // attach reports a bad option; nothing asked for DNS here.
        return Ok(());
    };
    if !request.dns {
        return Ok(());
    }
    let bundle = state.bundle.as_deref().ok_or(ResolvError::NoBundle)?;
    let config = read_config(bundle)?;
    let annotation = |key: &str| {
        state.annotations.get(key).map(String::as_str).or_else(|| {
            config
                .get("annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
        })
    };
    let choice = Choice::parse(annotation(DNS_SERVER), annotation(DNS_SEARCH))?;
    let server = choice
        .server
        .unwrap_or(IpAddr::V4(settings.dns_addr().addr()));
    let Some(target) = target(&config, bundle, state.id.as_str()) else {
        tracing::info!(id = %state.id, "resolv.conf is not the engine's own file for the container; left alone");
        return Ok(());
    };
    let rewrite = |text: &str| {
        ResolvConf::parse(text)
            .for_weave(server, choice.search.as_deref())
            .render("weave-hook", state.id.as_str())
    };
    match &target {
        Target::EngineFile(path) => rewrite_in_place(&open_engine_file(path)?, path, rewrite),
        Target::Rootfs(root) => {
            let path = root.join("etc/resolv.conf");
            rewrite_in_place(&open_in_rootfs(root)?, &path, rewrite)
        }
    }
}

fn read_config(bundle: &Path) -> Result<Value, ResolvError> {
    let path = bundle.join("config.json");
    let bytes = fsutil::read_small(&path, MAX_CONFIG_BYTES)
        .map_err(|e| ResolvError::ReadConfig(path.clone(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| ResolvError::BadConfig(path, e))
}

/// The file to write for container `id` of `bundle`, or `None` when the container has no
/// file of its own for it.
pub fn target(config: &Value, bundle: &Path, id: &str) -> Option<Target> {
    if !is_engine_id(id) {
        return None;
    }
    let mounts = config.get("mounts").and_then(Value::as_array);
    match mounts.and_then(|m| resolv::mount_source(m)) {
        Some(source) => {
            let source = Path::new(source);
            let own = source.is_absolute()
                && source.file_name()? == "resolv.conf"
                && is_podman_dir(source.parent()?, id);
            own.then(|| Target::EngineFile(source.to_path_buf()))
        }
        None if is_podman_dir(bundle, id) => {
            let root = config.pointer("/root/path").and_then(Value::as_str)?;
            Some(Target::Rootfs(bundle.join(root)))
        }
        None => None,
    }
}

/// Ids that podman (and Docker, CRI-O) generate: 64 lowercase hex digits. Only these name
/// a per-container directory of the engine's; a runc user's id may be any word, `etc` too.
fn is_engine_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `…/<id>/userdata`: podman's directory for this one container.
fn is_podman_dir(dir: &Path, id: &str) -> bool {
    dir.file_name().is_some_and(|n| n == PODMAN_DIR)
        && dir
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == id)
}

/// Opens the engine's file for reading and writing, refusing a link (symbolic or hard) or
/// anything but a regular file.
fn open_engine_file(path: &Path) -> Result<File, ResolvError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err("open", path))?;
    check_own(&file, path)?;
    Ok(file)
}

/// Opens (creating it when missing) /etc/resolv.conf inside `root`, never leaving it: no
/// symbolic link is followed, no mount point crossed.
fn open_in_rootfs(root: &Path) -> Result<File, ResolvError> {
    let rootfd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(root)
        .map_err(io_err("open", root))?;
    let path = root.join("etc/resolv.conf");
    let how = OpenHow::new()
        .flags(OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(0o644))
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let fd = openat2(rootfd.as_raw_fd(), "etc/resolv.conf", how)
        .map_err(|e| io_err("open inside the root filesystem", &path)(e.into()))?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    check_own(&file, &path)?;
    Ok(file)
}

fn check_own(file: &File, path: &Path) -> Result<(), ResolvError> {
    let meta = file.metadata().map_err(io_err("stat", path))?;
    match meta.is_file() && meta.nlink() == 1 {
        true => Ok(()),
        false => Err(ResolvError::NotOwnFile(path.to_path_buf())),
    }
}

/// Replaces the file's contents by `rewrite` of them, through the open descriptor: the
/// container's process does not run yet, so nobody reads it half-written.
fn rewrite_in_place(
    file: &File,
    path: &Path,
    rewrite: impl FnOnce(&str) -> String,
) -> Result<(), ResolvError> {
    let mut text = Vec::new();
    file.take(MAX_RESOLV_BYTES)
        .read_to_end(&mut text)
        .map_err(io_err("read", path))?;
    let new = rewrite(&String::from_utf8_lossy(&text));
    if new.as_bytes() == text {
        return Ok(());
    }
    file.set_len(0).map_err(io_err("truncate", path))?;
    file.write_all_at(new.as_bytes(), 0)
        .map_err(io_err("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "6f449430829dc31ca60b4edad8cb1d6591f08d2d7d458158d9ac8a176902da86";

    fn with_mount(source: &str) -> Value {
        json!({"root": {"path": "/r"}, "mounts": [
            {"destination": "/etc/hosts", "source": "/x/hosts"},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": source}]})
    }

    #[test]
    fn podmans_file_for_this_container_is_the_target() {
        let source =
            format!("/run/containers/storage/overlay-containers/{ID}/userdata/resolv.conf");
        let bundle = PathBuf::from(format!(
            "/var/lib/containers/storage/overlay-containers/{ID}/userdata"
        ));
        assert_eq!(
            target(&with_mount(&source), &bundle, ID),
            Some(Target::EngineFile(source.into()))
        );
    }

    #[test]
    fn without_a_mount_podmans_rootfs_is_the_target() {
        let bundle = PathBuf::from(format!("/var/lib/c/{ID}/userdata"));
        let config = json!({"root": {"path": "/var/lib/c/vfs/dir/abc"}, "mounts": []});
        assert_eq!(
            target(&config, &bundle, ID),
            Some(Target::Rootfs("/var/lib/c/vfs/dir/abc".into()))
        );
        let relative = json!({"root": {"path": "rootfs"}});
        assert_eq!(
            target(&relative, &bundle, ID),
            Some(Target::Rootfs(bundle.join("rootfs")))
        );
    }

    #[test]
    fn files_that_are_not_the_containers_own_are_left_alone() {
        let bundle = PathBuf::from(format!("/var/lib/c/{ID}/userdata"));
        let other = "0".repeat(64);
        for source in [
            "/etc/resolv.conf".to_owned(),
            format!("/run/c/{other}/userdata/resolv.conf"),
            format!("/var/lib/docker/containers/{ID}/resolv.conf"),
            format!("/run/c/{ID}/userdata/hosts"),
            format!("{ID}/userdata/resolv.conf"),
            "/run/weave/resolv/x.conf".to_owned(),
        ] {
            assert_eq!(target(&with_mount(&source), &bundle, ID), None, "{source}");
        }
        // A plain runc bundle: any id, any layout.
        let config = json!({"root": {"path": "rootfs"}});
        assert_eq!(target(&config, Path::new("/b/etc/userdata"), "etc"), None);
        assert_eq!(target(&config, Path::new("/tmp/bundle"), ID), None);
    }

    #[test]
    fn in_place_rewrite_keeps_the_inode_and_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 10.9.0.1\noptions ndots:0\n").unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        let file = open_engine_file(&path).unwrap();
        rewrite_in_place(&file, &path, |t| {
            ResolvConf::parse(t)
                .for_weave("10.32.0.1".parse().unwrap(), None)
                .render("weave-hook", "c")
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# Written by weave-hook for container c\nnameserver 10.32.0.1\nnameserver 10.9.0.1\nsearch weave.local.\noptions ndots:0\n"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);

        let link = dir.path().join("link.conf");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(open_engine_file(&link).is_err());
        let hard = dir.path().join("hard.conf");
        std::fs::hard_link(&path, &hard).unwrap();
        assert!(matches!(
            open_engine_file(&hard),
            Err(ResolvError::NotOwnFile(_))
        ));
    }

    #[test]
    fn the_rootfs_file_is_never_reached_through_a_link() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("etc")).unwrap();
        assert!(open_in_rootfs(root.path()).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

        std::fs::remove_file(root.path().join("etc")).unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        let target = outside.path().join("resolv.conf");
        std::fs::write(&target, "nameserver 10.9.0.1\n").unwrap();
        std::os::unix::fs::symlink(&target, root.path().join("etc/resolv.conf")).unwrap();
        assert!(open_in_rootfs(root.path()).is_err());
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "nameserver 10.9.0.1\n"
        );

        std::fs::remove_file(root.path().join("etc/resolv.conf")).unwrap();
        open_in_rootfs(root.path()).unwrap();
        assert!(root.path().join("etc/resolv.conf").is_file());
    }
}
