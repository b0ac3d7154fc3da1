//! Connections: accepting them, limiting them, and closing them.
//!
//! [`serve`] runs the accept loop over hyper-util's automatic HTTP/1.1 and
//! HTTP/2 connection builder (with upgrades enabled, for WebSocket
//! routes), plain or TLS. What it adds to hyper:
//!
//! - **A cap** (`--max-connections`): a connection past it is not left in
//!   the listen backlog but accepted, answered 503 `too_many_connections`
//!   (with `Connection: close`) and closed within [`REFUSAL_TIME`]. At most
//!   [`REFUSALS`] are answered at once; past that they are closed at once.
//! - **A header timeout** (`--header-timeout`): from the first byte of a
//!   request head (or the start of a TLS handshake) to the whole head. A
//!   client that stalls mid-head (slowloris) is disconnected.
//! - **An idle timeout** (`--idle-timeout`): a connection with no request
//!   in flight and no head arriving is closed (gracefully: HTTP/2 gets a
//!   GOAWAY), HTTP/1.1 and HTTP/2 alike.
//! - **Lingering close**: when HTTP/1.1 closes a connection after a 4xx
//!   answer to a request whose body it did not read (a 413), the socket
//!   is shut for writing and the rest of the body read and discarded, up
//!   to [`LINGER_BYTES`] or the request timeout, before it is closed.
//!   Closing at once would reset the connection under a client that sends
//!   its whole body before reading (Python's `http.client`, many SDKs),
//!   and it would get a broken pipe instead of the 413.
//!
//! hyper's own HTTP/1 header timeout is switched off: it also runs while a
//! connection is idle, which would make the idle timeout the header
//! timeout. One watchdog per connection, in the connection's own task,
//! keeps both: the socket and the service record what happens in relaxed
//! atomics (a few per request, no lock, no clock), and the watchdog looks
//! at them at least every quarter of the shorter timeout, timing what it
//! sees. A deadline is therefore never early, and late by at most that
//! quarter.
//!
//! **hyper's own refusals are answered in JSON.** hyper answers a request
//! head it cannot parse itself (400, 414, 431, with an empty body) before
//! any route runs. Over HTTP/1.1 the connection layer recognises that
//! answer as it is written (a response head that no request of ours is
//! waiting for) and writes the [`AppError`] in its place, closing the
//! connection as hyper would (hyper's one 431 is for a head too large or
//! of too many fields; which, the bytes read tell: see
//! `OwnErrors::head_bytes`). Over HTTP/2 hyper's header-list limit is
//! set to twice `--max-header-size` and the per-connection service
//! refuses a header list past `--max-header-size` itself, with a JSON
//! 431; a list past twice the limit is refused by the h2 stack while
//! decoding it (a bodiless 431 and a stream reset: the request never
//! exists, so nothing of ours can answer it). Other HTTP/2 protocol
//! errors get what the protocol allows, a stream reset or GOAWAY, no
//! response.
//!
//! A connection upgraded to another protocol (a WebSocket) leaves hyper
//! and the watchdog once the upgrade is answered: its handler owns its
//! timeouts. It keeps its place under the cap until its socket closes.
//!
//! **The client's address** (the TCP peer) reaches handlers through
//! [`peer`], in every mode (HTTP/1.1 and HTTP/2, plain and TLS): the
//! per-connection service here sets it while it polls a request's future.
//! A request extension would cost two allocations per request, which is
//! a tenth of what the service adds over a bare handler; in-process
//! callers without a socket can still attach
//! `axum::extract::ConnectInfo<SocketAddr>`, which [`peer`] reads first.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Extensions, Request, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::Service;

use crate::config::HttpOptions;
use crate::error::AppError;
use crate::metrics::Connection;
use crate::router::Service as App;
use crate::state::AppState;
use crate::tls::TlsFiles;

/// Most bytes of an unread body discarded before a lingering close: more
/// than any client sends before it looks at the answer, small enough to
/// cost nothing.
pub const LINGER_BYTES: u64 = 64 << 20;

/// Connections past the cap answered 503 at the same time; the rest are
/// closed unanswered, so that a flood past the cap costs nothing more.
pub const REFUSALS: usize = 64;

/// Longest a refused connection is kept to send its 503.
pub const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// How many `Notify`s tell connections that shutdown began; a connection
/// listens on one, by its number. Polling a waiting `Notified` takes its
/// `Notify`'s lock: connections poll theirs once, then again only once
/// the shutdown flag is set (see `drive`), when all of them do at once.
const STOP_SHARDS: usize = 64;

