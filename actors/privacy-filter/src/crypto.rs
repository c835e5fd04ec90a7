//! The keyed operators' cryptography (pure): from one managed key's 64 random bytes, independent
//! subkeys (HMAC-SHA-256 based derivation) for
//!
//! - **hash**: HMAC-SHA-256 of the value, hex — the same value hashes the same way under the same
//!   key (unlike Presidio's salted hash), and nobody without the key can test guesses;
//! - **encrypt**: deterministic AES-SIV (RFC 5297, AES-256) with the entity type as associated
//!   data, wrapped in a self-describing token `<ENC:ENTITY:k<key id>:<base64url>>` that
//!   `/deanonymize` finds in text without spans;
//! - **pseudonyms**: a keyed digest of (entity, value), the lookup key of a stable
//!   `<ENTITY_n>` number kept in the store;
//! - **subject index**: a keyed digest of a subject id, so subjects are stored and erased by an
//!   index that cannot be reversed without the index key.
//!
//! Destroying a key (crypto-shredding) makes its tokens undecryptable and its pseudonyms and
//! hashes unlinkable to new data. `caller.rs` holds the other kind: Presidio's AES-CBC and
//! salted hash under a key or salt the caller brings.

pub mod caller;

use aes_siv::KeyInit as _;
use aes_siv::siv::Aes256Siv;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

type HmacSha256 = Hmac<Sha256>;

/// Raw key material of one managed key.
pub const KEY_BYTES: usize = 64;

/// Longest value the encrypt operator accepts (tokens must stay header- and field-sized).
pub const MAX_PLAINTEXT: usize = 4096;

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("hmac takes any key length");
    for p in parts {
        // Length-prefixed, so ("ab","c") and ("a","bc") differ.
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fresh random key material.
pub fn new_material() -> Vec<u8> {
    let a: [u8; 32] = rand::random();
    let b: [u8; 32] = rand::random();
    let material = [a, b].concat();
    debug_assert_eq!(material.len(), KEY_BYTES);
    material
}

/// The subkeys of one managed key.
#[derive(Clone)]
pub struct KeyMaterial {
    hash: [u8; 32],
    pseudonym: [u8; 32],
    siv: [u8; 64],
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial(..)")
    }
}

impl KeyMaterial {
    pub fn derive(material: &[u8]) -> KeyMaterial {
        let siv_a = mac(material, &[b"loom/pf/siv/v1/a"]);
        let siv_b = mac(material, &[b"loom/pf/siv/v1/b"]);
        let mut siv = [0u8; 64];
        siv[..32].copy_from_slice(&siv_a);
        siv[32..].copy_from_slice(&siv_b);
        KeyMaterial {
            hash: mac(material, &[b"loom/pf/hash/v1"]),
            pseudonym: mac(material, &[b"loom/pf/pseudonym/v1"]),
            siv,
        }
    }

    /// HMAC-SHA-256 of `value`, lowercase hex.
    pub fn hash(&self, value: &str) -> String {
        hex(&mac(&self.hash, &[value.as_bytes()]))
    }

    /// HMAC-SHA-512 of `value` under the same subkey, lowercase hex (`hash_type: "sha512"`).
    pub fn hash512(&self, value: &str) -> String {
        let mut m = Hmac::<Sha512>::new_from_slice(&self.hash).expect("hmac takes any key length");
        m.update(&(value.len() as u64).to_be_bytes());
        m.update(value.as_bytes());
        hex(&m.finalize().into_bytes())
    }

    /// The keyed digest naming (entity, value) in the pseudonym table.
    pub fn pseudonym_digest(&self, entity: &str, value: &str) -> String {
        hex(&mac(&self.pseudonym, &[entity.as_bytes(), value.as_bytes()]))
    }

    /// A subject id's index (used with the dedicated index key).
    pub fn subject_index(&self, subject_id: &str) -> String {
        hex(&mac(&self.hash, &[b"subject", subject_id.as_bytes()]))
    }

