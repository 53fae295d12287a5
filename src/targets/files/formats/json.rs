//! JSON files: the key is the string a JSON Pointer (RFC 6901) names. Only that string's bytes
//! are rewritten in the original text, so whitespace, key order and every other byte stay.
//! A missing last member of an existing object is appended to it; anything else missing, a
//! value that is not a string, or a member defined twice is refused (lines named).

use super::Found;
use std::ops::Range;

struct Scanner<'a> {
    text: &'a str,
    s: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn line(&self, pos: usize) -> usize {
        self.text[..pos.min(self.text.len())].matches('\n').count() + 1
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// At `"`: the string's span with its quotes; moves past it.
    fn string(&mut self) -> Result<Range<usize>, String> {
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => return Ok(start..self.i),
                _ => {}
            }
        }
        Err(format!("line {}: unterminated string", self.line(start)))
    }

    /// Moves past one value (already known to be valid JSON).
    fn skip(&mut self) -> Result<(), String> {
        self.ws();
        match self.peek() {
            Some(b'"') => {
                self.string()?;
            }
            Some(open @ (b'{' | b'[')) => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(c) if c == close => {
                            self.i += 1;
                            break;
                        }
                        Some(b',' | b':') => self.i += 1,
                        None => return Err("unexpected end of the document".into()),
                        _ => self.skip()?,
                    }
                }
            }
            _ => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.i += 1;
                }
            }
        }
        Ok(())
    }

    fn decode(&self, span: Range<usize>) -> Result<String, String> {
        serde_json::from_str(&self.text[span.clone()])
            .map_err(|_| format!("line {}: malformed string", self.line(span.start)))
    }
}

fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Where a pointer leads: the string found, or the object to which its last member would be
/// added (the offset of its closing brace, and whether it has members).
enum Place {
    Found(Found),
    Insert { at: usize, empty: bool },
}

fn locate(text: &str, pointer: &str) -> Result<Option<Place>, String> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(format!("line {}: not valid JSON ({})", e.line(), e));
    }
    let mut sc = Scanner {
        text,
        s: text.as_bytes(),
        i: 0,
    };
    let tokens = tokens(pointer);
    for (depth, token) in tokens.iter().enumerate() {
        let last = depth + 1 == tokens.len();
        sc.ws();
        match sc.peek() {
            Some(b'{') => {
                sc.i += 1;
                let mut hit: Option<(usize, usize)> = None; // (line, value offset)
                let mut empty = true;
                loop {
                    sc.ws();
                    match sc.peek() {
                        Some(b'}') => break,
                        Some(b',') => {
                            sc.i += 1;
                            continue;
                        }
                        _ => {}
                    }
                    empty = false;
                    let key = sc.string()?;
                    let name = sc.decode(key.clone())?;
                    sc.ws();
                    sc.i += 1; // ':'
                    sc.ws();
                    if &name == token {
                        let line = sc.line(key.start);
                        if let Some((first, _)) = hit {
                            return Err(super::duplicate(pointer, first, line));
                        }
                        hit = Some((line, sc.i));
                    }
                    sc.skip()?;
                }
                match hit {
                    Some((_, at)) => sc.i = at,
                    None if last => return Ok(Some(Place::Insert { at: sc.i, empty })),
                    None => return Ok(None),
                }
            }
            Some(b'[') => {
                let Ok(n) = token.parse::<usize>() else {
                    return Ok(None);
                };
                sc.i += 1;
                let mut index = 0;
                let mut at = None;
                loop {
                    sc.ws();
                    match sc.peek() {
                        Some(b']') => break,
                        Some(b',') => {
                            sc.i += 1;
                            continue;
                        }
                        _ => {}
                    }
                    if index == n {
                        at = Some(sc.i);
                        break;
                    }
                    sc.skip()?;
                    index += 1;
                }
                match at {
                    Some(at) => sc.i = at,
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        }
    }
    sc.ws();
    if sc.peek() != Some(b'"') {
        return Err(format!(
            "line {}: the value at {pointer} is not a string",
            sc.line(sc.i)
        ));
    }
    let span = sc.string()?;
    let value = sc.decode(span.clone())?;
    Ok(Some(Place::Found(Found {
        value,
        span: span.start + 1..span.end - 1,
        quote: Some('"'),
    })))
}

/// The string at `pointer` in `text`; `None` when it is missing.
pub(in crate::targets::files) fn find(text: &str, pointer: &str) -> Result<Option<Found>, String> {
    Ok(match locate(text, pointer)? {
        Some(Place::Found(f)) => Some(f),
        _ => None,
    })
}

fn quoted(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `text` with the string at `pointer` set to `value`.
pub(in crate::targets::files) fn set(
    text: &str,
    pointer: &str,
    value: &str,
) -> Result<String, String> {
    let mut out = text.to_string();
    match locate(text, pointer)? {
        Some(Place::Found(f)) => {
            let q = quoted(value);
            out.replace_range(f.span, &q[1..q.len() - 1]);
        }
        Some(Place::Insert { at, empty }) => {
            let name = tokens(pointer).pop().unwrap_or_default();
            let member = format!("{}: {}", quoted(&name), quoted(value));
            // After the last member's value (before the blanks that precede `}`).
            let end = text[..at].trim_end().len();
            let insert = if empty { member } else { format!(", {member}") };
            out.insert_str(end, &insert);
        }
        None => {
            return Err(format!(
                "{pointer} leads nowhere in the file: only a missing last member of an existing object is added"
            ))
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "{\r\n  \"z\": 1,\r\n  \"orders\" : { \"apiKey\": \"old\", \"x\": [true, {\"k\": \"v\"}] },\r\n  \"a/b\": \"s\"\r\n}\r\n";

    #[test]
    fn rewrites_only_the_string() {
        assert_eq!(
            find(SAMPLE, "/orders/apiKey").unwrap().unwrap().value,
            "old"
        );
        assert_eq!(find(SAMPLE, "/orders/x/1/k").unwrap().unwrap().value, "v");
        assert_eq!(find(SAMPLE, "/a~1b").unwrap().unwrap().value, "s");
        assert_eq!(
            set(SAMPLE, "/orders/apiKey", "n\"ew").unwrap(),
            SAMPLE.replace("\"old\"", "\"n\\\"ew\"")
        );
        assert_eq!(find(SAMPLE, "/orders/missing").unwrap(), None);
    }

    #[test]
    fn appends_a_missing_last_member() {
        let out = set(SAMPLE, "/orders/new", "k").unwrap();
        assert_eq!(out, SAMPLE.replace("}] }", "}], \"new\": \"k\" }"));
        assert_eq!(set("{}", "/k", "v").unwrap(), "{\"k\": \"v\"}");
        assert!(set(SAMPLE, "/nope/k", "v").is_err());
    }

    #[test]
    fn refuses_what_it_cannot_edit() {
        assert_eq!(
            find("{\n\"k\": \"a\",\n\"k\": \"b\"}", "/k").unwrap_err(),
            "the key \"/k\" is defined twice, at lines 2 and 3; remove one"
        );
        assert!(find("{\n\"k\": 1}", "/k")
            .unwrap_err()
            .starts_with("line 2: the value at /k is not a string"));
        assert!(find("{\n\"k\": }", "/k")
            .unwrap_err()
            .starts_with("line 2: not valid JSON"));
    }
}
