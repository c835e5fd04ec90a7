//! The one encoding for everything that crosses nodes. ractor_cluster carries a single message
//! type per node endpoint, `Call(bytes) -> bytes`; inside, a versioned JSON envelope names the
//! service and key and carries the request body, itself the serde form of the service's typed
//! request. JSON is self-describing: a node one version newer can add fields (older nodes ignore
//! them), and an unknown variant or undecodable bytes decode to a [`WireError`] that travels back
//! to the caller — never a panic. (ractor's `blanket_serde` would `unwrap()` in `from_bytes`.)

use loom_protocol::ServiceId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Version of the envelope. Bump only for incompatible envelope changes; body evolution is
/// handled by serde defaults. Version 2 added named endpoints: a call to a named endpoint is
/// sent as version 2, so a node from before them refuses it (`unsupported_version`) instead of
/// running it on the service's main endpoint; calls to the main endpoint stay version 1.
pub const WIRE_VERSION: u16 = 2;

/// Largest request or reply envelope a node accepts (also the ractor_cluster frame bound).
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct CallFrame {
    v: u16,
    /// A string, not [`ServiceId`], so an unknown service is a clear error rather than a decode
    /// failure of the whole frame.
    service: String,
    /// Which of the service's endpoints ("" is its main one). Absent in frames of nodes that
    /// predate named endpoints, which only had the main one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    endpoint: String,
    key: String,
    body: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReplyFrame {
    v: u16,
    #[serde(flatten)]
    outcome: Outcome,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Ok(serde_json::Value),
    Err(WireError),
}

/// An error that crossed (or failed to cross) the wire. `code` is stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct WireError {
    pub code: String,
    pub message: String,
}

impl WireError {
    pub fn new(code: &str, message: impl Into<String>) -> WireError {
        WireError { code: code.to_owned(), message: message.into() }
    }
}

/// A decoded request envelope; the body is decoded by the service's handler.
#[derive(Debug)]
pub struct Incoming {
    pub service: ServiceId,
    pub endpoint: String,
    pub key: String,
    pub body: serde_json::Value,
}

pub fn encode_call<T: Serialize>(
    service: ServiceId,
    endpoint: &str,
    key: &str,
    body: &T,
) -> Result<Vec<u8>, WireError> {
    let body = serde_json::to_value(body).map_err(|e| WireError::new("unencodable_request", e.to_string()))?;
    let frame = CallFrame {
        v: if endpoint.is_empty() { 1 } else { WIRE_VERSION },
        service: service.name().to_owned(),
        endpoint: endpoint.to_owned(),
        key: key.to_owned(),
        body,
    };
    serde_json::to_vec(&frame).map_err(|e| WireError::new("unencodable_request", e.to_string()))
}

pub fn decode_call(bytes: &[u8]) -> Result<Incoming, WireError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(WireError::new("frame_too_large", format!("{} bytes, limit {MAX_FRAME_BYTES}", bytes.len())));
    }
    let frame: CallFrame = serde_json::from_slice(bytes)
        .map_err(|e| WireError::new("undecodable_request", format!("not a call envelope: {e}")))?;
    if frame.v > WIRE_VERSION {
        return Err(WireError::new(
            "unsupported_version",
            format!("envelope version {} is newer than this node's {WIRE_VERSION}", frame.v),
        ));
    }
    let service = frame.service.parse::<ServiceId>().map_err(|_| {
        WireError::new(
            "unknown_service",
            format!("unknown service `{}` (is the caller a newer version?)", frame.service),
        )
    })?;
    Ok(Incoming { service, endpoint: frame.endpoint, key: frame.key, body: frame.body })
}

/// Decodes a typed request body; an unknown variant names itself in the error.
pub fn decode_body<T: DeserializeOwned>(body: serde_json::Value) -> Result<T, WireError> {
    serde_json::from_value(body).map_err(|e| WireError::new("undecodable_request", e.to_string()))
}