/// Pause after a failed `accept` (out of file descriptors, most often),
/// so the loop does not spin while connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The connection settings, from the `--header-timeout` family of flags.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// See `--header-timeout`.
    pub header_timeout: Duration,
    /// See `--idle-timeout`.
    pub idle_timeout: Duration,
    /// See `--max-connections`.
    pub max_connections: usize,
    /// See `--max-header-size`.
    pub max_header_size: usize,
    /// See `--h2-max-streams`.
    pub h2_max_streams: u32,
    /// See `--h2-keepalive`.
    pub h2_keepalive: Duration,
    /// See `--h2-keepalive-timeout`.
    pub h2_keepalive_timeout: Duration,
    /// Longest a lingering close waits for the rest of a body: the time
    /// the client had to send it (`--request-timeout`).
    pub linger: Duration,
}

impl From<&HttpOptions> for ConnLimits {
    fn from(http: &HttpOptions) -> Self {
        Self {
            header_timeout: http.header_timeout,
            idle_timeout: http.idle_timeout,
            max_connections: http.max_connections,
            max_header_size: usize::try_from(http.max_header_size).unwrap_or(usize::MAX),
            h2_max_streams: http.h2_max_streams,
            h2_keepalive: http.h2_keepalive,
            h2_keepalive_timeout: http.h2_keepalive_timeout,
            linger: http.request_timeout,
        }
    }
}

/// Descriptors the process needs beside its connections: the listener,
/// the event log and snapshots, the runtime's own.
const SPARE_DESCRIPTORS: u64 = 64;

/// Warns when the process's soft limit on open files (`ulimit -n`) is
/// below the connection cap: connections past the limit would fail to be
/// accepted (and counted as accept errors) instead of being refused with
/// a 503. Linux only (it reads `/proc/self/limits`).
fn check_descriptor_limit(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse::<u64>().ok());
    let needed = max_connections as u64 + SPARE_DESCRIPTORS;
    if let Some(soft) = soft
        && soft < needed
    {
        tracing::warn!(
            open_files = soft,
            max_connections,
            "the open-file limit (ulimit -n) is below --max-connections + {SPARE_DESCRIPTORS}; raise it or lower the cap"
        );
    }
}

/// The most header fields an HTTP/1 request may have: hyper's default,
/// left unset (set, even to 100, hyper builds its header arrays element
/// by element on every request instead of taking its inline default).
/// Past it hyper refuses the head with a 431, answered
/// `too_many_headers`; `tests/it/connections.rs` checks the number.
const MAX_HEADERS: usize = 100;

/// The largest HTTP/1 request head: hyper's read buffer bounds it, and
/// hyper needs at least 8 KiB there.
fn http1_head_limit(limits: &ConnLimits) -> usize {
    limits.max_header_size.max(8 * 1024)
}

/// hyper's builder with the limits: HTTP/1.1 and HTTP/2 on one port (h2c
/// by prior knowledge, h2 by ALPN over TLS).
fn builder(limits: &ConnLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // The watchdog times heads and idleness (see the module docs), so
        // HTTP/1 needs no timer.
        .header_read_timeout(None)
        // An answer's head and its small body go out in one buffer
        // through one `write`, rather than as a `writev` of both.
        .writev(false)
        .max_buf_size(http1_head_limit(limits));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        // Twice ours: lists between the two are refused in JSON by
        // `ConnService` (see the module docs).
        .max_header_list_size(
            u32::try_from(limits.max_header_size.saturating_mul(2)).unwrap_or(u32::MAX),
        )
        .keep_alive_interval(limits.h2_keepalive)
        .keep_alive_timeout(limits.h2_keepalive_timeout);
    builder
}

/// What every connection task shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    service: App,
    tls: Option<Arc<TlsFiles>>,
    limits: ConnLimits,
    /// Its shutdown signal and connection metrics.
    state: AppState,
    /// Notified when shutdown begins (see [`STOP_SHARDS`]).
    stops: Box<[Notify]>,
}

