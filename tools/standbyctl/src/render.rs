//! Printing: tables for people (comfy-table), JSON for scripts, and how bytes are shown.

use std::time::Duration;

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;
use wire::envelope::Envelope;
use wire::record::Header;

use crate::cli::Output;

/// A command's result: its JSON form is the `Serialize` output, its human form [`Self::human`].
pub trait Report: Serialize {
    fn human(&self) -> String;
}

pub fn print(output: Output, report: &impl Report) {
    match output {
        Output::Table => println!("{}", report.human()),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).expect("reports are plain data")
        ),
    }
}

pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    table
}

/// Bytes as text when they are printable UTF-8, else hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "encoding", content = "data", rename_all = "lowercase")]
pub enum Shown {
    Utf8(String),
    Hex(String),
}

impl Shown {
    pub fn of(bytes: &[u8], force_hex: bool) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) if !force_hex && is_printable(text) => Self::Utf8(text.to_string()),
            _ => Self::Hex(hex::encode(bytes)),
        }
    }

    pub fn text(&self) -> String {
        match self {
            Self::Utf8(text) => text.clone(),
            Self::Hex(hex) => format!("0x{hex}"),
        }
    }

    /// At most `max` characters, for table cells.
    pub fn short(&self, max: usize) -> String {
        let text = self.text();
        if text.chars().count() <= max {
            text
        } else {
            let cut: String = text.chars().take(max.saturating_sub(1)).collect();
            format!("{cut}…")
        }
    }
}

fn is_printable(text: &str) -> bool {
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\t' | '\r'))
}

/// `Shown` text, or `(null)` for Kafka's null (a null key, a header without a value).
pub fn or_null(shown: Option<&Shown>) -> String {
    shown.map_or_else(|| "(null)".into(), Shown::text)
}

/// A header as shown: its name, its value as text or hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderView {
    pub name: String,
    pub value: Option<Shown>,
}

impl HeaderView {
    pub fn all(headers: &[Header], force_hex: bool) -> Vec<Self> {
        headers
            .iter()
            .map(|h| Self {
                name: h.name.clone(),
                value: h.value.as_deref().map(|v| Shown::of(v, force_hex)),
            })
            .collect()
    }
}

/// The `headers` block of a `show`: the count, then one indented line per header.
pub fn header_lines(headers: &[HeaderView]) -> String {
    let mut out = format!("headers        {}\n", headers.len());
    for header in headers {
        out.push_str(&format!(
            "  {}: {}\n",
            header.name,
            or_null(header.value.as_ref())
        ));
    }
    out
}

/// A listing: the table when it has rows, the summary, and a note when `--limit` cut rows.
pub fn listing(table: Option<String>, summary: &str, shown: usize, total: usize) -> String {
    let mut out = table.map(|t| format!("{t}\n")).unwrap_or_default();
    out.push_str(summary);
    if shown < total {
        out.push_str(&format!(" ({shown} shown; raise --limit for more)"));
    }
    out
}

pub use wire::clock::now_ms;

/// A value split into its schema-version prefix (when framed) and payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecodedValue {
    /// A Glue schema version UUID or a Confluent id.
    pub schema_version: Option<String>,
    pub bytes: usize,
    /// Inflated when the frame says the payload was compressed.
    pub payload: Shown,
}

impl DecodedValue {
    pub fn of(value: &[u8], force_hex: bool) -> Self {
        let decoded = Envelope::parse(value)
            .ok()
            .and_then(|e| Some((e.schema.to_string(), e.decoded_payload().ok()?)));
        match decoded {
            Some((schema_version, payload)) => Self {
                schema_version: Some(schema_version),
                bytes: value.len(),
                payload: Shown::of(&payload, force_hex),
            },
            None => Self {
                schema_version: None,
                bytes: value.len(),
                payload: Shown::of(value, force_hex),
            },
        }
    }
}

/// `3h12m`, `45s`: an age in its two largest units.
pub fn age(age: Duration) -> String {
    let secs = age.as_secs();
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_stays_text_and_the_rest_is_hex() {
        assert_eq!(
            Shown::of(b"{\"a\":1}\n", false),
            Shown::Utf8("{\"a\":1}\n".into())
        );
        assert_eq!(Shown::of(b"\x00\x01", false), Shown::Hex("0001".into()));
        assert_eq!(Shown::of(b"abc", true), Shown::Hex("616263".into()));
        assert_eq!(Shown::of(&[0xff, 0xfe], false).text(), "0xfffe");
        assert_eq!(Shown::Utf8("abcdef".into()).short(4), "abc…");
    }

    #[test]
    fn framed_values_show_their_schema_version() {
        let decoded = DecodedValue::of(b"\x00\x00\x00\x00\x07{}", false);
        assert_eq!(decoded.schema_version, Some("7".to_string()));
        assert_eq!(decoded.payload, Shown::Utf8("{}".into()));
        assert_eq!(DecodedValue::of(b"plain", false).schema_version, None);
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(Duration::from_secs(45)), "45s");
        assert_eq!(age(Duration::from_secs(125)), "2m05s");
        assert_eq!(age(Duration::from_secs(3 * 3600 + 12 * 60)), "3h12m");
        assert_eq!(age(Duration::from_secs(2 * 86_400 + 3600)), "2d01h");
    }
}
