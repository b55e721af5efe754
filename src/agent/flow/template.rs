//! Prompt templates: `{{ metadata.customer_name }}`, `{{ slots.city }}`, rendered with
//! minijinja.
//!
//! A value the call does not have renders as the empty string (so does `none`), and
//! `{{ x | default("friend") }}` gives it a default; a lookup through a missing value
//! (`{{ metadata.a.b }}`) is empty too, never an error. Templates are checked at load by
//! parsing and rendering them once with empty data, which catches syntax errors and unknown
//! filters. Rendering is bounded by fuel, so a loop in a flow file cannot hang a call. It
//! must never panic, whatever the template or the data.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use minijinja::value::Value;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// Instructions one render may run; far above any prompt, far below a hang.
const FUEL: u64 = 100_000;

/// The longest rendered prompt kept, in bytes; the rest is cut (at a character boundary).
pub const MAX_RENDERED_BYTES: usize = 4_096;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(32);
    env.set_formatter(|out, state, value| {
        if value.is_undefined() || value.is_none() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
});

/// What a template can name.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateData<'a> {
    /// The caller's number (or the number called, for outbound calls: Plivo's `From`).
    pub from: &'a str,
    /// The number called.
    pub to: &'a str,
    /// `inbound` or `outbound`.
    pub direction: &'a str,
    /// The campaign the call belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<&'a str>,
    /// The call's metadata from `POST /v1/calls`.
    pub metadata: &'a serde_json::Map<String, serde_json::Value>,
    /// The slots filled so far.
    pub slots: &'a BTreeMap<String, String>,
}

/// Whether `source` parses and renders with empty data; the engine's message if not.
pub fn check(source: &str) -> Result<(), String> {
    let empty_meta = serde_json::Map::new();
    let empty_slots = BTreeMap::new();
    let data = TemplateData {
        from: "",
        to: "",
        direction: "",
        campaign: None,
        metadata: &empty_meta,
        slots: &empty_slots,
    };
    render(source, &data).map(|_| ())
}

/// `source` rendered with `data`, trimmed and at most `MAX_RENDERED_BYTES` (4 KiB) long.
pub fn render(source: &str, data: &TemplateData<'_>) -> Result<String, String> {
    render_up_to(source, data, MAX_RENDERED_BYTES)
}

/// `source` rendered with `data`, trimmed and at most `max_bytes` long (a system prompt
/// may be longer than anything a flow says).
pub fn render_up_to(
    source: &str,
    data: &TemplateData<'_>,
    max_bytes: usize,
) -> Result<String, String> {
    let rendered = ENV
        .render_str(source, Value::from_serialize(data))
        .map_err(|e| describe(&e))?;
    let mut text = rendered.trim();
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text = &text[..end];
    }
    Ok(text.to_owned())
}

/// The error on one line (minijinja's message names the line: `(in <string>:1)`).
fn describe(error: &minijinja::Error) -> String {
    error.to_string().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data<'a>(
        metadata: &'a serde_json::Map<String, serde_json::Value>,
        slots: &'a BTreeMap<String, String>,
    ) -> TemplateData<'a> {
        TemplateData {
            from: "+14155550100",
            to: "+14155550199",
            direction: "outbound",
            campaign: Some("spring"),
            metadata,
            slots,
        }
    }

    #[test]
    fn renders_call_facts_metadata_and_slots() {
        let mut meta = serde_json::Map::new();
        meta.insert("customer_name".into(), "Ada".into());
        meta.insert("visits".into(), 3.into());
        let slots = BTreeMap::from([("city".to_owned(), "Paris".to_owned())]);
        let text = render(
            "Hi {{ metadata.customer_name }}, visit {{ metadata.visits }} in {{ slots.city }} \
             ({{ campaign }}, {{ direction }} from {{ from }} to {{ to }})",
            &data(&meta, &slots),
        )
        .unwrap();
        assert_eq!(
            text,
            "Hi Ada, visit 3 in Paris (spring, outbound from +14155550100 to +14155550199)"
        );
    }

    #[test]
    fn missing_values_are_empty_or_take_their_default() {
        let meta = serde_json::Map::from_iter([("nothing".to_owned(), serde_json::Value::Null)]);
        let slots = BTreeMap::new();
        let d = data(&meta, &slots);
        assert_eq!(render("[{{ metadata.customer_name }}]", &d).unwrap(), "[]");
        assert_eq!(render("[{{ metadata.a.b.c }}]", &d).unwrap(), "[]");
        assert_eq!(render("[{{ metadata.nothing }}]", &d).unwrap(), "[]");
        assert_eq!(
            render("Hello {{ metadata.customer_name | default('there') }}", &d).unwrap(),
            "Hello there"
        );
        let none = TemplateData {
            campaign: None,
            ..d
        };
        assert_eq!(render("[{{ campaign }}]", &none).unwrap(), "[]");
    }

    #[test]
    fn bad_templates_fail_the_check_with_a_reason() {
        assert!(check("Hello {{ name").unwrap_err().contains("syntax error"));
        assert!(check("{{ x | no_such_filter }}").is_err());
        assert!(check("{% for %}").is_err());
        assert!(check("plain text").is_ok());
    }

    #[test]
    fn a_runaway_loop_runs_out_of_fuel_instead_of_hanging() {
        let err = check(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap_err();
        assert!(!err.is_empty());
    }
}
