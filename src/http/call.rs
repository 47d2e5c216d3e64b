//! One HTTP call, in the order its checks cost: a place among the calls in flight, the
//! caller admitted for the route's gRPC method (401, 403), the body's type (415) and size
//! (413) before it is read, a webhook's signature (401) and redelivery, the JSON (400), and
//! only then the adapter, whose answer or status is rendered (or, for a watch, whose stream
//! is sent as server-sent events).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use super::error::{answer, refusal};
use super::routes::{matches, Input, Route, Serve};
use super::sse;
use super::webhook::{sequence_from_key, Webhooks};
use super::{json, Edge};
use crate::connections::Peer;
use crate::grpc::token_header;

/// Serves `request` by the first of `routes` (all on one axum path and method) it matches.
pub async fn handle(edge: &Edge, routes: &[Route], request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let Some((route, params)) = routes
        .iter()
        .find_map(|route| matches(route.path, &path).map(|params| (route, params)))
    else {
        return refusal(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            format!("no route {path}"),
        );
    };
    let Ok(_permit) = edge.in_flight.clone().try_acquire_owned() else {
        return answer(&Status::resource_exhausted("too many calls in flight"));
    };
    match serve(edge, route, params, request).await {
        Ok(response) => response,
        Err(Refused::Status(status)) => answer(&status),
        Err(Refused::Http(http, status)) => refusal(http, status.code(), status.message()),
    }
}

/// Why a call was not served: a gRPC status, or one with an HTTP status of its own.
enum Refused {
    Status(Status),
    Http(StatusCode, Status),
}

impl From<Status> for Refused {
    fn from(status: Status) -> Self {
        Self::Status(status)
    }
}

async fn serve(
    edge: &Edge,
    route: &Route,
    params: Vec<(String, String)>,
    request: Request,
) -> Result<Response, Refused> {
    let (parts, body) = request.into_parts();
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let identity =
        edge.authentication
            .admit_call(route.rpc, authorization, parts.extensions.get::<Peer>())?;
    edge.handlers.consistent(&parts.headers).await?;
    let body = read_body(&parts.method, &parts.headers, body, edge.max_body_bytes).await?;
    let method = json::method(route.rpc)
        .ok_or_else(|| Status::unimplemented(format!("{} is not in the API", route.rpc)))?;
    let delivery = if route.webhook {
        let source_id = param(&params, "source_id");
        edge.webhooks.verify(source_id, &parts.headers, &body)?;
        let key = Webhooks::key(&parts.headers)?;
        if let Some(key) = &key {
            if let Some(original) = edge.webhooks.recall(source_id, key, &body)? {
                return Ok(ok(original));
            }
        }
        key.map(|key| (source_id.to_owned(), key))
    } else {
        None
    };
    let mut message = json::parse(method.input(), &body)?;
    for (name, value) in query(parts.uri.query()).iter().chain(&params) {
        json::bind(&mut message, name, value)?;
    }
    if let Some(token) = sse::last_event_id(&route.serve, &parts.headers)? {
        json::bind(&mut message, "resume_token", token)?;
    }
    if let Some((_, key)) = &delivery {
        sequence_from_key(&mut message, key);
    }
    let input = Input {
        message,
        metadata: MetadataMap::from_headers(parts.headers),
        identity,
        method,
    };
    let call = match &route.serve {
        Serve::Unary(call) => call,
        Serve::Events(open) => {
            let opened = open(edge.handlers.clone(), input);
            let (opened, token) = edge.handlers.consistency.answer(opened).await;
            let mut response = sse::respond(opened?);
            token_header(response.headers_mut(), token);
            return Ok(response);
        }
    };
    let (answered, token) = edge
        .handlers
        .consistency
        .answer(call(edge.handlers.clone(), input))
        .await;
    let answered = answered?;
    if let Some((source_id, key)) = &delivery {
        edge.webhooks.remember(source_id, key, &body, &answered);
    }
    let mut response = ok(answered);
    token_header(response.headers_mut(), token);
    Ok(response)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

fn ok(json: Vec<u8>) -> Response {
    let mut response = (StatusCode::OK, json).into_response();
    let json_type = HeaderValue::from_static("application/json");
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, json_type);
    response
}

/// The body of a call, at most `max` bytes; one with content must say it is JSON.
async fn read_body(
    method: &Method,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<Vec<u8>, Refused> {
    let too_large = || {
        Refused::Http(
            StatusCode::PAYLOAD_TOO_LARGE,
            Status::resource_exhausted(format!("the body is over {max} bytes")),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > max) {
        return Err(too_large());
    }
    let has_body = declared.is_some_and(|length| length > 0)
        || headers.contains_key(header::TRANSFER_ENCODING);
    if has_body && method != Method::GET && !is_json(headers) {
        return Err(Refused::Http(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Status::invalid_argument("the body must be Content-Type: application/json"),
        ));
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(error) if error.is::<LengthLimitError>() => Err(too_large()),
        Err(error) => Err(Status::invalid_argument(format!("unreadable body: {error}")).into()),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The query string's parameters, decoded (`+` is a space).
pub(super) fn query(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let text = text.replace('+', " ");
        percent_encoding::percent_decode_str(&text)
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_decodes() {
        assert_eq!(
            query(Some("node_ids=DC+1&node_ids=DC%2D2&quantity")),
            vec![
                ("node_ids".into(), "DC 1".into()),
                ("node_ids".into(), "DC-2".into()),
                ("quantity".into(), String::new()),
            ]
        );
    }

    #[test]
    fn json_is_json_whatever_its_parameters() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json(&headers));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&headers));
    }
}
