//! Reading and writing a JSON document while keeping the user's layout as far as JSON allows.
//!
//! Values, key order and number spellings are kept exactly (serde_json's `preserve_order` and
//! `arbitrary_precision`). Whitespace cannot be kept token by token, so the document is written
//! back in the style it was found in: the indentation unit of its first indented line (spaces or
//! tabs), compact when it was on one line, with or without a final newline, and with its UTF-8
//! byte order mark if it had one. A file written in that canonical style comes back byte for byte.
//! Two spellings change without changing the value: string escapes such as `\u00e9` are
//! written as the character itself, and exponents as `e+N`/`e-N` (`1E400` becomes `1e+400`).

use serde::Serialize;
use serde_json::ser::{CompactFormatter, PrettyFormatter};
use serde_json::{Map, Value};

const BOM: &[u8] = b"\xEF\xBB\xBF";
const DEFAULT_INDENT: &[u8] = b"  ";

/// How a document was laid out, so that it can be written back the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    /// Indentation unit; `None` for a document written on a single line.
    indent: Option<Vec<u8>>,
    trailing_newline: bool,
    bom: bool,
}

impl Default for Style {
    /// The style of a file we create: two-space indentation and a final newline.
    fn default() -> Self {
        Style {
            indent: Some(DEFAULT_INDENT.to_vec()),
            trailing_newline: true,
            bom: false,
        }
    }
}

/// Parses `bytes`; an empty (or whitespace-only) file is an empty object, as dockerd reads it.
pub fn parse(bytes: &[u8]) -> Result<(Value, Style), serde_json::Error> {
    let bom = bytes.starts_with(BOM);
    let body = if bom { &bytes[BOM.len()..] } else { bytes };
    if body.iter().all(u8::is_ascii_whitespace) {
        let style = Style {
            bom,
            ..Style::default()
        };
        return Ok((Value::Object(Map::new()), style));
    }
    let value = serde_json::from_slice(body)?;
    let trimmed = body.trim_ascii_end();
    let style = Style {
        indent: detect_indent(trimmed),
        trailing_newline: trimmed.len() < body.len() && body.ends_with(b"\n"),
        bom,
    };
    Ok((value, style))
}

/// The leading whitespace of the first line that has any, or `None` when the document
/// (without its trailing whitespace) is on one line. Raw newlines cannot occur inside JSON
/// strings, so every newline here is layout.
fn detect_indent(trimmed: &[u8]) -> Option<Vec<u8>> {
    let first_newline = trimmed.iter().position(|&b| b == b'\n')?;
    let indent = trimmed[first_newline + 1..]
        .split(|&b| b == b'\n')
        .map(|line| {
            let width = line
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            &line[..width]
        })
        .find(|ws| !ws.is_empty())
        .unwrap_or_default();
    Some(indent.to_vec())
}

/// Serializes `value` in `style`.
pub fn render(value: &Value, style: &Style) -> Vec<u8> {
    let mut out = Vec::new();
    if style.bom {
        out.extend_from_slice(BOM);
    }
    let written = match &style.indent {
        Some(indent) => {
            let mut ser = serde_json::Serializer::with_formatter(
                &mut out,
                PrettyFormatter::with_indent(indent),
            );
            value.serialize(&mut ser)
        }
        None => {
            let mut ser = serde_json::Serializer::with_formatter(&mut out, CompactFormatter);
            value.serialize(&mut ser)
        }
    };
    // A Value always serializes into a Vec: its keys are strings and writes cannot fail.
    written.expect("serializing a serde_json::Value into memory cannot fail");
    if style.trailing_newline {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        let (value, style) = parse(text.as_bytes()).unwrap();
        String::from_utf8(render(&value, &style)).unwrap()
    }

    #[test]
    fn canonical_two_space_file_round_trips_byte_for_byte() {
        let text =
            "{\n  \"a\": {\n    \"b\": [\n      1,\n      2\n    ]\n  },\n  \"c\": \"é\"\n}\n";
        assert_eq!(round_trip(text), text);
    }

    #[test]
    fn tab_indentation_is_kept() {
        let text = "{\n\t\"debug\": true,\n\t\"log-opts\": {\n\t\t\"max-size\": \"10m\"\n\t}\n}";
        assert_eq!(round_trip(text), text);
    }

    #[test]
    fn single_line_file_stays_compact() {
        let text = "{\"debug\":true,\"n\":12345678901234567890}";
        assert_eq!(round_trip(text), text);
    }

    #[test]
    fn irregular_whitespace_is_normalised_to_the_detected_indent() {
        let text = "{\n    \"a\" :1,\n      \"b\":  [ ]\n}\n";
        assert_eq!(round_trip(text), "{\n    \"a\": 1,\n    \"b\": []\n}\n");
    }

    #[test]
    fn byte_order_mark_is_kept() {
        let text = "\u{feff}{\"a\":1}\n";
        assert_eq!(round_trip(text), text);
    }

    #[test]
    fn empty_file_is_an_empty_object() {
        let (value, style) = parse(b"  \n").unwrap();
        assert_eq!(value, Value::Object(Map::new()));
        assert_eq!(style, Style::default());
    }

    #[test]
    fn invalid_json_is_an_error() {
        assert!(parse(b"{\"a\": 1,}").is_err());
        assert!(parse(b"{\"a\": 1} trailing").is_err());
    }
}