/// Accepts connections on `listener` and serves `service` on them
/// (counted in `state.metrics`) until `state.shutdown` triggers; then
/// stops accepting, lets every connection finish its requests (HTTP/1.1
/// closes after the one in flight, HTTP/2 sends GOAWAY), and every
/// WebSocket the message it is recording
/// ([`Shutdown::hold`](crate::shutdown::Shutdown::hold)), for up to
/// `grace`, and closes what is left.
pub async fn serve(
    listener: TcpListener,
    state: &AppState,
    service: App,
    tls: Option<Arc<TlsFiles>>,
    limits: ConnLimits,
    grace: Duration,
) {
    check_descriptor_limit(limits.max_connections);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS));
    let shared = Arc::new(Shared {
        builder: builder(&limits),
        service,
        tls,
        limits,
        state: state.clone(),
        stops: (0..STOP_SHARDS).map(|_| Notify::new()).collect(),
    });
    let mut accepted_count = 0usize;
    let mut tasks = JoinSet::new();
    let stop = state.shutdown.triggered();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Responses are written whole; waiting to coalesce
                    // them only adds latency.
                    let _ = stream.set_nodelay(true);
                    let admitted = match permits.clone().try_acquire_owned() {
                        Ok(permit) => Admitted::Serve(permit),
                        Err(_) => match refusals.clone().try_acquire_owned() {
                            Ok(permit) => Admitted::Refuse(permit),
                            Err(_) => {
                                // Dropping closes it.
                                state.metrics.connection(Connection::Dropped);
                                continue;
                            }
                        },
                    };
                    accepted_count = accepted_count.wrapping_add(1);
                    let stop = accepted_count % STOP_SHARDS;
                    tasks.spawn(connection(stream, peer, admitted, shared.clone(), stop));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = joined && e.is_panic() {
                    tracing::error!(error = %e, "a connection task panicked");
                }
            }
        }
    }
    drop(listener);
    for stop in &shared.stops {
        stop.notify_waiters();
    }
    let drained = async {
        while tasks.join_next().await.is_some() {}
        // WebSockets left their connection tasks at the upgrade.
        state.shutdown.released().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            ?grace,
            open = tasks.len(),
            "in-flight requests or WebSocket messages outlived the shutdown grace; closing them"
        );
        tasks.shutdown().await;
    }
}

/// Why a connection was accepted: to be served, or to be told the server
/// is full. The permit is held until the socket is closed.
enum Admitted {
    Serve(OwnedSemaphorePermit),
    Refuse(OwnedSemaphorePermit),
}

/// One connection, from accept to close.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    shared: Arc<Shared>,
    stop: usize,
) {
    let activity = Arc::new(Activity::of(peer));
    let metrics = &shared.state.metrics;
    let (permit, refuse) = match admitted {
        Admitted::Serve(permit) => (permit, false),
        Admitted::Refuse(permit) => (permit, true),
    };
    metrics.connection(if refuse {
        Connection::Refused
    } else {
        Connection::Opened
    });
    // Counts the close however the task ends (even aborted at shutdown).
    let _closed = (!refuse).then(|| Closed(shared.state.clone()));
    let io = Watched {
        stream: Some(stream),
        activity: activity.clone(),
        permit: Some(permit),
        linger: shared.limits.linger,
    };
    let service = ConnService {
        inner: (!refuse).then(|| shared.service.clone()),
        activity: activity.clone(),
        max_header_size: shared.limits.max_header_size,
    };
    let deadline = refuse.then(|| Instant::now() + REFUSAL_TIME);
    match &shared.tls {
        None => drive(io, service, &activity, &shared, deadline, stop).await,
        Some(tls) => {
            let handshake = tls.acceptor().accept(io);
            // The handshake is part of the first request's head.
            let limit = deadline.unwrap_or(Instant::now() + shared.limits.header_timeout);
            let stream = match tokio::time::timeout_at(limit, handshake).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    if !refuse {
                        metrics.connection(Connection::HeaderTimeout);
                    }
                    return;
                }
            };
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                // The handshake's bytes started a head timer; HTTP/2 is
                // timed by idleness alone.
                activity.negotiated_http2();
            }
            drive(stream, service, &activity, &shared, deadline, stop).await
        }
    }
}

/// Serves one connection under its watchdog (see the module docs), until
/// it closes, a deadline passes, or shutdown has drained it. `deadline`
/// (for refused connections) closes it regardless. `stop` is its shard of
/// [`Shared::stops`].
async fn drive<I>(
    io: I,
    service: ConnService,
    activity: &Arc<Activity>,
    shared: &Shared,
    deadline: Option<Instant>,
    stop: usize,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &shared.limits;
    let io = OwnErrors {
        io,
        activity: activity.clone(),
        max_header_size: http1_head_limit(limits),
        heads: 0,
        head_bytes: 0,
        replacing: None,
    };
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let stop = shared.stops[stop].notified();
    tokio::pin!(stop);
    // Registered before the flag is read: a shutdown after the read still
    // notifies it.
    stop.as_mut().enable();
    let mut stopping = shared.state.shutdown.is_triggered();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    let mut watch = Watch::new(activity);
    // Set once the connection is asked to close: then closed by force.
    let mut closing = deadline;
    let sleep = tokio::time::sleep_until(Instant::now());
    tokio::pin!(sleep);
    // The stop is polled once to register the task's waker, which it
    // keeps; after that only when the flag says shutdown began.
    let mut poll_stop = true;
    loop {
        let (at, _) = match closing {
            Some(at) => (at, Due::Close),
            None => watch.due(activity, Instant::now(), limits),
        };
        sleep.as_mut().reset(at);
        let mut poll_sleep = true;
        // Most wakes of this task are the connection's (a request). The
        // watchdog's branches cost two loads on them: the stop and the
        // timer are polled (a lock, a waker registration each) only when
        // the shutdown flag or the timer says the wake may be theirs.
        let woke = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(Woke::Ended(result));
            }
            if !stopping && (poll_stop || shared.state.shutdown.is_triggered()) {
                poll_stop = false;
                if stop.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Stop);
                }
            }
            if poll_sleep || sleep.is_elapsed() {
                poll_sleep = false;
                if sleep.as_mut().poll(cx).is_ready() {
                    // A deadline acts only if it is still due when looked
                    // at again (below): the connection may have moved on.
                    return Poll::Ready(Woke::Timer);
                }
            }
            Poll::Pending
        })
        .await;
        match woke {
            Woke::Ended(result) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            Woke::Stop => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
                continue;
            }
            Woke::Timer => {}
        }
        let now = Instant::now();
        let (at, due) = match closing {
            Some(at) => (at, Due::Close),
            None => watch.due(activity, now, limits),
        };
        if at > now {
            continue;
        }
        match due {
            Due::Recheck => {}
            // Dropping the connection closes the socket, unlingered.
            Due::Head | Due::Close => {
                if due == Due::Head {
                    shared.state.metrics.connection(Connection::HeaderTimeout);
                }
                activity.linger.store(false, Ordering::Relaxed);
                return;
            }
            Due::Idle => {
                shared.state.metrics.connection(Connection::IdleTimeout);
                conn.as_mut().graceful_shutdown();
                // HTTP/2 waits for the peer's answer to GOAWAY; a peer
                // that never answers is closed after one more header
                // timeout.
                closing = Some(now + limits.header_timeout);
            }
        }
    }
}

