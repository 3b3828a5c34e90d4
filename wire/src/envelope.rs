//! The schema-version prefix every event value carries on the wire.
//!
//! A value is `prefix ‖ payload`. Two framings are read; producers of this project write the
//! first:
//!
//! - **AWS Glue Schema Registry** (the format of AWS's Glue SerDe library, so its Java and Python
//!   deserializers read our events): byte 0 is the header version `0x03`, byte 1 the
//!   compression (`0x00` none, `0x05` zlib), bytes 2–17 the schema version's UUID (RFC 4122 byte
//!   order), then the payload: an Avro binary datum or UTF-8 JSON, zlib-compressed when byte 1
//!   says so.
//! - **Confluent** (what the first round wrote, and what Confluent tools write): the magic byte
//!   `0x00`, then the schema id as a big-endian 4-byte integer, then the payload.
//!
//! The first byte tells them apart. Nothing in the standby path re-encodes a value: the standby
//! store keeps the exact bytes and the republisher sends them back unchanged.

use std::borrow::Cow;
use std::fmt;
use std::io::{Read, Write};

use thiserror::Error;
use uuid::Uuid;

/// First byte of a Glue-framed value (the Glue SerDe's `HEADER_VERSION_BYTE`).
pub const GLUE_HEADER_VERSION: u8 = 0x03;
/// Byte 1 of a Glue-framed value: the payload is as is.
pub const GLUE_COMPRESSION_NONE: u8 = 0x00;
/// Byte 1 of a Glue-framed value: the payload is zlib-compressed.
pub const GLUE_COMPRESSION_ZLIB: u8 = 0x05;
/// Header version, compression byte and the 16-byte schema version UUID.
pub const GLUE_PREFIX_LEN: usize = 18;
/// First byte of a Confluent-framed value.
pub const CONFLUENT_MAGIC_BYTE: u8 = 0x00;
/// Magic byte plus the 4-byte schema id.
pub const CONFLUENT_PREFIX_LEN: usize = 5;
/// The most a compressed payload may inflate to. Kafka's default message limit is 1 MiB, so a
/// payload growing past this is not an event but a zlib bomb, refused before it takes memory.
pub const MAX_INFLATED_BYTES: usize = 16 * 1024 * 1024;

/// Which schema version a value was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchemaId {
    /// A Glue schema version id.
    Glue(Uuid),
    /// A Confluent registry's schema id.
    Confluent(u32),
}

impl fmt::Display for SchemaId {
    /// The UUID (hyphenated) or the number: the text form the standby record and tools show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Glue(id) => id.hyphenated().fmt(f),
            Self::Confluent(id) => id.fmt(f),
        }
    }
}

/// How a Glue-framed payload is compressed. Confluent framing has no compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Zlib,
}

/// A value split into its schema id and payload, borrowing the original bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub schema: SchemaId,
    pub compression: Compression,
    /// The payload as it is on the wire (compressed if `compression` says so).
    pub payload: &'a [u8],
}

/// Why a value is not a framed event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    #[error("value is {len} bytes, shorter than the {needed}-byte schema-version prefix")]
    TooShort { len: usize, needed: usize },
    #[error(
        "value starts with byte {found:#04x}: neither a Glue header ({GLUE_HEADER_VERSION:#04x}) \
         nor the Confluent magic byte ({CONFLUENT_MAGIC_BYTE:#04x})"
    )]
    BadMagic { found: u8 },
    #[error(
        "Glue compression byte is {found:#04x}; known are {GLUE_COMPRESSION_NONE:#04x} (none) \
         and {GLUE_COMPRESSION_ZLIB:#04x} (zlib)"
    )]
    UnknownCompression { found: u8 },
    #[error("the zlib-compressed payload does not inflate: {reason}")]
    Inflate { reason: String },
    #[error("the zlib-compressed payload inflates to more than {MAX_INFLATED_BYTES} bytes")]
    InflatesTooLarge,
}

