//! The gateway's JSON: int64 as strings, bytes as base64, fields with default values left out.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};

use super::{EtcdError, Event, EventKind, Kv, OpResponse, Range, TxnResult, WatchEvent};

pub(super) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(field: &str, text: &str) -> Result<Vec<u8>, EtcdError> {
    STANDARD
        .decode(text)
        .map_err(|e| EtcdError::Protocol(format!("{field} is not base64: {e}")))
}

/// An int64 sent as a string (or, leniently, a number).
fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Num(i64),
    }
    match Int::deserialize(d)? {
        Int::Num(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct HeaderInner {
    #[serde(default, deserialize_with = "int")]
    revision: i64,
}

/// An answer of which only the header matters (put).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Header {
    #[serde(default)]
    header: HeaderInner,
}

impl Header {
    pub(super) fn revision(&self) -> i64 {
        self.header.revision
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireKv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "int")]
    create_revision: i64,
    #[serde(default, deserialize_with = "int")]
    mod_revision: i64,
    #[serde(default, deserialize_with = "int")]
    version: i64,
    #[serde(default, deserialize_with = "int")]
    lease: i64,
}

impl WireKv {
    fn into_kv(self) -> Result<Kv, EtcdError> {
        Ok(Kv {
            key: unb64("key", &self.key)?,
            value: unb64("value", &self.value)?,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            lease: self.lease,
        })
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireRange {
    #[serde(default)]
    header: HeaderInner,
    #[serde(default)]
    kvs: Vec<WireKv>,
}

impl WireRange {
    pub(super) fn into_range(self) -> Result<Range, EtcdError> {
        Ok(Range {
            kvs: self
                .kvs
                .into_iter()
                .map(WireKv::into_kv)
                .collect::<Result<_, _>>()?,
            revision: self.header.revision,
        })
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireDelete {
    #[serde(default, deserialize_with = "int")]
    deleted: i64,
}

impl WireDelete {
    pub(super) fn deleted(&self) -> u64 {
        self.deleted.max(0) as u64
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireLease {
    #[serde(rename = "ID", default, deserialize_with = "int")]
    id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "int")]
    ttl: i64,
    #[serde(default)]
    pub(super) error: Option<String>,
}

impl WireLease {
    pub(super) fn id(&self) -> i64 {
        self.id
    }
    pub(super) fn ttl(&self) -> i64 {
        self.ttl
    }
}

#[derive(Debug, Deserialize)]
struct WireOpResponse {
    response_range: Option<WireRange>,
    response_put: Option<Header>,
    response_delete_range: Option<WireDelete>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireTxn {
    #[serde(default)]
    header: HeaderInner,
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<WireOpResponse>,
}

impl WireTxn {
    pub(super) fn into_result(self) -> Result<TxnResult, EtcdError> {
        let responses = self
            .responses
            .into_iter()
            .map(|r| match r {
                WireOpResponse {
                    response_range: Some(range),
                    ..
                } => range.into_range().map(OpResponse::Range),
                WireOpResponse {
                    response_put: Some(put),
                    ..
                } => Ok(OpResponse::Put {
                    revision: put.revision(),
                }),
                WireOpResponse {
                    response_delete_range: Some(d),
                    ..
                } => Ok(OpResponse::Delete {
                    deleted: d.deleted(),
                }),
                _ => Err(EtcdError::Protocol(
                    "a transaction's response has no known operation".into(),
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(TxnResult {
            succeeded: self.succeeded,
            revision: self.header.revision,
            responses,
        })
    }
}

/// An error inside a streamed answer.
#[derive(Debug, Deserialize)]
struct StreamError {
    #[serde(default)]
    grpc_code: Option<i64>,
    #[serde(default)]
    message: String,
}

/// One message of a streamed answer (keepalive, watch).
#[derive(Debug, Deserialize)]
pub(super) struct WireStreamMessage<T> {
    result: Option<T>,
    error: Option<StreamError>,
}

impl<T> WireStreamMessage<T> {
    pub(super) fn into_result(self) -> Result<T, EtcdError> {
        match (self.result, self.error) {
            (_, Some(e)) => Err(EtcdError::Rejected {
                code: e.grpc_code,
                message: e.message,
            }),
            (Some(r), None) => Ok(r),
            (None, None) => Err(EtcdError::Protocol(
                "a streamed message has neither result nor error".into(),
            )),
        }
    }
}

pub(super) type WireWatchMessage = WireStreamMessage<WatchResult>;

#[derive(Debug, Deserialize)]
pub(super) struct WatchResult {
    #[serde(default)]
    header: HeaderInner,
    #[serde(default)]
    pub(super) created: bool,
    #[serde(default)]
    canceled: bool,
    #[serde(default, deserialize_with = "int")]
    compact_revision: i64,
    #[serde(default)]
    cancel_reason: String,
    #[serde(default)]
    events: Vec<WireEvent>,
}

impl WatchResult {
    /// The changes in this message; None for a message without any (created, progress).
    pub(super) fn into_event(self) -> Result<Option<WatchEvent>, EtcdError> {
        if self.compact_revision > 0 {
            return Err(EtcdError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        if self.canceled {
            let reason = if self.cancel_reason.is_empty() {
                "etcd canceled the watch".to_string()
            } else {
                format!("etcd canceled the watch: {}", self.cancel_reason)
            };
            return Err(EtcdError::Rejected {
                code: None,
                message: reason,
            });
        }
        if self.events.is_empty() {
            return Ok(None);
        }
        let events = self
            .events
            .into_iter()
            .map(WireEvent::into_event)
            .collect::<Result<_, _>>()?;
        Ok(Some(WatchEvent {
            revision: self.header.revision,
            events,
        }))
    }
}

#[derive(Debug, Deserialize)]
struct WireEvent {
    #[serde(rename = "type", default)]
    kind: serde_json::Value,
    kv: Option<WireKv>,
    prev_kv: Option<WireKv>,
}

impl WireEvent {
    fn into_event(self) -> Result<Event, EtcdError> {
        let kind = match &self.kind {
            serde_json::Value::Null => EventKind::Put,
            serde_json::Value::String(s) if s == "PUT" => EventKind::Put,
            serde_json::Value::String(s) if s == "DELETE" => EventKind::Delete,
            serde_json::Value::Number(n) if n.as_i64() == Some(0) => EventKind::Put,
            serde_json::Value::Number(n) if n.as_i64() == Some(1) => EventKind::Delete,
            other => {
                return Err(EtcdError::Protocol(format!(
                    "unknown watch event type {other}"
                )))
            }
        };
        let kv = self
            .kv
            .ok_or_else(|| EtcdError::Protocol("a watch event without kv".into()))?
            .into_kv()?;
        let prev = self.prev_kv.map(WireKv::into_kv).transpose()?;
        Ok(Event { kind, kv, prev })
    }
}

/// The gRPC code and message of an error answer (`{"error":..,"message":..,"code":N}`).
pub(super) fn error_of(text: &str) -> Option<(Option<i64>, String)> {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        code: Option<i64>,
    }
    let body: ErrorBody = serde_json::from_str(text).ok()?;
    let message = body.message.or(body.error).filter(|m| !m.is_empty())?;
    Some((body.code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_with_defaults_left_out_parses() {
        let text = r#"{"header":{"revision":"7"},"kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1"}],"count":"1"}"#;
        let r: WireRange = serde_json::from_str(text).unwrap();
        let r = r.into_range().unwrap();
        assert_eq!(r.revision, 7);
        assert_eq!(r.kvs[0].key, b"a");
        assert!(r.kvs[0].value.is_empty());
        assert_eq!(r.kvs[0].lease, 0);
    }

    #[test]
    fn a_compacted_watch_says_so() {
        let text =
            r#"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"2"}}"#;
        let m: WireWatchMessage = serde_json::from_str(text).unwrap();
        let e = m.into_result().unwrap().into_event().unwrap_err();
        assert!(matches!(
            e,
            EtcdError::Compacted {
                compact_revision: 2
            }
        ));
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let text = r#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#;
        assert_eq!(
            error_of(text),
            Some((Some(5), "etcdserver: requested lease not found".into()))
        );
    }
}
