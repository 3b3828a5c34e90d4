//! cargo-lambda's Lambda runtime emulator (`cargo lambda watch`) for tests, and function
//! binaries run against it: the real Lambda runtime path (the runtime API, the function URL's
//! HTTP front end turning requests into payload v2 events) on 127.0.0.1.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Stack, process, workspace_root};

/// A process and its group, stopped when dropped (the emulator starts children of its own).
pub struct ProcessGroup(Child);

impl ProcessGroup {
    fn spawn(mut command: Command, log: &Path) -> Result<Self> {
        let log = std::fs::File::create(log)?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        Ok(Self(command.spawn()?))
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions; the group is the one we created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// `KEY=VALUE` lines of an env file (comments and blank lines skipped).
pub fn env_file(path: &Path) -> Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The functions' configuration on the local stack: the stack's own variables (brokers, moto)
/// and `tests/local-functions.env`, with `.venv/bin` (cargo-lambda) first on `PATH`.
pub fn local_function_env(stack: &Stack) -> Result<HashMap<String, String>> {
    let mut env: HashMap<String, String> = env_file(&stack.dir.join("stack.env"))?
        .into_iter()
        .collect();
    env.extend(env_file(
        &workspace_root().join("tests/local-functions.env"),
    )?);
    env.insert("PATH".into(), path_with_cargo_lambda()?);
    Ok(env)
}

fn path_with_cargo_lambda() -> Result<String> {
    let bin = workspace_root().join(".venv/bin");
    if !bin.join("cargo-lambda").exists() {
        bail!(
            "{} is missing: run `make setup`",
            bin.join("cargo-lambda").display()
        );
    }
    Ok(format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    ))
}

/// A running emulator.
pub struct Emulator {
    pub port: u16,
    pub log: PathBuf,
    _process: ProcessGroup,
}

impl Emulator {
    /// `cargo lambda watch` on a free port, logging to `log`. With `only_apis`, it runs no
    /// function itself: start the binary with [`Emulator::run_function`].
    pub async fn start(env: &HashMap<String, String>, only_apis: bool, log: &Path) -> Result<Self> {
        let port = process::free_port()?;
        let mut watch = Command::new("cargo");
        watch
            .args([
                "lambda",
                "watch",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .args(only_apis.then_some("--only-lambda-apis"))
            .current_dir(workspace_root())
            .envs(env);
        let process = ProcessGroup::spawn(watch, log).context("starting cargo lambda watch")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("the emulator did not start: {}", process::tail(log, 20));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            port,
            log: log.to_path_buf(),
            _process: process,
        })
    }

    /// Runs a function binary against this emulator's runtime API, as the default function
    /// (`_`): requests to `http://127.0.0.1:{port}/lambda-url/_/…` reach it as function URL
    /// (payload v2) events.
    pub fn run_function(
        &self,
        binary: &Path,
        env: &HashMap<String, String>,
        log: &Path,
    ) -> Result<ProcessGroup> {
        let mut command = Command::new(binary);
        command
            .envs(env)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", self.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512");
        ProcessGroup::spawn(command, log).with_context(|| format!("starting {}", binary.display()))
    }

    /// The function URL base for the default function.
    pub fn function_url(&self) -> String {
        format!("http://127.0.0.1:{}/lambda-url/_", self.port)
    }
}
