//! The file formats: each finds one key in a file's text (with the byte range of its raw value,
//! so an edit replaces those bytes and nothing else) and says how to write a new value or
//! append a missing key. Every problem is a message naming the line (`line 3: ...`); the
//! container prefixes the file. No message ever quotes a value.

pub(super) mod env;
pub(super) mod json;
pub(super) mod plain;
pub(super) mod properties;
pub(super) mod yaml;

use std::ops::Range;

/// A key found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    /// The value, decoded (escapes and quotes removed).
    pub value: String,
    /// The bytes of the raw value in the text (inside the quotes, if quoted).
    pub span: Range<usize>,
    /// The quote around the value, if any.
    pub quote: Option<char>,
}

/// The line ending a file uses: CRLF when any line ends with one, else LF.
pub(super) fn line_ending(text: &str) -> &'static str {
    if text.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

/// `text` with `line` appended on a line of its own, in the file's line ending.
pub(super) fn append_line(text: &str, line: &str) -> String {
    let eol = line_ending(text);
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(eol);
    }
    out.push_str(line);
    out.push_str(eol);
    out
}

/// The lines of `text`: (1-based number, byte offset of the line, the line without its
/// `\n` / `\r\n`).
pub(super) fn lines(text: &str) -> impl Iterator<Item = (usize, usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n').enumerate().map(move |(i, raw)| {
        let start = offset;
        offset += raw.len();
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        let line = line.strip_suffix('\r').unwrap_or(line);
        (i + 1, start, line)
    })
}

/// The message for a key found twice.
pub(super) fn duplicate(key: &str, first: usize, second: usize) -> String {
    format!("the key \"{key}\" is defined twice, at lines {first} and {second}; remove one")
}
