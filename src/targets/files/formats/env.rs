//! `.env` files: `NAME=value` lines, optionally `export NAME=value`, values bare, in double or
//! single quotes, `#` comments. Multi-line quoted values are refused (line named).

use super::{append_line, duplicate, lines, Found};

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The key `key` in `text`, checking every line's syntax and that no name is defined twice.
pub(in crate::targets::files) fn find(text: &str, key: &str) -> Result<Option<Found>, String> {
    let mut found: Option<(usize, Found)> = None;
    for (n, offset, line) in lines(text) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let lead = line.len() - trimmed.len();
        let (rest, skipped) = match trimmed.strip_prefix("export ") {
            Some(r) => {
                let r2 = r.trim_start();
                (r2, lead + 7 + (r.len() - r2.len()))
            }
            None => (trimmed, lead),
        };
        let Some(eq) = rest.find('=') else {
            return Err(format!("line {n}: expected NAME=value"));
        };
        let name = rest[..eq].trim_end();
        if !valid_name(name) {
            return Err(format!(
                "line {n}: \"{}\" is not a variable name (letters, digits, _ . -, not starting with a digit)",
                name.escape_debug()
            ));
        }
        let value_start = skipped + eq + 1;
        let raw = &line[value_start..];
        let ws = raw.len() - raw.trim_start().len();
        let raw_t = raw.trim_start();
        let v_off = offset + value_start + ws;
        let entry = match raw_t.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let inner = &raw_t[1..];
                let mut end = None;
                let mut escaped = false;
                for (i, c) in inner.char_indices() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' && q == '"' {
                        escaped = true;
                    } else if c == q {
                        end = Some(i);
                        break;
                    }
                }
                let Some(end) = end else {
                    return Err(format!(
                        "line {n}: the quoted value is not closed on its line (multi-line values are not supported)"
                    ));
                };
                let after = inner[end + 1..].trim_start();
                if !after.is_empty() && !after.starts_with('#') {
                    return Err(format!("line {n}: unexpected text after the closing quote"));
                }
                let raw_value = &inner[..end];
                let value = if q == '"' {
                    unescape(raw_value)
                } else {
                    raw_value.to_string()
                };
                Found {
                    value,
                    span: v_off + 1..v_off + 1 + end,
                    quote: Some(q),
                }
            }
            _ => {
                // A bare value ends at a ` #` comment; trailing blanks are not part of it.
                let cut = raw_t
                    .char_indices()
                    .find(|&(i, c)| c == '#' && i > 0 && raw_t[..i].ends_with([' ', '\t']))
                    .map_or(raw_t.len(), |(i, _)| i);
                let value = raw_t[..cut].trim_end();
                Found {
                    value: value.to_string(),
                    span: v_off..v_off + value.len(),
                    quote: None,
                }
            }
        };
        if name == key {
            if let Some((first, _)) = &found {
                return Err(duplicate(key, *first, n));
            }
            found = Some((n, entry));
        }
    }
    Ok(found.map(|(_, f)| f))
}

fn unescape(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn bare_safe(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '#' | '$' | '\\' | '`'))
}

/// The raw text for `value` in the quoting of `quote` (a bare value that needs quotes gets
/// double quotes).
fn encode(value: &str, quote: Option<char>) -> Result<String, String> {
    if value.contains(['\n', '\r']) {
        return Err("the key contains a line break, which this .env editor does not write".into());
    }
    match quote {
        None if bare_safe(value) => Ok(value.to_string()),
        Some('\'') if !value.contains('\'') => Ok(value.to_string()),
        None | Some('"') if !value.contains(['"', '\\', '$', '`']) => Ok(match quote {
            None => format!("\"{value}\""),
            _ => value.to_string(),
        }),
        _ => Err("the key contains characters this value's quoting cannot hold".into()),
    }
}

/// `text` with `key` set to `value`: its value's bytes replaced in place, or a `KEY=value`
/// line appended when it is missing.
pub(in crate::targets::files) fn set(text: &str, key: &str, value: &str) -> Result<String, String> {
    match find(text, key)? {
        Some(f) => {
            let mut out = text.to_string();
            out.replace_range(f.span, &encode(value, f.quote)?);
            Ok(out)
        }
        None => Ok(append_line(
            text,
            &format!("{key}={}", encode(value, None)?),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "# settings\r\nexport ORDERS_KEY=\"abc\" # the key\r\n\r\nOTHER = 'x y'\r\nBARE=v1 # c\r\n";

    #[test]
    fn finds_values_in_every_style() {
        assert_eq!(find(SAMPLE, "ORDERS_KEY").unwrap().unwrap().value, "abc");
        assert_eq!(find(SAMPLE, "OTHER").unwrap().unwrap().value, "x y");
        assert_eq!(find(SAMPLE, "BARE").unwrap().unwrap().value, "v1");
        assert_eq!(find(SAMPLE, "NONE").unwrap(), None);
    }

    #[test]
    fn rewrites_only_the_value_and_keeps_crlf() {
        let out = set(SAMPLE, "ORDERS_KEY", "k2").unwrap();
        assert_eq!(out, SAMPLE.replace("\"abc\"", "\"k2\""));
        let out = set(SAMPLE, "BARE", "k3").unwrap();
        assert_eq!(out, SAMPLE.replace("v1", "k3"));
        let out = set(SAMPLE, "NEW_KEY", "k4").unwrap();
        assert_eq!(out, format!("{SAMPLE}NEW_KEY=k4\r\n"));
        assert_eq!(set("A=1", "B", "2").unwrap(), "A=1\nB=2\n");
    }

    #[test]
    fn duplicates_and_syntax_errors_name_the_lines() {
        assert_eq!(
            find("A=1\n# c\nA=2\n", "A").unwrap_err(),
            "the key \"A\" is defined twice, at lines 1 and 3; remove one"
        );
        assert_eq!(
            find("A=1\njunk\n", "A").unwrap_err(),
            "line 2: expected NAME=value"
        );
        assert!(find("A=\"open\n", "A")
            .unwrap_err()
            .starts_with("line 1: the quoted value is not closed"));
        assert!(find("1A=x\n", "B")
            .unwrap_err()
            .starts_with("line 1: \"1A\" is not a variable name"));
    }

    #[test]
    fn refuses_values_the_quoting_cannot_hold() {
        assert!(set("A='x'\n", "A", "it's").is_err());
        assert_eq!(set("A=x\n", "A", "a b").unwrap(), "A=\"a b\"\n");
    }
}