/// What woke a connection's task, in [`drive`].
enum Woke<E> {
    /// The connection is over.
    Ended(Result<(), E>),
    /// Shutdown began.
    Stop,
    /// The watchdog's timer.
    Timer,
}

/// Counts a served connection closed when dropped.
struct Closed(AppState);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.metrics.connection(Connection::Closed);
    }
}

/// What the watchdog does at the next deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Nothing yet: look again.
    Recheck,
    /// A request head took too long: close.
    Head,
    /// Idle too long: close gracefully.
    Idle,
    /// Past the time allowed after a graceful close or a refusal: close.
    Close,
}

/// What a connection is doing: written by its socket (bytes read) and its
/// service (requests starting and ending), read by its watchdog. Relaxed
/// atomics and no clock: the per-request cost is a few uncontended atomic
/// operations. The watchdog ([`Watch`]) puts times on what it sees.
struct Activity {
    /// Requests being handled.
    in_flight: AtomicU32,
    /// Requests started so far: tells the watchdog a head it saw arriving
    /// became a request (and another head may have begun since).
    started: AtomicU64,
    /// Requests finished so far: tells the watchdog the connection went
    /// idle again since it last looked.
    finished: AtomicU64,
    /// The first bytes of a request head arrived while no request was in
    /// flight (HTTP/1.1 only).
    head: AtomicBool,
    /// [`UNKNOWN`], [`HTTP1`] or [`HTTP2`], from the first bytes or ALPN:
    /// HTTP/2 frames that are not requests (pings, settings) must not
    /// start a head timer.
    protocol: AtomicU8,
    /// Close by lingering: a 4xx was sent for a request whose body may
    /// still be arriving.
    linger: AtomicBool,
    /// Responses our service has handed to hyper: a response head hyper
    /// writes beyond them is hyper's own (see [`OwnErrors`]).
    responded: AtomicU64,
    /// The connection's peer, which [`peer`] tells while a request's
    /// future is polled: here rather than in each request's future,
    /// which hyper moves on every request.
    peer: SocketAddr,
}

const UNKNOWN: u8 = 0;
const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

impl Activity {
    #[cfg(test)]
    fn new() -> Self {
        Self::of(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn of(peer: SocketAddr) -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            head: AtomicBool::new(false),
            protocol: AtomicU8::new(UNKNOWN),
            linger: AtomicBool::new(false),
            responded: AtomicU64::new(0),
            peer,
        }
    }

    /// Bytes arrived: on an idle HTTP/1.1 connection, a head has begun.
    fn on_read(&self, bytes: &[u8]) {
        let mut protocol = self.protocol.load(Ordering::Relaxed);
        if protocol == UNKNOWN {
            protocol = if bytes.starts_with(b"PRI ") {
                HTTP2
            } else {
                HTTP1
            };
            self.protocol.store(protocol, Ordering::Relaxed);
        }
        if protocol == HTTP1
            && self.in_flight.load(Ordering::Relaxed) == 0
            && !self.head.load(Ordering::Relaxed)
        {
            self.head.store(true, Ordering::Relaxed);
        }
    }

