//! A small blocking client for etcd's v3 JSON gateway (`/v3/kv/*`, `/v3/lease/*`, `/v3/watch`).
//!
//! The gateway is part of etcd itself (3.4 with `--enable-grpc-gateway`, on by default from
//! 3.5): plain HTTP(S) and JSON, where int64 values travel as strings and bytes as base64. No
//! gRPC stack, no protoc at build time, no async runtime.
//!
//! Endpoints are tried in order, starting with the last one that answered. A request moves on
//! to the next endpoint when it cannot reach one (connection refused, connect timeout, TLS
//! handshake failure); a read, a put, a delete, a keepalive or a revoke also when an endpoint
//! stops answering midway (a member waiting for a new leader lets a request it forwarded to the
//! dead one time out) or says it is unavailable. A transaction or a lease grant that was sent
//! and got no answer is *not* sent again elsewhere: its outcome is unknown, and the error says
//! so (the caller reads back what is there).

mod wire;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use wire::{b64, Header, WireRange, WireTxn, WireWatchMessage};

/// Where etcd is and how to reach it.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port`, tried in order.
    pub endpoints: Vec<String>,
    /// CA that signed the members' certificates (etcdctl's `--cacert`).
    pub cacert: Option<PathBuf>,
    /// Client certificate and its key (etcdctl's `--cert`, `--key`), for members that run with
    /// `--client-cert-auth`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Bound on one request to one endpoint (connect, send, answer). A watch uses it to
    /// connect and send; then it waits up to [`WATCH_IDLE`] for each message.
    pub timeout: Duration,
}

/// What went wrong talking to etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The configuration cannot be used (bad endpoint URL, unreadable TLS file).
    #[error("etcd client configuration: {0}")]
    Config(String),
    /// No endpoint answered, or the one that had the request stopped answering.
    #[error("etcd is unreachable: {0}")]
    Unreachable(String),
    /// etcd answered with an error.
    #[error("etcd refused the request: {message}")]
    Rejected {
        /// gRPC status code (5: not found, 9: failed precondition, 14: unavailable, ...).
        code: Option<i64>,
        message: String,
    },
    /// etcd answered something this client cannot read.
    #[error("etcd's answer cannot be read: {0}")]
    Protocol(String),
    /// A watch asked for revisions that etcd has compacted away: the caller must read the
    /// current state again and watch from there.
    #[error(
        "etcd compacted its history past the watched revision (oldest kept: {compact_revision})"
    )]
    Compacted { compact_revision: i64 },
}

impl EtcdError {
    /// True when the error says that no etcd member could be reached.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EtcdError::Unreachable(_))
    }
}

/// One key and its value, as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    /// Lease id, 0 for none.
    pub lease: i64,
}

/// The answer to a range request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub kvs: Vec<Kv>,
    /// The store's revision when it was read.
    pub revision: i64,
}

/// How a compare relates etcd's value to the given one (etcd's value first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// One condition of a transaction. A key that does not exist has create revision, mod
/// revision and version 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    CreateRevision {
        key: Vec<u8>,
        op: Cmp,
        value: i64,
    },
    ModRevision {
        key: Vec<u8>,
        op: Cmp,
        value: i64,
    },
    Value {
        key: Vec<u8>,
        op: Cmp,
        value: Vec<u8>,
    },
    Version {
        key: Vec<u8>,
        op: Cmp,
        value: i64,
    },
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: Option<i64>,
    },
    Delete {
        key: Vec<u8>,
        range_end: Option<Vec<u8>>,
    },
    Range {
        key: Vec<u8>,
        range_end: Option<Vec<u8>>,
    },
}

/// The answer to one operation of a transaction, in the order of the operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResponse {
    Range(Range),
    Put { revision: i64 },
    Delete { deleted: u64 },
}

/// The answer to a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResult {
    /// True when every compare held and the success operations ran.
    pub succeeded: bool,
    pub revision: i64,
    pub responses: Vec<OpResponse>,
}

