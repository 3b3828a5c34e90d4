//! A fleet of producer *processes* for the chaos test: several instances of a service sharing
//! keys, each with its own memory and Kafka client, like instances behind a load balancer.
//!
//! Each member is a `chaos-producer` process ([`crate`]'s binary) fed commands on stdin. A key's
//! events are sent one after another (the next only once the previous one's send returned), and
//! a key moves to another member every [`FleetPlan::switch_every`] events — after waiting one
//! signal interval, the precondition of the fallback's cross-instance guarantee. So "causal
//! order across processes" is exactly the order of each key's sequence numbers.
//!
//! A member can be killed (SIGKILL) and replaced mid-run: a send it never answered is sent again
//! with the same event id on the replacement (what a caller retrying an ambiguous failure does).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use sdk::fallback::Outcome;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, oneshot};
use wire::record::EventId;

use crate::outage::{Produced, Sent};

/// An answer: where the event went, or the error the fallback returned it with.
type Answer = Result<Outcome, String>;
type Pending = Arc<std::sync::Mutex<HashMap<EventId, oneshot::Sender<Answer>>>>;

/// One running producer process.
struct Member {
    child: Child,
    stdin: ChildStdin,
    pending: Pending,
}

/// The fleet's processes, by slot.
pub struct Fleet {
    program: PathBuf,
    env: Vec<(String, String)>,
    members: Vec<Mutex<Member>>,
    spawned: AtomicUsize,
}

/// What the fleet produces, and the faults it goes through.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    /// Events per key.
    pub per_key: usize,
    /// Keys, each `(topic, key number)`.
    pub keys: Vec<(String, usize)>,
    /// A key's events move to the next member after this many.
    pub switch_every: usize,
    /// The producers' `STANDBY_SIGNAL_INTERVAL_MS`.
    pub signal_interval: Duration,
}

impl Fleet {
    /// Starts `size` members of `program`, each configured from `env` plus its own producer id.
    pub async fn start(program: PathBuf, env: Vec<(String, String)>, size: usize) -> Result<Self> {
        let mut fleet = Self {
            program,
            env,
            members: Vec::new(),
            spawned: AtomicUsize::new(0),
        };
        for _ in 0..size {
            let member = fleet.spawn()?;
            fleet.members.push(Mutex::new(member));
        }
        Ok(fleet)
    }

    /// Processes started so far (restarts included).
    pub fn spawned(&self) -> usize {
        self.spawned.load(Ordering::Relaxed)
    }

    fn spawn(&self) -> Result<Member> {
        let n = self.spawned.fetch_add(1, Ordering::Relaxed);
        let mut child = Command::new(&self.program)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("STANDBY_PRODUCER_ID", format!("fleet-member-{n}"))
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let pending: Pending = Arc::default();
        let answers = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some((id, outcome)) = parse_answer(&line)
                    && let Some(waiter) = answers.lock().unwrap().remove(&id)
                {
                    let _ = waiter.send(outcome);
                }
            }
            // The process is gone: every send it did not answer learns so.
            answers.lock().unwrap().clear();
        });
        Ok(Member {
            child,
            stdin,
            pending,
        })
    }

    /// Kills member `slot` (SIGKILL) and starts a replacement in its place.
    pub async fn restart(&self, slot: usize) -> Result<()> {
        let mut member = self.members[slot].lock().await;
        member.child.start_kill()?;
        member.child.wait().await?;
        *member = self.spawn()?;
        Ok(())
    }

    /// Sends one event through member `slot`; `None` if the member died before answering.
    async fn send_once(
        &self,
        slot: usize,
        event_id: EventId,
        topic: &str,
        key: usize,
        seq: usize,
    ) -> Result<Option<Answer>> {
        let answer = {
            let mut member = self.members[slot].lock().await;
            let (tx, rx) = oneshot::channel();
            member.pending.lock().unwrap().insert(event_id, tx);
            let line = format!("{event_id}\t{topic}\t{key}\t{seq}\n");
            if member.stdin.write_all(line.as_bytes()).await.is_err() {
                return Ok(None);
            }
            rx
        };
        Ok(answer.await.ok())
    }

    /// Sends one event, again with the same id on the (restarted) member until it is answered.
    async fn send(
        &self,
        slot: usize,
        event_id: EventId,
        topic: &str,
        key: usize,
        seq: usize,
    ) -> Result<(Answer, usize)> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Some(answer) = self.send_once(slot, event_id, topic, key, seq).await? {
                return Ok((answer, attempts));
            }
            if Instant::now() > deadline {
                bail!("member {slot} never answered for event {event_id}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Produces `plan`: every key's events in sequence, all keys concurrently. `sent_count` is
    /// advanced as sends return (for whoever times the faults).
    pub async fn produce(&self, plan: &FleetPlan, sent_count: &AtomicUsize) -> Result<Produced> {
        let started = Instant::now();
        let members = self.members.len();
        let retried = AtomicUsize::new(0);
        let results: Vec<Result<Vec<Result<Sent, String>>>> =
            futures::stream::iter(plan.keys.iter().cloned())
                .map(|(topic, key)| {
                    let retried = &retried;
                    async move {
                        let mut sent = Vec::with_capacity(plan.per_key);
                        let mut last_slot = None;
                        for seq in 0..plan.per_key {
                            let slot = (key + seq / plan.switch_every.max(1)) % members;
                            if last_slot.is_some_and(|last| last != slot) {
                                // The fallback's cross-instance guarantee starts one signal
                                // interval after the previous event was sent.
                                tokio::time::sleep(plan.signal_interval).await;
                            }
                            last_slot = Some(slot);
                            let event_id = EventId::new();
                            let (answer, attempts) =
                                self.send(slot, event_id, &topic, key, seq).await?;
                            if attempts > 1 {
                                retried.fetch_add(1, Ordering::Relaxed);
                            }
                            sent_count.fetch_add(1, Ordering::Relaxed);
                            sent.push(answer.map(|outcome| Sent {
                                event_id,
                                topic: topic.clone(),
                                key,
                                seq,
                                outcome,
                            }));
                        }
                        Ok(sent)
                    }
                })
                .buffer_unordered(plan.keys.len().max(1))
                .collect()
                .await;
        let mut produced = Produced::default();
        for result in results {
            for sent in result? {
                match sent {
                    Ok(sent) => produced.sent.push(sent),
                    Err(error) => produced.errors.push(error),
                }
            }
        }
        produced.retried_after_restart = retried.into_inner();
        produced.elapsed = started.elapsed();
        Ok(produced)
    }

    /// Closes every member's stdin and waits for them to exit.
    pub async fn stop(self) -> Result<()> {
        for member in self.members {
            let Member {
                mut child, stdin, ..
            } = member.into_inner();
            drop(stdin);
            child.wait().await?;
        }
        Ok(())
    }
}

fn parse_answer(line: &str) -> Option<(EventId, Answer)> {
    let mut fields = line.splitn(3, '\t');
    let id: EventId = fields.next()?.parse().ok()?;
    let kind = fields.next()?;
    let detail = fields.next().unwrap_or_default().to_string();
    let answer = match kind {
        "kafka" => {
            let (partition, offset) = detail.split_once(':')?;
            Ok(Outcome::Kafka {
                partition: partition.parse().ok()?,
                offset: offset.parse().ok()?,
            })
        }
        "standby" => Ok(Outcome::Standby { reason: detail }),
        "dead_lettered" => Ok(Outcome::DeadLettered { reason: detail }),
        _ => Err(detail),
    };
    Some((id, answer))
}
