//! The OpenAPI 3.1 document of the HTTP edge, written from the route table and the message
//! descriptors, so it cannot drift from what the edge serves: one operation per route (and the
//! CSV upload's, written beside it in [`upload`]), its
//! path and query parameters, its request body and answer as JSON Schemas of the proto3 JSON
//! mapping, and every refusal as a `google.rpc.Status`. `promised openapi` prints it; the
//! copy in `api/openapi.json` is checked against it by a test.

use std::collections::BTreeMap;

use axum::http::Method;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{json, Map, Value};

use super::json::method;
use super::routes::{matches, Route, Serve};
use super::sse::LAST_EVENT_ID;
use super::upload;
use super::webhook::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER};

const STATUS: &str = "google.rpc.Status";
const TIMESTAMP: &str = "google.protobuf.Timestamp";

/// The document.
pub fn document(routes: &[Route]) -> Value {
    let mut schemas = BTreeMap::new();
    let mut paths = Map::new();
    for route in routes {
        let Some(rpc) = method(route.rpc) else {
            continue;
        };
        let operation = operation(route, &rpc.input(), &rpc.output(), &mut schemas);
        let entry = paths
            .entry(route.path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[route.method.as_str().to_lowercase()] = operation;
    }
    paths.insert(upload::PATH.to_owned(), upload::operation(STATUS));
    schemas.insert(STATUS.to_owned(), status_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "promised",
            "version": "v1",
            "description": "Availability, promises, reservations and routing over HTTP/JSON: \
                the gRPC API of promised.v1 in the proto3 JSON mapping (64-bit integers as \
                strings, enums by name, unknown fields refused). Every refusal is a \
                google.rpc.Status with the details a gRPC caller gets.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                    "description": "An API key or a JWT, as for gRPC."},
            },
            "schemas": schemas,
        },
    })
}

