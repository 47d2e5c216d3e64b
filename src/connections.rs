//! The gRPC listener's connections, bounded: at most so many open at once (one more is closed
//! as soon as it is accepted, so the accept loop never spins on a full descriptor table), and
//! each must send its first bytes within the handshake timeout, so connections that never
//! speak do not hold a place.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection holding one of the listener's places until it closes.
pub struct Admitted {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
    /// Until the first byte arrives: when the connection is closed if none has.
    handshake: Option<Pin<Box<Sleep>>>,
}

/// The listener's connections, at most `max_connections` open; each must send a byte within
/// `handshake_timeout`. Small request/response pairs must not wait for Nagle's algorithm
/// (40 ms with delayed ACKs), so every connection has TCP_NODELAY.
pub fn admit(
    listener: TcpListener,
    max_connections: usize,
    handshake_timeout: Duration,
) -> impl Stream<Item = io::Result<Admitted>> {
    let places = Arc::new(Semaphore::new(max_connections));
    TcpListenerStream::new(listener).filter_map(move |accepted| {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(error) => return Some(Err(error)),
        };
        // Dropping the stream closes it: the client sees the connection refused at once.
        let place = places.clone().try_acquire_owned().ok()?;
        let _ = stream.set_nodelay(true);
        Some(Ok(Admitted {
            stream,
            _place: place,
            handshake: Some(Box::pin(tokio::time::sleep(handshake_timeout))),
        }))
    })
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        let Some(deadline) = &mut this.handshake else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.handshake = None,
            // Nothing arrived in time: end of stream, which closes the connection.
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => return Poll::Ready(Ok(())),
            _ => {}
        }
        read
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for Admitted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}