impl TxnResult {
    /// The kvs of the first range operation's answer (empty without one).
    pub fn first_range_kvs(&self) -> &[Kv] {
        self.responses
            .iter()
            .find_map(|r| match r {
                OpResponse::Range(range) => Some(range.kvs.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change of one key. A delete's `kv` has the key and the revision of the delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: Kv,
    /// The key as it was before (watches ask for it).
    pub prev: Option<Kv>,
}

/// The changes of one or more revisions, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The store's revision when etcd sent them; resume with `revision + 1`.
    pub revision: i64,
    pub events: Vec<Event>,
}

/// The range end that makes a range cover every key starting with `prefix` (etcd's rule: the
/// prefix with its last byte below 0xff incremented and what follows cut; all keys when the
/// prefix is empty or all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A blocking etcd client; cheap to clone, shared by threads.
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
    /// Watches: connecting is bounded by the timeout, then each read by the watch's idle time.
    stream_agent: ureq::Agent,
}

/// How long a watch waits for a message before it ends with `Unreachable`: a member that
/// vanished without closing the connection (its host gone) would otherwise hold it forever.
/// A quiet watch is then simply opened again from the last revision seen + 1.
pub const WATCH_IDLE: Duration = Duration::from_secs(60);

/// How much of a stream [`end_of_stream`] reads past the message it was opened for.
const STREAM_TAIL: u64 = 64 * 1024;

/// Reads a one-request stream to its end. The gateway ends a keepalive's stream as soon as it
/// has answered (the request body, one message, is over): read to that end, the connection
/// goes back to the agent's pool for the next request; dropped before, it is closed, and
/// every renewal would connect (and shake hands over TLS) anew. Bounded by [`STREAM_TAIL`]
/// and by the agent's timeout; what it reads is not needed, so an error only costs the
/// connection.
fn end_of_stream(reader: &mut impl Read) {
    let _ = std::io::copy(&mut reader.take(STREAM_TAIL), &mut std::io::sink());
}

fn agent(timeout: Duration, tls: &Option<Arc<rustls::ClientConfig>>) -> ureq::AgentBuilder {
    let mut b = ureq::AgentBuilder::new()
        .timeout_connect(timeout)
        .timeout_write(timeout)
        .max_idle_connections_per_host(4);
    if let Some(tls) = tls {
        b = b.tls_config(tls.clone());
    }
    b
}

fn stream_agent(inner: &Inner, idle: Duration) -> ureq::Agent {
    agent(inner.timeout, &inner.tls).timeout_read(idle).build()
}

struct Inner {
    endpoints: Vec<String>,
    /// True when a client certificate is configured.
    client_cert: bool,
    /// Index of the endpoint that answered last.
    preferred: AtomicUsize,
    /// Requests: the whole exchange bounded by the timeout.
    agent: ureq::Agent,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.inner.endpoints)
            .finish_non_exhaustive()
    }
}

/// Whether a request may be sent again to another endpoint after it reached one that then
/// failed to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    Safe,
    Unsafe,
}

impl Etcd {
    /// Checks the endpoints and loads the TLS files; does not contact etcd.
    pub fn connect(cfg: &EtcdConfig) -> Result<Self, EtcdError> {
        let endpoints = check_endpoints(&cfg.endpoints)?;
        let tls = tls_config(cfg)?;
        let inner = Inner {
            endpoints,
            client_cert: cfg.cert.is_some(),
            preferred: AtomicUsize::new(0),
            agent: agent(cfg.timeout, &tls).timeout(cfg.timeout).build(),
            timeout: cfg.timeout,
            tls,
        };
        let stream_agent = stream_agent(&inner, WATCH_IDLE);
        Ok(Etcd {
            inner: Arc::new(inner),
            stream_agent,
        })
    }

