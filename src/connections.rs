//! A listener's connections, bounded: at most so many open at once (one more is closed as soon
//! as it is accepted, so the accept loop never spins on a full descriptor table), and each must
//! finish its TLS handshake, or in plaintext send its first bytes, within the handshake
//! timeout, so connections that never speak do not hold a place. TLS handshakes run on tasks
//! of their own: a slow one never holds up the next accept. A verified client certificate's
//! names travel with the connection, for authentication, and so does its account of refused
//! calls: a connection that has spent its [`Allowance`] is not read from until it has earned
//! a refusal back.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::Service;
use tonic::transport::server::Connected;
use tower::load_shed::error::Overloaded;
use tower::{BoxError, Layer};

use crate::allowance::{refused_for_resources, Account, Allowance};
use crate::auth::PeerCertificate;
use crate::metrics;
use crate::tls::Tls;

/// Connections admitted but not yet taken by the server.
const ADMITTED_QUEUE: usize = 64;

/// An accepted connection holding one of the listener's places until it closes.
pub struct Admitted {
    stream: Transport,
    _place: OwnedSemaphorePermit,
    /// In plaintext, until the first byte arrives: when the connection is closed if none has.
    handshake: Option<Pin<Box<Sleep>>>,
    /// While the connection has spent its allowance of refusals: when it is read again.
    rest: Option<Pin<Box<Sleep>>>,
    peer: Peer,
}

enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Who is at the other end: its address and, over mutual TLS, its verified certificate, and
/// the connection's account of refused calls. tonic puts it into every request's extensions.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: Option<SocketAddr>,
    pub certificate: Option<PeerCertificate>,
    pub account: Arc<Account>,
}

/// What every connection of a listener is held to.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    /// Open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// For the TLS handshake, or in plaintext the first byte.
    pub handshake_timeout: Duration,
    /// Refused calls before the connection is read more slowly.
    pub refusals: Allowance,
}

/// The listener's connections, held to `admission`; each must finish its TLS handshake (with
/// `tls`) or send a byte (without) in time. Small request/response pairs must not wait for
/// Nagle's algorithm (40 ms with delayed ACKs), so every connection has TCP_NODELAY. The
/// listener closes when the stream is dropped.
pub fn admit(
    listener: TcpListener,
    admission: Admission,
    tls: Option<Arc<Tls>>,
) -> ReceiverStream<io::Result<Admitted>> {
    let (admitted, incoming) = mpsc::channel(ADMITTED_QUEUE);
    let places = Arc::new(Semaphore::new(admission.max_connections));
    tokio::spawn(accept_loop(listener, places, admission, tls, admitted));
    ReceiverStream::new(incoming)
}

async fn accept_loop(
    listener: TcpListener,
    places: Arc<Semaphore>,
    admission: Admission,
    tls: Option<Arc<Tls>>,
    admitted: mpsc::Sender<io::Result<Admitted>>,
) {
    let handshake_timeout = admission.handshake_timeout;
    loop {
        let accepted = tokio::select! {
            _ = admitted.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if admitted.send(Err(error)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        // Dropping the stream closes it: the client sees the connection refused at once.
        let Ok(place) = places.clone().try_acquire_owned() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            addr: Some(addr),
            certificate: None,
            account: Account::open(admission.refusals),
        };
        match &tls {
            None => {
                let plain = Admitted {
                    stream: Transport::Plain(stream),
                    _place: place,
                    handshake: Some(Box::pin(tokio::time::sleep(handshake_timeout))),
                    rest: None,
                    peer,
                };
                if admitted.send(Ok(plain)).await.is_err() {
                    return;
                }
            }
            Some(tls) => {
                let handshake = handshake(tls, stream, place, peer, handshake_timeout);
                let admitted = admitted.clone();
                tokio::spawn(async move {
                    if let Some(connection) = handshake.await {
                        let _ = admitted.send(Ok(connection)).await;
                    }
                });
            }
        }
    }
}

/// The TLS handshake under its deadline; a failed one is logged and the connection closed.
fn handshake(
    tls: &Tls,
    stream: TcpStream,
    place: OwnedSemaphorePermit,
    mut peer: Peer,
    timeout: Duration,
) -> impl Future<Output = Option<Admitted>> + Send + 'static {
    let acceptor = tls.acceptor();
    async move {
        let addr = peer.addr;
        let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::info!(target: "promised::security", event = "tls_handshake_failed", peer = ?addr, %error);
                return None;
            }
            Err(_) => {
                tracing::debug!(peer = ?addr, "TLS handshake timed out");
                return None;
            }
        };
        let (_, connection) = stream.get_ref();
        peer.certificate = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| PeerCertificate::from_der(leaf));
        Some(Admitted {
            stream: Transport::Tls(Box::new(stream)),
            _place: place,
            handshake: None,
            rest: None,
            peer,
        })
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.resting(cx) {
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let read = match &mut this.stream {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        };
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

impl Admitted {
    /// Whether the connection is resting, having spent its allowance of refusals; if so, it
    /// is woken when the rest is over.
    fn resting(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(until) = self.peer.account.resting_until() else {
            self.rest = None;
            return false;
        };
        let rest = match &mut self.rest {
            Some(rest) => {
                if rest.deadline() != until {
                    rest.as_mut().reset(until);
                }
                rest
            }
            None => {
                metrics::connection_rested();
                self.rest.insert(Box::pin(tokio::time::sleep_until(until)))
            }
        };
        rest.as_mut().poll(cx).is_pending()
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.stream {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connected for Admitted {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

/// Charges each call refused for resources to its connection's account, on either edge.
/// Outermost, so it sees every refusal: those answered below it, and over gRPC a shed call's
/// `Overloaded`, which tonic turns into `RESOURCE_EXHAUSTED` above it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RefusalsLayer;

impl<S> Layer<S> for RefusalsLayer {
    type Service = Refusals<S>;

    fn layer(&self, inner: S) -> Refusals<S> {
        Refusals { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Refusals<S> {
    inner: S,
}

impl<S, In, Out> Service<Request<In>> for Refusals<S>
where
    S: Service<Request<In>, Response = Response<Out>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Out>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Out>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<In>) -> Self::Future {
        let account = request
            .extensions()
            .get::<Peer>()
            .map(|peer| peer.account.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await.map_err(Into::into);
            let refused = match &answer {
                Ok(response) => refused_for_resources(response),
                Err(error) => error.is::<Overloaded>(),
            };
            if let (true, Some(account)) = (refused, account) {
                account.charge();
            }
            answer
        })
    }
}
