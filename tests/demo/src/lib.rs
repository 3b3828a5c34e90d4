//! The end-to-end stories `make demo` tells and the chaos test checks, on the local stack:
//! [`outage`] (produce through a broker outage, drain, verify nothing was lost) and [`scaling`]
//! (CPU alarm → autoscaler → new brokers → rebalancer).

pub mod fleet;
pub mod outage;
pub mod scaling;
