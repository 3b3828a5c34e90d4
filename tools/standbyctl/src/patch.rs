//! Repairing a dead-lettered payload before it is redriven: a jq filter (through jaq) or the
//! operator's `$EDITOR`. The schema-version prefix is kept: the payload after the five prefix
//! bytes is what gets edited, and the same prefix is put back in front of the result.

use std::io::Write;
use std::process::Command;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Filter, Native, RcIter};
use jaq_json::Val;
use serde_json::Value;
use std::borrow::Cow;

use wire::envelope::{self, Compression, Envelope, SchemaId};

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("--jq {filter:?} does not compile: {problems}")]
    BadFilter { filter: String, problems: String },
    #[error("the payload is not JSON ({0}); --jq and --edit only repair JSON payloads")]
    NotJson(serde_json::Error),
    #[error("the jq filter failed on this payload: {0}")]
    FilterFailed(String),
    #[error("the jq filter produced {0} values; it must produce exactly one")]
    NotOneValue(usize),
    #[error("the edited payload is not JSON any more: {0}")]
    EditedNotJson(serde_json::Error),
    #[error("$EDITOR ({editor}) {problem}")]
    Editor { editor: String, problem: String },
}

/// A compiled jq filter.
pub struct Jq {
    filter: Filter<Native<Val>>,
}

impl Jq {
    pub fn compile(code: &str) -> Result<Self, PatchError> {
        let bad = |problems: String| PatchError::BadFilter {
            filter: code.to_string(),
            problems,
        };
        let arena = Arena::default();
        let loader = Loader::new(jaq_std::defs().chain(jaq_json::defs()));
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errors| bad(format!("{errors:?}")))?;
        let filter = Compiler::default()
            .with_funs(jaq_std::funs().chain(jaq_json::funs()))
            .compile(modules)
            .map_err(|errors| bad(format!("{errors:?}")))?;
        Ok(Self { filter })
    }

    fn run(&self, input: Value) -> Result<Value, PatchError> {
        let inputs = RcIter::new(core::iter::empty());
        let outputs: Vec<_> = self
            .filter
            .run((Ctx::new([], &inputs), Val::from(input)))
            .collect();
        match outputs.as_slice() {
            [Ok(value)] => Ok(Value::from(value.clone())),
            [Err(error)] => Err(PatchError::FilterFailed(error.to_string())),
            many => Err(PatchError::NotOneValue(many.len())),
        }
    }
}

/// The value split around its payload: the schema-version frame, if any, and the payload as the
/// schema describes it (inflated when the frame says it was compressed).
struct Framed<'a> {
    frame: Option<(SchemaId, Compression)>,
    payload: Cow<'a, [u8]>,
}

impl<'a> Framed<'a> {
    fn of(value: &'a [u8]) -> Self {
        let unframed = || Self {
            frame: None,
            payload: Cow::Borrowed(value),
        };
        let Ok(envelope) = Envelope::parse(value) else {
            return unframed();
        };
        match envelope.decoded_payload() {
            Ok(payload) => Self {
                frame: Some((envelope.schema, envelope.compression)),
                payload,
            },
            // Shown to the JSON parser as is, which then names the problem.
            Err(_) => unframed(),
        }
    }

    /// The new payload framed as the old one was (same schema id, same compression).
    fn with_payload(&self, payload: &[u8]) -> Vec<u8> {
        match self.frame {
            Some((schema, compression)) => envelope::frame(schema, compression, payload),
            None => payload.to_vec(),
        }
    }
}

/// `value` with `jq` applied to its JSON payload, re-framed with the same schema version.
pub fn apply_jq(value: &[u8], jq: &Jq) -> Result<Vec<u8>, PatchError> {
    let framed = Framed::of(value);
    let json: Value = serde_json::from_slice(&framed.payload).map_err(PatchError::NotJson)?;
    let patched = jq.run(json)?;
    Ok(framed.with_payload(
        serde_json::to_vec(&patched)
            .expect("a JSON value serializes")
            .as_slice(),
    ))
}

