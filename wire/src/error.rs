//! Why bytes are not a valid standby record: each error names the attribute, so a log line or a
//! dead-letter header is enough to act on.

use thiserror::Error;

/// A DynamoDB item or stream image that is not a valid standby record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("the image has no attributes (a REMOVE record, or a stream without NEW_IMAGE)")]
    EmptyImage,
    #[error("attribute `{attribute}` is missing")]
    MissingAttribute { attribute: String },
    #[error("attribute `{attribute}` is invalid: {reason}")]
    InvalidAttribute { attribute: String, reason: String },
    #[error(
        "attribute `format_version` is {found}, this build reads versions {:?}",
        crate::record::READABLE_FORMAT_VERSIONS
    )]
    UnknownFormatVersion { found: String },
    /// The values stay out of the message (it becomes a log line and a dead-letter header):
    /// a partition key carries a hash of the Kafka key.
    #[error(
        "attribute `pk` is not the partition key of the item's topic, key and event id (see \
         the partition-key rule in docs/producer-guide.md)"
    )]
    PartitionKeyMismatch { stored: String, expected: String },
    #[error("attribute `headers` holds {name:?}, a header only the platform sets")]
    ReservedHeader { name: String },
}

impl RecordError {
    pub(crate) fn from_serde(err: serde_path_to_error::Error<serde_dynamo::Error>) -> Self {
        let path = err.path().to_string();
        let reason = err.into_inner().to_string();
        // serde reports a missing field at the parent's path, naming the field in backticks.
        if let Some(field) = reason
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            let attribute = if path == "." {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            return Self::MissingAttribute { attribute };
        }
        Self::InvalidAttribute {
            attribute: path,
            reason,
        }
    }

    /// Stable, short label for metrics and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EmptyImage => "empty_image",
            Self::MissingAttribute { .. } => "missing_attribute",
            Self::InvalidAttribute { .. } => "invalid_attribute",
            Self::UnknownFormatVersion { .. } => "unknown_format_version",
            Self::PartitionKeyMismatch { .. } => "partition_key_mismatch",
            Self::ReservedHeader { .. } => "reserved_header",
        }
    }
}
