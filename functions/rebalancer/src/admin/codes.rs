//! The Kafka protocol enumerations our requests carry, named as Kafka's own clients name them
//! (`kafka-protocol` names the error codes, not these).

/// `ConfigResource.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub(super) enum ResourceType {
    Topic = 2,
    Broker = 4,
}

/// `AlterConfigOp.OpType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub(super) enum AlterConfigOp {
    Set = 0,
    Delete = 1,
    Append = 2,
}

/// `DescribeConfigsResponse.ConfigSource`: where a config's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub(super) enum ConfigSource {
    /// Set dynamically as the default for every broker.
    DynamicDefaultBrokerConfig = 3,
}

/// `ElectionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub(super) enum ElectionType {
    Preferred = 0,
}
