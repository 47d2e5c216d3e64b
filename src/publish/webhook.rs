//! The webhook sink: each event is one HTTP/1.1 POST to the endpoint, over a kept-alive
//! connection. A 2xx answer delivers it; any other answer, a timeout or a broken connection
//! is a failed attempt.
//!
//! A sink with a secret signs every delivery: `X-Promised-Timestamp` is the Unix time of the
//! attempt in seconds, and `X-Promised-Signature` is `sha256=<hex>`, the HMAC-SHA256 under the
//! secret of `<timestamp>.<body>` (the timestamp, a dot, the raw body). A receiver recomputes
//! it, compares in constant time, and refuses a timestamp too far from its clock, which
//! stops replays of an old delivery. The body is the event as structured mode or its data
//! (binary mode, attributes as `ce-*` headers); `Idempotency-Key` is the event id too.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::cloudevents::{CloudEvent, Mode, STRUCTURED_CONTENT_TYPE};
use super::settings::WebhookSink;
use super::Sink;
use crate::http::webhook::{sign, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};

/// The header carrying the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "x-promised-timestamp";

/// The most of an answer's body read; a longer one closes the connection.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One endpoint and its open connection, if any.
pub struct Webhook {
    sink: WebhookSink,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Webhook {
    pub fn new(sink: WebhookSink) -> Self {
        Self {
            sink,
            connection: None,
        }
    }

    /// The open connection, or a new one.
    async fn connection(&mut self, uri: &Uri) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if let Some(open) = self.connection.take().filter(|c| !c.is_closed()) {
            return Ok(self.connection.insert(open));
        }
        let host = uri.host().ok_or("the url has no host")?;
        let port = uri.port_u16().unwrap_or(80);
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let (send, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(connection);
        Ok(self.connection.insert(send))
    }

    /// One attempt, without its timeout.
    async fn post(&mut self, event: &CloudEvent) -> Result<(), String> {
        let uri: Uri = self
            .sink
            .url
            .parse()
            .map_err(|e| format!("the url does not parse: {e}"))?;
        let (body, mut headers) = match self.sink.feed.mode {
            Mode::Structured => (
                event.structured(),
                vec![("content-type", STRUCTURED_CONTENT_TYPE.to_owned())],
            ),
            Mode::Binary => (
                event.data.clone(),
                event
                    .binary_headers()
                    .iter()
                    .map(|&(name, value)| (name, value.to_owned()))
                    .collect(),
            ),
        };
        headers.push((IDEMPOTENCY_HEADER, event.id.clone()));
        if let Some(secret) = &self.sink.secret {
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                .to_string();
            let mut signed = format!("{timestamp}.").into_bytes();
            signed.extend_from_slice(&body);
            headers.push((SIGNATURE_HEADER, sign(secret, &signed)));
            headers.push((TIMESTAMP_HEADER, timestamp));
        }
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut request = Request::post(path).header("host", authority);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("the request does not build: {e}"))?;
        let connection = self.connection(&uri).await?;
        let sent = match connection.ready().await {
            Ok(()) => connection.send_request(request).await,
            Err(e) => Err(e),
        };
        let answer = sent.map_err(|e| {
            self.connection = None;
            format!("sending: {e}")
        })?;
        let status = answer.status();
        // Read (a bounded amount) to its end, so the connection can carry the next one.
        if Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .is_err()
        {
            self.connection = None;
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the endpoint answered {status}"))
        }
    }
}

impl Sink for Webhook {
    async fn send(&mut self, event: &CloudEvent) -> Result<(), String> {
        let timeout = self.sink.timeout;
        match tokio::time::timeout(timeout, self.post(event)).await {
            Ok(answer) => answer,
            Err(_) => {
                self.connection = None;
                Err(format!("no answer within {timeout:?}"))
            }
        }
    }
}
