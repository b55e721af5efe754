//! The control API's OpenAPI document, generated from the handlers and body types in
//! [`super::api`], served at `GET /openapi.json` (no auth: it holds no secrets).

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::api;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "voxgate control API",
        description = "Place, read, list and hang up calls; inspect and replay dead letters. \
            Every route needs `Authorization: Bearer <token>`. Errors are \
            `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`."
    ),
    paths(
        api::create_call,
        api::list_calls,
        api::get_call,
        api::hang_up,
        api::list_dead,
        api::replay_dead,
    ),
    components(schemas(
        api::CreateCall,
        api::CallCreated,
        api::CallView,
        api::CallPage,
        api::DeadLetter,
        api::DeadLetters,
        api::ErrorBody,
        api::ErrorDetail,
        api::CallStatus,
        api::CallOutcome,
        api::CallDirection,
        api::EventName,
        api::Sink,
        api::AgentName,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "calls", description = "Outbound calls and their lifecycle"),
        (name = "deliveries", description = "Events the sinks did not take"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the operations name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn the_document_lists_every_v1_route_and_parses_as_openapi_3() {
        let doc: Value = serde_json::from_str(json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "voxgate control API");
        // Every `$ref` names a schema the document defines. (schemathesis, in
        // tests/openapi.rs, validates the whole document when it loads it.)
        fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        out.push(r);
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "dangling $ref {r}"
            );
        }

        let expected = [
            ("/v1/calls", "post"),
            ("/v1/calls", "get"),
            ("/v1/calls/{call_id}", "get"),
            ("/v1/calls/{call_id}", "delete"),
            ("/v1/deliveries/dead", "get"),
            ("/v1/deliveries/dead/{sink}/{id}/replay", "post"),
        ];
        let paths = doc["paths"].as_object().unwrap();
        let mut listed: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| k.as_str() != "parameters")
                    .map(move |method| (path.clone(), method.clone()))
            })
            .collect();
        listed.sort();
        let mut expected: Vec<(String, String)> = expected
            .iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        expected.sort();
        assert_eq!(listed, expected);

        for (path, method) in &expected {
            let op = &doc["paths"][path][method];
            assert_eq!(
                op["security"],
                serde_json::json!([{"bearer": []}]),
                "{method} {path}"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("401"), "{method} {path}");
            assert!(responses.contains_key("503"), "{method} {path}");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"],
            serde_json::json!({"type": "http", "scheme": "bearer"})
        );
        let create = &doc["paths"]["/v1/calls"]["post"]["responses"];
        for status in ["201", "400", "401", "409", "413", "415", "502", "503"] {
            assert!(create.get(status).is_some(), "POST /v1/calls {status}");
        }
    }

    /// The document's enums name exactly the model's wire values.
    #[test]
    fn the_documented_enums_match_the_wire() {
        use crate::control::model::{CallState, Direction, EventType};
        use crate::control::store::SinkKind;

        let doc: Value = serde_json::from_str(json()).unwrap();
        let names = |schema: &str| -> Vec<String> {
            doc["components"]["schemas"][schema]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{schema} is an enum"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let wire = |v: Vec<Value>| -> Vec<String> {
            v.into_iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        use CallState::*;
        let states = [
            Initiated, Ringing, InProgress, Completed, Missed, Busy, Failed, Canceled,
        ];
        let state_names = wire(states.iter().map(|s| serde_json::json!(s)).collect());
        assert_eq!(names("CallStatus"), state_names);
        for name in &state_names {
            assert!(CallState::parse(name).is_some(), "{name}");
        }
        assert_eq!(
            names("CallDirection"),
            wire(vec![
                serde_json::json!(Direction::Outbound),
                serde_json::json!(Direction::Inbound)
            ])
        );
        let events = [
            EventType::Initiated,
            EventType::Ringing,
            EventType::Answered,
            EventType::MediaStarted,
            EventType::Ended,
            EventType::RecordingReady,
            EventType::Completed,
        ];
        assert_eq!(
            names("EventName"),
            wire(events.iter().map(|e| serde_json::json!(e)).collect())
        );
        assert_eq!(
            names("Sink"),
            wire(vec![
                serde_json::json!(SinkKind::Queue),
                serde_json::json!(SinkKind::Backend)
            ])
        );
        assert_eq!(
            names("AgentName"),
            crate::agent::AgentKind::ALL.map(|kind| kind.as_str())
        );
        assert_eq!(
            names("CallOutcome"),
            [
                "answered",
                "short_call",
                "no_answer",
                "busy",
                "failed",
                "canceled"
            ]
        );
    }
}