/// `value` after the operator edited its payload in `editor` (a command line, as `$EDITOR`
/// usually is: `vim`, `code --wait`). JSON payloads are shown pretty-printed and must still be
/// JSON afterwards; they are sent compact.
pub fn apply_editor(value: &[u8], editor: &str, label: &str) -> Result<Vec<u8>, PatchError> {
    let failed = |problem: String| PatchError::Editor {
        editor: editor.to_string(),
        problem,
    };
    let framed = Framed::of(value);
    let json: Value = serde_json::from_slice(&framed.payload).map_err(PatchError::NotJson)?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!("standbyctl-{label}-"))
        .suffix(".json")
        .tempfile()
        .map_err(|e| failed(format!("could not get a temporary file: {e}")))?;
    let pretty = serde_json::to_string_pretty(&json).expect("a JSON value serializes");
    file.write_all(pretty.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| failed(format!("could not write the temporary file: {e}")))?;
    // Through the shell so `$EDITOR` may carry arguments; the path goes as "$1", never spliced.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("standbyctl")
        .arg(file.path())
        .status()
        .map_err(|e| failed(format!("could not be started: {e}")))?;
    if !status.success() {
        return Err(failed(format!("exited with {status}; nothing was sent")));
    }
    let edited = std::fs::read(file.path())
        .map_err(|e| failed(format!("left a file that cannot be read: {e}")))?;
    let json: Value = serde_json::from_slice(&edited).map_err(PatchError::EditedNotJson)?;
    Ok(framed.with_payload(
        serde_json::to_vec(&json)
            .expect("a JSON value serializes")
            .as_slice(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(version: u32, payload: &str) -> Vec<u8> {
        Envelope::confluent(version, payload.as_bytes()).encode()
    }

    #[test]
    fn jq_patches_the_payload_and_keeps_the_schema_prefix() {
        let jq = Jq::compile(".amount = 42 | del(.debug)").unwrap();
        let patched = apply_jq(&framed(3, r#"{"amount":-1,"debug":true,"id":"a"}"#), &jq).unwrap();
        assert_eq!(patched, framed(3, r#"{"amount":42,"id":"a"}"#));
        let unframed = apply_jq(br#"{"amount":1}"#, &jq).unwrap();
        assert_eq!(unframed, br#"{"amount":42}"#);
    }

    #[test]
    fn jq_problems_are_named() {
        assert!(matches!(
            Jq::compile(".amount = "),
            Err(PatchError::BadFilter { .. })
        ));
        let jq = Jq::compile(".items[]").unwrap();
        assert!(matches!(
            apply_jq(br#"{"items":[1,2]}"#, &jq),
            Err(PatchError::NotOneValue(2))
        ));
        assert!(matches!(
            apply_jq(b"\x00\x00\x00\x00\x01not json", &jq),
            Err(PatchError::NotJson(_))
        ));
        let failing = Jq::compile(".a + 1").unwrap();
        assert!(matches!(
            apply_jq(br#"{"a":"text"}"#, &failing),
            Err(PatchError::FilterFailed(_))
        ));
    }

    #[test]
    fn the_editor_sees_pretty_json_and_its_result_is_sent_compact() {
        // A scripted "editor": checks it was given pretty JSON, then rewrites a field.
        let editor = r#"sh -c 'grep -q "^  \"amount\": -1" "$1" && sed -i "s/-1/7/" "$1"' editor"#;
        let edited = apply_editor(&framed(2, r#"{"amount":-1}"#), editor, "0-1").unwrap();
        assert_eq!(edited, framed(2, r#"{"amount":7}"#));
    }

    #[test]
    fn a_failed_or_broken_edit_sends_nothing() {
        assert!(matches!(
            apply_editor(br#"{"a":1}"#, "false", "x"),
            Err(PatchError::Editor { .. })
        ));
        let breaks_json = r#"sh -c 'echo "{oops" > "$1"' editor"#;
        assert!(matches!(
            apply_editor(br#"{"a":1}"#, breaks_json, "x"),
            Err(PatchError::EditedNotJson(_))
        ));
    }
}