    /// The same client, whose watches end with `Unreachable` after `idle` without any
    /// message from etcd (instead of [`WATCH_IDLE`]).
    pub fn with_watch_idle(&self, idle: Duration) -> Etcd {
        Etcd {
            inner: self.inner.clone(),
            stream_agent: stream_agent(&self.inner, idle),
        }
    }

    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Keys from `key` (alone, or up to `range_end` excluded), sorted by key.
    pub fn range(&self, key: &[u8], range_end: Option<&[u8]>) -> Result<Range, EtcdError> {
        let answer = self.post("/v3/kv/range", &range_body(key, range_end), Resend::Safe)?;
        parse::<WireRange>(answer)?.into_range()
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Kv>, EtcdError> {
        Ok(self.range(key, None)?.kvs.into_iter().next())
    }

    /// Sets `key`; returns the revision of the change.
    pub fn put(&self, key: &[u8], value: &[u8], lease: Option<i64>) -> Result<i64, EtcdError> {
        // Sending a put again leaves the same value (only its version and revision differ).
        let answer = self.post("/v3/kv/put", &put_body(key, value, lease), Resend::Safe)?;
        Ok(parse::<Header>(answer)?.revision())
    }

    /// Deletes `key` (or the range up to `range_end`); returns how many keys went.
    pub fn delete(&self, key: &[u8], range_end: Option<&[u8]>) -> Result<u64, EtcdError> {
        let answer = self.post(
            "/v3/kv/deleterange",
            &range_body(key, range_end),
            Resend::Safe,
        )?;
        parse::<wire::WireDelete>(answer).map(|d| d.deleted())
    }

    /// Runs `success` if every compare holds, `failure` otherwise, atomically.
    pub fn txn(
        &self,
        compare: &[Compare],
        success: &[Op],
        failure: &[Op],
    ) -> Result<TxnResult, EtcdError> {
        let body = json!({
            "compare": compare.iter().map(compare_body).collect::<Vec<_>>(),
            "success": success.iter().map(op_body).collect::<Vec<_>>(),
            "failure": failure.iter().map(op_body).collect::<Vec<_>>(),
        });
        let answer = self.post("/v3/kv/txn", &body, Resend::Unsafe)?;
        parse::<WireTxn>(answer)?.into_result()
    }

    /// Drops the history before `revision` (watches from before it then fail with
    /// `Compacted`).
    pub fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        let body = json!({ "revision": revision.to_string(), "physical": true });
        self.post("/v3/kv/compaction", &body, Resend::Safe)
            .map(|_| ())
    }

    /// A new lease of `ttl_secs`; returns its id.
    pub fn lease_grant(&self, ttl_secs: i64) -> Result<i64, EtcdError> {
        let body = json!({ "TTL": ttl_secs.to_string(), "ID": "0" });
        let answer = self.post("/v3/lease/grant", &body, Resend::Unsafe)?;
        let lease = parse::<wire::WireLease>(answer)?;
        if let Some(error) = lease.error.clone().filter(|e| !e.is_empty()) {
            return Err(EtcdError::Rejected {
                code: None,
                message: error,
            });
        }
        match lease.id() {
            0 => Err(EtcdError::Protocol(
                "lease grant answered without an ID".into(),
            )),
            id => Ok(id),
        }
    }

    /// Renews lease `id` once; returns the TTL it has again, or None when the lease is gone
    /// (expired or revoked).
    pub fn lease_keepalive(&self, id: i64) -> Result<Option<i64>, EtcdError> {
        let body = json!({ "ID": id.to_string() });
        let answer = self.post_stream_first("/v3/lease/keepalive", &body)?;
        let msg = parse::<wire::WireStreamMessage<wire::WireLease>>(answer)?;
        let lease = msg.into_result()?;
        Ok(Some(lease.ttl()).filter(|ttl| *ttl > 0))
    }