    /// Deterministic encryption of `value` as `entity`, as a token naming the key.
    pub fn encrypt(&self, key_id: i64, entity: &str, value: &str) -> Result<String, String> {
        if value.len() > MAX_PLAINTEXT {
            return Err(format!("values longer than {MAX_PLAINTEXT} bytes are not encrypted"));
        }
        // The token must stay parseable, or the value could never be decrypted.
        let entity_ok = entity.len() <= 64
            && entity.starts_with(|c: char| c.is_ascii_uppercase())
            && entity.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !entity_ok {
            return Err(format!(
                "entity type '{entity}' cannot be encrypted: it must be UPPER_SNAKE_CASE, ≤ 64 characters"
            ));
        }
        let mut cipher = Aes256Siv::new_from_slice(&self.siv).map_err(|_| "bad SIV key length".to_owned())?;
        let sealed = cipher.encrypt([entity.as_bytes()], value.as_bytes()).map_err(|e| format!("encrypt: {e}"))?;
        Ok(format!("<ENC:{entity}:k{key_id}:{}>", URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// Decrypts the payload of a token made by [`KeyMaterial::encrypt`] with this key.
    pub fn decrypt(&self, token: &Token) -> Result<String, String> {
        let sealed = URL_SAFE_NO_PAD.decode(&token.payload).map_err(|_| "the token is not base64url".to_owned())?;
        let mut cipher = Aes256Siv::new_from_slice(&self.siv).map_err(|_| "bad SIV key length".to_owned())?;
        let plain = cipher.decrypt([token.entity.as_bytes()], &sealed).map_err(|_| {
            "the token does not authenticate under its key (altered, or another entity type)".to_owned()
        })?;
        String::from_utf8(plain).map_err(|_| "the decrypted value is not UTF-8".to_owned())
    }
}

/// A parsed encryption token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub entity: String,
    pub key_id: i64,
    pub payload: String,
}

/// The token pattern, for finding tokens in text.
pub const TOKEN_PATTERN: &str = r"<ENC:([A-Z][A-Z0-9_]{0,63}):k([0-9]{1,18}):([A-Za-z0-9_-]{22,8192})>";

/// Parses one whole token.
pub fn parse_token(text: &str) -> Option<Token> {
    let inner = text.strip_prefix("<ENC:")?.strip_suffix('>')?;
    let (entity, rest) = inner.split_once(':')?;
    let (key, payload) = rest.split_once(':')?;
    let key_id = key.strip_prefix('k')?.parse().ok()?;
    let entity_ok =
        !entity.is_empty() && entity.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    (entity_ok && !payload.is_empty()).then(|| Token { entity: entity.to_owned(), key_id, payload: payload.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_outputs_are_deterministic_per_key_and_differ_across_keys() {
        let (k1, k2) = (KeyMaterial::derive(&[1u8; 64]), KeyMaterial::derive(&[2u8; 64]));
        let cases = [
            ("hash", k1.hash("a@b.example"), k1.hash("a@b.example"), k2.hash("a@b.example")),
            (
                "pseudonym",
                k1.pseudonym_digest("EMAIL_ADDRESS", "a@b.example"),
                k1.pseudonym_digest("EMAIL_ADDRESS", "a@b.example"),
                k2.pseudonym_digest("EMAIL_ADDRESS", "a@b.example"),
            ),
            (
                "encrypt",
                k1.encrypt(1, "EMAIL_ADDRESS", "a@b.example").unwrap(),
                k1.encrypt(1, "EMAIL_ADDRESS", "a@b.example").unwrap(),
                k2.encrypt(1, "EMAIL_ADDRESS", "a@b.example").unwrap(),
            ),
            ("subject", k1.subject_index("user-1"), k1.subject_index("user-1"), k2.subject_index("user-1")),
        ];
        for (what, a, again, other) in cases {
            assert_eq!(a, again, "{what}: same key, same output");
            assert_ne!(a, other, "{what}: another key, another output");
            assert!(!a.contains("a@b.example") && !a.contains("user-1"), "{what}: no plaintext in {a}");
        }
        assert_eq!(k1.hash("x").len(), 64);
        assert_eq!(k1.hash512("x").len(), 128);
        assert_eq!(k1.hash512("x"), k1.hash512("x"));
        assert_ne!(k1.hash512("x"), k2.hash512("x"));
        // Entity type is bound into the digest.
        assert_ne!(k1.pseudonym_digest("PERSON", "x"), k1.pseudonym_digest("EMAIL_ADDRESS", "x"));
    }

    #[test]
    fn encryption_round_trips_and_refuses_tampering() {
        let k = KeyMaterial::derive(&[7u8; 64]);
        let pattern = regex::Regex::new(TOKEN_PATTERN).unwrap();
        for value in ["a@b.example", "+1 415 555 2671", "ünïcödé ✓", "x"] {
            let token = k.encrypt(42, "PHONE_NUMBER", value).unwrap();
            let parsed = parse_token(&token).unwrap();
            assert_eq!((parsed.entity.as_str(), parsed.key_id), ("PHONE_NUMBER", 42));
            assert!(pattern.is_match(&token), "{token}");
            assert_eq!(k.decrypt(&parsed).unwrap(), value);
        }
        let token = parse_token(&k.encrypt(1, "EMAIL_ADDRESS", "a@b.example").unwrap()).unwrap();
        // Another entity type (associated data), another key, a flipped byte: all refused.
        let relabelled = Token { entity: "PERSON".into(), ..token.clone() };
        assert!(k.decrypt(&relabelled).is_err());
        assert!(KeyMaterial::derive(&[8u8; 64]).decrypt(&token).is_err());
        let mut bytes = URL_SAFE_NO_PAD.decode(&token.payload).unwrap();
        bytes[3] ^= 1;
        let altered = Token { payload: URL_SAFE_NO_PAD.encode(bytes), ..token };
        assert!(k.decrypt(&altered).is_err());
        assert!(k.encrypt(1, "X", &"a".repeat(MAX_PLAINTEXT + 1)).is_err());
        for bad in ["email", "US-SSN", "A:B", "A>B", ""] {
            assert!(k.encrypt(1, bad, "v").is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_parse_strictly() {
        let cases: &[(&str, bool)] = &[
            ("<ENC:EMAIL_ADDRESS:k12:abcdefghijklmnopqrstuvwxyz>", true),
            ("<ENC:EMAIL_ADDRESS:12:abc>", false),
            ("<ENC:email:k12:abc>", false),
            ("<ENC::k12:abc>", false),
            ("<ENC:EMAIL_ADDRESS:k12:>", false),
            ("ENC:EMAIL_ADDRESS:k12:abc", false),
            ("<ENC:EMAIL_ADDRESS:kx:abc>", false),
        ];
        for (text, ok) in cases {
            assert_eq!(parse_token(text).is_some(), *ok, "{text}");
        }
    }

    #[test]
    fn rfc_5297_deterministic_vector() {
        // RFC 5297 A.1 (AES-SIV-CMAC-256, one header): checks the cipher itself.
        let key: Vec<u8> = (0..32)
            .map(|i| {
                u8::from_str_radix(
                    &"fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"[2 * i..2 * i + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        let unhex = |s: &str| {
            (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect::<Vec<u8>>()
        };
        let ad = unhex("101112131415161718191a1b1c1d1e1f2021222324252627");
        let plain = unhex("112233445566778899aabbccddee");
        let mut cipher = aes_siv::siv::Aes128Siv::new_from_slice(&key).unwrap();
        let out = cipher.encrypt([&ad], &plain).unwrap();
        assert_eq!(hex(&out), "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c");
    }
}
