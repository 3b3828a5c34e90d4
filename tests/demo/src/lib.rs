//! The end-to-end stories `make demo` tells and the chaos test checks, on the local stack:
//! [`outage`] (produce through a broker outage, drain, verify nothing was lost) and [`scaling`]
//! (CPU alarm → autoscaler → new brokers → rebalancer).

pub mod fleet;
pub mod outage;
pub mod scaling;

/// A whole number from the environment (the demo's and the chaos test's sizes), else `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
