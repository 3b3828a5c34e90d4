//! Real Apache Kafka nodes in KRaft mode, run from the Maven jars (`tests/kafka/pom.xml`).
//!
//! A node is a directory holding its `server.properties`, its log4j configuration, its data and
//! its console log. Combined nodes (broker + controller) form the quorum; broker-only nodes join
//! it later, as MSK brokers added by a scale-out do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};

use crate::process;

/// The cluster id every node is formatted with: base64url of the 16 bytes "standby-events-1".
pub const CLUSTER_ID: &str = "c3RhbmRieS1ldmVudHMtMQ";

/// Client settings for the quorum's listener as its super user (`User:controller`, SASL PLAIN
/// with a throwaway local secret), for Kafka's own tools.
pub fn quorum_admin_properties() -> String {
    format!(
        "security.protocol=SASL_PLAINTEXT\n\
         sasl.mechanism=PLAIN\n\
         sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
         username=\"controller\" password=\"{CLUSTER_ID}\";\n"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Broker and KRaft controller in one process (the initial quorum).
    Combined,
    /// Broker only, joining an existing quorum.
    Broker,
}

/// One node as started, persisted in the stack's state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: i32,
    pub rack: String,
    pub role: Role,
    pub broker_port: u16,
    /// The TLS listener (certificates in [`crate::tls`]); absent in a stack recorded before it
    /// existed, which `down` can still stop.
    #[serde(default)]
    pub tls_port: u16,
    pub controller_port: Option<u16>,
    pub dir: PathBuf,
    pub pid: Option<u32>,
    /// Stopped with SIGSTOP: alive, its log intact, but answering nobody until continued.
    #[serde(default)]
    pub frozen: bool,
}

impl Node {
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.broker_port)
    }

    pub fn tls_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// Unique to this node's command line, so its PID is never confused with another process.
    fn marker(&self) -> String {
        self.config_path().display().to_string()
    }

    pub fn is_running(&self) -> bool {
        self.pid
            .is_some_and(|pid| process::is_running(pid, &self.marker()))
    }

    /// Writes `server.properties` and the log configuration. `voters` is the quorum's
    /// `id@host:port` list; `keystore` the TLS listener's PEM keystore.
    pub fn write_config(&self, voters: &str, keystore: &Path) -> Result<()> {
        std::fs::create_dir_all(self.dir.join("data"))?;
        let roles = match self.role {
            Role::Combined => "broker,controller",
            Role::Broker => "broker",
        };
        let clients = format!(
            "PLAINTEXT://127.0.0.1:{},SSL://127.0.0.1:{}",
            self.broker_port, self.tls_port
        );
        let listeners = match self.controller_port {
            Some(port) => format!("{clients},CONTROLLER://127.0.0.1:{port}"),
            None => clients.clone(),
        };
        let config = format!(
            "\
process.roles={roles}
node.id={id}
broker.rack={rack}
controller.quorum.voters={voters}
listeners={listeners}
advertised.listeners={clients}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,CONTROLLER:SASL_PLAINTEXT
# TLS for clients that ask for it (no client certificates: they are User:ANONYMOUS, as on
# PLAINTEXT); the keystore is a PEM file, the key unencrypted PKCS#8.
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location={keystore}
controller.listener.names=CONTROLLER
# The quorum talks as User:controller (SASL PLAIN, a throwaway local secret), the one super user:
# an ACL authorizer answers nobody else before it has loaded the ACLs, and clients must not be
# super users (super users bypass ACLs).
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"controller\" password=\"{secret}\" user_controller=\"{secret}\";
super.users=User:controller
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
auto.create.topics.enable=false
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
group.initial.rebalance.delay.ms=0
log.segment.bytes=16777216
# Followers fetch at most 64 KiB per partition at a time (default 1 MiB), so a replication
# throttle holds back the small partitions of tests too: Kafka checks the quota between fetches.
replica.fetch.max.bytes=65536
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
# Fast leader failover when a node is stopped in a test.
controlled.shutdown.enable=true
# ACLs for fault injection (a DENY on one topic): with no ACL on a resource everyone is allowed,
# so nothing changes until a test adds one. Nobody is a super user (super users bypass ACLs).
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=true
",
            id = self.id,
            rack = self.rack,
            keystore = keystore.display(),
            data = self.dir.join("data").display(),
            secret = CLUSTER_ID,
        );
        std::fs::write(self.config_path(), config)?;
        let log4j = format!(
            "\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.org.apache.kafka.raft=WARN
",
            self.dir.join("server.log").display()
        );
        std::fs::write(self.dir.join("log4j.properties"), log4j)?;
        Ok(())
    }

    fn java(&self, libs: &Path, main_class: &str) -> Command {
        let mut command = Command::new("java");
        command
            .arg("-Xms64m")
            .arg("-Xmx384m")
            .arg("-XX:+UseSerialGC")
            // C1 only: startup matters more than peak throughput on a 2-core machine.
            .arg("-XX:TieredStopAtLevel=1")
            .arg(format!(
                "-Dlog4j.configuration=file:{}",
                self.dir.join("log4j.properties").display()
            ))
            .arg("-cp")
            .arg(format!("{}/*", libs.display()))
            .arg(main_class);
        command
    }

    /// Formats the node's log directory (KRaft storage), once.
    pub fn format(&self, libs: &Path) -> Result<()> {
        if self.dir.join("data/meta.properties").exists() {
            return Ok(());
        }
        let output = self
            .java(libs, "kafka.tools.StorageTool")
            .args(["format", "--ignore-formatted", "-t", CLUSTER_ID, "-c"])
            .arg(self.config_path())
            .output()
            .context("running java (is a JDK installed?)")?;
        if !output.status.success() {
            bail!(
                "formatting node {} failed: {}{}",
                self.id,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Starts the broker process (it must be formatted) and records its PID.
    pub fn start(&mut self, libs: &Path) -> Result<()> {
        if self.is_running() {
            return self.thaw();
        }
        let mut command = self.java(libs, "kafka.Kafka");
        command.arg(self.config_path());
        self.pid = Some(process::spawn_detached(command, &self.console_log())?);
        Ok(())
    }

    /// Graceful stop (SIGTERM, SIGKILL after 30 s).
    pub fn stop(&mut self) -> Result<()> {
        // A frozen JVM would sit on the SIGTERM until the grace period ran out.
        self.thaw()?;
        if let Some(pid) = self.pid.take() {
            process::stop(pid, &self.marker(), Duration::from_secs(30))?;
        }
        Ok(())
    }

    /// Hang: SIGSTOP. Connections and requests stall as behind a network partition, and the
    /// node keeps its log and its place in the ISR, which a crash does not (see
    /// [`crate::Stack::stop_kafka`]).
    pub fn freeze(&mut self) -> Result<()> {
        if let Some(pid) = self.pid {
            process::signal(pid, &self.marker(), libc::SIGSTOP)?;
            self.frozen = true;
        }
        Ok(())
    }

    /// Continues a frozen node (SIGCONT); nothing to do for one that is not.
    fn thaw(&mut self) -> Result<()> {
        if let (true, Some(pid)) = (self.frozen, self.pid) {
            process::signal(pid, &self.marker(), libc::SIGCONT)?;
        }
        self.frozen = false;
        Ok(())
    }

    /// Crash: SIGKILL, no controlled shutdown.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(pid) = self.pid.take() {
            process::kill(pid, &self.marker())?;
        }
        Ok(())
    }

    /// Why the node is not running, from its logs.
    pub fn diagnose(&self) -> String {
        format!(
            "node {} ({}): console:\n{}\nserver.log:\n{}",
            self.id,
            self.dir.display(),
            process::tail(&self.console_log(), 20),
            process::tail(&self.dir.join("server.log"), 20)
        )
    }
}

