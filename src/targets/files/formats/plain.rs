//! A plain file holding only the key, on one line; a trailing newline is kept.

use super::Found;

/// The key in `text`; `None` for an empty file.
pub(in crate::targets::files) fn find(text: &str) -> Result<Option<Found>, String> {
    let body = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if body.contains('\n') {
        return Err("line 2: a plain file holds only the key, on one line".into());
    }
    if body.is_empty() {
        return Ok(None);
    }
    Ok(Some(Found {
        value: body.to_string(),
        span: 0..body.len(),
        quote: None,
    }))
}

/// `text` with its key set to `value` (an empty file gets the bare value).
pub(in crate::targets::files) fn set(text: &str, value: &str) -> Result<String, String> {
    if value.contains(['\n', '\r']) {
        return Err("the key contains a line break, which a plain file cannot hold".into());
    }
    let span = match find(text)? {
        Some(f) => f.span,
        None => {
            0..text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(text)
                .len()
        }
    };
    let mut out = text.to_string();
    out.replace_range(span, value);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_trailing_newline_or_its_absence() {
        assert_eq!(set("old\n", "new").unwrap(), "new\n");
        assert_eq!(set("old\r\n", "new").unwrap(), "new\r\n");
        assert_eq!(set("old", "new").unwrap(), "new");
        assert_eq!(set("", "new").unwrap(), "new");
        assert_eq!(find("old\r\n").unwrap().unwrap().value, "old");
        assert_eq!(find("").unwrap(), None);
        assert_eq!(find("\n").unwrap(), None);
    }

    #[test]
    fn refuses_more_than_one_line() {
        assert_eq!(
            find("a\nb\n").unwrap_err(),
            "line 2: a plain file holds only the key, on one line"
        );
        assert!(set("a\nb", "x").is_err());
        assert!(set("a", "x\ny").is_err());
    }
}