impl<'a> Envelope<'a> {
    /// An uncompressed Glue-framed payload.
    pub fn glue(schema_version: Uuid, payload: &'a [u8]) -> Self {
        Self {
            schema: SchemaId::Glue(schema_version),
            compression: Compression::None,
            payload,
        }
    }

    /// A Confluent-framed payload.
    pub fn confluent(schema_id: u32, payload: &'a [u8]) -> Self {
        Self {
            schema: SchemaId::Confluent(schema_id),
            compression: Compression::None,
            payload,
        }
    }

    /// Splits `value` into schema id and payload without copying.
    pub fn parse(value: &'a [u8]) -> Result<Self, EnvelopeError> {
        match value.first() {
            None => Err(EnvelopeError::TooShort {
                len: 0,
                needed: CONFLUENT_PREFIX_LEN,
            }),
            Some(&GLUE_HEADER_VERSION) => {
                let Some((prefix, payload)) = value.split_first_chunk::<GLUE_PREFIX_LEN>() else {
                    return Err(EnvelopeError::TooShort {
                        len: value.len(),
                        needed: GLUE_PREFIX_LEN,
                    });
                };
                let compression = match prefix[1] {
                    GLUE_COMPRESSION_NONE => Compression::None,
                    GLUE_COMPRESSION_ZLIB => Compression::Zlib,
                    found => return Err(EnvelopeError::UnknownCompression { found }),
                };
                let mut uuid = [0u8; 16];
                uuid.copy_from_slice(&prefix[2..]);
                Ok(Self {
                    schema: SchemaId::Glue(Uuid::from_bytes(uuid)),
                    compression,
                    payload,
                })
            }
            Some(&CONFLUENT_MAGIC_BYTE) => {
                let Some((prefix, payload)) = value.split_first_chunk::<CONFLUENT_PREFIX_LEN>()
                else {
                    return Err(EnvelopeError::TooShort {
                        len: value.len(),
                        needed: CONFLUENT_PREFIX_LEN,
                    });
                };
                let [_, id @ ..] = *prefix;
                Ok(Self::confluent(u32::from_be_bytes(id), payload))
            }
            Some(&found) => Err(EnvelopeError::BadMagic { found }),
        }
    }

    /// The framed bytes: prefix followed by the payload exactly as held.
    pub fn encode(&self) -> Vec<u8> {
        let mut framed = Vec::with_capacity(GLUE_PREFIX_LEN + self.payload.len());
        match self.schema {
            SchemaId::Glue(id) => {
                framed.push(GLUE_HEADER_VERSION);
                framed.push(match self.compression {
                    Compression::None => GLUE_COMPRESSION_NONE,
                    Compression::Zlib => GLUE_COMPRESSION_ZLIB,
                });
                framed.extend_from_slice(id.as_bytes());
            }
            SchemaId::Confluent(id) => {
                framed.push(CONFLUENT_MAGIC_BYTE);
                framed.extend_from_slice(&id.to_be_bytes());
            }
        }
        framed.extend_from_slice(self.payload);
        framed
    }

    /// The payload as the schema describes it: inflated when it was compressed.
    pub fn decoded_payload(&self) -> Result<Cow<'a, [u8]>, EnvelopeError> {
        match self.compression {
            Compression::None => Ok(Cow::Borrowed(self.payload)),
            Compression::Zlib => {
                let mut inflated = Vec::with_capacity(self.payload.len() * 4);
                flate2::read::ZlibDecoder::new(self.payload)
                    .take(MAX_INFLATED_BYTES as u64 + 1)
                    .read_to_end(&mut inflated)
                    .map_err(|e| EnvelopeError::Inflate {
                        reason: e.to_string(),
                    })?;
                if inflated.len() > MAX_INFLATED_BYTES {
                    return Err(EnvelopeError::InflatesTooLarge);
                }
                Ok(Cow::Owned(inflated))
            }
        }
    }
}