/// Waits until the cluster's metadata lists every broker in `expected` (as reached through
/// `bootstrap`), failing early if one of `nodes` died.
pub fn wait_for_brokers(
    bootstrap: &str,
    expected: &[i32],
    nodes: &[&Node],
    timeout: Duration,
) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("reconnect.backoff.max.ms", "200")
        .set("log_level", "0")
        .create()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(dead) = nodes.iter().find(|n| !n.is_running()) {
            bail!(
                "Kafka node {} exited during startup\n{}",
                dead.id,
                dead.diagnose()
            );
        }
        if let Ok(metadata) = consumer.fetch_metadata(None, Duration::from_secs(2)) {
            let live: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
            if expected.iter().all(|id| live.contains(id)) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = nodes.iter().map(|n| n.diagnose()).collect();
            bail!(
                "brokers {expected:?} not all up after {timeout:?}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until the cluster takes `acks=all` writes again: every partition has a leader and at
/// least `min.insync.replicas` (2, or all replicas when fewer) in sync. Brokers listed in the
/// metadata are not enough after an outage: leaders are elected and followers rejoin the ISR
/// some seconds later.
pub fn wait_until_writable(bootstrap: &str, timeout: Duration) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()?;
    let deadline = Instant::now() + timeout;
    loop {
        let blocked: Vec<String> = match consumer.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(metadata) => metadata
                .topics()
                .iter()
                .flat_map(|t| {
                    t.partitions()
                        .iter()
                        .filter(|p| p.leader() < 0 || p.isr().len() < p.replicas().len().min(2))
                        .map(move |p| format!("{}-{}", t.name(), p.id()))
                })
                .collect(),
            Err(e) => vec![format!("metadata: {e}")],
        };
        if blocked.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} partitions not writable {timeout:?} after the outage, e.g. {:?}",
                blocked.len(),
                &blocked[..3.min(blocked.len())]
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