    /// Ends lease `id` and deletes its keys. A lease that is already gone is not an error.
    pub fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        let body = json!({ "ID": id.to_string() });
        // etcd 3.4's gateway has revoke only under /v3/kv/lease/; 3.5 has it under both.
        match self.post("/v3/kv/lease/revoke", &body, Resend::Safe) {
            Ok(_) => Ok(()),
            Err(EtcdError::Rejected { code: Some(5), .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Watches `key` (or the range up to `range_end`) from `start_revision` (0: from now).
    /// Returns once etcd has created the watch.
    pub fn watch(
        &self,
        key: &[u8],
        range_end: Option<&[u8]>,
        start_revision: i64,
    ) -> Result<Watch, EtcdError> {
        let mut create = json!({
            "key": b64(key),
            "start_revision": start_revision.to_string(),
            "prev_kv": true,
        });
        if let Some(end) = range_end {
            create["range_end"] = b64(end).into();
        }
        let body = json!({ "create_request": create });
        let (endpoint, reader) =
            self.try_endpoints(Resend::Safe, |ep| self.open_stream(ep, "/v3/watch", &body))?;
        let mut watch = Watch {
            endpoint,
            stream: serde_json::Deserializer::from_reader(reader).into_iter(),
            done: false,
        };
        watch.await_created()?;
        Ok(watch)
    }

    /// POSTs a JSON body to the endpoints in turn; the answer's JSON.
    fn post(&self, path: &str, body: &Value, resend: Resend) -> Result<Value, EtcdError> {
        self.try_endpoints(resend, |ep| {
            let url = format!("{ep}{path}");
            let response = self
                .inner
                .agent
                .post(&url)
                .send_string(&body.to_string())
                .map_err(|e| Attempt::from_ureq(ep, self.inner.client_cert, e))?;
            let mut body = Vec::new();
            response
                .into_reader()
                .take(MAX_ANSWER + 1)
                .read_to_end(&mut body)
                .map_err(|e| Attempt::Lost {
                    reason: format!("{ep}: reading the answer: {e}"),
                })?;
            if body.len() as u64 > MAX_ANSWER {
                return Err(Attempt::Done(EtcdError::Protocol(format!(
                    "{ep}{path}: the answer is larger than {} MiB",
                    MAX_ANSWER >> 20
                ))));
            }
            serde_json::from_slice(&body)
                .map_err(|e| Attempt::Done(EtcdError::Protocol(format!("{ep}{path}: {e}"))))
        })
        .map(|(_, v)| v)
    }

    /// POSTs to a streaming method (lease keepalive) and returns its first message.
    fn post_stream_first(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        self.try_endpoints(Resend::Safe, |ep| {
            let url = format!("{ep}{path}");
            let response = self
                .inner
                .agent
                .post(&url)
                .send_string(&body.to_string())
                .map_err(|e| Attempt::from_ureq(ep, self.inner.client_cert, e))?;
            let mut reader = response.into_reader();
            let first = serde_json::Deserializer::from_reader(&mut reader)
                .into_iter::<Value>()
                .next();
            match first {
                Some(Ok(v)) => {
                    end_of_stream(&mut reader);
                    Ok(v)
                }
                Some(Err(e)) if e.is_io() || e.is_eof() => Err(Attempt::Lost {
                    reason: format!("{ep}: reading the answer: {e}"),
                }),
                Some(Err(e)) => Err(Attempt::Done(EtcdError::Protocol(format!(
                    "{ep}{path}: {e}"
                )))),
                None => Err(Attempt::Lost {
                    reason: format!("{ep}: the answer to {path} was empty"),
                }),
            }
        })
        .map(|(_, v)| v)
    }

    fn open_stream(&self, ep: &str, path: &str, body: &Value) -> Result<StreamReader, Attempt> {
        let response = self
            .stream_agent
            .post(&format!("{ep}{path}"))
            .send_string(&body.to_string())
            .map_err(|e| Attempt::from_ureq(ep, self.inner.client_cert, e))?;
        Ok(response.into_reader())
    }

    /// Runs `attempt` on each endpoint from the preferred one on, until one answers.
    fn try_endpoints<T>(
        &self,
        resend: Resend,
        mut attempt: impl FnMut(&str) -> Result<T, Attempt>,
    ) -> Result<(String, T), EtcdError> {
        let n = self.inner.endpoints.len();
        let first = self.inner.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let ep = &self.inner.endpoints[i];
            match attempt(ep) {
                Ok(v) => {
                    self.inner.preferred.store(i, Ordering::Relaxed);
                    return Ok((ep.clone(), v));
                }
                Err(Attempt::Done(e)) => {
                    self.inner.preferred.store(i, Ordering::Relaxed);
                    return Err(e);
                }
                Err(Attempt::Unreached { reason }) => failures.push(reason),
                Err(Attempt::Lost { reason }) if resend == Resend::Safe => failures.push(reason),
                Err(Attempt::Lost { reason }) => {
                    return Err(EtcdError::Unreachable(format!(
                        "{reason} (the request was sent; whether etcd applied it is unknown)"
                    )))
                }
                Err(Attempt::Unavailable { code, message }) if resend == Resend::Safe => {
                    failures.push(format!("{ep}: {message}"));
                    let _ = code;
                }
                Err(Attempt::Unavailable { code, message }) => {
                    return Err(EtcdError::Rejected {
                        code: Some(code),
                        message,
                    })
                }
            }
        }
        Err(EtcdError::Unreachable(failures.join("; ")))
    }
}

/// The largest answer read (a range over many keys); more is a protocol error, not memory
/// without end.
const MAX_ANSWER: u64 = 256 << 20;

type StreamReader = Box<dyn Read + Send + Sync + 'static>;

/// How one try on one endpoint ended, when it did not give an answer.
enum Attempt {
    /// Could not reach the endpoint: try the next.
    Unreached { reason: String },
    /// Reached it, then lost it: the request may have been applied.
    Lost { reason: String },
    /// The endpoint says the cluster is unavailable to it (gRPC code 14, e.g. no leader).
    Unavailable { code: i64, message: String },
    /// A final answer (an error of etcd's, or one it cannot be asked again for).
    Done(EtcdError),
}

impl Attempt {
    fn from_ureq(ep: &str, has_client_cert: bool, e: ureq::Error) -> Attempt {
        match e {
            ureq::Error::Status(status, response) => {
                let text = read_error_body(response);
                let (code, message) = wire::error_of(&text)
                    .unwrap_or((None, format!("HTTP {status}: {}", text.trim())));
                match code {
                    Some(14) => Attempt::Unavailable { code: 14, message },
                    _ => Attempt::Done(EtcdError::Rejected { code, message }),
                }
            }
            ureq::Error::Transport(t) => {
                let reason = transport_reason(&t);
                let reason = if reason.starts_with(ep) {
                    reason
                } else {
                    format!("{ep}: {reason}")
                };
                let reason = with_tls_hint(ep, has_client_cert, reason);
                match t.kind() {
                    ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed => {
                        Attempt::Unreached { reason }
                    }
                    ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                        Attempt::Done(EtcdError::Config(reason))
                    }
                    _ => Attempt::Lost { reason },
                }
            }
        }
    }
}

/// The body of an error answer. etcd 3.4's gateway ends those with a chunked encoding that
/// ureq rejects after the JSON (a trailer), so what was read before that error is kept.
fn read_error_body(response: ureq::Response) -> String {
    let mut reader = response.into_reader().take(64 * 1024);
    let mut body = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = reader.read(&mut buf) {
        body.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// A transport error's message with its causes (TLS alerts hide there).
fn transport_reason(t: &ureq::Transport) -> String {
    let mut reason = t.to_string();
    let mut source = std::error::Error::source(t);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !reason.contains(&s_text) {
            reason.push_str(": ");
            reason.push_str(&s_text);
        }
        source = s.source();
    }
    // ureq repeats its kind's name ("Network Error: Network Error: ...").
    let mut parts: Vec<&str> = reason.split(": ").collect();
    parts.dedup();
    parts.join(": ")
}

/// Adds what to check to a failure on an https endpoint that looks like TLS refusing: with TLS
/// 1.3 a member that wants a client certificate closes the connection only after the handshake,
/// so the client sees a broken pipe or a reset rather than an alert.
fn with_tls_hint(ep: &str, has_client_cert: bool, mut reason: String) -> String {
    if !ep.starts_with("https://") {
        return reason;
    }
    let lower = reason.to_lowercase();
    let tls_words = ["certificate", "alert", "tls", "handshake"];
    let closed = ["broken pipe", "reset by peer", "unexpected eof"];
    if !has_client_cert && closed.iter().chain(&tls_words).any(|w| lower.contains(w)) {
        reason.push_str(
            " (TLS: etcd may require a client certificate: give --etcd-cert and --etcd-key)",
        );
    } else if tls_words.iter().any(|w| lower.contains(w)) {
        reason.push_str(" (TLS: check --etcd-cacert, --etcd-cert and --etcd-key)");
    }
    reason
}

/// An open watch: an iterator over etcd's changes, in revision order. It ends after the first
/// error: `Compacted` (read the state again, then watch from its revision + 1) or
/// `Unreachable` (the stream broke; watch again from the last revision seen + 1).
pub struct Watch {
    endpoint: String,
    stream: serde_json::StreamDeserializer<
        'static,
        serde_json::de::IoRead<StreamReader>,
        WireWatchMessage,
    >,
    done: bool,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("endpoint", &self.endpoint)
            .field("done", &self.done)
            .finish()
    }
}

impl Watch {
    /// The endpoint that serves this watch.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn await_created(&mut self) -> Result<(), EtcdError> {
        match self.next_message() {
            Some(Ok(msg)) if msg.created => Ok(()),
            Some(Ok(msg)) => match msg.into_event() {
                Err(e) => Err(e),
                Ok(_) => Err(EtcdError::Protocol(
                    "a watch's first message did not confirm it was created".into(),
                )),
            },
            Some(Err(e)) => Err(e),
            None => Err(EtcdError::Unreachable(format!(
                "{}: the watch stream ended before the watch was created",
                self.endpoint
            ))),
        }
    }

