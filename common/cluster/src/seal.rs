//! Authenticated gossip datagrams. foca leaves encoding to us, so every datagram is sealed:
//! `magic | version | sent-at (unix ms) | nonce | sender name | foca payload | HMAC-SHA-256 tag`,
//! the tag keyed by a key derived from the cluster cookie. The opener checks the tag in constant
//! time, rejects datagrams whose timestamp is outside the allowed clock skew, and remembers the
//! tags it accepted within that window so a captured datagram cannot be replayed. Pure logic:
//! the UDP task owns one [`Opener`].

use std::collections::{HashMap, VecDeque};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 3] = b"LMG";
/// 2: the identity carries the data plane's port (a node of version 1 cannot read it).
const VERSION: u8 = 2;
const TAG_LEN: usize = 32;
/// magic + version + timestamp + nonce + name length.
const HEADER_LEN: usize = 3 + 1 + 8 + 8 + 1;
/// Smallest possible sealed datagram (empty name, empty payload).
pub const MIN_SEALED_LEN: usize = HEADER_LEN + TAG_LEN;
/// A rejection notice (sent unauthenticated to a sender whose datagram failed authentication, so
/// a node started with the wrong cookie can say why nobody answers). It carries no data and
/// receivers only log it.
pub const REJECT_NOTICE: &[u8] = b"LMG-REJECTED-COOKIE";

/// Why a datagram was not accepted; the label is a metric value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Malformed,
    /// Sealed by a node of another release (its identity layout differs).
    Version,
    BadTag,
    Stale,
    Replayed,
    ReplayCacheFull,
}

impl Rejection {
    pub fn label(self) -> &'static str {
        match self {
            Rejection::Malformed => "malformed",
            Rejection::Version => "version",
            Rejection::BadTag => "bad_tag",
            Rejection::Stale => "stale",
            Rejection::Replayed => "replayed",
            Rejection::ReplayCacheFull => "replay_cache_full",
        }
    }
}

/// An accepted datagram.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    pub sender: &'a str,
    pub payload: &'a [u8],
}

/// Unix time in milliseconds, the clock datagrams are stamped with.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn derive_key(cookie: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(cookie.as_bytes()).expect("hmac takes any key length");
    mac.update(b"loom gossip v1");
    mac.finalize().into_bytes().into()
}

fn mac_over(key: &[u8; 32], body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac takes any key length");
    mac.update(body);
    mac
}

/// Seals outgoing datagrams.
#[derive(Clone)]
pub struct Sealer {
    key: [u8; 32],
    sender: Vec<u8>,
}

impl Sealer {
    /// `sender` is this node's name (at most 255 bytes; node names are validated shorter).
    pub fn new(cookie: &str, sender: &str) -> Sealer {
        let mut name = sender.as_bytes().to_vec();
        name.truncate(255);
        Sealer { key: derive_key(cookie), sender: name }
    }

    pub fn seal(&self, now_ms: u64, nonce: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.sender.len() + payload.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&now_ms.to_be_bytes());
        out.extend_from_slice(&nonce.to_be_bytes());
        out.push(self.sender.len() as u8);
        out.extend_from_slice(&self.sender);
        out.extend_from_slice(payload);
        let tag = mac_over(&self.key, &out).finalize().into_bytes();
        out.extend_from_slice(&tag);
        out
    }
}

/// Checks incoming datagrams: tag, freshness, replay.
pub struct Opener {
    key: [u8; 32],
    max_skew_ms: u64,
    capacity: usize,
    seen: HashMap<[u8; 16], u64>,
    order: VecDeque<([u8; 16], u64)>,
}

impl Opener {
    /// Accepts datagrams stamped within `max_skew_ms` of now and remembers up to `capacity` of
    /// them (beyond that, new datagrams are refused until old ones age out: visible, never silent).
    pub fn new(cookie: &str, max_skew_ms: u64, capacity: usize) -> Opener {
        Opener { key: derive_key(cookie), max_skew_ms, capacity, seen: HashMap::new(), order: VecDeque::new() }
    }

