//! Opening connections: only to an address that was vetted, with no resolver anywhere.
//!
//! [`open`] takes a [`VettedAddr`], which only the policy's IP vetting can make, never a bare
//! `SocketAddr`: the check sits on the type next to the syscall, as in cap-std's `Pool`.
//! [`FixedAddr`] is the transport under hyper-rustls: it ignores the URI it is given and
//! connects to the one address it was built with, then checks that the peer really is that
//! address and vets it again. TLS verifies the *granted* host name (SNI and certificate), never
//! a name from the guest or from DNS.

use super::body::WireBody;
use super::tls::server_name;
use crate::policy::{Authority, Cause, Denial, Host, Reason, VettedAddr};
use http::Uri;
use hyper::client::conn::{http1, http2};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tower_service::Service;

/// One end of an open connection that can carry requests.
pub(crate) enum Sender {
    H1(http1::SendRequest<WireBody>),
    /// HTTP/2 senders are shared: one connection multiplexes many requests.
    H2(http2::SendRequest<WireBody>),
}

impl Sender {
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

/// A connector to one fixed, already vetted address, whatever URI it is asked for.
#[derive(Clone)]
struct FixedAddr {
    addr: VettedAddr,
    authority: Authority,
}

impl Service<Uri> for FixedAddr {
    type Response = TokioIo<TcpStream>;
    type Error = Denial;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Denial>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Denial>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _ignored: Uri) -> Self::Future {
        let (addr, authority) = (self.addr, self.authority.clone());
        Box::pin(async move {
            let fail =
                |reason, detail: String| Denial::new(reason, detail).on(authority.reference());
            let stream = TcpStream::connect(addr.addr())
                .await
                .map_err(|e| fail(Reason::ConnectFailed, format!("connect to {addr}: {e}")))?;
            let peer = stream
                .peer_addr()
                .map_err(|e| fail(Reason::ConnectFailed, format!("connect to {addr}: {e}")))?;
            if peer != addr.addr() {
                return Err(fail(
                    Reason::ConnectFailed,
                    format!("connected to {peer}, not the vetted {addr}"),
                ));
            }
            authority.vet(peer)?;
            let _ = stream.set_nodelay(true);
            Ok(TokioIo::new(stream))
        })
    }
}

/// Open a connection for `authority` to the vetted `addr`: TCP, then TLS for https (SNI and
/// certificate name = `host`, the request host the policy matched to the grant), then HTTP/2
/// if ALPN chose it, else HTTP/1.1.
pub(crate) async fn open(
    authority: &Authority,
    host: &Host,
    https: bool,
    addr: VettedAddr,
    tls: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Sender, Denial> {
    let reference = authority.reference();
    let fail = |reason, detail: String| Denial::new(reason, detail).on(reference);
    let name =
        server_name(host).map_err(|e| fail(Reason::TlsFailure, e).because(Cause::TlsProtocol))?;
    let transport = FixedAddr {
        addr,
        authority: authority.clone(),
    };
    let mut connector = HttpsConnector::new(
        transport,
        tls,
        false,
        Arc::new(FixedServerNameResolver::new(name)),
    );
    // Only the scheme of this URI is read (to choose TLS or not); the destination is `addr`.
    let uri = Uri::from_static(if https {
        "https://vetted.invalid/"
    } else {
        "http://vetted.invalid/"
    });
    let stream = match tokio::time::timeout(timeout, connector.call(uri)).await {
        Err(_) => {
            return Err(fail(
                Reason::Timeout,
                format!(
                    "connecting to {addr} took over {}",
                    humantime::format_duration(timeout)
                ),
            )
            .because(Cause::ConnectTimeout))
        }
        Ok(Err(e)) => {
            return Err(match e.downcast::<Denial>() {
                Ok(denial) => *denial,
                Err(other) => fail(
                    Reason::TlsFailure,
                    format!("TLS with {host} at {addr}: {}", error_chain(&*other)),
                )
                .because(tls_cause(&*other)),
            })
        }
        Ok(Ok(stream)) => stream,
    };
    let upstream =
        |e: hyper::Error| fail(Reason::UpstreamError, format!("handshake with {addr}: {e}"));
    if stream.connected().is_negotiated_h2() {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), stream)
            .await
            .map_err(upstream)?;
        tokio::spawn(conn);
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::handshake(stream).await.map_err(upstream)?;
        tokio::spawn(conn);
        Ok(Sender::H1(sender))
    }
}

/// An error and its sources, on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// Whether a failed TLS handshake was about the certificate (not valid for the granted name,
/// not trusted, none presented) or about the protocol itself, from the rustls error found in
/// its chain (through `source()` and through `io::Error`s wrapping one another).
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Cause {
    let mut pending = vec![e];
    while let Some(e) = pending.pop() {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                    Cause::TlsCertificate
                }
                _ => Cause::TlsProtocol,
            };
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            pending.push(inner);
        }
        pending.extend(e.source());
    }
    Cause::TlsProtocol
}
