//! Object keys: where a recording's files go under the storage prefix.
//!
//! Keys are built from a template of safe literals and placeholders whose values are
//! escaped, so no topic, id or site can add a path segment, climb out of the prefix
//! (`..`) or collide with another recording.

use chrono::{DateTime, Datelike, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Characters of a placeholder value kept as they are: ASCII letters, digits, `-`, `_`.
/// Everything else (including `.`, `/` and `%`) is percent-encoded.
const VALUE_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Year,
    Month,
    Day,
    Id,
    Site,
}

/// A parsed `archive.key_template`, e.g. `{year}/{month}/{day}/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

/// What a key is built from.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    /// The Webex recording id.
    pub id: &'a str,
    /// The recording's createTime.
    pub create_time: DateTime<Utc>,
    /// The recording's site, if known.
    pub site_url: Option<&'a str>,
}

impl KeyTemplate {
    /// Parses and checks a template. The error says what is wrong, for the config message.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or("an opening \"{\" has no closing \"}\"")?;
                let part = match &after[..end] {
                    "year" => Part::Year,
                    "month" => Part::Month,
                    "day" => Part::Day,
                    "id" => Part::Id,
                    "site" => Part::Site,
                    other => {
                        return Err(format!(
                            "unknown placeholder {{{other}}}; use {{year}} {{month}} {{day}} {{id}} {{site}}"
                        ));
                    }
                };
                parts.push(part);
                rest = &after[end + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let literal = &rest[..end];
                if let Some(bad) = literal.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_./".contains(*c))) {
                    return Err(format!(
                        "the character {bad:?} is not allowed; literals may use letters, digits, - _ . /"
                    ));
                }
                parts.push(Part::Literal(literal.to_owned()));
                rest = &rest[end..];
            }
        }
        if !parts.contains(&Part::Id) {
            return Err("must contain {id}, so that every recording has its own directory".into());
        }
        if template.starts_with('/') || template.ends_with('/') {
            return Err("must not start or end with \"/\"".into());
        }
        // Check the literal segments once with placeholders filled in.
        let sample = Self { parts: parts.clone() }.render(KeyInputs {
            id: "x",
            create_time: DateTime::UNIX_EPOCH,
            site_url: Some("x"),
        });
        if sample.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
            return Err("must not contain empty, \".\" or \"..\" path segments".into());
        }
        Ok(Self { parts })
    }

    /// The directory key of one recording (relative to the storage prefix).
    pub fn render(&self, inputs: KeyInputs<'_>) -> String {
        let mut key = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => key.push_str(text),
                Part::Year => key.push_str(&format!("{:04}", inputs.create_time.year())),
                Part::Month => key.push_str(&format!("{:02}", inputs.create_time.month())),
                Part::Day => key.push_str(&format!("{:02}", inputs.create_time.day())),
                Part::Id => key.push_str(&escape(inputs.id)),
                Part::Site => key.push_str(&escape(inputs.site_url.unwrap_or("unknown-site"))),
            }
        }
        key
    }
}

/// Escapes a value so it is one safe path segment, never empty.
fn escape(value: &str) -> String {
    if value.is_empty() {
        return "%00".into();
    }
    utf8_percent_encode(value, VALUE_ESCAPE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(id: &str) -> KeyInputs<'_> {
        KeyInputs { id, create_time: "2026-11-27T10:00:00Z".parse().unwrap(), site_url: Some("a.webex.com") }
    }

    #[test]
    fn default_layout_is_date_then_id() {
        let t = KeyTemplate::parse("{year}/{month}/{day}/{id}").unwrap();
        assert_eq!(t.render(inputs("4f91")), "2026/11/27/4f91");
    }

    #[test]
    fn values_cannot_escape_or_add_segments() {
        let t = KeyTemplate::parse("{site}/{id}").unwrap();
        assert_eq!(t.render(inputs("../../etc")), "a%2Ewebex%2Ecom/%2E%2E%2F%2E%2E%2Fetc");
        assert_eq!(t.render(inputs("..")), "a%2Ewebex%2Ecom/%2E%2E");
        assert_eq!(t.render(inputs("")), "a%2Ewebex%2Ecom/%00");
    }

    proptest::proptest! {
        #[test]
        fn any_template_text_is_checked_without_panicking(text in "\\PC{0,60}") {
            let _ = KeyTemplate::parse(&text);
        }

        #[test]
        fn listed_values_stay_inside_one_segment(
            id in "\\PC{0,40}",
            other in "\\PC{0,40}",
            site in proptest::option::of("\\PC{0,30}"),
            seconds in proptest::num::i64::ANY,
        ) {
            let t = KeyTemplate::parse("x/{site}/{year}/{month}/{day}/{id}").unwrap();
            let create_time = DateTime::from_timestamp(seconds % 253_402_300_799, 0).unwrap_or(DateTime::UNIX_EPOCH);
            let key = |id: &str| t.render(KeyInputs { id, create_time, site_url: site.as_deref() });
            let rendered = key(&id);
            let segments: Vec<&str> = rendered.split('/').collect();
            proptest::prop_assert_eq!(segments.len(), 6, "{}", rendered);
            proptest::prop_assert!(segments.iter().all(|s| !s.is_empty() && *s != "." && *s != ".."), "{}", rendered);
            proptest::prop_assert!(object_store::path::Path::parse(&rendered).is_ok(), "{}", rendered);
            // Escaping is injective: two ids never share a directory.
            if id != other {
                proptest::prop_assert_ne!(rendered, key(&other));
            }
        }
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["{year}/{month}", "{id}/../x", "/{id}", "{id}/", "{nope}/{id}", "{id} x", "a//{id}", "{id"] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
