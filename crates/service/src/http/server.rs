//! The HTTP server under both listeners (the API and `/metrics`): hyper connections
//! driven by hand so that each one costs bounded time.
//!
//! - A connection that has not sent a whole request head within `header_timeout` (one
//!   that never finishes its headers, or sits idle between requests) is closed.
//! - On shutdown the listener closes at once; requests in flight get `drain_timeout` to
//!   finish while idle connections close; then every connection still open is dropped,
//!   so a stalled client cannot delay the exit.
//! - The answers hyper writes itself, for a request it cannot read (400, 414, 431), get
//!   the API's JSON error body like every other refusal (see [`JsonParseErrors`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use lim_domain::ErrorKind;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::error::ApiError;

/// How often an idle HTTP/2 connection is pinged, and how long the answer may take.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// How long a connection may take, whatever its client does.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub drain_timeout: Duration,
}

/// What every connection task is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish the request in flight, take no other, close when idle.
    Draining,
    /// Close now.
    Closing,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains (see the module
/// documentation). Returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let (phase, phase_changes) = watch::channel(Phase::Serving);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin, and keep serving.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            phase_changes.clone(),
        ));
    }
    drop(listener);
    drop(phase_changes);
    let _ = phase.send(Phase::Draining);
    let drained = tokio::time::timeout(limits.drain_timeout, phase.closed()).await;
    if drained.is_err() {
        tracing::warn!(
            open = phase.receiver_count(),
            "connections still open after the drain period; closing them"
        );
        let _ = phase.send(Phase::Closing);
        // Each task drops its connection as soon as it sees the change.
        let _ = tokio::time::timeout(Duration::from_secs(1), phase.closed()).await;
    }
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut phase: watch::Receiver<Phase>,
) {
    // Each request knows its client's address (API keys count failures per client).
    let service = TowerToHyperService::new(tower::util::MapRequest::new(
        router,
        move |mut request: axum::extract::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            request
        },
    ));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    // A client that vanishes without closing (a NAT forgetting it, a laptop asleep) would
    // keep an idle watch, and its memory, forever: HTTP/2 pings find it gone.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HTTP2_KEEP_ALIVE))
        .keep_alive_timeout(HTTP2_KEEP_ALIVE);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(JsonParseErrors::new(stream)), service);
    tokio::pin!(connection);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            changed = phase.changed() => {
                let now = if changed.is_ok() { *phase.borrow_and_update() } else { Phase::Closing };
                match now {
                    Phase::Serving => {}
                    Phase::Draining => connection.as_mut().graceful_shutdown(),
                    Phase::Closing => return,
                }
            }
        }
    }
}

/// A connection whose bodiless error answers from hyper (a request line, URI or header
/// block it cannot read) are rewritten into the API's JSON error answer. Hyper writes
/// such an answer as the connection's last, before any request reached the router, so
/// it is recognised by its head alone: one of those statuses with `content-length: 0`,
/// which no answer of the router has (its refusals all carry a JSON body).
pub struct JsonParseErrors<T> {
    inner: T,
    /// A rewritten answer not yet fully written.
    pending: Vec<u8>,
}

impl<T> JsonParseErrors<T> {
    pub fn new(inner: T) -> Self {
        JsonParseErrors {
            inner,
            pending: Vec::new(),
        }
    }
}

/// The JSON answer for a head hyper wrote for a request it could not read, if it is one.
fn rewritten(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let status_line = text.strip_prefix("HTTP/1.1 ")?.split("\r\n").next()?;
    if !text.ends_with("\r\n\r\n") || !text.to_ascii_lowercase().contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let (kind, message) = match status_line.split(' ').next()? {
        "400" => (
            ErrorKind::MalformedRequest,
            "the request line or a header is not valid HTTP/1.1",
        ),
        "414" => (ErrorKind::UriTooLong, "the request target (path and query) is too long"),
        "431" => (ErrorKind::HeadersTooLarge, "the request headers are too large"),
        _ => return None,
    };
    let body = ApiError::body_json(kind, message);
    Some(
        format!(
            "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: AsyncWrite + Unpin> JsonParseErrors<T> {
    /// Writes what is left of a rewritten answer; ready once nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..written);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonParseErrors<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if buf.starts_with(b"HTTP/1.1 4")
            && let Some(answer) = rewritten(buf)
        {
            self.pending = answer;
            std::task::ready!(self.poll_pending(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        // Hyper writes a bodiless head as one slice.
        if let [head] = bufs
            && head.starts_with(b"HTTP/1.1 4")
            && let Some(answer) = rewritten(head)
        {
            self.pending = answer;
            std::task::ready!(self.poll_pending(cx))?;
            return Poll::Ready(Ok(head.len()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_refusals_become_json_and_nothing_else_changes() {
        let head = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 22:12:04 GMT\r\n\r\n";
        let answer = String::from_utf8(rewritten(head).unwrap()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\n"));
        assert!(answer.ends_with(
            r#"{"error":{"code":"uri_too_long","message":"the request target (path and query) is too long"}}"#
        ));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 57\r\n\r\n";
        assert_eq!(rewritten(ours), None);
        let not_found = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(rewritten(not_found), None);
    }
}
