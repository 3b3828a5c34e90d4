//! The local stack: real services on 127.0.0.1 for the integration tests and `make demo`.
//!
//! - a 3-node Apache Kafka 4.3.1 cluster in KRaft mode (nodes 1..3 are broker + controller,
//!   racks `az-a`, `az-b`, `az-c`), from the jars `make setup` resolves with Maven, with a
//!   PLAINTEXT and a TLS listener per broker (a local CA made at start-up, [`tls`]);
//! - moto server for DynamoDB, DynamoDB Streams and CloudWatch.
//!
//! `devstack up` starts them once per `make test` run and records ports and PIDs in
//! `<dir>/stack.json` (`<dir>` is `$DEVSTACK_DIR`, else `.stack/` at the workspace root); tests
//! attach with [`Stack::attach`], use their own topics and tables, and may stop, kill or restart
//! nodes (the outage tests) or add broker-only nodes (the scale-out tests). `devstack down`
//! stops everything by PID.
//!
//! Layout: [`process`] spawns and signals processes, [`kafka`] configures and runs one node,
//! [`testkit`] has the helpers tests share (topics, consuming, AWS clients for moto), and
//! [`stream_driver`] plays Lambda's DynamoDB Streams event source mapping, [`msk_standin`]
//! stands in for the MSK control plane, [`lambda`] runs cargo-lambda's runtime emulator and
//! function binaries against it, and [`issuer`] is a JWT issuer with a JWKS over HTTP.

pub mod issuer;
pub mod kafka;
pub mod lambda;
pub mod msk_standin;
pub mod process;
pub mod stream_driver;
pub mod testkit;
pub mod tls;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::kafka::{Node, Role};

/// Racks of the initial nodes 1, 2, 3 (MSK names them after AZs).
pub const RACKS: [&str; 3] = ["az-a", "az-b", "az-c"];
/// How long a cold cluster may take to come up on a 2-core machine.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the jars and moto live; defaults match what `make setup` installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tools {
    pub kafka_libs: PathBuf,
    pub moto_server: PathBuf,
}

impl Tools {
    /// `$KAFKA_LIBS` (default `~/.cache/standby-events/kafka-libs`) and `$MOTO_SERVER`
    /// (default `.venv/bin/moto_server` at the workspace root).
    pub fn from_env() -> Self {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        Self {
            kafka_libs: std::env::var_os("KAFKA_LIBS")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(&home).join(".cache/standby-events/kafka-libs")),
            moto_server: std::env::var_os("MOTO_SERVER")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join(".venv/bin/moto_server")),
        }
    }

    fn check(&self) -> Result<()> {
        let kafka_jar = self.kafka_libs.join("kafka_2.13-4.3.1.jar");
        if !kafka_jar.exists() {
            bail!(
                "{} is missing: run `make setup` (resolves the Kafka jars)",
                kafka_jar.display()
            );
        }
        if !self.moto_server.exists() {
            bail!(
                "{} is missing: run `make setup` (installs moto)",
                self.moto_server.display()
            );
        }
        Ok(())
    }
}

/// Part of moto's command line, checked before signalling its PID.
const MOTO_MARKER: &str = "moto_server";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moto {
    pub port: u16,
    pub pid: Option<u32>,
    pub log: PathBuf,
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn is_running(&self) -> bool {
        self.pid
            .is_some_and(|pid| process::is_running(pid, MOTO_MARKER))
    }
}

/// The running stack, as recorded in its state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stack {
    pub dir: PathBuf,
    pub tools: Tools,
    pub nodes: Vec<Node>,
    pub moto: Moto,
    /// The MSK control-plane stand-in serving this stack's cluster, once started.
    #[serde(default)]
    pub msk: Option<MskProcess>,
}

/// Part of the stand-in's command line, checked before signalling its PID.
const MSK_MARKER: &str = "serve-msk";

/// Name of the cluster the background MSK stand-in serves.
pub const MSK_CLUSTER_NAME: &str = "local-msk";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MskProcess {
    pub port: u16,
    pub pid: Option<u32>,
    pub cluster_arn: String,
}

