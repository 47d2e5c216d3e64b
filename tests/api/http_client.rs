//! A plain HTTP/1.1 client for the HTTP/JSON edge: one request per connection, written out
//! as a newcomer's curl would send it, and the answer read back whole; or requests one after
//! another on a connection kept open.

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
        self.request_on("close", method, path, headers, body)
    }

    /// The bytes of a request with `connection` as its `connection` header.
    fn request_on(
        &self,
        connection: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: {connection}\r\n");
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

/// A connection kept open, its requests sent one after another.
pub struct KeptConnection {
    http: Http,
    stream: tokio::net::TcpStream,
}

impl KeptConnection {
    pub async fn open(http: &Http) -> KeptConnection {
        let stream = tokio::net::TcpStream::connect(http.addr)
            .await
            .expect("connects");
        KeptConnection {
            http: http.clone(),
            stream,
        }
    }

    /// A POST of `body` as JSON; the answer is read to the end of its `content-length`.
    pub async fn post_text(&mut self, path: &str, body: &str) -> Reply {
        let headers = [("content-type", "application/json")];
        let request =
            (self.http).request_on("keep-alive", "POST", path, &headers, Some(body.as_bytes()));
        self.stream.write_all(&request).await.expect("request sent");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(whole) = whole_answer(&answer) {
                return parse(&answer[..whole]);
            }
            let read = self.stream.read(&mut buf).await.expect("answer read");
            assert!(read > 0, "the connection closed part way through an answer");
            answer.extend_from_slice(&buf[..read]);
        }
    }
}

/// The length of the answer at the front of `bytes`, once all of it has arrived.
fn whole_answer(bytes: &[u8]) -> Option<usize> {
    let head = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let length = String::from_utf8_lossy(&bytes[..head])
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (bytes.len() >= head + length).then_some(head + length)
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
