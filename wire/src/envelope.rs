//! The schema-version prefix every event value carries on the wire.
//!
//! Producers validate an event against its schema and send `prefix ‖ payload`, where the prefix is
//! five bytes: the magic byte `0x00` followed by the schema version as a big-endian `u32`. This is
//! the framing of the Confluent wire format, so existing deserializers and tools can read it.
//!
//! Nothing in this project re-encodes a value: the standby store keeps the exact bytes and the
//! republisher sends them back unchanged. The version is parsed only to label metrics and to tell
//! an operator which schema a stuck event was written with.

use thiserror::Error;

/// First byte of every framed value.
pub const MAGIC_BYTE: u8 = 0x00;
/// Length of the prefix: magic byte plus a 4-byte schema version.
pub const PREFIX_LEN: usize = 5;

/// A value split into its schema version and payload, borrowing the original bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub schema_version: u32,
    pub payload: &'a [u8],
}

/// Why a value is not a framed event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    #[error("value is {len} bytes, shorter than the {PREFIX_LEN}-byte schema-version prefix")]
    TooShort { len: usize },
    #[error("value starts with byte {found:#04x}, expected the magic byte {MAGIC_BYTE:#04x}")]
    BadMagic { found: u8 },
}

impl<'a> Envelope<'a> {
    /// Splits `value` into schema version and payload without copying.
    pub fn parse(value: &'a [u8]) -> Result<Self, EnvelopeError> {
        let Some((prefix, payload)) = value.split_first_chunk::<PREFIX_LEN>() else {
            return Err(EnvelopeError::TooShort { len: value.len() });
        };
        let [magic, version @ ..] = *prefix;
        if magic != MAGIC_BYTE {
            return Err(EnvelopeError::BadMagic { found: magic });
        }
        Ok(Self {
            schema_version: u32::from_be_bytes(version),
            payload,
        })
    }

    /// The framed bytes: prefix followed by the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut framed = Vec::with_capacity(PREFIX_LEN + self.payload.len());
        framed.push(MAGIC_BYTE);
        framed.extend_from_slice(&self.schema_version.to_be_bytes());
        framed.extend_from_slice(self.payload);
        framed
    }
}

/// The schema version of a framed value, or `None` when the value is not framed.
pub fn schema_version(value: &[u8]) -> Option<u32> {
    Envelope::parse(value).ok().map(|e| e.schema_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_version_and_payload() {
        let value = [0x00, 0x00, 0x00, 0x01, 0x02, b'h', b'i'];
        let envelope = Envelope::parse(&value).unwrap();
        assert_eq!(envelope.schema_version, 258);
        assert_eq!(envelope.payload, b"hi");
    }

    #[test]
    fn empty_payload_is_valid() {
        let envelope = Envelope::parse(&[0, 0, 0, 0, 7]).unwrap();
        assert_eq!(envelope.schema_version, 7);
        assert!(envelope.payload.is_empty());
    }

    #[test]
    fn rejects_short_values_with_their_length() {
        let err = Envelope::parse(&[0, 0, 1]).unwrap_err();
        assert_eq!(err, EnvelopeError::TooShort { len: 3 });
        assert!(err.to_string().contains("3 bytes"));
    }

    #[test]
    fn rejects_a_wrong_magic_byte() {
        let err = Envelope::parse(b"{\"json\":1}").unwrap_err();
        assert_eq!(err, EnvelopeError::BadMagic { found: b'{' });
        assert!(err.to_string().contains("0x7b"), "{err}");
    }

    proptest! {
        #[test]
        fn encode_then_parse_is_identity(version: u32, payload: Vec<u8>) {
            let framed = Envelope { schema_version: version, payload: &payload }.encode();
            let parsed = Envelope::parse(&framed).unwrap();
            prop_assert_eq!(parsed.schema_version, version);
            prop_assert_eq!(parsed.payload, &payload[..]);
        }
    }
}
