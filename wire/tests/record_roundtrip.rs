//! Property tests: a standby record survives both paths byte for byte — the DynamoDB API's
//! attribute map (PutItem → Scan) and the Lambda stream event JSON the republisher receives.

use aws_lambda_events::dynamodb::Event as StreamEvent;
use proptest::prelude::*;
use serde_json::json;
use wire::envelope::SchemaId;
use wire::record::{EventId, Header, StandbyRecord};

fn header() -> impl Strategy<Value = Header> {
    // A small pool of names makes duplicates common; arbitrary names cover the rest.
    let name = prop_oneof![
        3 => prop::sample::select(vec!["trace-id", "content-type", "tenant"]).prop_map(String::from),
        1 => "\\PC{0,16}",
    ];
    (
        name,
        prop::option::of(prop::collection::vec(any::<u8>(), 0..32)),
    )
        .prop_map(|(name, value)| Header { name, value })
}

fn record_with_value(
    value: impl Strategy<Value = Vec<u8>>,
) -> impl Strategy<Value = StandbyRecord> {
    (
        "[a-zA-Z0-9._-]{1,60}",
        prop::option::of(prop::collection::vec(any::<u8>(), 0..128)),
        value,
        prop::collection::vec(header(), 0..8),
        "[a-z0-9-]{1,20}",
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(topic, key, value, headers, producer_id, created_at_ms, expires_at)| StandbyRecord {
                event_id: EventId::new(),
                topic,
                key,
                value,
                headers,
                producer_id,
                created_at_ms,
                expires_at,
            },
        )
}

fn record() -> impl Strategy<Value = StandbyRecord> {
    record_with_value(prop::collection::vec(any::<u8>(), 0..4096))
}

/// Wraps an image in the JSON document Lambda delivers for a DynamoDB stream, and parses it
/// with `aws_lambda_events` as the republisher does.
fn through_lambda_event(record: &StandbyRecord) -> StandbyRecord {
    let event = json!({
        "Records": [{
            "eventID": "c81e728d9d4c2f636f067f89cc14862c",
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1_700_000_000.0,
                "Keys": {
                    "pk": {"S": record.partition_key()},
                    "event_id": {"S": record.event_id.to_string()}
                },
                "NewImage": serde_json::to_value(record.to_image()).unwrap(),
                "SequenceNumber": "4421584500000000017450439091",
                "SizeBytes": 123,
                "StreamViewType": "NEW_IMAGE"
            },
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/standby/stream/2026-01-01T00:00:00.000"
        }]
    });
    let text = serde_json::to_string(&event).unwrap();
    let parsed: StreamEvent = serde_json::from_str(&text).unwrap();
    let image = parsed.records.into_iter().next().unwrap().change.new_image;
    StandbyRecord::from_image(image).unwrap()
}

