//! The rebalancer: after brokers are added, moves partition replicas onto them.
//!
//! - [`planner`]: the pure, deterministic plan — minimal moves, rack-aware, leaders balanced;
//!   [`cluster`]: its input (also the offline file format) and the `kafka-reassign-partitions` JSON;
//! - [`executor`]: carries a plan out in throttled, limited batches, resumably;
//! - [`admin`]: a small Kafka admin client over `kafka-protocol` (reassignments, configs, elections);
//!   [`cluster`] also holds the live view it reads;
//! - [`handler`]: the Lambda invocation; [`cli`]: `describe` and `plan` for operators;
//!   [`settings`]: configuration;
//! - [`kafka_layout`]: the layout `kafka-reassign-partitions --generate` proposes (the baseline).

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod executor;
pub mod handler;
pub mod kafka_layout;
pub mod planner;
pub mod settings;
