//! The data plane's wire format (pure): the cookie handshake and the frames that carry keyed
//! calls on one multiplexed TCP connection per peer pair (`dataplane.rs` does the I/O).
//!
//! Handshake (mutual, challenge–response over fresh nonces, so nothing captured replays):
//!
//! ```text
//! client → server   "LMD" | version u8 | name length u8 | name | client nonce (16)
//! server → client   "LMD" | version u8 | server nonce (16) | HMAC(k, "server" | cn | sn)
//! client → server   HMAC(k, "client" | sn | cn | name)
//! server → client   0x01 (accepted)
//! ```
//!
//! `k` is derived from the cluster cookie with its own label (never the gossip key). A server
//! speaking another version answers its own version and closes, so the client can say why.
//! Then frames, both ways: `length u32 BE | kind u8 | request id u64 BE | payload`, where
//! `length` counts kind, id and payload and is bounded by [`MAX_FRAME`]; a call's payload is a
//! [`crate::wire`] call envelope, a reply's the encoded reply to the call with the same id.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const MAGIC: &[u8; 3] = b"LMD";
pub const VERSION: u8 = 1;
pub const NONCE_LEN: usize = 16;
pub const TAG_LEN: usize = 32;
/// The accepted-byte the server ends a successful handshake with.
pub const ACCEPTED: u8 = 1;
/// Magic, version and the name's length: the fixed start of a hello.
pub const HELLO_HEAD: usize = 3 + 1 + 1;
/// Magic, version, nonce, tag: the server's challenge.
pub const CHALLENGE_LEN: usize = 3 + 1 + NONCE_LEN + TAG_LEN;
/// Length prefix, kind, request id.
pub const HEADER_LEN: usize = 4 + 1 + 8;
/// Largest frame body (kind, id and payload): a wire envelope plus room for its framing.
pub const MAX_FRAME: usize = crate::wire::MAX_FRAME_BYTES + 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Call = 1,
    Reply = 2,
}

/// Why bytes on the data port were refused; the label is a metric value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a Loom data-plane peer (bad magic)")]
    BadMagic,
    #[error("data-plane version {0} (this node speaks {VERSION})")]
    Version(u8),
    #[error("the peer does not know the cluster cookie")]
    BadTag,
    #[error("malformed: {0}")]
    Malformed(&'static str),
    #[error("frame of {0} bytes (limit {MAX_FRAME})")]
    TooLarge(usize),
    #[error("too many connections or handshakes at once")]
    Busy,
}

impl Refusal {
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::BadMagic => "bad_magic",
            Refusal::Version(_) => "version",
            Refusal::BadTag => "bad_tag",
            Refusal::Malformed(_) => "malformed",
            Refusal::TooLarge(_) => "too_large",
            Refusal::Busy => "busy",
        }
    }
}

/// The handshake key of one cluster.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl Key {
    pub fn new(cookie: &str) -> Key {
        let mut mac = HmacSha256::new_from_slice(cookie.as_bytes()).expect("hmac takes any key length");
        mac.update(b"loom data plane v1");
        Key(mac.finalize().into_bytes().into())
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("hmac takes any key length");
        for p in parts {
            mac.update(&(p.len() as u32).to_be_bytes());
            mac.update(p);
        }
        mac
    }

    pub fn server_tag(&self, client_nonce: &[u8], server_nonce: &[u8]) -> [u8; TAG_LEN] {
        self.mac(&[b"server", client_nonce, server_nonce]).finalize().into_bytes().into()
    }

    pub fn client_tag(&self, server_nonce: &[u8], client_nonce: &[u8], name: &str) -> [u8; TAG_LEN] {
        self.mac(&[b"client", server_nonce, client_nonce, name.as_bytes()]).finalize().into_bytes().into()
    }

    /// Constant-time check of a server's tag.
    pub fn verify_server(&self, client_nonce: &[u8], server_nonce: &[u8], tag: &[u8]) -> Result<(), Refusal> {
        self.mac(&[b"server", client_nonce, server_nonce]).verify_slice(tag).map_err(|_| Refusal::BadTag)
    }

    /// Constant-time check of a client's tag.
    pub fn verify_client(
        &self,
        server_nonce: &[u8],
        client_nonce: &[u8],
        name: &str,
        tag: &[u8],
    ) -> Result<(), Refusal> {
        self.mac(&[b"client", server_nonce, client_nonce, name.as_bytes()])
            .verify_slice(tag)
            .map_err(|_| Refusal::BadTag)
    }
}

/// The client's hello.
pub fn hello(name: &str, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let name = &name.as_bytes()[..name.len().min(255)];
    let mut out = Vec::with_capacity(HELLO_HEAD + name.len() + NONCE_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(nonce);
    out
}

/// The fixed start of a hello: the name's length, once magic and version are right.
pub fn hello_head(head: &[u8; HELLO_HEAD]) -> Result<usize, Refusal> {
    if &head[..3] != MAGIC {
        return Err(Refusal::BadMagic);
    }
    if head[3] != VERSION {
        return Err(Refusal::Version(head[3]));
    }
    Ok(usize::from(head[4]))
}

/// The server's challenge.
pub fn challenge(key: &Key, client_nonce: &[u8], server_nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHALLENGE_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(server_nonce);
    out.extend_from_slice(&key.server_tag(client_nonce, server_nonce));
    out
}

/// What a server's answer to a hello says; a version mismatch arrives as magic and version only.
pub fn read_challenge<'a>(key: &Key, client_nonce: &[u8], bytes: &'a [u8]) -> Result<&'a [u8], Refusal> {
    if bytes.len() < 4 || &bytes[..3] != MAGIC {
        return Err(Refusal::BadMagic);
    }
    if bytes[3] != VERSION {
        return Err(Refusal::Version(bytes[3]));
    }
    if bytes.len() != CHALLENGE_LEN {
        return Err(Refusal::Malformed("challenge length"));
    }
    let (server_nonce, tag) = bytes[4..].split_at(NONCE_LEN);
    key.verify_server(client_nonce, server_nonce, tag)?;
    Ok(server_nonce)
}

