//! Loom device ids: RFC 9562 UUIDv8 with a documented layout, keyed and deterministic.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      mac[0..4]  (custom_a)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     mac[4..6]  (custom_a)     |  ver=8|  key period (custom_b) |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |var|             mac[8..16] with the top two bits replaced       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        (custom_c, 62 bits)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! `mac = HMAC-SHA-256(key[tenant, period], "loom-device-v8" 0 period purpose 0 tenant 0 identifiers)`,
//! where identifiers are the canonical `name=value` pairs, sorted. 48 + 62 = 110 bits come from
//! the MAC; the 12-bit key period says which key made the id. Same inputs and key → same id;
//! another tenant or purpose → an unrelated id; rotating (new period) or deleting the key is how
//! ids are rotated or erased. Devices without stable identifiers get random v7 ids instead.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// Largest key period the layout can carry.
pub const MAX_PERIOD: u16 = 0x0fff;

/// Sets RFC 9562 version 8 and the variant over 16 bytes of custom data, keeping `period` in
/// custom_b.
pub fn v8_from(bytes: [u8; 16], period: u16) -> Uuid {
    let mut b = bytes;
    b[6] = 0x80 | ((period >> 8) as u8 & 0x0f);
    b[7] = (period & 0xff) as u8;
    b[8] = 0x80 | (b[8] & 0x3f);
    Uuid::from_bytes(b)
}

/// The keyed, deterministic id of a device.
pub fn keyed_id(key: &[u8], period: u16, tenant: &str, purpose: &str, identifiers: &[(&str, &str)]) -> Uuid {
    let mut pairs: Vec<(&str, &str)> = identifiers.to_vec();
    pairs.sort();
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(b"loom-device-v8\0");
    mac.update(&period.to_be_bytes());
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(tenant.as_bytes());
    for (name, value) in pairs {
        mac.update(b"\0");
        mac.update(name.as_bytes());
        mac.update(b"=");
        mac.update(value.as_bytes());
    }
    let out = mac.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&out[..16]);
    v8_from(bytes, period.min(MAX_PERIOD))
}

/// The key period a Loom v8 id was made with (`None` for other versions).
pub fn period_of(id: &Uuid) -> Option<u16> {
    (id.get_version_num() == 8).then(|| {
        let b = id.as_bytes();
        (u16::from(b[6] & 0x0f) << 8) | u16::from(b[7])
    })
}

/// A keyed hash of one raw identifier, the only form identifiers are stored in.
pub fn identifier_hash(key: &[u8], name: &str, value: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(b"loom-identifier\0");
    mac.update(name.as_bytes());
    mac.update(b"\0");
    mac.update(value.as_bytes());
    mac.finalize().into_bytes()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// What a parsed UUID is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Parsed {
    pub uuid: String,
    pub version: usize,
    pub variant: String,
    /// For Loom v8 ids: the key period.
    pub key_period: Option<u16>,
}

pub fn parse(text: &str) -> Result<Parsed, String> {
    let id = Uuid::parse_str(text.trim()).map_err(|e| format!("not a UUID: {e}"))?;
    Ok(Parsed {
        uuid: id.hyphenated().to_string(),
        version: id.get_version_num(),
        variant: format!("{:?}", id.get_variant()),
        key_period: period_of(&id),
    })
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::*;

    /// RFC 9562 appendices A and B: every example parses with its version and the RFC variant;
    /// the name-based ones are regenerated.
    #[test]
    fn rfc_9562_test_vectors() {
        let vectors = [
            ("C232AB00-9414-11EC-B3C8-9F6BDECED846", 1),
            ("5df41881-3aed-3515-88a7-2f4a814cf09e", 3),
            ("919108f7-52d1-4320-9bac-f847db4148a8", 4),
            ("2ed6657d-e927-568b-95e1-2665a8aea6a2", 5),
            ("1EC9414C-232A-6B00-B3C8-9F6BDECED846", 6),
            ("017F22E2-79B0-7CC3-98C4-DC0C0C07398F", 7),
            ("2489E9AD-2EE2-8E00-8EC9-32D5F69181C0", 8),
            ("5c146b14-3c52-8afd-938a-375d0df1fbf6", 8),
        ];
        for (text, version) in vectors {
            let p = parse(text).unwrap();
            assert_eq!((p.version, p.variant.as_str()), (version, "RFC4122"), "{text}");
        }
        let dns = Uuid::NAMESPACE_DNS;
        assert_eq!(Uuid::new_v3(&dns, b"www.example.com").to_string(), "5df41881-3aed-3515-88a7-2f4a814cf09e");
        assert_eq!(Uuid::new_v5(&dns, b"www.example.com").to_string(), "2ed6657d-e927-568b-95e1-2665a8aea6a2");
        // B.2: SHA-256 of namespace + name, truncated, version and variant set.
        let digest = sha2::Sha256::new().chain_update(dns.as_bytes()).chain_update(b"www.example.com").finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = 0x80 | (bytes[6] & 0x0f);
        bytes[8] = 0x80 | (bytes[8] & 0x3f);
        assert_eq!(Uuid::from_bytes(bytes).to_string(), "5c146b14-3c52-8afd-938a-375d0df1fbf6");
        // v7 timestamp from A.6: 0x017F22E279B0 ms.
        let v7 = Uuid::parse_str("017F22E2-79B0-7CC3-98C4-DC0C0C07398F").unwrap();
        let (secs, nanos) = v7.get_timestamp().unwrap().to_unix();
        assert_eq!(secs * 1000 + u64::from(nanos) / 1_000_000, 0x017F22E279B0);
        assert!(parse("not-a-uuid").is_err());
    }

    #[test]
    fn keyed_ids_are_deterministic_v8_and_unlinkable_across_tenants_purposes_keys() {
        let ids = [("serial", "SN-1"), ("mac", "aa:bb:cc:dd:ee:ff")];
        let a = keyed_id(b"key-1", 7, "acme", "device", &ids);
        assert_eq!(a, keyed_id(b"key-1", 7, "acme", "device", &[ids[1], ids[0]]), "order-free");
        assert_eq!((a.get_version_num(), a.get_variant()), (8, uuid::Variant::RFC4122));
        assert_eq!(period_of(&a), Some(7));
        // (other key, period, tenant, purpose, identifiers) each give another id
        let others = [
            keyed_id(b"key-2", 7, "acme", "device", &ids),
            keyed_id(b"key-1", 8, "acme", "device", &ids),
            keyed_id(b"key-1", 7, "globex", "device", &ids),
            keyed_id(b"key-1", 7, "acme", "analytics", &ids),
            keyed_id(b"key-1", 7, "acme", "device", &ids[..1]),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(*o, a, "variation {i}");
            // unlinkable: the shared bits carry no more agreement than chance
            let same = a.as_bytes().iter().zip(o.as_bytes()).filter(|(x, y)| x == y).count();
            assert!(same <= 6, "variation {i} shares {same} bytes");
        }
        assert_ne!(identifier_hash(b"k", "serial", "SN-1"), identifier_hash(b"k", "serial", "SN-2"));
        assert!(!identifier_hash(b"k", "serial", "SN-1").contains("SN-1"));
    }
}