    /// ALPN chose HTTP/2 (the handshake's bytes counted as a head).
    fn negotiated_http2(&self) {
        self.protocol.store(HTTP2, Ordering::Relaxed);
        self.head.store(false, Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        self.head.store(false, Ordering::Relaxed);
    }

    /// A request got its response from our service (see
    /// [`Activity::responded`]).
    fn responded(&self) {
        self.responded.fetch_add(1, Ordering::Relaxed);
    }

    fn request_finished(&self, linger: bool) {
        if linger {
            self.linger.store(true, Ordering::Relaxed);
        }
        self.finished.fetch_add(1, Ordering::Relaxed);
        // Release: a watchdog that sees the count drop sees `finished` too.
        self.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// The watchdog's view of an [`Activity`]: when it first saw the
/// connection idle and a head arriving. It looks at least every quarter of
/// the shorter timeout, so it sees each change at most that late, and
/// deadlines are never early: a connection is closed at most a quarter
/// timeout after its deadline (plus scheduling).
struct Watch {
    /// When the connection was first seen idle (or opened).
    idle_since: Instant,
    /// `finished` when last looked at.
    finished: u64,
    /// When the current head was first seen, and `started` then.
    head_since: Option<(Instant, u64)>,
}

impl Watch {
    fn new(activity: &Activity) -> Self {
        Self {
            idle_since: Instant::now(),
            finished: activity.finished.load(Ordering::Relaxed),
            head_since: None,
        }
    }

    /// The next deadline and what it means.
    fn due(&mut self, activity: &Activity, now: Instant, limits: &ConnLimits) -> (Instant, Due) {
        let recheck = now + limits.header_timeout.min(limits.idle_timeout) / 4;
        if activity.in_flight.load(Ordering::Acquire) > 0 {
            return (recheck, Due::Recheck);
        }
        let finished = activity.finished.load(Ordering::Relaxed);
        if finished != self.finished {
            self.finished = finished;
            self.idle_since = now;
        }
        if activity.head.load(Ordering::Relaxed) {
            let started = activity.started.load(Ordering::Relaxed);
            let since = match self.head_since {
                Some((since, seen)) if seen == started => since,
                _ => {
                    self.head_since = Some((now, started));
                    now
                }
            };
            return (since + limits.header_timeout, Due::Head);
        }
        self.head_since = None;
        let idle = self.idle_since + limits.idle_timeout;
        if idle <= recheck {
            (idle, Due::Idle)
        } else {
            (recheck, Due::Recheck)
        }
    }
}

/// The socket under hyper (and under TLS): tells [`Activity`] what it
/// reads, and on drop hands itself to a lingering close when one is due.
struct Watched {
    /// Taken by the lingering close.
    stream: Option<TcpStream>,
    activity: Arc<Activity>,
    /// The connection's place under the cap, released when the socket is
    /// closed (after lingering).
    permit: Option<OwnedSemaphorePermit>,
    linger: Duration,
}

impl Watched {
    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        match &mut self.stream {
            Some(stream) => Ok(Pin::new(stream)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(self.stream()?.poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            self.activity.on_read(read);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_shutdown(cx)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.activity.linger.load(Ordering::Relaxed) {
            return;
        }
        let (Some(stream), Ok(runtime)) =
            (self.stream.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(linger(stream, self.linger, self.permit.take()));
    }
}

/// Shuts `stream` for writing (the answer is already sent), reads and
/// discards what the client still sends, up to [`LINGER_BYTES`] or `limit`,
/// then closes it.
async fn linger(mut stream: TcpStream, limit: Duration, _permit: Option<OwnedSemaphorePermit>) {
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 16 * 1024];
    let mut discarded = 0u64;
    while discarded < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => discarded += n as u64,
            _ => break,
        }
    }
}

/// The IO hyper serves a connection over (above TLS): passes everything
/// through, except a response head hyper writes of its own over
/// HTTP/1.1, which it replaces with the [`AppError`] (see the module
/// docs). hyper writes a response head at the start of a write, and its
/// own only for a head it could not parse, after which it closes.
struct OwnErrors<I> {
    io: I,
    activity: Arc<Activity>,
    max_header_size: usize,
    /// Response heads of our service seen written.
    heads: u64,
    /// Bytes read since our last response head was written: what hyper's
    /// buffer holds of the head it refuses, which tells its two 431s
    /// apart. A refusal for size comes with the buffer full (at least
    /// `max_header_size`), one for the count of fields ([`MAX_HEADERS`])
    /// with less. (It undercounts a head pipelined behind a request still
    /// being answered, which browsers do not send.)
    head_bytes: usize,
    /// Our answer in place of hyper's, and how much of it is written;
    /// once set, whatever hyper writes after it is dropped.
    replacing: Option<(Vec<u8>, usize)>,
}

/// What a write to an [`OwnErrors`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// The start of a response head of our service.
    OurHead,
    /// hyper's own refusal (or anything after it): our answer instead.
    Replaced,
    /// Anything else: passed through.
    Other,
}

/// The status of the HTTP/1.1 response head `bytes` starts with, if it
/// starts with one.
fn response_status(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.1 ")?;
    // On every write hyper makes: digits by hand, not `str::parse`.
    rest.get(..3)?.iter().try_fold(0u16, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
    })
}

impl<I: AsyncWrite + Unpin> OwnErrors<I> {
    /// What the write starting with `first` is; for hyper's own refusal,
    /// our answer replaces it from now on.
    fn classify(&mut self, first: &[u8]) -> Write {
        if self.replacing.is_some() {
            return Write::Replaced;
        }
        if self.activity.protocol.load(Ordering::Relaxed) == HTTP2 {
            return Write::Other;
        }
        let Some(status) = response_status(first) else {
            return Write::Other;
        };
        if status == 100 {
            return Write::Other; // hyper's `100 Continue`, for a request of ours
        }
        if self.activity.responded.load(Ordering::Relaxed) > self.heads {
            return Write::OurHead;
        }
        let error = match status {
            431 if self.head_bytes < self.max_header_size => {
                AppError::TooManyHeaders { limit: MAX_HEADERS }
            }
            431 => AppError::HeadersTooLarge {
                limit: self.max_header_size,
            },
            414 => AppError::UriTooLong,
            400..=499 => AppError::MalformedRequest,
            _ => return Write::Other,
        };
        tracing::debug!(status, "answering hyper's refusal of a request head");
        self.replacing = Some((error.http1_bytes(), 0));
        // hyper stopped reading mid-head: the rest may still be arriving,
        // and closing on unread bytes would reset the answer away.
        self.activity.linger.store(true, Ordering::Relaxed);
        Write::Replaced
    }