    fn next_message(&mut self) -> Option<Result<wire::WatchResult, EtcdError>> {
        let ep = &self.endpoint;
        match self.stream.next()? {
            Ok(msg) => Some(msg.into_result().map_err(|e| match e {
                EtcdError::Rejected {
                    code: Some(14),
                    message,
                } => EtcdError::Unreachable(format!("{ep}: {message}")),
                e => e,
            })),
            Err(e) if e.is_io() || e.is_eof() => Some(Err(EtcdError::Unreachable(format!(
                "{ep}: the watch stream broke: {e}"
            )))),
            Err(e) => Some(Err(EtcdError::Protocol(format!("{ep}/v3/watch: {e}")))),
        }
    }
}

impl Iterator for Watch {
    type Item = Result<WatchEvent, EtcdError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let item = match self.next_message() {
                None => Err(EtcdError::Unreachable(format!(
                    "{}: the watch stream ended",
                    self.endpoint
                ))),
                Some(Ok(msg)) => match msg.into_event() {
                    Ok(Some(event)) => return Some(Ok(event)),
                    Ok(None) => continue, // progress notification or confirmation
                    Err(e) => Err(e),
                },
                Some(Err(e)) => Err(e),
            };
            self.done = true;
            return Some(item);
        }
        None
    }
}