proptest! {
    #[test]
    fn sdk_attribute_map_round_trip(record in record()) {
        prop_assert_eq!(StandbyRecord::from_item(record.to_item()).unwrap(), record);
    }

    #[test]
    fn lambda_stream_event_round_trip(record in record()) {
        prop_assert_eq!(through_lambda_event(&record), record);
    }

    #[test]
    fn one_partition_key_per_topic_and_key(record in record(), other_id in any::<u128>()) {
        let sibling = StandbyRecord { event_id: uuid::Uuid::from_u128(other_id).into(), ..record.clone() };
        if record.key.is_some() {
            prop_assert_eq!(record.partition_key(), sibling.partition_key());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn large_values_round_trip_both_paths(record in record_with_value(prop::collection::vec(any::<u8>(), 300_000..=350_000))) {
        prop_assert_eq!(&StandbyRecord::from_item(record.to_item()).unwrap(), &record);
        prop_assert_eq!(&through_lambda_event(&record), &record);
        prop_assert!(record.item_size_bytes() < wire::record::DYNAMODB_MAX_ITEM_BYTES);
    }
}

#[test]
fn edge_cases_round_trip() {
    let base = StandbyRecord {
        event_id: EventId::new(),
        topic: "t".into(),
        key: None,
        value: vec![],
        headers: vec![],
        producer_id: "p".into(),
        created_at_ms: 0,
        expires_at: 0,
    };
    let cases = [
        base.clone(),
        StandbyRecord {
            key: Some(vec![]),
            ..base.clone()
        },
        StandbyRecord {
            headers: vec![
                Header::new("dup", "1"),
                Header::new("dup", "1"),
                Header {
                    name: "dup".into(),
                    value: None,
                },
            ],
            ..base.clone()
        },
        StandbyRecord {
            value: vec![0; 1],
            created_at_ms: u64::MAX,
            expires_at: u64::MAX,
            ..base.clone()
        },
    ];
    for record in cases {
        assert_eq!(StandbyRecord::from_item(record.to_item()).unwrap(), record);
        assert_eq!(through_lambda_event(&record), record);
    }
}

/// A stream record written by hand in the exact JSON DynamoDB Streams produces (binary as
/// base64), not generated by our own serializer.
#[test]
fn decodes_a_literal_lambda_stream_record() {
    let text = r#"{"Records":[{"eventID":"1","eventName":"INSERT","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"us-east-1",
      "dynamodb":{"ApproximateCreationDateTime":1700000000,"Keys":{"pk":{"S":"orders#k#a045eb33f8797f35ea7d5fad7c5e0d02"},"event_id":{"S":"01890a5d-ac96-774b-bcce-b302099a8057"}},
        "NewImage":{
          "pk":{"S":"orders#k#a045eb33f8797f35ea7d5fad7c5e0d02"},"event_id":{"S":"01890a5d-ac96-774b-bcce-b302099a8057"},"format_version":{"N":"1"},
          "topic":{"S":"orders"},"key":{"B":"Y3VzdG9tZXItNDI="},"value":{"B":"AAAAAAN7fQ=="},
          "headers":{"L":[{"M":{"name":{"S":"trace"},"value":{"B":"YQ=="}}},{"M":{"name":{"S":"trace"}}}]},
          "producer_id":{"S":"checkout-1"},"created_at":{"N":"1700000000123"},"schema_version":{"N":"3"},"expires_at":{"N":"1701209600"}},
        "SequenceNumber":"111","SizeBytes":300,"StreamViewType":"NEW_IMAGE"},
      "eventSourceARN":"arn:aws:dynamodb:us-east-1:123456789012:table/standby/stream/2026-01-01T00:00:00.000"}]}"#;
    let event: StreamEvent = serde_json::from_str(text).unwrap();
    let image = event.records.into_iter().next().unwrap().change.new_image;
    let record = StandbyRecord::from_image(image).unwrap();
    assert_eq!(record.topic, "orders");
    assert_eq!(record.key.as_deref(), Some(&b"customer-42"[..]));
    assert_eq!(record.value, vec![0, 0, 0, 0, 3, b'{', b'}']);
    assert_eq!(record.schema_id(), Some(SchemaId::Confluent(3)));
    assert_eq!(
        record.headers,
        vec![
            Header::new("trace", "a"),
            Header {
                name: "trace".into(),
                value: None
            }
        ]
    );
    assert_eq!(record.created_at_ms, 1_700_000_000_123);
}

/// Layout 2, as a producer of this project writes it: a Glue-framed value and the schema
/// version as a string. Written by hand, like the record above.
#[test]
fn decodes_a_literal_layout_2_stream_record() {
    let text = r#"{"Records":[{"eventID":"1","eventName":"INSERT","eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":"us-east-1",
      "dynamodb":{"ApproximateCreationDateTime":1700000000,"Keys":{"pk":{"S":"orders#k#a045eb33f8797f35ea7d5fad7c5e0d02"},"event_id":{"S":"01890a5d-ac96-774b-bcce-b302099a8057"}},
        "NewImage":{
          "pk":{"S":"orders#k#a045eb33f8797f35ea7d5fad7c5e0d02"},"event_id":{"S":"01890a5d-ac96-774b-bcce-b302099a8057"},"format_version":{"N":"2"},
          "topic":{"S":"orders"},"key":{"B":"Y3VzdG9tZXItNDI="},"value":{"B":"AwABI0VniatM3o8BI0VniavNe30="},
          "headers":{"L":[]},
          "producer_id":{"S":"checkout-1"},"created_at":{"N":"1700000000123"},"schema_version":{"S":"01234567-89ab-4cde-8f01-23456789abcd"},"expires_at":{"N":"1701209600"}},
        "SequenceNumber":"111","SizeBytes":300,"StreamViewType":"NEW_IMAGE"},
      "eventSourceARN":"arn:aws:dynamodb:us-east-1:123456789012:table/standby/stream/2026-01-01T00:00:00.000"}]}"#;
    let event: StreamEvent = serde_json::from_str(text).unwrap();
    let image = event.records.into_iter().next().unwrap().change.new_image;
    let record = StandbyRecord::from_image(image).unwrap();
    assert_eq!(
        record.schema_id(),
        Some(SchemaId::Glue(
            "01234567-89ab-4cde-8f01-23456789abcd".parse().unwrap()
        ))
    );
    assert_eq!(&record.value[18..], b"{}");
}
