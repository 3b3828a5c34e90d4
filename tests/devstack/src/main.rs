//! `devstack up | down | status | env`: the local stack's command line (see the library docs).

use anyhow::{Result, bail};
use devstack::{Stack, Tools, default_dir};

fn main() -> Result<()> {
    let command = std::env::args().nth(1).unwrap_or_default();
    let dir = default_dir();
    match command.as_str() {
        "up" => {
            let stack = Stack::up(&dir, Tools::from_env())?;
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
        _ => bail!("usage: devstack up | down | status | env"),
    }
    Ok(())
}