    /// Counts our response head once its write went through.
    fn wrote(&mut self, kind: Write, result: &Poll<io::Result<usize>>) {
        if kind == Write::OurHead && matches!(result, Poll::Ready(Ok(n)) if *n > 0) {
            self.heads += 1;
            self.head_bytes = 0;
        }
    }

    /// Writes what is left of our answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, written)) = &mut self.replacing {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for OwnErrors<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        self.head_bytes = self.head_bytes.saturating_add(buf.filled().len() - before);
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for OwnErrors<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let kind = self.classify(buf);
        if kind == Write::Replaced {
            ready!(self.poll_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(kind, &result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().position(|b| !b.is_empty()).unwrap_or(0);
        let kind = bufs.get(first).map_or(Write::Other, |b| self.classify(b));
        if kind == Write::Replaced {
            ready!(self.poll_replacement(cx))?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        // A later response head starts a write of its own, so that it is
        // looked at above.
        let end = bufs
            .iter()
            .skip(first + 1)
            .position(|b| response_status(b).is_some())
            .map_or(bufs.len(), |i| first + 1 + i);
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, &bufs[..end]);
        self.wrote(kind, &result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The per-connection service hyper calls: the observed router, with the
/// peer address attached and the request counted in [`Activity`]; or, for
/// a connection past the cap (`inner` empty), the 503.
#[derive(Clone)]
struct ConnService {
    inner: Option<App>,
    activity: Arc<Activity>,
    /// `--max-header-size`, checked here for HTTP/2 (module docs).
    max_header_size: usize,
}

/// An HTTP/2 request's header list size as RFC 9113 counts it: every
/// field's name and value plus 32 bytes, the pseudo-header fields too.
fn header_list_size<B>(request: &Request<B>) -> usize {
    const FIELD: usize = 32;
    let uri = request.uri();
    let pseudo = [
        request.method().as_str().len(),
        uri.scheme_str().map_or(0, str::len),
        uri.authority().map_or(0, |a| a.as_str().len()),
        uri.path_and_query().map_or(0, |p| p.as_str().len()),
    ];
    let pseudo: usize = pseudo.iter().map(|len| ":method".len() + len + FIELD).sum();
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + FIELD)
        .sum();
    pseudo + fields
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Tracked<<App as Service<axum::extract::Request>>::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let has_body = !request.body().is_end_stream();
        let request = request.map(Body::new);
        self.activity.request_started();
        let refusal = if self.inner.is_none() {
            Some(AppError::TooManyConnections)
        } else if request.version() == axum::http::Version::HTTP_2
            && header_list_size(&request) > self.max_header_size
        {
            Some(AppError::HeadersTooLarge {
                limit: self.max_header_size,
            })
        } else {
            None
        };
        // The router is always ready (axum's `poll_ready` returns Ready),
        // so it is called without asking, as axum's own server does.
        let inner = match refusal {
            None => self.inner.as_ref().map(|service| service.call_ref(request)),
            Some(_) => None,
        };
        Tracked {
            inner,
            refusal,
            activity: Some(self.activity.clone()),
            has_body,
        }
    }
}

/// A request's future, counted in flight until it completes or is dropped.
struct Tracked<F> {
    /// `None`: answered with `refusal` instead.
    inner: Option<F>,
    /// A connection past the cap, or an HTTP/2 header list too large.
    refusal: Option<AppError>,
    /// Taken when the request is counted finished.
    activity: Option<Arc<Activity>>,
    has_body: bool,
}

thread_local! {
    /// The peer of the request whose future this thread is polling.
    static PEER: Cell<Option<SocketAddr>> = const { Cell::new(None) };
}

/// The TCP peer of the request being handled: its
/// `ConnectInfo<SocketAddr>` extension if it has one (in-process callers),
/// else the connection's, set while the connection layer polls the
/// request (see the module docs). `None` outside both.
pub fn peer(extensions: &Extensions) -> Option<SocketAddr> {
    match extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(info) => Some(info.0),
        None => PEER.with(Cell::get),
    }
}

/// Restores the previous [`PEER`] when a poll ends, even by a panic.
struct PeerScope(Option<SocketAddr>);

impl PeerScope {
    fn enter(peer: Option<SocketAddr>) -> Self {
        Self(PEER.with(|p| p.replace(peer)))
    }
}

impl Drop for PeerScope {
    fn drop(&mut self) {
        PEER.with(|p| p.set(self.0));
    }
}

impl<F> Future for Tracked<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let peer = self.activity.as_ref().map(|a| a.peer);
        let response = match &mut self.inner {
            Some(inner) => {
                let _scope = PeerScope::enter(peer);
                let Ok(response) = ready!(Pin::new(inner).poll(cx));
                response
            }
            None => {
                let refusal = self.refusal.take().unwrap_or(AppError::TooManyConnections);
                let close = refusal == AppError::TooManyConnections;
                let mut response = refusal.into_response();
                if close {
                    response.headers_mut().insert(
                        header::CONNECTION,
                        header::HeaderValue::from_static("close"),
                    );
                }
                response
            }
        };
        // A refusal of a request with a body leaves the body unread; if
        // the connection closes next, it lingers.
        let linger = self.has_body && response.status().is_client_error();
        if let Some(activity) = self.activity.take() {
            activity.responded();
            activity.request_finished(linger);
        }
        Poll::Ready(Ok(response))
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        if let Some(activity) = self.activity.take() {
            activity.request_finished(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper moves each request's future into its connection's slot, so
    /// its size is written on every request: rare cases (a preflight, a
    /// client's request id) are boxed to keep it to a few cache lines
    /// (it was 368 bytes with them inline).
    #[test]
    fn request_future_stays_small() {
        let size = std::mem::size_of::<Tracked<<App as Service<axum::extract::Request>>::Future>>();
        assert!(size <= 160, "a request's future is {size} bytes");
    }

    fn limits() -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 8,
            max_header_size: 16 * 1024,
            h2_max_streams: 100,
            h2_keepalive: Duration::from_secs(30),
            h2_keepalive_timeout: Duration::from_secs(20),
            linger: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_connection() {
        let (limits, activity) = (limits(), Activity::new());
        let mut watch = Watch::new(&activity);
        let opened = Instant::now();
        let tick = limits.header_timeout / 4;
        // Idle: look again every quarter header timeout, until the idle
        // deadline.
        assert_eq!(
            watch.due(&activity, opened, &limits),
            (opened + tick, Due::Recheck)
        );
        let late = opened + Duration::from_secs(59);
        assert_eq!(
            watch.due(&activity, late, &limits),
            (opened + limits.idle_timeout, Due::Idle)
        );
        // A head begins: timed from when the watchdog first sees it.
        activity.on_read(b"GET / HT");
        tokio::time::advance(Duration::from_secs(1)).await;
        let seen = Instant::now();
        assert_eq!(
            watch.due(&activity, seen, &limits),
            (seen + limits.header_timeout, Due::Head)
        );
        // More bytes of the same head do not move it.
        activity.on_read(b"TP/1.1\r\n");
        let later = seen + Duration::from_secs(2);
        assert_eq!(
            watch.due(&activity, later, &limits).0,
            seen + limits.header_timeout
        );
        // In flight: no deadline but a recheck.
        activity.request_started();
        assert_eq!(watch.due(&activity, later, &limits).1, Due::Recheck);
        activity.request_finished(false);
        // Idle again from when that is seen; a new head is timed anew.
        let idle = later + Duration::from_secs(1);
        assert_eq!(
            watch
                .due(&activity, idle + Duration::from_secs(58), &limits)
                .1,
            Due::Recheck
        );
        activity.on_read(b"GET /next");
        let next = idle + Duration::from_secs(59);
        assert_eq!(
            watch.due(&activity, next, &limits),
            (next + limits.header_timeout, Due::Head)
        );
    }

    #[test]
    fn a_head_after_a_request_between_two_looks_is_timed_anew() {
        let (limits, activity) = (limits(), Activity::new());
        let mut watch = Watch::new(&activity);
        let t0 = Instant::now();
        activity.on_read(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            watch.due(&activity, t0, &limits).0,
            t0 + limits.header_timeout
        );
        // Unseen by the watchdog: the request runs, ends, the next begins.
        activity.request_started();
        activity.request_finished(false);
        activity.on_read(b"GET /2 HTTP/1.1\r\n");
        let t1 = t0 + Duration::from_secs(9);
        assert_eq!(
            watch.due(&activity, t1, &limits),
            (t1 + limits.header_timeout, Due::Head)
        );
    }

    fn own_errors(activity: &Arc<Activity>) -> OwnErrors<Vec<u8>> {
        OwnErrors {
            io: Vec::new(),
            activity: activity.clone(),
            max_header_size: 16 * 1024,
            heads: 0,
            head_bytes: 0,
            replacing: None,
        }
    }

    const HYPER_431: &[u8] =
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";

    #[tokio::test]
    async fn hyper_refusals_are_replaced_and_our_responses_are_not() {
        let activity = Arc::new(Activity::new());
        activity.on_read(b"GET / HTTP/1.1\r\n");
        // hyper's own: replaced, and what it writes after is dropped.
        let mut io = own_errors(&activity);
        io.head_bytes = 16 * 1024;
        assert_eq!(io.write(HYPER_431).await.unwrap(), HYPER_431.len());
        io.write_all(b"more of hyper's").await.unwrap();
        io.flush().await.unwrap();
        let ours = AppError::HeadersTooLarge { limit: 16 * 1024 }.http1_bytes();
        assert_eq!(io.io, ours);
        // A 431 with less than the limit read: the count of fields.
        let mut io = own_errors(&activity);
        io.head_bytes = 16 * 1024 - 1;
        io.write_all(HYPER_431).await.unwrap();
        let count = AppError::TooManyHeaders { limit: MAX_HEADERS }.http1_bytes();
        assert_eq!(io.io, count);

        // Ours (a response our service produced): passed through, even a
        // 4xx; `100 Continue` too, without counting as a response.
        let mut io = own_errors(&activity);
        activity.responded();
        io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        let ours_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        io.write_all(ours_400).await.unwrap();
        assert_eq!(io.heads, 1);
        // The next head with no response of ours behind it is hyper's, even
        // when it comes in the same vectored write as our body's end.
        let slices = [io::IoSlice::new(b"tail"), io::IoSlice::new(HYPER_431)];
        let first = io.write_vectored(&slices).await.unwrap();
        assert_eq!(first, 4, "the head waits for a write of its own");
        io.write_all(HYPER_431).await.unwrap();
        let mut expected = b"HTTP/1.1 100 Continue\r\n\r\n".to_vec();
        expected.extend_from_slice(ours_400);
        expected.extend_from_slice(b"tail");
        // (Nothing was read since our answer: the count, not the size.)
        expected.extend_from_slice(&count);
        assert_eq!(io.io, expected);

        // HTTP/2 frames are never looked at.
        let h2 = Arc::new(Activity::new());
        h2.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let mut io = own_errors(&h2);
        io.write_all(HYPER_431).await.unwrap();
        assert_eq!(io.io, HYPER_431);
    }

    /// On the paused clock (it moves only when every task waits, so the
    /// times are exact): the shutdown waits for a hold (a WebSocket's)
    /// until it is released, or for the grace at most.
    #[tokio::test(start_paused = true)]
    async fn a_shutdown_waits_for_holds_up_to_the_grace() {
        let grace = Duration::from_secs(10);
        let state = AppState::new(
            Arc::new(tracker_core::Tracker::new()),
            crate::HttpLimits::standard(),
        );
        state.shutdown.trigger();
        let stopped = || async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let service = crate::router::service(state.clone());
            let start = Instant::now();
            serve(listener, &state, service, None, limits(), grace).await;
            start.elapsed()
        };
        assert_eq!(stopped().await, Duration::ZERO, "nothing to wait for");
        let hold = state.shutdown.hold();
        assert_eq!(stopped().await, grace, "a hold never released");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(hold);
        });
        assert_eq!(stopped().await, Duration::from_secs(1));
    }

    #[test]
    fn http2_frames_start_no_head_timer() {
        let (limits, activity) = (limits(), Activity::new());
        let mut watch = Watch::new(&activity);
        activity.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        activity.on_read(b"\x00\x00\x08\x06\x00\x00\x00\x00\x00");
        assert_eq!(
            watch.due(&activity, Instant::now(), &limits).1,
            Due::Recheck
        );
        // Over TLS, ALPN says so after the handshake's bytes.
        let tls = Activity::new();
        tls.on_read(b"\x16\x03\x01");
        tls.negotiated_http2();
        assert_eq!(watch.due(&tls, Instant::now(), &limits).1, Due::Recheck);
    }
}