/// Frames `payload` (uncompressed) for `schema`, compressing it first when asked; Confluent
/// framing has no compression byte, so `compression` is ignored for it.
pub fn frame(schema: SchemaId, compression: Compression, payload: &[u8]) -> Vec<u8> {
    match (schema, compression) {
        (SchemaId::Glue(_), Compression::Zlib) => {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            // Writing into a Vec cannot fail.
            let compressed = encoder
                .write_all(payload)
                .and_then(|()| encoder.finish())
                .unwrap_or_default();
            Envelope {
                schema,
                compression,
                payload: &compressed,
            }
            .encode()
        }
        _ => Envelope {
            schema,
            compression: Compression::None,
            payload,
        }
        .encode(),
    }
}

/// The schema id of a framed value, or `None` when the value is not framed.
pub fn schema_id(value: &[u8]) -> Option<SchemaId> {
    Envelope::parse(value).ok().map(|e| e.schema)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_confluent_id_and_payload() {
        let value = [0x00, 0x00, 0x00, 0x01, 0x02, b'h', b'i'];
        let envelope = Envelope::parse(&value).unwrap();
        assert_eq!(envelope.schema, SchemaId::Confluent(258));
        assert_eq!(envelope.payload, b"hi");
    }

    #[test]
    fn empty_payload_is_valid() {
        let envelope = Envelope::parse(&[0, 0, 0, 0, 7]).unwrap();
        assert_eq!(envelope.schema, SchemaId::Confluent(7));
        assert!(envelope.payload.is_empty());
    }

    #[test]
    fn rejects_short_values_with_their_length() {
        let err = Envelope::parse(&[0, 0, 1]).unwrap_err();
        assert_eq!(err, EnvelopeError::TooShort { len: 3, needed: 5 });
        assert!(err.to_string().contains("3 bytes"));
        let err = Envelope::parse(&[3, 0, 1]).unwrap_err();
        assert_eq!(err, EnvelopeError::TooShort { len: 3, needed: 18 });
    }

    #[test]
    fn rejects_a_wrong_first_byte() {
        let err = Envelope::parse(b"{\"json\":1}").unwrap_err();
        assert_eq!(err, EnvelopeError::BadMagic { found: b'{' });
        assert!(err.to_string().contains("0x7b"), "{err}");
    }

    #[test]
    fn rejects_an_unknown_compression_byte() {
        let mut value = vec![3, 9];
        value.extend_from_slice(&[0; 16]);
        let err = Envelope::parse(&value).unwrap_err();
        assert_eq!(err, EnvelopeError::UnknownCompression { found: 9 });
    }

    #[test]
    fn a_corrupt_zlib_payload_is_an_error_not_a_panic() {
        let mut value = vec![3, 5];
        value.extend_from_slice(&[0; 16]);
        value.extend_from_slice(b"not zlib");
        let envelope = Envelope::parse(&value).unwrap();
        assert!(matches!(
            envelope.decoded_payload(),
            Err(EnvelopeError::Inflate { .. })
        ));
    }

    #[test]
    fn a_zlib_bomb_is_refused_before_it_takes_memory() {
        let bomb = frame(
            SchemaId::Glue(Uuid::nil()),
            Compression::Zlib,
            &vec![0u8; MAX_INFLATED_BYTES + 1],
        );
        assert!(bomb.len() < 100_000, "{} bytes compressed", bomb.len());
        let envelope = Envelope::parse(&bomb).unwrap();
        assert_eq!(
            envelope.decoded_payload(),
            Err(EnvelopeError::InflatesTooLarge)
        );
    }

    proptest! {
        #[test]
        fn frame_then_parse_is_identity(
            glue in any::<bool>(),
            zlib in any::<bool>(),
            id in any::<u128>(),
            payload: Vec<u8>,
        ) {
            let schema = if glue {
                SchemaId::Glue(Uuid::from_u128(id))
            } else {
                SchemaId::Confluent(id as u32)
            };
            let compression = if zlib { Compression::Zlib } else { Compression::None };
            let framed = frame(schema, compression, &payload);
            let parsed = Envelope::parse(&framed).unwrap();
            prop_assert_eq!(parsed.schema, schema);
            prop_assert_eq!(&parsed.decoded_payload().unwrap()[..], &payload[..]);
        }
    }
}
