//! The Glue framing against byte sequences written by hand from AWS's description of the format
//! (awslabs/aws-glue-schema-registry, `AWSSchemaRegistryConstants`: header version byte 3, then
//! the compression byte, 0 none or 5 zlib, then the schema version UUID's 16 bytes, most
//! significant first), not produced by our encoder. The zlib bytes were made by Python's `zlib`.

use uuid::Uuid;
use wire::envelope::{self, Compression, Envelope, EnvelopeError, SchemaId};

const VERSION: &str = "01234567-89ab-4cde-8f01-23456789abcd";

#[rustfmt::skip]
const UNCOMPRESSED: &[u8] = &[
    0x03,                                           // header version
    0x00,                                           // no compression
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x4c, 0xde, // schema version id, bytes 0-7
    0x8f, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, // bytes 8-15
    b'{', b'"', b'o', b'r', b'd', b'e', b'r', b'"', b':', b'4', b'2', b'}',
];

#[rustfmt::skip]
const ZLIB: &[u8] = &[
    0x03, 0x05,
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x4c, 0xde,
    0x8f, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
    // zlib.compress(b'{"order":42}')
    0x78, 0x9c, 0xab, 0x56, 0xca, 0x2f, 0x4a, 0x49, 0x2d, 0x52, 0xb2, 0x32, 0x31, 0xaa, 0x05,
    0x00, 0x1b, 0x3c, 0x03, 0xf9,
];

fn version() -> Uuid {
    VERSION.parse().unwrap()
}

#[test]
fn reads_an_uncompressed_glue_value() {
    let envelope = Envelope::parse(UNCOMPRESSED).unwrap();
    assert_eq!(envelope.schema, SchemaId::Glue(version()));
    assert_eq!(envelope.compression, Compression::None);
    assert_eq!(&envelope.decoded_payload().unwrap()[..], br#"{"order":42}"#);
}

#[test]
fn reads_a_zlib_compressed_glue_value() {
    let envelope = Envelope::parse(ZLIB).unwrap();
    assert_eq!(envelope.schema, SchemaId::Glue(version()));
    assert_eq!(envelope.compression, Compression::Zlib);
    assert_eq!(&envelope.decoded_payload().unwrap()[..], br#"{"order":42}"#);
}

#[test]
fn writes_the_same_bytes() {
    assert_eq!(
        envelope::frame(
            SchemaId::Glue(version()),
            Compression::None,
            br#"{"order":42}"#
        ),
        UNCOMPRESSED
    );
}

#[test]
fn still_reads_confluent_framing() {
    let value = [0x00, 0x00, 0x00, 0x01, 0x02, b'{', b'}'];
    let envelope = Envelope::parse(&value).unwrap();
    assert_eq!(envelope.schema, SchemaId::Confluent(258));
    assert_eq!(envelope.payload, b"{}");
}

#[test]
fn a_truncated_glue_header_is_named() {
    let err = Envelope::parse(&UNCOMPRESSED[..10]).unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::TooShort {
            len: 10,
            needed: 18
        }
    );
}
