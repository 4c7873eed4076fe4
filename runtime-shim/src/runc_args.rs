//! Scans a runc command line the way runc itself parses it: weave-runtime's own `--weave-*`
//! flags are taken out from among runc's global flags, and for `create` and `run` the bundle
//! directory and the container id are found. Every other argument is kept, in order.
//!
//! runc uses Go's flag syntax: `-f` and `--f` are the same flag, a value is given as
//! `--f value` or `--f=value`, booleans only as `--f` or `--f=false`, and `--` ends the flags.
//! Global flags stop at the first non-flag (the subcommand); a subcommand's flags may come
//! before or after its positional argument (urfave/cli reorders them).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Prefix of every flag that belongs to weave-runtime rather than to the real runtime.
pub const SHIM_FLAG_PREFIX: &str = weave_core::runtime_flags::PREFIX;

/// runc 1.1 global flags that take a value. Any other global flag is taken to be a boolean,
/// so an unknown value-taking flag must be written `--flag=value` to be scanned correctly.
const GLOBAL_VALUE_FLAGS: &[&str] = &["log", "log-format", "root", "criu", "rootless"];

/// Flags of `runc create` and `runc run` that take a value (runc 1.1 `create --help`,
/// `run --help`); the rest (`--detach`, `--keep`, `--no-pivot`, ...) are booleans.
const CREATE_VALUE_FLAGS: &[&str] = &["bundle", "b", "console-socket", "pid-file", "preserve-fds"];

/// One `--weave-NAME VALUE` or `--weave-NAME=VALUE`, with NAME stripped of the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimFlag {
    pub name: String,
    pub value: OsString,
}

/// The container a `create` or `run` invocation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTarget {
    /// As given on the command line (relative to the working directory), `.` when absent.
    pub bundle: PathBuf,
    /// The raw positional argument; validated only when the container asks for weave.
    pub id: OsString,
}

/// A scanned command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub shim_flags: Vec<ShimFlag>,
    /// The arguments to hand to the real runtime: the input minus the shim's flags.
    pub runtime_args: Vec<OsString>,
    /// runc's `--log` file and whether `--log-format json` was asked for: where the caller
    /// (containerd) looks for the reason a command failed.
    pub log: Option<RuntimeLog>,
    /// `Some` only for a well-formed `create` or `run`; anything runc would reject itself
    /// (no id, two ids, a flag missing its value, `--help`) is passed through untouched.
    pub create: Option<CreateTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeLog {
    pub path: PathBuf,
    pub json: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    #[error("flag {0} needs a value (--weave-NAME VALUE or --weave-NAME=VALUE)")]
    MissingValue(String),
    #[error("flag {0:?} is not valid UTF-8")]
    NotUtf8(OsString),
}

enum Token<'a> {
    Flag {
        name: &'a [u8],
        value: Option<&'a OsStr>,
    },
    EndOfFlags,
    Positional,
}

fn classify(arg: &OsStr) -> Token<'_> {
    let bytes = arg.as_bytes();
    if bytes == b"--" {
        return Token::EndOfFlags;
    }
    if bytes.len() < 2 || bytes[0] != b'-' {
        return Token::Positional;
    }
    let body = bytes.strip_prefix(b"--").unwrap_or(&bytes[1..]);
    match body.iter().position(|&c| c == b'=') {
        Some(eq) => Token::Flag {
            name: &body[..eq],
            value: Some(OsStr::from_bytes(&body[eq + 1..])),
        },
        None => Token::Flag {
            name: body,
            value: None,
        },
    }
}

fn is_one_of(name: &[u8], set: &[&str]) -> bool {
    set.iter().any(|s| s.as_bytes() == name)
}

