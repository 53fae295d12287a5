//! Java `.properties` files (the `java.util.Properties` line format): `key=value`,
//! `key: value` or `key value`, `#` / `!` comments, backslash escapes and continuation lines.
//! A key whose own value continues on the next line is refused (line named); continued values
//! of other keys are kept as they are.

use super::{append_line, duplicate, lines, Found};

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// Whether `line` ends with an odd number of backslashes (its value continues).
fn continues(line: &str) -> bool {
    line.chars().rev().take_while(|&c| c == '\\').count() % 2 == 1
}

fn unescape(raw: &str, n: usize) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let c = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("line {n}: malformed \\uxxxx escape"))?;
                out.push(c);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// The key `key` in `text`, checking escapes and that no key is defined twice.
pub(in crate::targets::files) fn find(text: &str, key: &str) -> Result<Option<Found>, String> {
    let mut found: Option<(usize, Found)> = None;
    let mut continuing = false;
    for (n, offset, line) in lines(text) {
        if continuing {
            continuing = continues(line);
            continue;
        }
        let trimmed = line.trim_start_matches(is_blank);
        if trimmed.is_empty() || trimmed.starts_with(['#', '!']) {
            continue;
        }
        continuing = continues(line);
        let lead = line.len() - trimmed.len();
        // The key ends at the first unescaped separator or blank.
        let mut key_end = trimmed.len();
        let mut escaped = false;
        for (i, c) in trimmed.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '=' || c == ':' || is_blank(c) {
                key_end = i;
                break;
            }
        }
        let name = unescape(&trimmed[..key_end], n)?;
        let mut rest = trimmed[key_end..].trim_start_matches(is_blank);
        if let Some(r) = rest.strip_prefix(['=', ':']) {
            rest = r.trim_start_matches(is_blank);
        }
        let v_off = offset + lead + (trimmed.len() - rest.len());
        let value = unescape(rest, n)?;
        if name == key {
            if let Some((first, _)) = &found {
                return Err(duplicate(key, *first, n));
            }
            if continuing {
                return Err(format!(
                    "line {n}: the value of \"{key}\" continues on the next line; rewriting multi-line values is not supported"
                ));
            }
            found = Some((
                n,
                Found {
                    value,
                    span: v_off..v_off + rest.len(),
                    quote: None,
                },
            ));
        }
    }
    Ok(found.map(|(_, f)| f))
}

fn escape(s: &str, is_key: bool) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0c' => out.push_str("\\f"),
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            '=' | ':' | '#' | '!' if is_key => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` with `key` set to `value`: its value's bytes replaced in place, or a `key=value`
/// line appended when it is missing.
pub(in crate::targets::files) fn set(text: &str, key: &str, value: &str) -> Result<String, String> {
    match find(text, key)? {
        Some(f) => {
            let mut out = text.to_string();
            out.replace_range(f.span, &escape(value, false));
            Ok(out)
        }
        None => Ok(append_line(
            text,
            &format!("{}={}", escape(key, true), escape(value, false)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# app\r\n! legacy comment\r\norders.apiKey = abc\r\nother:x\r\nlong=a\\\r\n  orders.apiKey=not-a-key\r\nspaced value here\r\n";

    #[test]
    fn finds_keys_in_every_style() {
        assert_eq!(find(SAMPLE, "orders.apiKey").unwrap().unwrap().value, "abc");
        assert_eq!(find(SAMPLE, "other").unwrap().unwrap().value, "x");
        assert_eq!(find(SAMPLE, "spaced").unwrap().unwrap().value, "value here");
        assert_eq!(find("a\\=b=c\n", "a=b").unwrap().unwrap().value, "c");
        assert_eq!(find("k=\\u0041\\\\\n", "k").unwrap().unwrap().value, "A\\");
        assert_eq!(find(SAMPLE, "missing").unwrap(), None);
    }

    #[test]
    fn rewrites_only_the_value_and_keeps_crlf_and_comments() {
        let out = set(SAMPLE, "orders.apiKey", "k2").unwrap();
        assert_eq!(out, SAMPLE.replacen("= abc", "= k2", 1));
        let out = set(SAMPLE, "new.key", "k3").unwrap();
        assert_eq!(out, format!("{SAMPLE}new.key=k3\r\n"));
        assert_eq!(set("a=1", "b c", " x\\").unwrap(), "a=1\nb\\ c=\\ x\\\\\n");
    }

    #[test]
    fn duplicates_and_syntax_errors_name_the_lines() {
        assert_eq!(
            find("k=1\n#\nk: 2\n", "k").unwrap_err(),
            "the key \"k\" is defined twice, at lines 1 and 3; remove one"
        );
        assert_eq!(
            find("a=1\nb=\\u12\n", "a").unwrap_err(),
            "line 2: malformed \\uxxxx escape"
        );
        assert!(find("k=a\\\n b\n", "k")
            .unwrap_err()
            .starts_with("line 1: the value of \"k\" continues"));
    }
}