    pub fn open<'a>(&mut self, now_ms: u64, datagram: &'a [u8]) -> Result<Opened<'a>, Rejection> {
        if datagram.len() < MIN_SEALED_LEN || &datagram[..3] != MAGIC {
            return Err(Rejection::Malformed);
        }
        if datagram[3] != VERSION {
            return Err(Rejection::Version);
        }
        let (body, tag) = datagram.split_at(datagram.len() - TAG_LEN);
        let name_len = body[HEADER_LEN - 1] as usize;
        if body.len() < HEADER_LEN + name_len {
            return Err(Rejection::Malformed);
        }
        mac_over(&self.key, body).verify_slice(tag).map_err(|_| Rejection::BadTag)?;
        let sent_ms = u64::from_be_bytes(body[4..12].try_into().expect("8 bytes"));
        if sent_ms.abs_diff(now_ms) > self.max_skew_ms {
            return Err(Rejection::Stale);
        }
        self.forget_older_than(now_ms.saturating_sub(self.max_skew_ms));
        let id: [u8; 16] = tag[..16].try_into().expect("16 bytes");
        if self.seen.contains_key(&id) {
            return Err(Rejection::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(Rejection::ReplayCacheFull);
        }
        // Remember by sent time: a datagram stamped in the future stays remembered until its
        // stamp leaves the window, so it cannot be replayed later either.
        let until = sent_ms.max(now_ms);
        self.seen.insert(id, until);
        self.order.push_back((id, until));
        let sender = std::str::from_utf8(&body[HEADER_LEN..HEADER_LEN + name_len]).map_err(|_| Rejection::Malformed)?;
        Ok(Opened { sender, payload: &body[HEADER_LEN + name_len..] })
    }

    fn forget_older_than(&mut self, cutoff_ms: u64) {
        // `order` is roughly by time; entries stamped in the future may sit behind older ones,
        // which only delays their removal.
        while let Some((id, at)) = self.order.front().copied() {
            if at >= cutoff_ms {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&id) == Some(&at) {
                self.seen.remove(&id);
            }
        }
    }

    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn opener() -> Opener {
        Opener::new("the-cluster-cookie", 30_000, 1000)
    }

    #[test]
    fn sealed_datagrams_open_with_the_same_cookie_only() {
        let sealed = Sealer::new("the-cluster-cookie", "loom-1").seal(NOW, 7, b"payload");
        assert_eq!(opener().open(NOW, &sealed), Ok(Opened { sender: "loom-1", payload: b"payload" }));
        let wrong = Sealer::new("another-cookie", "loom-1").seal(NOW, 7, b"payload");
        assert_eq!(opener().open(NOW, &wrong), Err(Rejection::BadTag));
    }

    #[test]
    fn tampering_anywhere_is_detected() {
        let sealed = Sealer::new("the-cluster-cookie", "loom-1").seal(NOW, 7, b"payload");
        for i in 4..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let got = opener().open(NOW, &bad);
            assert!(matches!(got, Err(Rejection::BadTag | Rejection::Malformed)), "byte {i}: {got:?}");
        }
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        let sealed = Sealer::new("the-cluster-cookie", "n").seal(NOW, 1, b"x");
        let cases: &[&[u8]] = &[b"", b"LMG", b"hello world", &sealed[..MIN_SEALED_LEN - 1], &[0xff; 64], REJECT_NOTICE];
        for case in cases {
            assert!(matches!(opener().open(NOW, case), Err(Rejection::Malformed | Rejection::BadTag)), "{case:?}");
        }
        // A datagram of another release is named as such (mixed versions cannot form a cluster).
        let mut older = sealed.clone();
        older[3] = 1;
        assert_eq!(opener().open(NOW, &older), Err(Rejection::Version));
    }

    #[test]
    fn replays_and_stale_datagrams_are_refused() {
        let sealer = Sealer::new("the-cluster-cookie", "loom-1");
        let mut o = opener();
        let sealed = sealer.seal(NOW, 1, b"a");
        // (sent at, opened at, expected)
        let cases: &[(u64, u64, Result<(), Rejection>)] = &[
            (NOW - 31_000, NOW, Err(Rejection::Stale)),
            (NOW + 31_000, NOW, Err(Rejection::Stale)),
            (NOW - 29_000, NOW, Ok(())),
            (NOW + 29_000, NOW, Ok(())),
        ];
        for (i, (sent, at, want)) in cases.iter().enumerate() {
            let d = sealer.seal(*sent, 100 + i as u64, b"p");
            assert_eq!(o.open(*at, &d).map(|_| ()), *want, "case {i}");
        }
        assert!(o.open(NOW, &sealed).is_ok());
        assert_eq!(o.open(NOW + 1, &sealed), Err(Rejection::Replayed));
        assert_eq!(o.open(NOW + 29_999, &sealed), Err(Rejection::Replayed));
        // Once out of the window it is stale, never accepted again.
        assert_eq!(o.open(NOW + 30_001, &sealed), Err(Rejection::Stale));
    }

    #[test]
    fn the_replay_cache_is_bounded_and_ages_out() {
        let sealer = Sealer::new("the-cluster-cookie", "loom-1");
        let mut o = Opener::new("the-cluster-cookie", 1_000, 3);
        for n in 0..3 {
            assert!(o.open(NOW, &sealer.seal(NOW, n, b"p")).is_ok());
        }
        assert_eq!(o.open(NOW, &sealer.seal(NOW, 9, b"p")), Err(Rejection::ReplayCacheFull));
        assert!(o.open(NOW + 1_500, &sealer.seal(NOW + 1_500, 10, b"p")).is_ok());
        assert_eq!(o.remembered(), 1);
    }
}