/// Splits `args` (argv without argv[0]) into the shim's flags and the runtime's arguments.
pub fn scan(args: Vec<OsString>) -> Result<Scanned, ScanError> {
    let mut shim_flags = Vec::new();
    let mut runtime_args = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    let mut subcommand = None;
    let mut log_path = None;
    let mut log_json = false;
    while let Some(arg) = iter.next() {
        if let Some(rest) = arg.as_bytes().strip_prefix(SHIM_FLAG_PREFIX.as_bytes()) {
            shim_flags.push(shim_flag(rest, &arg, &mut iter)?);
            continue;
        }
        match classify(&arg) {
            Token::EndOfFlags => {
                runtime_args.push(arg);
                subcommand = iter.next();
                runtime_args.extend(subcommand.clone());
                break;
            }
            Token::Positional => {
                subcommand = Some(arg.clone());
                runtime_args.push(arg);
                break;
            }
            Token::Flag { name, value } => {
                let name = String::from_utf8_lossy(name).into_owned();
                let inline = value.map(OsStr::to_owned);
                runtime_args.push(arg);
                let value = match inline {
                    Some(v) => Some(v),
                    None if is_one_of(name.as_bytes(), GLOBAL_VALUE_FLAGS) => {
                        let v = iter.next();
                        runtime_args.extend(v.clone());
                        v
                    }
                    None => None,
                };
                match (name.as_str(), value) {
                    ("log", Some(v)) => log_path = Some(PathBuf::from(v)),
                    ("log-format", Some(v)) => log_json = v == "json",
                    _ => {}
                }
            }
        }
    }
    let rest: Vec<OsString> = iter.collect();
    let create = match subcommand.as_ref().and_then(|s| s.to_str()) {
        Some("create" | "run") => create_target(&rest),
        _ => None,
    };
    runtime_args.extend(rest);
    Ok(Scanned {
        shim_flags,
        runtime_args,
        log: log_path.map(|path| RuntimeLog {
            path,
            json: log_json,
        }),
        create,
    })
}

fn shim_flag(
    rest: &[u8],
    whole: &OsStr,
    iter: &mut impl Iterator<Item = OsString>,
) -> Result<ShimFlag, ScanError> {
    let (name, value) = match rest.iter().position(|&c| c == b'=') {
        Some(eq) => (&rest[..eq], OsStr::from_bytes(&rest[eq + 1..]).to_owned()),
        None => {
            let value = iter
                .next()
                .ok_or_else(|| ScanError::MissingValue(whole.to_string_lossy().into_owned()))?;
            (rest, value)
        }
    };
    let name = std::str::from_utf8(name)
        .map_err(|_| ScanError::NotUtf8(whole.to_owned()))?
        .to_owned();
    Ok(ShimFlag { name, value })
}

/// Finds the bundle and the id among `create`/`run` arguments, or `None` when runc would
/// refuse the command line anyway (then nothing must be written on its behalf).
fn create_target(args: &[OsString]) -> Option<CreateTarget> {
    let mut bundle: Option<OsString> = None;
    let mut positionals: Vec<&OsString> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match classify(&args[i]) {
            Token::EndOfFlags => {
                positionals.extend(&args[i + 1..]);
                break;
            }
            Token::Positional => positionals.push(&args[i]),
            Token::Flag { name, value } => {
                if is_one_of(name, &["h", "help"]) {
                    return None;
                }
                let value = match value {
                    Some(v) => Some(v.to_owned()),
                    None if is_one_of(name, CREATE_VALUE_FLAGS) => {
                        i += 1;
                        Some(args.get(i)?.clone())
                    }
                    None => None,
                };
                if is_one_of(name, &["bundle", "b"]) {
                    bundle = value;
                }
            }
        }
        i += 1;
    }
    let [id] = positionals.as_slice() else {
        return None;
    };
    // runc only changes directory for a non-empty --bundle, so "" means the current one.
    let bundle = match bundle {
        Some(b) if !b.is_empty() => PathBuf::from(b),
        _ => PathBuf::from("."),
    };
    Some(CreateTarget {
        bundle,
        id: (*id).clone(),
    })
}
