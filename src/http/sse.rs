//! A watch over HTTP: its stream as server-sent events (`text/event-stream`). Each message is
//! an event whose `id` is its resume token and whose `data` is the message's canonical JSON;
//! a client (a browser's `EventSource` among them) resumes by sending the last id back as
//! `Last-Event-ID`, which takes the place of the `resume_token` parameter. A stream the
//! service ends (the watcher fell behind, the service shuts down, the journal failed) ends
//! with one `end` event whose data is the `google.rpc.Status` JSON a refusal carries, saying
//! why and (for a watcher behind) the token to resume from. Refusals before the stream
//! starts are ordinary HTTP refusals.

use std::convert::Infallible;

use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use tokio_stream::StreamExt;

use super::error::{body, invalid};
use super::routes::{Events, Serve};

/// The header a reconnecting client names its last event by.
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The resume token a stream's call names in `Last-Event-ID`, if it is a stream and names one.
pub fn last_event_id<'a>(
    serve: &Serve,
    headers: &'a HeaderMap,
) -> Result<Option<&'a str>, tonic::Status> {
    let (Serve::Events(_), Some(value)) = (serve, headers.get(LAST_EVENT_ID)) else {
        return Ok(None);
    };
    value
        .to_str()
        .map(Some)
        .map_err(|_| invalid("Last-Event-ID", "must be a token a watch gave"))
}

/// The response that sends `events` as they come.
pub fn respond(events: Events) -> Response {
    let events = events.map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(event) => Event::default()
                .id(event.token)
                .data(String::from_utf8_lossy(&event.json)),
            Err(status) => Event::default()
                .event("end")
                .data(body(&status).to_string()),
        })
    });
    Sse::new(events).into_response()
}
