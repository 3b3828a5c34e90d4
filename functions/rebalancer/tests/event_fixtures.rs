//! The sample events in `events/rebalancer/` read as intended.

use std::path::PathBuf;

use rebalancer::handler::{Request, parse_request};

fn load(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/rebalancer")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn fixtures_parse_to_the_intended_requests() {
    let after = parse_request(load("after-scale-out.json")).unwrap();
    assert_eq!(after.new_broker_ids, vec![4, 5, 6]);
    assert!(!after.dry_run);

    let dry = parse_request(load("dry-run.json")).unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.excluded_topics, vec!["audit-log".to_string()]);

    assert_eq!(
        parse_request(load("resume-schedule.json")).unwrap(),
        Request::default()
    );
}
