//! Cryptography with the caller's own secrets, exactly as presidio-anonymizer does it (pure), so
//! a value Presidio encrypted decrypts here and the other way round:
//!
//! - **encrypt / decrypt**: AES-CBC (128/192/256-bit key: the key string's UTF-8 bytes, no
//!   derivation), PKCS#7 padding, a random 16-byte IV in front, URL-safe base64 *with* `=`
//!   padding — Presidio's `AESCipher`;
//! - **salted hash**: lowercase hex of SHA-256 or SHA-512 over the value's UTF-8 bytes followed
//!   by the salt's (plain concatenation, not HMAC) — Presidio's `Hash` with a `salt`.
//!
//! CBC is a few lines over the `aes` block cipher rather than another crate; the tests pin it to
//! NIST SP 800-38A and to a vector produced by Presidio itself.

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256, Block};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use sha2::{Digest, Sha256, Sha512};

use super::hex;

/// AES with one of the three key sizes Presidio accepts.
enum Aes {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl Aes {
    /// `None` unless the key is 16, 24 or 32 bytes.
    fn new(key: &[u8]) -> Option<Aes> {
        match key.len() {
            16 => Aes128::new_from_slice(key).ok().map(Aes::A128),
            24 => Aes192::new_from_slice(key).ok().map(Aes::A192),
            32 => Aes256::new_from_slice(key).ok().map(Aes::A256),
            _ => None,
        }
    }

    fn encrypt(&self, block: &mut Block) {
        match self {
            Aes::A128(c) => c.encrypt_block(block),
            Aes::A192(c) => c.encrypt_block(block),
            Aes::A256(c) => c.encrypt_block(block),
        }
    }

