//! Starting background services and stopping them by PID.
//!
//! Services are started in their own process group so they outlive `devstack up` and ignore a
//! Ctrl-C meant for the caller. Before signalling a PID we check that its command line still
//! names what we started there, so a recycled PID is never killed.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Spawns `command` detached, its stdout and stderr appended to `log`; returns the PID.
pub fn spawn_detached(mut command: Command, log: &Path) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    Ok(child.id())
}

/// Whether `pid` is alive and its command line contains `marker` (a path unique to it).
pub fn is_running(pid: u32, marker: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has exited; only its parent has not collected it yet.
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        {
            return false;
        }
    }
    String::from_utf8_lossy(&cmdline).contains(marker)
}

/// Sends `signal` to `pid` if it is still the process we started.
pub fn signal(pid: u32, marker: &str, signal: i32) -> Result<()> {
    if !is_running(pid, marker) {
        return Ok(());
    }
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid as i32, signal) };
    if rc != 0 {
        bail!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// SIGTERM, then SIGKILL if the process is still there after `grace`.
pub fn stop(pid: u32, marker: &str, grace: Duration) -> Result<()> {
    signal(pid, marker, libc::SIGTERM)?;
    let deadline = Instant::now() + grace;
    while is_running(pid, marker) {
        if Instant::now() > deadline {
            signal(pid, marker, libc::SIGKILL)?;
            wait_gone(pid, marker, Duration::from_secs(10))?;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// SIGKILL and wait until the process is gone: the "broker crashed" case.
pub fn kill(pid: u32, marker: &str) -> Result<()> {
    signal(pid, marker, libc::SIGKILL)?;
    wait_gone(pid, marker, Duration::from_secs(10))
}

fn wait_gone(pid: u32, marker: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while is_running(pid, marker) {
        if Instant::now() > deadline {
            bail!("process {pid} still running {timeout:?} after SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
