//! YAML files, edited line by line and conservatively: the key is a dotted path of plain
//! mapping keys (`orders.apiKey`) to a one-line scalar (bare, `"..."` or `'...'`). What this
//! editor cannot change safely is refused, line named: flow style (`{...}`, `[...]`), anchors,
//! aliases and tags on the key's value, block and multi-line scalars, tabs in indentation,
//! several documents. A missing key is not added (YAML's layout is the author's).

use super::{duplicate, lines, Found};

/// Where a value starts in `rest` (after `key:`), and the comment-free raw value.
fn split_value(rest: &str) -> (usize, &str) {
    let t = rest.trim_start();
    let start = rest.len() - t.len();
    let cut = t
        .char_indices()
        .find(|&(i, c)| c == '#' && i > 0 && t[..i].ends_with([' ', '\t']))
        .map_or(t.len(), |(i, _)| i);
    (start, t[..cut].trim_end())
}

/// The key `path` (dotted) in `text`.
pub(in crate::targets::files) fn find(text: &str, path: &str) -> Result<Option<Found>, String> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut found: Option<(usize, Found)> = None;
    let mut block_above: Option<usize> = None; // skip a block scalar's lines deeper than this
    let mut seen_content = false;
    for (n, offset, line) in lines(text) {
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(b) = block_above {
            if indent > b {
                continue;
            }
            block_above = None;
        }
        if trimmed.starts_with('\t') {
            return Err(format!("line {n}: a tab in the indentation"));
        }
        if trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "..." {
            if seen_content {
                return Err(format!(
                    "line {n}: several YAML documents in one file are not supported"
                ));
            }
            continue;
        }
        seen_content = true;
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            // A sequence item: nothing under it is addressable by a dotted path.
            stack.push((indent, "\u{0}-".into()));
            continue;
        }
        let Some(colon) = trimmed
            .char_indices()
            .find(|&(i, c)| c == ':' && trimmed[i + 1..].chars().next().is_none_or(|c| c == ' '))
            .map(|(i, _)| i)
        else {
            return Err(format!(
                "line {n}: not a `key: value` line (multi-line scalars and flow style are not supported)"
            ));
        };
        let key = trimmed[..colon].trim_end();
        let key = key
            .strip_prefix('"')
            .and_then(|k| k.strip_suffix('"'))
            .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
            .unwrap_or(key);
        let rest = &trimmed[colon + 1..];
        let (start, raw) = split_value(rest);
        let mut full: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
        full.push(key);
        let is_target = full.join(".") == path;
        if raw.is_empty() {
            stack.push((indent, key.to_string()));
            if is_target {
                return Err(format!("line {n}: {path} is a mapping, not a scalar"));
            }
            continue;
        }
        let first = raw.chars().next().unwrap_or(' ');
        if matches!(first, '|' | '>') {
            block_above = Some(indent);
        }
        if matches!(first, '{' | '[') && !is_target {
            let (open, close) = if first == '{' { ('{', '}') } else { ('[', ']') };
            if raw.matches(open).count() != raw.matches(close).count() {
                return Err(format!(
                    "line {n}: a flow collection over several lines is not supported"
                ));
            }
        }
        if !is_target {
            continue;
        }
        if matches!(
            first,
            '|' | '>' | '{' | '[' | '&' | '*' | '!' | '?' | '%' | '@' | '`'
        ) {
            return Err(format!(
                "line {n}: the value of {path} is not a one-line plain or quoted scalar (block scalars, flow style, anchors, aliases and tags are not edited)"
            ));
        }
        let v_off = offset + indent + colon + 1 + start;
        let entry = match first {
            q @ ('"' | '\'') => {
                let inner = &raw[1..];
                if !inner.ends_with(q) {
                    return Err(format!(
                        "line {n}: the quoted value of {path} is not closed on its line"
                    ));
                }
                let body = &inner[..inner.len() - 1];
                if (q == '"' && body.contains(['\\', '"'])) || (q == '\'' && body.contains('\'')) {
                    return Err(format!(
                        "line {n}: the value of {path} has escapes this editor does not rewrite"
                    ));
                }
                Found {
                    value: body.to_string(),
                    span: v_off + 1..v_off + 1 + body.len(),
                    quote: Some(q),
                }
            }
            _ => Found {
                value: raw.to_string(),
                span: v_off..v_off + raw.len(),
                quote: None,
            },
        };
        if let Some((line1, _)) = &found {
            return Err(duplicate(path, *line1, n));
        }
        found = Some((n, entry));
    }
    Ok(found.map(|(_, f)| f))
}