impl MskProcess {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn is_running(&self) -> bool {
        self.pid
            .is_some_and(|pid| process::is_running(pid, MSK_MARKER))
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$DEVSTACK_DIR`, else `.stack/` at the workspace root.
pub fn default_dir() -> PathBuf {
    std::env::var_os("DEVSTACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".stack"))
}

impl Stack {
    fn state_path(dir: &Path) -> PathBuf {
        dir.join("stack.json")
    }

    /// The stack recorded in `dir`, if any.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = Self::state_path(dir);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        ))
    }

    /// The stack tests run against; a clear error when it is not up.
    pub fn attach() -> Result<Self> {
        let dir = default_dir();
        match Self::load(&dir)? {
            Some(stack) if stack.is_healthy() => Ok(stack),
            Some(_) => bail!(
                "the local stack in {} is not fully running: run `make stack-down stack-up`",
                dir.display()
            ),
            None => bail!(
                "no local stack in {}: run `make stack-up` first (or `make test`, which starts it)",
                dir.display()
            ),
        }
    }

    fn save(&self) -> Result<()> {
        let path = Self::state_path(&self.dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(tmp, path)?;
        std::fs::write(self.dir.join("stack.env"), self.env_file())?;
        Ok(())
    }

    /// Every recorded process is alive (moto, and the nodes that should be running).
    pub fn is_healthy(&self) -> bool {
        self.moto.is_running()
            && self.msk.as_ref().is_none_or(MskProcess::is_running)
            && self.nodes.iter().all(|n| n.pid.is_none() || n.is_running())
    }

    /// Starts `devstack_binary serve-msk` in the background: the MSK stand-in for this stack's
    /// cluster, reachable at [`MskProcess::endpoint`] (`AWS_ENDPOINT_URL_KAFKA` in `stack.env`).
    pub fn start_msk(&mut self, devstack_binary: &Path) -> Result<()> {
        if self.msk.as_ref().is_some_and(MskProcess::is_running) {
            return Ok(());
        }
        let port = process::free_port()?;
        let mut command = Command::new(devstack_binary);
        command
            .args([MSK_MARKER, "--port", &port.to_string()])
            .env("DEVSTACK_DIR", &self.dir);
        let pid = process::spawn_detached(command, &self.dir.join("msk-standin.log"))?;
        self.msk = Some(MskProcess {
            port,
            pid: Some(pid),
            cluster_arn: msk_standin::cluster_arn(MSK_CLUSTER_NAME),
        });
        self.save()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline || !self.msk.as_ref().is_some_and(MskProcess::is_running) {
                bail!(
                    "the MSK stand-in did not start:\n{}",
                    process::tail(&self.dir.join("msk-standin.log"), 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Starts the stack in `dir`, or reuses the one already running there.
    pub fn up(dir: &Path, tools: Tools) -> Result<Self> {
        if let Some(existing) = Self::load(dir)? {
            if existing.is_healthy() && existing.nodes.iter().all(Node::is_running) {
                return Ok(existing);
            }
            existing.down()?;
        }
        tools.check()?;
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;

        let mut nodes = Vec::new();
        for (index, rack) in RACKS.iter().enumerate() {
            nodes.push(Node {
                id: index as i32 + 1,
                rack: (*rack).to_string(),
                role: Role::Combined,
                broker_port: process::free_port()?,
                tls_port: process::free_port()?,
                controller_port: Some(process::free_port()?),
                dir: dir.join(format!("node-{}", index + 1)),
                pid: None,
                frozen: false,
            });
        }
        let moto = Moto {
            port: process::free_port()?,
            pid: None,
            log: dir.join("moto.log"),
        };
        let mut stack = Self {
            dir,
            tools,
            nodes,
            moto,
            msk: None,
        };
        stack.save()?;

        let tls = tls::TlsFiles::make(&stack.dir)?;
        let voters = stack.voters();
        for node in &stack.nodes {
            node.write_config(&voters, &tls.keystore)?;
        }
        stack.format_all()?;
        let libs = stack.tools.kafka_libs.clone();
        for node in &mut stack.nodes {
            node.start(&libs)?;
        }
        stack.start_moto()?;
        stack.save()?;

        let ids: Vec<i32> = stack.nodes.iter().map(|n| n.id).collect();
        let all: Vec<&Node> = stack.nodes.iter().collect();
        kafka::wait_for_brokers(&stack.bootstrap_servers(), &ids, &all, STARTUP_TIMEOUT)?;
        stack.wait_for_moto()?;
        Ok(stack)
    }

    /// Stops every process by PID and removes the state (data directories included).
    pub fn down(mut self) -> Result<()> {
        let mut errors = Vec::new();
        for node in &mut self.nodes {
            if let Err(e) = node.stop() {
                errors.push(format!("node {}: {e:#}", node.id));
            }
        }
        if let Some(pid) = self.msk.as_mut().and_then(|m| m.pid.take())
            && let Err(e) = process::stop(pid, MSK_MARKER, Duration::from_secs(5))
        {
            errors.push(format!("msk stand-in: {e:#}"));
        }
        if let Some(pid) = self.moto.pid.take()
            && let Err(e) = process::stop(pid, MOTO_MARKER, Duration::from_secs(5))
        {
            errors.push(format!("moto: {e:#}"));
        }
        if !errors.is_empty() {
            self.save()?;
            bail!("could not stop everything: {}", errors.join("; "));
        }
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("removing {}", self.dir.display()))?;
        Ok(())
    }

    fn voters(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| {
                n.controller_port
                    .map(|port| format!("{}@127.0.0.1:{port}", n.id))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Formats every node in parallel (each is a JVM start).
    fn format_all(&self) -> Result<()> {
        let libs = &self.tools.kafka_libs;
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|node| scope.spawn(move || node.format(libs)))
                .collect();
            handles
                .into_iter()
                .try_for_each(|h| h.join().expect("format thread panicked"))
        })
    }

    /// moto through `moto_server.py` (beside this crate): the same server with base-table
    /// Queries reading one partition, as DynamoDB does, instead of sorting the whole table per
    /// call (see that file). Run by the venv's Python, next to `moto_server`. The Makefile names
    /// the clone's copy (`DEVSTACK_MOTO_LAUNCHER`): the cached target directory may hold a
    /// devstack built in another clone, whose path is compiled in.
    fn start_moto(&mut self) -> Result<()> {
        let python = self.tools.moto_server.with_file_name("python");
        let launcher = std::env::var_os("DEVSTACK_MOTO_LAUNCHER")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("moto_server.py"));
        let mut command = Command::new(python);
        command.arg(launcher);
        command.args(["-H", "127.0.0.1", "-p", &self.moto.port.to_string()]);
        self.moto.pid = Some(process::spawn_detached(command, &self.moto.log)?);
        Ok(())
    }

    fn wait_for_moto(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.moto.port)).is_err() {
            if !self.moto.is_running() || Instant::now() > deadline {
                bail!("moto did not start:\n{}", process::tail(&self.moto.log, 20));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// `host:port` list of the nodes that should be running.
    pub fn bootstrap_servers(&self) -> String {
        self.nodes
            .iter()
            .map(Node::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The brokers' TLS listeners (clients trust [`TlsFiles::ca`]).
    pub fn tls_bootstrap_servers(&self) -> String {
        self.nodes
            .iter()
            .map(Node::tls_bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The CA files of the TLS listener.
    pub fn tls(&self) -> tls::TlsFiles {
        tls::TlsFiles::at(&self.dir)
    }

    pub fn aws_endpoint(&self) -> String {
        self.moto.endpoint()
    }

    pub fn node(&self, id: i32) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id} in the stack"))
    }

    fn node_mut(&mut self, id: i32) -> Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id} in the stack"))
    }

    /// Runs `change` on the stack as recorded now (another process — a test binary, the MSK
    /// stand-in — may have changed it since this copy was read), under a lock, and records the
    /// result.
    fn update(&mut self, change: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let _lock = StateLock::acquire(&self.dir)?;
        if let Some(latest) = Self::load(&self.dir)? {
            *self = latest;
        }
        let result = change(self);
        self.save()?;
        result
    }

    /// Gracefully stops one node.
    pub fn stop_node(&mut self, id: i32) -> Result<()> {
        self.update(|stack| stack.node_mut(id)?.stop())
    }

    /// Kills one node with SIGKILL (a crash).
    pub fn kill_node(&mut self, id: i32) -> Result<()> {
        self.update(|stack| stack.node_mut(id)?.kill())
    }

    /// Starts a stopped node again and waits until it is back in the cluster metadata.
    pub fn start_node(&mut self, id: i32) -> Result<()> {
        let libs = self.tools.kafka_libs.clone();
        self.update(|stack| stack.node_mut(id)?.start(&libs))?;
        let node = self.node(id)?;
        kafka::wait_for_brokers(&node.bootstrap(), &[id], &[node], STARTUP_TIMEOUT)
    }

    /// Takes every Kafka node out of reach (an outage). Without `crash` each stops gracefully
    /// (SIGTERM). With `crash` the first node is SIGKILLed and the others are frozen (SIGSTOP):
    /// no broker answers (one refuses connections, the rest hang as behind a partition), yet at
    /// least two replicas of every partition (replication factor 3) keep their logs. That is the
    /// condition Kafka's own durability promise rests on ("a committed message will not be
    /// lost, as long as there is at least one in sync replica alive"). Killing every replica at
    /// once is outside it, and the local cluster did lose acknowledged records that way, about
    /// one run in 36: after a restart every old broker session expired together and the
    /// controller elected, uncleanly, a replica that lacked them.
    pub fn stop_kafka(&mut self, crash: bool) -> Result<()> {
        self.update(|stack| {
            for (index, node) in stack.nodes.iter_mut().enumerate() {
                match (crash, index) {
                    (false, _) => node.stop()?,
                    (true, 0) => node.kill()?,
                    (true, _) => node.freeze()?,
                }
            }
            Ok(())
        })
    }

    /// Starts every stopped Kafka node and waits until all are back.
    pub fn start_kafka(&mut self) -> Result<()> {
        let libs = self.tools.kafka_libs.clone();
        self.update(|stack| {
            stack
                .nodes
                .iter_mut()
                .try_for_each(|node| node.start(&libs))
        })?;
        let ids: Vec<i32> = self.nodes.iter().map(|n| n.id).collect();
        let all: Vec<&Node> = self.nodes.iter().collect();
        kafka::wait_for_brokers(&self.bootstrap_servers(), &ids, &all, STARTUP_TIMEOUT)
    }

    /// Takes every Kafka node down (SIGKILL when `crash`) until [`KafkaOutage::end`]; if the
    /// guard is dropped first (a failing test), the nodes are started again so the next test
    /// finds a cluster.
    pub fn kafka_outage(&mut self, crash: bool) -> Result<KafkaOutage<'_>> {
        self.stop_kafka(crash)?;
        Ok(KafkaOutage {
            stack: self,
            ended: false,
        })
    }

    /// Denies (or, with `deny == false`, allows again) writes to `topic` for the anonymous
    /// principal every local client uses, through Kafka's own ACL tool: produce requests then
    /// fail with `TopicAuthorizationFailed` on that topic only.
    pub fn deny_writes(&self, topic: &str, deny: bool) -> Result<()> {
        self.deny(&["--topic", topic], "Write", deny)
    }

    /// Denies (or allows again) `operation` on the cluster resource to the anonymous principal:
    /// `Alter` makes partition reassignments fail with `ClusterAuthorizationFailed`. Brokers
    /// replicate as that principal too, and once the cluster resource has any ACL, "allow if no
    /// ACL is found" no longer covers it: an ALLOW of every operation goes with the DENY (a DENY
    /// wins over an ALLOW), so only `operation` is refused.
    pub fn deny_on_cluster(&self, operation: &str, deny: bool) -> Result<()> {
        let cluster = ["--cluster"];
        if deny {
            self.acl(&cluster, "--allow-principal", "All", true)?;
            self.acl(&cluster, "--deny-principal", operation, true)
        } else {
            self.acl(&cluster, "--deny-principal", operation, false)?;
            self.acl(&cluster, "--allow-principal", "All", false)
        }
    }

    /// A DENY ACL for `User:ANONYMOUS` on `resource` (Kafka's AclCommand arguments), added or
    /// removed.
    fn deny(&self, resource: &[&str], operation: &str, deny: bool) -> Result<()> {
        self.acl(resource, "--deny-principal", operation, deny)
    }

    /// Adds (or removes) an ACL for `User:ANONYMOUS`: `kind` is `--allow-principal` or
    /// `--deny-principal`.
    ///
    /// Sent to the quorum as its super user, so an ACL can always be removed again (deleting
    /// ACLs needs `Alter` on the cluster, which a test may have denied to everyone else).
    fn acl(&self, resource: &[&str], kind: &str, operation: &str, add: bool) -> Result<()> {
        let classpath = format!("{}/*", self.tools.kafka_libs.display());
        let controllers = self
            .nodes
            .iter()
            .filter_map(|n| n.controller_port.map(|port| format!("127.0.0.1:{port}")))
            .collect::<Vec<_>>()
            .join(",");
        let credentials = self.dir.join("quorum-admin.properties");
        std::fs::write(&credentials, kafka::quorum_admin_properties())?;
        let output = std::process::Command::new("java")
            .args([
                "-Xmx128m",
                "-cp",
                &classpath,
                "org.apache.kafka.tools.AclCommand",
            ])
            .args(["--bootstrap-controller", &controllers])
            .arg("--command-config")
            .arg(&credentials)
            .arg(if add { "--add" } else { "--remove" })
            .args(["--force", kind, "User:ANONYMOUS"])
            .args(["--operation", operation])
            .args(resource)
            .output()
            .context("running Kafka's AclCommand")?;
        if !output.status.success() {
            bail!(
                "AclCommand failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// Adds and starts a broker-only node in `rack`, joining the existing quorum (a scale-out).
    pub fn add_broker(&mut self, id: i32, rack: &str) -> Result<()> {
        if self.nodes.iter().any(|n| n.id == id) {
            bail!("node {id} already exists");
        }
        let node = Node {
            id,
            rack: rack.to_string(),
            role: Role::Broker,
            broker_port: process::free_port()?,
            tls_port: process::free_port()?,
            controller_port: None,
            dir: self.dir.join(format!("node-{id}")),
            pid: None,
            frozen: false,
        };
        node.write_config(&self.voters(), &self.tls().keystore)?;
        node.format(&self.tools.kafka_libs)?;
        let libs = self.tools.kafka_libs.clone();
        self.update(|stack| {
            stack.nodes.push(node);
            stack.node_mut(id)?.start(&libs)
        })?;
        let node = self.node(id)?;
        kafka::wait_for_brokers(&node.bootstrap(), &[id], &[node], STARTUP_TIMEOUT)
    }

    /// Stops and forgets a broker-only node (undoing [`Self::add_broker`]).
    pub fn remove_broker(&mut self, id: i32) -> Result<()> {
        let mut dir = None;
        self.update(|stack| {
            let node = stack.node_mut(id)?;
            if node.role != Role::Broker {
                bail!("node {id} is a controller; only added brokers can be removed");
            }
            node.stop()?;
            dir = Some(node.dir.clone());
            stack.nodes.retain(|n| n.id != id);
            Ok(())
        })?;
        if let Some(dir) = dir {
            std::fs::remove_dir_all(dir).ok();
        }
        Ok(())
    }

    /// Shell-sourceable variables pointing clients at the stack.
    pub fn env_file(&self) -> String {
        let msk = self
            .msk
            .as_ref()
            .map(|m| {
                format!(
                    "AWS_ENDPOINT_URL_KAFKA={}\nMSK_CLUSTER_ARN={}\n",
                    m.endpoint(),
                    m.cluster_arn
                )
            })
            .unwrap_or_default();
        msk + &format!(
            "\
KAFKA_BOOTSTRAP_SERVERS={}
KAFKA_SECURITY_PROTOCOL=PLAINTEXT
# The same brokers over TLS: KAFKA_SECURITY_PROTOCOL=SSL with these two.
KAFKA_TLS_BOOTSTRAP_SERVERS={}
KAFKA_TLS_CA_LOCATION={}
AWS_ENDPOINT_URL={}
AWS_REGION=us-east-1
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
",
            self.bootstrap_servers(),
            self.tls_bootstrap_servers(),
            self.tls().ca.display(),
            self.aws_endpoint()
        )
    }
}

/// An exclusive advisory lock on the stack's state file, held while it is read, changed and
/// written back.
struct StateLock {
    /// Closing the file releases the lock.
    _file: std::fs::File,
}

impl StateLock {
    fn acquire(dir: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("stack.lock"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock(2) on a descriptor we own; released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!(
                "locking the stack state: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(Self { _file: file })
    }
}

/// A Kafka outage in progress; see [`Stack::kafka_outage`].
pub struct KafkaOutage<'a> {
    stack: &'a mut Stack,
    ended: bool,
}

impl KafkaOutage<'_> {
    /// Starts the nodes again and waits until every broker is back and every partition takes
    /// `acks=all` writes.
    pub fn end(mut self) -> Result<()> {
        self.ended = true;
        self.stack.start_kafka()?;
        kafka::wait_until_writable(&self.stack.bootstrap_servers(), STARTUP_TIMEOUT)
    }
}

impl Drop for KafkaOutage<'_> {
    fn drop(&mut self) {
        if !self.ended
            && let Err(e) = self.stack.start_kafka()
        {
            eprintln!("restarting Kafka after an interrupted outage failed: {e:#}");
        }
    }
}

/// A moto server of one test's own, for faults the shared one must not suffer: the test can
/// SIGKILL it (an outage of the service it stands for) without breaking the suites running
/// beside it. Killed when dropped.
pub struct PrivateMoto {
    pub port: u16,
    child: std::process::Child,
}

impl PrivateMoto {
    /// Starts the plain `moto_server` from the venv on a free port and waits until it listens.
    pub fn start() -> Result<Self> {
        let tools = Tools::from_env();
        tools.check()?;
        let port = process::free_port()?;
        let child = Command::new(&tools.moto_server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", tools.moto_server.display()))?;
        let mut moto = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if moto.child.try_wait()?.is_some() || Instant::now() > deadline {
                bail!("a private moto server did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash: connections are refused from now on.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