pub fn encode_reply(outcome: Result<serde_json::Value, WireError>) -> Vec<u8> {
    let outcome = match outcome {
        Ok(v) => Outcome::Ok(v),
        Err(e) => Outcome::Err(e),
    };
    // Replies did not change: version 1 keeps older callers reading them.
    let bytes = serde_json::to_vec(&ReplyFrame { v: 1, outcome })
        .unwrap_or_else(|e| format!(r#"{{"v":1,"err":{{"code":"unencodable_reply","message":"{e}"}}}}"#).into_bytes());
    if bytes.len() > MAX_FRAME_BYTES {
        // The session would refuse the frame and drop the connection: answer with an error.
        return encode_reply(Err(WireError::new(
            "frame_too_large",
            format!("reply of {} bytes, limit {MAX_FRAME_BYTES}", bytes.len()),
        )));
    }
    bytes
}

pub fn decode_reply<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let frame: ReplyFrame = serde_json::from_slice(bytes)
        .map_err(|e| WireError::new("undecodable_reply", format!("not a reply envelope: {e}")))?;
    match frame.outcome {
        Outcome::Ok(v) => serde_json::from_value(v).map_err(|e| WireError::new("undecodable_reply", e.to_string())),
        Outcome::Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum V1 {
        Add { by: u64 },
        Get,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum V2 {
        Add {
            by: u64,
            #[serde(default)]
            note: Option<String>,
        },
        Get,
        Reset,
    }

    #[test]
    fn a_round_trip_keeps_service_key_and_body() {
        let bytes = encode_call(ServiceId::Dedup, "", "k-1", &V1::Add { by: 3 }).unwrap();
        let incoming = decode_call(&bytes).unwrap();
        assert_eq!((incoming.service, incoming.key.as_str()), (ServiceId::Dedup, "k-1"));
        assert_eq!(decode_body::<V1>(incoming.body).unwrap(), V1::Add { by: 3 });
        let named_bytes = encode_call(ServiceId::Dedup, "erasure", "k", &V1::Get).unwrap();
        assert!(String::from_utf8_lossy(&named_bytes).contains(r#""v":2"#), "named endpoints need version 2");
        let named = decode_call(&named_bytes).unwrap();
        assert_eq!(named.endpoint, "erasure");
        // A frame from a node before named endpoints reaches the main endpoint.
        let old = decode_call(br#"{"v":1,"service":"dedup","key":"k","body":"Get"}"#).unwrap();
        assert_eq!(old.endpoint, "");
        let reply = encode_reply(Ok(serde_json::json!(42)));
        assert_eq!(decode_reply::<u64>(&reply).unwrap(), 42);
        let reply = encode_reply(Err(WireError::new("overloaded", "busy")));
        assert_eq!(decode_reply::<u64>(&reply).unwrap_err().code, "overloaded");
    }

    #[test]
    fn versions_interoperate_and_unknowns_are_clear_errors() {
        // An older node reads a newer node's request with an extra field.
        let newer = encode_call(ServiceId::Dedup, "", "k", &V2::Add { by: 1, note: Some("x".into()) }).unwrap();
        assert_eq!(decode_body::<V1>(decode_call(&newer).unwrap().body).unwrap(), V1::Add { by: 1 });
        // A newer node reads an older node's request without the field.
        let older = encode_call(ServiceId::Dedup, "", "k", &V1::Add { by: 1 }).unwrap();
        assert_eq!(decode_body::<V2>(decode_call(&older).unwrap().body).unwrap(), V2::Add { by: 1, note: None });
        // A variant the older node does not know.
        let reset = encode_call(ServiceId::Dedup, "", "k", &V2::Reset).unwrap();
        let err = decode_body::<V1>(decode_call(&reset).unwrap().body).unwrap_err();
        assert_eq!(err.code, "undecodable_request");
        assert!(err.message.contains("unknown variant `Reset`"), "{}", err.message);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "undecodable_request"),
            (b"\x00\xff\x13garbage", "undecodable_request"),
            (br#"{"v":1,"service":"nope","key":"k","body":null}"#, "unknown_service"),
            (br#"{"v":9,"service":"dedup","key":"k","body":null}"#, "unsupported_version"),
            (br#"{"v":1,"service":"dedup"}"#, "undecodable_request"),
        ];
        for (bytes, code) in cases {
            assert_eq!(decode_call(bytes).unwrap_err().code, *code, "{bytes:?}");
        }
        assert_eq!(decode_reply::<u64>(b"\xff").unwrap_err().code, "undecodable_reply");
        assert_eq!(decode_reply::<u64>(br#"{"v":1,"ok":"text"}"#).unwrap_err().code, "undecodable_reply");
    }
}
