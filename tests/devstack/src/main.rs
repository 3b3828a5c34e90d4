//! `devstack up | down | status | env | provision | serve-msk`: the local stack's command line
//! (see the library docs). `provision` creates the tables and topics the functions use locally;
//! `serve-msk` is what `up` starts in the background.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use devstack::msk_standin::MskStandIn;
use devstack::{MSK_CLUSTER_NAME, Stack, Tools, default_dir};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let command = args.get(1).cloned().unwrap_or_default();
    let dir = default_dir();
    match command.as_str() {
        "up" => {
            let mut stack = Stack::up(&dir, Tools::from_env())?;
            stack.start_msk(&std::env::current_exe()?)?;
            println!("local stack up in {}", stack.dir.display());
            print!("{}", stack.env_file());
        }
        "down" => match Stack::load(&dir)? {
            Some(stack) => {
                stack.down()?;
                println!("local stack stopped");
            }
            None => println!("no local stack in {}", dir.display()),
        },
        "status" => match Stack::load(&dir)? {
            Some(stack) => {
                for node in &stack.nodes {
                    let state = if node.is_running() {
                        "running"
                    } else {
                        "stopped"
                    };
                    println!(
                        "kafka node {} ({}, {:?}) {}: {state}",
                        node.id,
                        node.rack,
                        node.role,
                        node.bootstrap()
                    );
                }
                println!(
                    "moto {}: {}",
                    stack.moto.endpoint(),
                    if stack.is_healthy() { "ok" } else { "check" }
                );
            }
            None => println!("no local stack in {}", dir.display()),
        },
        "env" => match Stack::load(&dir)? {
            Some(stack) => print!("{}", stack.env_file()),
            None => bail!("no local stack in {}: run `devstack up`", dir.display()),
        },
        "provision" => {
            let stack = Stack::attach()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(devstack::testkit::provision(
                &stack.bootstrap_servers(),
                &stack.aws_endpoint(),
            ))?;
            println!("local tables and topics ready");
        }
        "serve-msk" => {
            let port: u16 = args
                .iter()
                .position(|a| a == "--port")
                .and_then(|i| args.get(i + 1))
                .context("serve-msk needs --port <port>")?
                .parse()?;
            // `up` records this process once it has spawned it; wait for that record, so that
            // saving the stack later (when brokers are added) keeps it.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while Stack::load(&dir)?.is_none_or(|s| s.msk.is_none()) {
                if std::time::Instant::now() > deadline {
                    bail!(
                        "the stack in {} does not record this stand-in",
                        dir.display()
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let stack = Stack::attach()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let _standin = MskStandIn::start(
                    Arc::new(Mutex::new(stack)),
                    MSK_CLUSTER_NAME,
                    "kafka.m7g.large",
                    port,
                )
                .await?;
                std::future::pending::<Result<()>>().await
            })?;
        }
        _ => {
            bail!("usage: devstack up | down | status | env | provision | serve-msk --port <port>")
        }
    }
    Ok(())
}
