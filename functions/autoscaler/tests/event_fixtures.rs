//! The sample events in `events/autoscaler/` read as the signals they stand for.

use std::path::PathBuf;

use autoscaler::decision::Signal;
use autoscaler::trigger::parse;

fn signal(name: &str) -> Signal {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/autoscaler")
        .join(name);
    parse(&serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()).unwrap()
}

fn alarm(name: &str, state: &str) -> Signal {
    Signal::Alarm {
        name: name.into(),
        state: state.into(),
    }
}

#[test]
fn fixtures_read_as_intended() {
    for (shape, prefix) in [
        ("direct", "alarm-direct"),
        ("eventbridge", "alarm-eventbridge"),
    ] {
        for (file, state) in [
            ("alarm", "ALARM"),
            ("ok", "OK"),
            ("insufficient-data", "INSUFFICIENT_DATA"),
        ] {
            assert_eq!(
                signal(&format!("{prefix}-{file}.json")),
                alarm("msk-broker-cpu-high", state),
                "{shape} {state}"
            );
        }
    }
    assert_eq!(
        signal("composite-alarm.json"),
        alarm("msk-overloaded", "ALARM")
    );
    assert_eq!(signal("recheck-schedule.json"), Signal::Recheck);
}