    fn decrypt(&self, block: &mut Block) {
        match self {
            Aes::A128(c) => c.decrypt_block(block),
            Aes::A192(c) => c.decrypt_block(block),
            Aes::A256(c) => c.decrypt_block(block),
        }
    }
}

/// Whether Presidio takes this key (its UTF-8 bytes are 128, 192 or 256 bits).
pub fn valid_key(key: &[u8]) -> bool {
    matches!(key.len(), 16 | 24 | 32)
}

fn cbc_encrypt(key: &[u8], iv: [u8; 16], plain: &[u8]) -> Option<Vec<u8>> {
    let cipher = Aes::new(key)?;
    let pad = 16 - plain.len() % 16;
    let mut data = plain.to_vec();
    data.extend(std::iter::repeat_n(pad as u8, pad));
    let mut out = iv.to_vec();
    let mut prev = iv;
    for chunk in data.chunks(16) {
        let mut block = Block::default();
        for (b, (p, c)) in block.iter_mut().zip(prev.iter().zip(chunk)) {
            *b = p ^ c;
        }
        cipher.encrypt(&mut block);
        prev.copy_from_slice(&block);
        out.extend_from_slice(&block);
    }
    Some(out)
}

fn cbc_decrypt(key: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let cipher = Aes::new(key)?;
    if sealed.len() < 32 || !sealed.len().is_multiple_of(16) {
        return None;
    }
    let (iv, body) = sealed.split_at(16);
    let mut prev: &[u8] = iv;
    let mut out = Vec::with_capacity(body.len());
    for chunk in body.chunks(16) {
        let mut block = Block::default();
        block.copy_from_slice(chunk);
        cipher.decrypt(&mut block);
        out.extend(block.iter().zip(prev).map(|(b, p)| b ^ p));
        prev = chunk;
    }
    let pad = *out.last()? as usize;
    let padding_ok = (1..=16).contains(&pad) && out[out.len() - pad..].iter().all(|&b| b as usize == pad);
    padding_ok.then(|| {
        out.truncate(out.len() - pad);
        out
    })
}

/// Presidio's `encrypt`: `urlsafe_b64(iv ‖ AES-CBC(value))` under `key` (16/24/32 bytes).
pub fn encrypt(key: &[u8], value: &str) -> Option<String> {
    encrypt_with_iv(key, rand::random(), value)
}

fn encrypt_with_iv(key: &[u8], iv: [u8; 16], value: &str) -> Option<String> {
    cbc_encrypt(key, iv, value.as_bytes()).map(|sealed| URL_SAFE.encode(sealed))
}

/// Presidio's `decrypt`; `None` when the text is not base64 (with padding), not a whole number
/// of blocks, does not unpad under this key, or is not UTF-8 — where Presidio answers 500.
pub fn decrypt(key: &[u8], text: &str) -> Option<String> {
    let sealed = URL_SAFE.decode(text).ok()?;
    String::from_utf8(cbc_decrypt(key, &sealed)?).ok()
}

/// Presidio's salted `hash`: hex of SHA-256 (or SHA-512) over `value ‖ salt`.
pub fn salted_hash(value: &str, salt: &[u8], sha512: bool) -> String {
    let input = [value.as_bytes(), salt].concat();
    if sha512 { hex(&Sha512::digest(&input)) } else { hex(&Sha256::digest(&input)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn cbc_matches_nist_sp_800_38a() {
        // F.2.1 (AES-128), F.2.3 (AES-192), F.2.5 (AES-256): first block, IV 000102…0f.
        let iv: [u8; 16] = unhex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let plain = unhex("6bc1bee22e409f96e93d7e117393172a");
        let cases = [
            ("2b7e151628aed2a6abf7158809cf4f3c", "7649abac8119b246cee98e9b12e9197d"),
            ("8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b", "4f021db243bc633d7178183a9fa071e8"),
            ("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", "f58c4c04d6e5f1ba779eabfb5f7bfbd6"),
        ];
        for (key, first) in cases {
            let out = cbc_encrypt(&unhex(key), iv, &plain).unwrap();
            assert_eq!(hex(&out[16..32]), first, "key {key}");
            assert_eq!(cbc_decrypt(&unhex(key), &out).unwrap(), plain);
        }
    }

    #[test]
    fn presidio_vectors() {
        // Produced by presidio-anonymizer 2.2.366 (AESCipher with a fixed IV 000102…0f).
        let key = b"WmZq4t7w!z%C&F)J";
        let iv: [u8; 16] = unhex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let vector = "AAECAwQFBgcICQoLDA0OD0IdhY0l594Ohh0EdSP4CSo=";
        assert_eq!(encrypt_with_iv(key, iv, "John Smith").unwrap(), vector);
        assert_eq!(decrypt(key, vector).unwrap(), "John Smith");
        // hashlib over value ‖ salt, as Presidio's Hash operator computes it.
        let salt = b"0123456789abcdef";
        let hashes = [
            ("John Smith", &salt[..], false, "faf7794197a93da914969d7fb7b16ef5a19e4159e4789e551601727e25e28f1a"),
            (
                "John Smith",
                &salt[..],
                true,
                "04cfd7e500e317d1bc9aaa3c9c2d618763f50e784414b30c4580aeaa9c70d87720cdb2df945a5837bf5555c92fd371cf02a4c6fcbb8ca312f97866a905654599",
            ),
            ("a", &salt[..], false, "2d815736d94a80652cf0ed73d261819533e83c96f5b0f6c274360efa72ae0db9"),
            (
                "Zoë",
                "ünïcødé-salt-1234".as_bytes(),
                false,
                "267c2a91bd0b8f86ab8bcc512061424df829e4c4042aa64e7960704c870c8da0",
            ),
        ];
        for (value, salt, sha512, want) in hashes {
            assert_eq!(salted_hash(value, salt, sha512), want, "{value}");
        }
    }

    #[test]
    fn round_trips_every_key_size_and_refuses_what_presidio_cannot_open() {
        let keys: [&[u8]; 3] = [b"0123456789abcdef", b"0123456789abcdef01234567", "ÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄÄ".as_bytes()];
        for key in keys {
            for value in ["", "x", "exactly sixteen!", "ünïcödé ✓ and a longer value than one block"] {
                let sealed = encrypt(key, value).unwrap();
                let raw = URL_SAFE.decode(&sealed).unwrap();
                assert_eq!(raw.len(), 16 + 16 * (value.len() / 16 + 1), "{value}");
                assert_eq!(decrypt(key, &sealed).unwrap(), value);
                assert_ne!(encrypt(key, value).unwrap(), sealed, "a fresh IV each time");
            }
        }
        let sealed = encrypt(b"0123456789abcdef", "John Smith").unwrap();
        let cases: &[(&[u8], &str)] = &[
            (b"fedcba9876543210", &sealed), // another key: bad padding (or garbage)
            (b"0123456789abcdef", sealed.trim_end_matches('=')), // Python's decoder needs the padding
            (b"0123456789abcdef", "not base64!"),
            (b"0123456789abcdef", "AAECAwQFBgcICQoLDA0ODw=="), // an IV and no block
            (b"short", &sealed),
        ];
        for (key, text) in cases {
            assert!(decrypt(key, text).is_none_or(|v| v != "John Smith"), "{text}");
        }
        assert!(decrypt(b"fedcba9876543210", &sealed).is_none_or(|v| v != "John Smith"));
        assert!(encrypt(b"short", "x").is_none());
        assert!(valid_key(&[0; 24]) && !valid_key(&[0; 64]) && !valid_key(b""));
    }
}