/// One frame, ready to write.
pub fn frame(kind: Kind, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&((1 + 8 + payload.len()) as u32).to_be_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A frame parsed from the front of a read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub kind: Kind,
    pub id: u64,
    pub payload: &'a [u8],
    /// Bytes of the buffer it used.
    pub used: usize,
}

/// The first whole frame in `buf`, `Ok(None)` when more bytes are needed, or why the stream
/// is garbage (the connection is then closed).
pub fn parse(buf: &[u8]) -> Result<Option<Parsed<'_>>, Refusal> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(Refusal::TooLarge(len));
    }
    if len < 9 {
        return Err(Refusal::Malformed("frame shorter than its header"));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let kind = match buf[4] {
        1 => Kind::Call,
        2 => Kind::Reply,
        _ => return Err(Refusal::Malformed("unknown frame kind")),
    };
    let id = u64::from_be_bytes(buf[5..13].try_into().expect("8 bytes"));
    Ok(Some(Parsed { kind, id, payload: &buf[13..4 + len], used: 4 + len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_proves_the_cookie_both_ways() {
        let (k, other) = (Key::new("cookie"), Key::new("wrong"));
        let (cn, sn) = ([7u8; NONCE_LEN], [9u8; NONCE_LEN]);
        let h = hello("node-1", &cn);
        let name_len = hello_head(h[..HELLO_HEAD].try_into().unwrap()).unwrap();
        assert_eq!(&h[HELLO_HEAD..HELLO_HEAD + name_len], b"node-1");
        let c = challenge(&k, &cn, &sn);
        assert_eq!(read_challenge(&k, &cn, &c), Ok(&sn[..]));
        assert_eq!(read_challenge(&other, &cn, &c), Err(Refusal::BadTag));
        // A challenge made for another client nonce (a replay) fails.
        assert_eq!(read_challenge(&k, &[1u8; NONCE_LEN], &c), Err(Refusal::BadTag));
        let tag = k.client_tag(&sn, &cn, "node-1");
        assert!(k.verify_client(&sn, &cn, "node-1", &tag).is_ok());
        let cases: [(&Key, &[u8], &str); 3] = [(&other, &sn, "node-1"), (&k, &cn, "node-1"), (&k, &sn, "node-2")];
        for (key, server_nonce, name) in cases {
            assert_eq!(key.verify_client(server_nonce, &cn, name, &tag), Err(Refusal::BadTag), "{name}");
        }
    }

    #[test]
    fn hellos_and_challenges_from_strangers_are_refused() {
        let k = Key::new("c");
        let cases: [(&[u8; HELLO_HEAD], Result<usize, Refusal>); 4] = [
            (b"LMD\x01\x05", Ok(5)),
            (b"GET /", Err(Refusal::BadMagic)),
            (b"LMD\x02\x05", Err(Refusal::Version(2))),
            (b"\0\0\0\0\0", Err(Refusal::BadMagic)),
        ];
        for (head, want) in cases {
            assert_eq!(hello_head(head), want, "{head:?}");
        }
        assert_eq!(read_challenge(&k, &[0; NONCE_LEN], b"LMD\x07"), Err(Refusal::Version(7)));
        assert_eq!(read_challenge(&k, &[0; NONCE_LEN], b"HTTP/1.1 400"), Err(Refusal::BadMagic));
        assert_eq!(read_challenge(&k, &[0; NONCE_LEN], b"LMD\x01short"), Err(Refusal::Malformed("challenge length")));
    }

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let f = frame(Kind::Call, 42, b"payload");
        let p = parse(&f).unwrap().unwrap();
        assert_eq!((p.kind, p.id, p.payload, p.used), (Kind::Call, 42, &b"payload"[..], f.len()));
        // Split anywhere: more bytes needed, never a wrong frame.
        for cut in 0..f.len() {
            assert_eq!(parse(&f[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = frame(Kind::Reply, 1, b"");
        two.extend(frame(Kind::Call, 2, b"x"));
        let first = parse(&two).unwrap().unwrap();
        assert_eq!((first.kind, first.id, first.payload.len()), (Kind::Reply, 1, 0));
        assert_eq!(parse(&two[first.used..]).unwrap().unwrap().id, 2);
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let cases: [(&[u8], Refusal); 3] = [
            (&huge, Refusal::TooLarge(MAX_FRAME + 1)),
            (b"\0\0\0\x03abc", Refusal::Malformed("frame shorter than its header")),
            (b"\0\0\0\x09\x07\0\0\0\0\0\0\0\0", Refusal::Malformed("unknown frame kind")),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(bytes), Err(want.clone()), "{want}");
        }
    }
}