fn check_endpoints(endpoints: &[String]) -> Result<Vec<String>, EtcdError> {
    if endpoints.is_empty() {
        return Err(EtcdError::Config("no etcd endpoint given".into()));
    }
    endpoints
        .iter()
        .map(|ep| {
            let ep = ep.trim().trim_end_matches('/');
            let rest = ep
                .strip_prefix("http://")
                .or_else(|| ep.strip_prefix("https://"));
            match rest {
                Some(hostport) if !hostport.is_empty() && !hostport.contains('/') => {
                    Ok(ep.to_string())
                }
                _ => Err(EtcdError::Config(format!(
                    "endpoint {ep:?} is not http://HOST:PORT or https://HOST:PORT"
                ))),
            }
        })
        .collect()
}

/// The TLS settings: None when the defaults do (no CA file, no client certificate).
fn tls_config(cfg: &EtcdConfig) -> Result<Option<Arc<rustls::ClientConfig>>, EtcdError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    if cfg.cacert.is_none() && cfg.cert.is_none() && cfg.key.is_none() {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.cacert {
        Some(path) => {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| tls_file_error(path, &e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EtcdError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_file_error(key, &e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| EtcdError::Config(format!("TLS client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(EtcdError::Config(
                "a client certificate needs both --etcd-cert and --etcd-key".into(),
            ))
        }
    };
    return Ok(Some(Arc::new(config)));

    fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, EtcdError> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| tls_file_error(path, &e))?;
        if certs.is_empty() {
            return Err(EtcdError::Config(format!(
                "{}: no PEM certificate in it",
                path.display()
            )));
        }
        Ok(certs)
    }
}

