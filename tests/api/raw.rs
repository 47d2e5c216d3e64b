//! gRPC calls written by hand on HTTP/2, for what a tonic client will not do: send a deadline
//! without giving up at it itself, or stop part way through a message.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tonic::codegen::http::{HeaderMap, Request};
use tonic::codegen::Bytes;
use tonic::Code;

/// One HTTP/2 connection to the server.
pub struct RawConnection {
    addr: SocketAddr,
    requests: h2::client::SendRequest<Bytes>,
    /// Ends when the connection does.
    connection: JoinHandle<Result<(), h2::Error>>,
}

/// A call under way: its request body is sent piece by piece.
pub struct RawCall {
    body: h2::SendStream<Bytes>,
    response: h2::client::ResponseFuture,
}

impl RawConnection {
    pub async fn open(addr: SocketAddr) -> RawConnection {
        let tcp = TcpStream::connect(addr).await.expect("connects");
        let (requests, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
        let connection = tokio::spawn(connection);
        RawConnection {
            addr,
            requests,
            connection,
        }
    }

    /// Whether the server closes the connection within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, &mut self.connection)
            .await
            .is_ok()
    }

    /// Starts a call of `method` (`/package.Service/Method`) with extra `headers`.
    pub async fn call(&self, method: &str, headers: &[(&str, &str)]) -> RawCall {
        let mut request = Request::post(format!("http://{}{method}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(()).expect("a valid request");
        let mut requests = self.requests.clone().ready().await.expect("ready");
        let (response, body) = requests.send_request(request, false).expect("sent");
        RawCall { body, response }
    }
}

impl RawCall {
    /// Sends `bytes` of the request body (buffered until the server's window allows); `end`
    /// ends the request.
    pub fn send(&mut self, bytes: impl Into<Bytes>, end: bool) {
        // The server may already have answered and reset the stream: nothing more to send.
        let _ = self.body.send_data(bytes.into(), end);
    }

    /// The call's gRPC status, from the response's headers or its trailers.
    pub async fn code(self) -> Code {
        let response = self.response.await.expect("a response");
        let (parts, mut body) = response.into_parts();
        if let Some(code) = grpc_status(&parts.headers) {
            return code;
        }
        while let Some(data) = body.data().await {
            let data = data.expect("response body");
            let _ = body.flow_control().release_capacity(data.len());
        }
        let trailers = body.trailers().await.expect("trailers").unwrap_or_default();
        grpc_status(&trailers).expect("a grpc-status")
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(Code::from(code))
}

/// A message as gRPC frames it: uncompressed, its length, its bytes.
pub fn framed(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    [prefix(body.len() as u32).as_slice(), &body].concat()
}

/// gRPC's prefix of a message of `length` bytes.
pub fn prefix(length: u32) -> [u8; 5] {
    let [a, b, c, d] = length.to_be_bytes();
    [0, a, b, c, d]
}
