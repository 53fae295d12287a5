//! Strict JSON for inputs from outside: a key given twice in one object is an error naming its
//! JSON path, where `serde_json` would silently keep the last value (`{"appName":"a",
//! "appName":"b"}` must not pick one for the caller). Everything else parses as
//! `serde_json::from_slice` does.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Parses `bytes` as JSON, refusing duplicate keys. The error says where, as serde_json's do
/// (`appName: duplicate key at line 1 column 28`); it never quotes a value.
pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Seed { path: "" }.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Parses `text` as [`from_slice`] does.
pub fn from_str(text: &str) -> serde_json::Result<Value> {
    from_slice(text.as_bytes())
}

/// Deserializes one value at `path` (`""` for the root).
struct Seed<'a> {
    path: &'a str,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, items.len());
            match seq.next_element_seed(Seed { path: &path })? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = child(self.path, &key);
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "{path}: duplicate key (each key may appear once)"
                )));
            }
            let value = map.next_value_seed(Seed { path: &path })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde_json accepts parses to the same value.
    #[test]
    fn parses_as_serde_json_does() {
        for text in [
            r#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": "é\n"}"#,
            "[]",
            "\"s\"",
            "18446744073709551615",
        ] {
            assert_eq!(
                from_str(text).unwrap(),
                serde_json::from_str::<Value>(text).unwrap(),
                "{text}"
            );
        }
    }

    /// A duplicate key anywhere is refused with its path; the values are never quoted.
    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        for (text, path) in [
            (
                r#"{"appName": "secret-a", "appName": "secret-b"}"#,
                "appName",
            ),
            (r#"{"x": [{"k": 1}, {"k": 1, "k": 2}]}"#, "x[1].k"),
            (r#"{"a": {"b": {"c": 1, "c": 1}}}"#, "a.b.c"),
        ] {
            let e = from_str(text).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{path}: duplicate key")),
                "{text}: {e}"
            );
            assert!(!e.contains("secret-"), "{e}");
        }
        assert!(from_str(r#"{"a": 1} x"#).is_err(), "trailing characters");
    }
}