fn tls_file_error(path: &Path, e: &dyn fmt::Display) -> EtcdError {
    EtcdError::Config(format!("{}: {e}", path.display()))
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, EtcdError> {
    serde_json::from_value(v).map_err(|e| EtcdError::Protocol(e.to_string()))
}

fn range_body(key: &[u8], range_end: Option<&[u8]>) -> Value {
    let mut body = json!({ "key": b64(key) });
    if let Some(end) = range_end {
        body["range_end"] = b64(end).into();
    }
    body
}

fn put_body(key: &[u8], value: &[u8], lease: Option<i64>) -> Value {
    let mut body = json!({ "key": b64(key), "value": b64(value) });
    if let Some(lease) = lease {
        body["lease"] = lease.to_string().into();
    }
    body
}

fn compare_body(c: &Compare) -> Value {
    let (key, op, target, field, value): (&[u8], Cmp, &str, &str, Value) = match c {
        Compare::CreateRevision { key, op, value } => (
            key,
            *op,
            "CREATE",
            "create_revision",
            value.to_string().into(),
        ),
        Compare::ModRevision { key, op, value } => {
            (key, *op, "MOD", "mod_revision", value.to_string().into())
        }
        Compare::Version { key, op, value } => {
            (key, *op, "VERSION", "version", value.to_string().into())
        }
        Compare::Value { key, op, value } => (key, *op, "VALUE", "value", b64(value).into()),
    };
    let result = match op {
        Cmp::Equal => "EQUAL",
        Cmp::Greater => "GREATER",
        Cmp::Less => "LESS",
        Cmp::NotEqual => "NOT_EQUAL",
    };
    let mut body = json!({ "key": b64(key), "target": target, "result": result });
    body[field] = value;
    body
}

fn op_body(op: &Op) -> Value {
    match op {
        Op::Put { key, value, lease } => json!({ "request_put": put_body(key, value, *lease) }),
        Op::Delete { key, range_end } => {
            json!({ "request_delete_range": range_body(key, range_end.as_deref()) })
        }
        Op::Range { key, range_end } => {
            json!({ "request_range": range_body(key, range_end.as_deref()) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_by_threads() {
        fn send_sync<T: Send + Sync + Clone>() {}
        fn send<T: Send>() {}
        send_sync::<Etcd>();
        send::<Watch>();
    }

    #[test]
    fn prefix_end_follows_etcd() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn endpoints_are_checked() {
        let ok = check_endpoints(&["http://10.0.0.1:2379/".into()]).unwrap();
        assert_eq!(ok, ["http://10.0.0.1:2379"]);
        assert!(check_endpoints(&["10.0.0.1:2379".into()]).is_err());
        assert!(check_endpoints(&["http://h:1/x".into()]).is_err());
        assert!(check_endpoints(&[]).is_err());
    }

    #[test]
    fn compare_has_etcd_names() {
        let c = compare_body(&Compare::CreateRevision {
            key: b"k".to_vec(),
            op: Cmp::Equal,
            value: 0,
        });
        assert_eq!(
            c,
            json!({"key":"aw==","target":"CREATE","result":"EQUAL","create_revision":"0"})
        );
    }

    #[test]
    fn half_a_client_certificate_is_refused() {
        let cfg = EtcdConfig {
            endpoints: vec!["https://127.0.0.1:1".into()],
            cacert: None,
            cert: Some("/nonexistent".into()),
            key: None,
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(Etcd::connect(&cfg), Err(EtcdError::Config(_))));
    }
}
