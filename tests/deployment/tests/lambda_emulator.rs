//! Every sample event in `events/` through the real Lambda runtime path: `cargo lambda watch`
//! (cargo-lambda's runtime emulator) runs the four function binaries against the local stack,
//! `cargo lambda invoke --data-file` sends each file, and each response is checked for its
//! function's shape (the autoscaler in dry-run mode, so nothing is scaled).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use devstack::lambda::{self, Emulator};
use devstack::{Stack, process, testkit};
use serde_json::Value;

const FUNCTIONS: [&str; 4] = ["republisher", "autoscaler", "rebalancer", "gateway"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(function: &str, file: &str, response: &Value) -> Result<()> {
    match function {
        "republisher" if file.starts_with("stream-") => {
            let failures = response["batchItemFailures"]
                .as_array()
                .context("batchItemFailures array")?;
            if !failures.is_empty() {
                bail!("{file}: records failed: {response}");
            }
        }
        "republisher" => {
            response.get("pass_completed").context("a sweep report")?;
        }
        "autoscaler" => {
            let decision = response["decision"].as_str().context("a decision")?;
            if ![
                "no_action",
                "scale_out",
                "refuse",
                "recommend_larger_brokers",
            ]
            .contains(&decision)
            {
                bail!("{file}: unknown decision {decision}");
            }
            if response["dry_run"] != Value::Bool(true) || response.get("operation_arn").is_some() {
                bail!("{file}: the emulator runs the autoscaler in dry-run mode: {response}");
            }
            let quiet = file.contains("-ok") || file.contains("insufficient-data");
            if quiet && decision != "no_action" {
                bail!("{file}: an OK / INSUFFICIENT_DATA alarm must not scale: {response}");
            }
            if file.contains("other-alarm") && decision != "refuse" {
                bail!("{file}: an alarm other than CPU_ALARM_NAME must be refused: {response}");
            }
        }
        "rebalancer" => {
            let status = response["status"].as_str().context("a status")?;
            if !["dry_run", "waiting", "done", "in_progress"].contains(&status) {
                bail!("{file}: unknown status {status}");
            }
            if file == "dry-run.json" && status != "dry_run" {
                bail!("{file}: expected a dry run: {response}");
            }
        }
        // API Gateway HTTP API (payload v2) requests; the status each must get.
        "gateway" => {
            let status = response["statusCode"].as_u64().context("a statusCode")?;
            let expected = if file.contains("without-token") {
                401
            } else if file.contains("with-token") {
                // The sample tokens' issuer is unreachable locally: the function re-checks
                // every token and cannot, so it answers 503, not 2xx.
                503
            } else if file.starts_with("unknown-route") {
                404
            } else {
                bail!("{file}: no expected status for this sample");
            };
            if status != expected {
                bail!("{file}: expected {expected}, got {response}");
            }
        }
        _ => unreachable!(),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sample_event_through_the_lambda_runtime_emulator() -> Result<()> {
    let stack = Stack::attach()?;
    testkit::provision(&stack.bootstrap_servers(), &stack.aws_endpoint()).await?;
    let mut env = lambda::local_function_env(&stack)?;
    env.insert("DRY_RUN".into(), "true".into());

    // Built as the emulator builds them, so no invocation waits for a compiler.
    for function in FUNCTIONS {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "--bin", function])
            .current_dir(root())
            .status()?;
        if !status.success() {
            bail!("building {function} failed");
        }
    }
    let log = stack.dir.join("emulator-test.log");
    let emulator = Emulator::start(&env, false, &log).await?;
    let port = emulator.port;

    let mut checked = 0;
    for function in FUNCTIONS {
        let dir = root().join("events").join(function);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.sort();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let output = Command::new(env!("CARGO"))
                .args([
                    "lambda",
                    "invoke",
                    function,
                    "-A",
                    "127.0.0.1",
                    "-P",
                    &port.to_string(),
                    "--data-file",
                ])
                .arg(&file)
                .current_dir(root())
                .envs(&env)
                .output()?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            if !output.status.success() {
                bail!(
                    "{function} {name}: invoke failed: {stdout}{}\n{}",
                    String::from_utf8_lossy(&output.stderr),
                    process::tail(&log, 30)
                );
            }
            let response: Value = serde_json::from_str(stdout.trim())
                .with_context(|| format!("{function} {name}: response is not JSON: {stdout}"))?;
            check(function, &name, &response)?;
            eprintln!("{function} {name}: {response}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} sample events found");
    Ok(())
}
