//! Timing one whole process, from spawn to exit.

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Spawns `cmd` with `input` on its stdin, times it until it exits, and fails with its
/// output unless it succeeded. Returns milliseconds.
pub fn time(cmd: &mut Command, input: &[u8]) -> Result<f64> {
    let start = Instant::now();
    let mut child = spawn(cmd, input)?;
    let status = child.wait().context("wait for the child")?;
    let elapsed = start.elapsed();
    check(cmd, &mut child, status)?;
    Ok(millis(elapsed))
}

/// Spawns `cmd` with `input` written to its stdin (then closed), its output kept for
/// [`check`] (netavark reports errors on stdout). Every tool measured here prints far less
/// than a pipe holds, so reading after the exit cannot block it.
pub fn spawn(cmd: &mut Command, input: &[u8]) -> Result<Child> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let mut stdin = child.stdin.take().context("child has no stdin pipe")?;
    stdin
        .write_all(input)
        .with_context(|| format!("write the stdin of {cmd:?}"))?;
    Ok(child)
}

/// Fails with the child's output unless it exited 0.
pub fn check(cmd: &Command, child: &mut Child, status: ExitStatus) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let mut output = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut output);
    }
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_string(&mut output);
    }
    bail!("{cmd:?} failed ({status}): {}", output.trim())
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