fn plain_safe(value: &str) -> bool {
    value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '+' | '='))
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        )
}

/// `text` with the scalar at `path` set to `value`.
pub(in crate::targets::files) fn set(
    text: &str,
    path: &str,
    value: &str,
) -> Result<String, String> {
    let Some(f) = find(text, path)? else {
        return Err(format!(
            "{path} is not in the file: YAML keys are not added; add it (with any value) and run again"
        ));
    };
    if value.contains(['\n', '\r']) {
        return Err("the key contains a line break, which this YAML editor does not write".into());
    }
    let raw = match f.quote {
        None if plain_safe(value) => value.to_string(),
        None => format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")),
        Some('\'') if !value.contains('\'') => value.to_string(),
        Some('"') if !value.contains(['\\', '"']) => value.to_string(),
        _ => return Err("the key contains characters this value's quoting cannot hold".into()),
    };
    let mut out = text.to_string();
    out.replace_range(f.span, &raw);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# shop\r\norders:\r\n  url: https://x  # the API\r\n  apiKey: old # rotated\r\n  list:\r\n    - a: 1\r\n  quoted: \"q\"\r\nnotes: |\r\n  apiKey: not-this\r\nother: 'o'\r\n";

    #[test]
    fn rewrites_only_the_scalar() {
        assert_eq!(find(SAMPLE, "orders.apiKey").unwrap().unwrap().value, "old");
        assert_eq!(
            find(SAMPLE, "orders.url").unwrap().unwrap().value,
            "https://x"
        );
        assert_eq!(find(SAMPLE, "other").unwrap().unwrap().value, "o");
        assert_eq!(find(SAMPLE, "orders.missing").unwrap(), None);
        assert_eq!(find(SAMPLE, "orders.list.a").unwrap(), None);
        assert_eq!(
            set(SAMPLE, "orders.apiKey", "k2").unwrap(),
            SAMPLE.replace("apiKey: old", "apiKey: k2")
        );
        assert_eq!(
            set(SAMPLE, "orders.quoted", "k3").unwrap(),
            SAMPLE.replace("\"q\"", "\"k3\"")
        );
        assert_eq!(
            set(SAMPLE, "orders.apiKey", "123").unwrap(),
            SAMPLE.replace("apiKey: old", "apiKey: \"123\"")
        );
    }

    #[test]
    fn refuses_what_it_cannot_edit_safely() {
        assert!(find("a: &x v\n", "a")
            .unwrap_err()
            .starts_with("line 1: the value of a is not a one-line"));
        assert!(find("a: {b: 1}\n", "a").unwrap_err().starts_with("line 1:"));
        assert!(find("a: [1,\n 2]\nb: 1\n", "b")
            .unwrap_err()
            .starts_with("line 1: a flow collection"));
        assert!(find("a: |\n  x\n", "a").unwrap_err().starts_with("line 1:"));
        assert!(find("a: 1\n---\nb: 2\n", "a")
            .unwrap_err()
            .starts_with("line 2: several"));
        assert_eq!(
            find("o:\n  k: 1\n  k: 2\n", "o.k").unwrap_err(),
            "the key \"o.k\" is defined twice, at lines 2 and 3; remove one"
        );
        assert!(set("a: 1\n", "b", "x")
            .unwrap_err()
            .contains("not in the file"));
    }
}
