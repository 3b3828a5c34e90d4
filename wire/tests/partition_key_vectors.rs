//! The partition-key rule in `docs/producer-guide.md` is what producers in other languages
//! implement from; its test vectors are read from the document and checked against the code,
//! so the text and the code cannot drift apart.

use std::path::PathBuf;

use wire::record::{EventId, partition_key};

/// Rows of the test-vector table: (topic, key, event id, partition key).
fn vectors() -> Vec<(String, Option<Vec<u8>>, EventId, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/producer-guide.md");
    let text = std::fs::read_to_string(path).expect("the producer guide");
    let table = text
        .split("| topic | key (hex) | event id | pk |")
        .nth(1)
        .expect("the test-vector table");
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim())
                .collect();
            let code = |cell: &str| cell.split('`').nth(1).unwrap_or(cell).to_string();
            let key = match cells[1] {
                "null" => None,
                "empty" => Some(Vec::new()),
                cell => Some(hex::decode(code(cell)).expect("hex key")),
            };
            let event_id = code(cells[2]).parse().expect("event id");
            (code(cells[0]), key, event_id, code(cells[3]))
        })
        .collect()
}

#[test]
fn the_documented_vectors_are_what_the_code_computes() {
    let vectors = vectors();
    assert!(vectors.len() >= 6, "{vectors:?}");
    assert!(vectors.iter().any(|(_, key, ..)| key.is_none()));
    assert!(
        vectors
            .iter()
            .any(|(_, key, ..)| key.as_deref() == Some(&[][..]))
    );
    for (topic, key, event_id, expected) in vectors {
        assert_eq!(
            partition_key(&topic, key.as_deref(), event_id),
            expected,
            "{topic} {key:?} {event_id}"
        );
    }
}
