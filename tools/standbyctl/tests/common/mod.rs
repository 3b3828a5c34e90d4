//! What the `standbyctl` test binaries share: the binary run as an operator runs it against the
//! local stack.

use std::time::Duration;

use assert_cmd::Command;
use assert_cmd::cargo::cargo_bin_cmd;
use devstack::Stack;

/// The binary with nothing from the test's environment but `PATH`: the local stack's Kafka
/// (plaintext) and moto, and the tables and topic the functions would be configured with.
pub fn standbyctl(
    stack: &Stack,
    standby_table: &str,
    state_table: &str,
    dead_letter_topic: &str,
) -> Command {
    let mut command = cargo_bin_cmd!("standbyctl");
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KAFKA_BOOTSTRAP_SERVERS", stack.bootstrap_servers())
        .env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
        .env("AWS_ENDPOINT_URL", stack.aws_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("STANDBY_TABLE_NAME", standby_table)
        .env("STATE_TABLE_NAME", state_table)
        .env("STANDBY_DEAD_LETTER_TOPIC", dead_letter_topic)
        .timeout(Duration::from_secs(120));
    command
}