fn operation(
    route: &Route,
    input: &MessageDescriptor,
    output: &MessageDescriptor,
    schemas: &mut BTreeMap<String, Value>,
) -> Value {
    let path_params: Vec<String> = matches(route.path, route.path)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let mut parameters = Vec::new();
    for name in &path_params {
        if let Some(field) = bound_field(input, name) {
            let schema = scalar_schema(&field, schemas);
            parameters
                .push(json!({"name": name, "in": "path", "required": true, "schema": schema}));
        }
    }
    let answer = match route.serve {
        Serve::Unary(_) => json!({"description": "The answer.", "content": {"application/json": {
            "schema": reference(output, schemas)}}}),
        Serve::Events(_) => events(output, schemas),
    };
    let mut operation = json!({
        "operationId": route.operation,
        "summary": format!("{} (gRPC {})", route.operation, route.rpc),
        "responses": {
            "200": answer,
            "default": {"description": "A refusal.", "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{STATUS}")}}}},
        },
    });
    if route.method == Method::GET {
        for field in input.fields() {
            let bound = path_params
                .iter()
                .any(|p| bound_field(input, p).as_ref() == Some(&field));
            if bound || field.is_map() {
                continue;
            }
            parameters.extend(query_parameters(&field, schemas));
        }
    } else {
        operation["requestBody"] = json!({"required": false, "content": {"application/json": {
            "schema": reference(input, schemas)}}});
    }
    if route.webhook {
        parameters.push(json!({"name": IDEMPOTENCY_HEADER, "in": "header",
            "description": "Names the delivery: a retry with the same key answers the original result. \
                A numeric key is the batch's sequence when the body has none.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 256}}));
        parameters.push(json!({"name": SIGNATURE_HEADER, "in": "header",
            "description": "sha256=<hex HMAC-SHA256 of the body>, required when the source has a \
                webhook secret in the network file.",
            "schema": {"type": "string"}}));
    }
    if let Serve::Events(_) = route.serve {
        parameters.push(json!({"name": LAST_EVENT_ID, "in": "header",
            "description": "The id of the last event received: resumes after it (instead of \
                resume_token).",
            "schema": {"type": "string"}}));
    }
    if !parameters.is_empty() {
        operation["parameters"] = Value::Array(parameters);
    }
    operation
}

/// A stream's answer: server-sent events of `output` messages.
fn events(output: &MessageDescriptor, schemas: &mut BTreeMap<String, Value>) -> Value {
    let data = reference(output, schemas);
    json!({
        "description": format!(
            "Server-sent events, as long as the watch lasts: each event's `id` is its resume \
             token and its `data` a {} in JSON; a stream the service ends ends with an `end` \
             event whose `data` is a {STATUS} saying why.",
            output.full_name()
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-data": data}},
    })
}

/// The query parameters of a GET call's field: the field itself, or each field of a message
/// field by its dotted name (`bands.margin`), as [`super::json::bind`] reads them.
fn query_parameters(field: &FieldDescriptor, schemas: &mut BTreeMap<String, Value>) -> Vec<Value> {
    let Kind::Message(message) = field.kind() else {
        let schema = field_schema(field, schemas);
        return vec![json!({"name": field.name(), "in": "query", "schema": schema})];
    };
    if field.is_list() || message.full_name().starts_with("google.") {
        return Vec::new();
    }
    message
        .fields()
        .filter(|inner| !inner.is_map() && !matches!(inner.kind(), Kind::Message(_)))
        .map(|inner| {
            let name = format!("{}.{}", field.name(), inner.name());
            json!({"name": name, "in": "query", "schema": field_schema(&inner, schemas)})
        })
        .collect()
}

/// The field a path parameter binds, by the rule of [`super::json::bind`].
fn bound_field(input: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    input
        .get_field_by_name(name)
        .or_else(|| input.get_field_by_name(&format!("{name}s")))
}

/// A `$ref` to a message's schema, adding it (and what it refers to) when new.
fn reference(message: &MessageDescriptor, schemas: &mut BTreeMap<String, Value>) -> Value {
    let name = message.full_name().to_owned();
    if name == TIMESTAMP {
        return json!({"type": "string", "format": "date-time"});
    }
    if !schemas.contains_key(&name) {
        schemas.insert(name.clone(), Value::Null);
        let mut properties = Map::new();
        for field in message.fields() {
            properties.insert(field.json_name().to_owned(), field_schema(&field, schemas));
        }
        let schema =
            json!({"type": "object", "properties": properties, "additionalProperties": false});
        schemas.insert(name.clone(), schema);
    }
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn field_schema(field: &FieldDescriptor, schemas: &mut BTreeMap<String, Value>) -> Value {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return json!({"type": "object"});
        };
        let value = entry.map_entry_value_field();
        return json!({"type": "object", "additionalProperties": scalar_schema(&value, schemas)});
    }
    let item = scalar_schema(field, schemas);
    if field.is_list() {
        json!({"type": "array", "items": item})
    } else {
        item
    }
}

/// The schema of one value of a field, in the proto3 JSON mapping.
fn scalar_schema(field: &FieldDescriptor, schemas: &mut BTreeMap<String, Value>) -> Value {
    match field.kind() {
        Kind::String => json!({"type": "string"}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({"type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX})
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({"type": "integer", "format": "uint32", "minimum": 0, "maximum": u32::MAX})
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$"})
        }
        Kind::Uint64 | Kind::Fixed64 => {
            json!({"type": "string", "format": "uint64", "pattern": "^[0-9]{1,19}$"})
        }
        Kind::Double | Kind::Float => json!({"type": "number"}),
        Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Kind::Enum(desc) => {
            let names: Vec<String> = desc.values().map(|v| v.name().to_owned()).collect();
            json!({"type": "string", "enum": names})
        }
        Kind::Message(desc) => reference(&desc, schemas),
    }
}

fn status_schema() -> Value {
    json!({
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "integer", "description": "The google.rpc.Code."},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {
                "type": "object",
                "required": ["@type"],
                "properties": {"@type": {"type": "string"}},
            }},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::routes::table;
    use super::*;

    /// The committed copy is the document the edge serves; after a change to a route or a
    /// message, `cargo run -- openapi > api/openapi.json` brings it up to date.
    #[test]
    fn the_committed_document_is_current() {
        let committed: Value =
            serde_json::from_str(include_str!("../../api/openapi.json")).expect("valid JSON");
        assert!(
            committed == document(&table()),
            "api/openapi.json is stale: run `cargo run -- openapi > api/openapi.json`"
        );
    }

    #[test]
    fn sixty_four_bit_integers_are_strings_and_enums_names() {
        let doc = document(&table());
        let schemas = &doc["components"]["schemas"];
        let update = &schemas["promised.v1.SupplyUpdate"]["properties"];
        assert_eq!(update["quantity"]["type"], "string");
        assert_eq!(update["op"]["enum"][1], "UPDATE_OP_SET");
        assert_eq!(update["asOf"]["format"], "date-time");
        let path = &doc["paths"]["/v1/reservations/{reservation_id}:commit"]["post"];
        assert_eq!(path["parameters"][0]["in"], "path");
    }

    #[test]
    fn a_watch_answers_server_sent_events_and_takes_its_bands_as_dotted_parameters() {
        let doc = document(&table());
        let watch = &doc["paths"]["/v1/availability:watch"]["get"];
        let answer = &watch["responses"]["200"]["content"]["text/event-stream"];
        assert_eq!(
            answer["x-event-data"]["$ref"],
            "#/components/schemas/promised.v1.AvailabilityChange"
        );
        let names: Vec<&str> = watch["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for name in ["skus", "resume_token", "bands.low_at_most", "bands.margin"] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        assert!(names.contains(&LAST_EVENT_ID), "{names:?}");
    }
}
