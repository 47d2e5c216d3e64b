//! A plain HTTP/1.1 client for the HTTP/JSON edge: one request per connection, written out
//! as a newcomer's curl would send it, and the answer read back whole.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One answer: its status, headers (names lowercased) and body, as JSON when it is.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `google.rpc.Status` code of a refusal.
    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().unwrap_or_default()
    }

    /// The first detail of a refusal, of type `google.rpc.<kind>`.
    pub fn detail(&self, kind: &str) -> &Value {
        let wanted = format!("type.googleapis.com/google.rpc.{kind}");
        self.body["details"]
            .as_array()
            .and_then(|details| details.iter().find(|d| d["@type"] == wanted.as_str()))
            .unwrap_or(&Value::Null)
    }
}

/// Calls the edge at `addr` with `authorization: Bearer <token>` when it has one.
#[derive(Debug, Clone)]
pub struct Http {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, token: None }
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            addr: self.addr,
            token: Some(token.to_owned()),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], None).await
    }

    /// A POST of a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_text(path, &body.to_string(), &[]).await
    }

    pub async fn post_text(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send("POST", path, &all, Some(body.as_bytes())).await
    }

    /// Any request; `body` is sent with its length.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connects");
        exchange(stream, &self.request(method, path, headers, body)).await
    }

    /// The bytes of a request, `connection: close` so the answer ends with the connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
        if let Some(token) = &self.token {
            head.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = body.unwrap_or_default();
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        request
    }
}

/// Writes `request` to `stream` and reads the whole answer.
pub async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, request: &[u8]) -> Reply {
    stream.write_all(request).await.expect("request sent");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("answer read");
    parse(&answer)
}

fn parse(answer: &[u8]) -> Reply {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&answer[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let raw = answer[split + 4..].to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        raw,
    }
}
