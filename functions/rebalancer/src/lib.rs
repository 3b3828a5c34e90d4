//! The rebalancer: after brokers are added, moves partition replicas onto them.
//!
//! - [`cluster`]: the cluster description (also the offline file format) and the
//!   `kafka-reassign-partitions` JSON;
//! - [`kafka_layout`]: the layout `kafka-reassign-partitions --generate` proposes (the baseline);
//! - [`planner`]: the pure, deterministic plan — minimal moves, rack-aware, leaders balanced.

pub mod cluster;
pub mod kafka_layout;
pub mod planner;
