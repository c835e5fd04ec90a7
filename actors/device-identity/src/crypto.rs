//! The master key and what it protects. Tenant id keys are stored sealed with AES-256-GCM under
//! the master key (`aesgcm1:` + base64 of nonce ‖ ciphertext ‖ tag, the tenant and period bound
//! as associated data so a sealed key cannot be moved to another row); rows written before
//! encryption (64 hex characters) stay readable and are resealed at start. Two HMAC keys derived
//! from the master key hash what must be found again but never stored raw: subject ids (for
//! GDPR erasure) and shared identifier values (for link limits), per tenant.
//!
//! Where the master key comes from: `device_identity.master_key` when set; otherwise, on SQLite
//! only, a node-local key file `<data_dir>/device-identity.key` (created 0600, 64 hex
//! characters); otherwise (a shared database without a configured key) none, and the service
//! refuses key operations, since node-local keys could not read each other's rows.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a sealed value (format version 1).
pub const SEALED: &str = "aesgcm1:";
/// The key file used by embedded (SQLite) nodes without a configured master key.
pub const KEY_FILE: &str = "device-identity.key";

/// 32 bytes that never print themselves.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()).collect()
}

pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl MasterKey {
    /// 64 hex characters or standard base64 of exactly 32 bytes. Errors never echo the input.
    pub fn parse(text: &str) -> Result<MasterKey, String> {
        let text = text.trim();
        let bytes = decode_hex(text)
            .filter(|b| b.len() == 32)
            .or_else(|| STANDARD.decode(text).ok())
            .ok_or_else(|| "the master key must be 64 hex characters or base64".to_owned())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| "the master key must be exactly 32 bytes".to_owned())?;
        Ok(MasterKey(bytes))
    }

    /// Reads the key file at `path`, creating it (mode 0600, fresh random key) when missing.
    pub fn load_or_create(path: &Path) -> Result<MasterKey, String> {
        let shown = path.display();
        match std::fs::read_to_string(path) {
            Ok(text) => MasterKey::parse(&text).map_err(|e| format!("{shown}: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                let key: [u8; 32] = rand::random();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(|e| format!("cannot create {shown}: {e}"))?;
                std::io::Write::write_all(&mut file, format!("{}\n", encode_hex(&key)).as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(|e| format!("cannot write {shown}: {e}"))?;
                Ok(MasterKey(key))
            }
            Err(e) => Err(format!("cannot read {shown}: {e}")),
        }
    }

    fn derive(&self, label: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("hmac takes any key length");
        mac.update(label.as_bytes());
        let derived = mac.finalize().into_bytes();
        <Hmac<Sha256> as KeyInit>::new_from_slice(&derived).expect("hmac takes any key length")
    }

    fn keyed_hash(&self, label: &str, parts: &[&str]) -> String {
        let mut mac = self.derive(label);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        encode_hex(&mac.finalize().into_bytes())
    }

    /// The stored form of a subject id: unlinkable across tenants, stable across key rotations.
    pub fn subject_hash(&self, tenant: &str, subject: &str) -> String {
        self.keyed_hash("loom-device-subject-v1", &[tenant, subject])
    }

    /// The stored form of a shared identifier value (already normalized).
    pub fn shared_hash(&self, tenant: &str, kind: &str, value: &str) -> String {
        self.keyed_hash("loom-device-shared-v1", &[tenant, kind, value])
    }

    fn aad(tenant: &str, period: i32) -> Vec<u8> {
        format!("loom-device-key\0{tenant}\0{period}").into_bytes()
    }

    /// Seals a tenant key of `period` for storage.
    pub fn seal_key(&self, tenant: &str, period: i32, key: &[u8]) -> String {
        let cipher = Aes256Gcm::new_from_slice(&self.0).expect("32-byte key");
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let aad = Self::aad(tenant, period);
        let sealed =
            cipher.encrypt(&nonce, Payload { msg: key, aad: &aad }).expect("AES-GCM encrypts any short message");
        let mut out = nonce_bytes.to_vec();
        out.extend(sealed);
        format!("{SEALED}{}", STANDARD.encode(out))
    }

    /// The tenant key stored as `stored` (sealed, or a plaintext row from before encryption).
    pub fn open_key(&self, tenant: &str, period: i32, stored: &str) -> Result<Vec<u8>, Unreadable> {
        let Some(body) = stored.strip_prefix(SEALED) else {
            return decode_hex(stored).filter(|k| !k.is_empty()).ok_or(Unreadable);
        };
        let bytes = STANDARD.decode(body).map_err(|_| Unreadable)?;
        if bytes.len() < 12 + 16 {
            return Err(Unreadable);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| Unreadable)?;
        let cipher = Aes256Gcm::new_from_slice(&self.0).expect("32-byte key");
        let aad = Self::aad(tenant, period);
        cipher.decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: &aad }).map_err(|_| Unreadable)
    }
}

/// A stored key that this master key cannot open (another master key, or a damaged row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn master_keys_parse_from_hex_or_base64_and_never_print() {
        let b64 = STANDARD.encode((0u8..32).collect::<Vec<u8>>());
        let cases: &[(&str, bool)] = &[
            (HEX, true),
            (&b64, true),
            (&HEX[..62], false),
            ("zz", false),
            (&STANDARD.encode([1u8; 16]), false),
            ("", false),
        ];
        for (text, ok) in cases {
            let got = MasterKey::parse(text);
            assert_eq!(got.is_ok(), *ok, "{text}");
            if let Err(e) = got {
                assert!(text.is_empty() || !e.contains(text), "{e}");
            }
        }
        assert_eq!(MasterKey::parse(HEX).unwrap().0, MasterKey::parse(&b64).unwrap().0);
        assert_eq!(format!("{:?}", MasterKey::parse(HEX).unwrap()), "MasterKey(<redacted>)");
    }

    #[test]
    fn sealed_keys_open_only_with_the_same_master_tenant_and_period() {
        let master = MasterKey::parse(HEX).unwrap();
        let other = MasterKey([7; 32]);
        let key = [42u8; 32];
        let sealed = master.seal_key("acme", 3, &key);
        assert!(sealed.starts_with(SEALED));
        assert!(!sealed.contains(&encode_hex(&key)), "the key does not show through");
        assert_ne!(sealed, master.seal_key("acme", 3, &key), "fresh nonce per seal");
        // (master, tenant, period, stored, expected)
        let legacy = encode_hex(&key);
        let cases: Vec<(&MasterKey, &str, i32, &str, Result<Vec<u8>, Unreadable>)> = vec![
            (&master, "acme", 3, &sealed, Ok(key.to_vec())),
            (&other, "acme", 3, &sealed, Err(Unreadable)),
            (&master, "globex", 3, &sealed, Err(Unreadable)),
            (&master, "acme", 4, &sealed, Err(Unreadable)),
            (&master, "acme", 3, "aesgcm1:AAAA", Err(Unreadable)),
            (&master, "acme", 3, "aesgcm1:not base64!", Err(Unreadable)),
            // plaintext rows written before encryption stay readable
            (&master, "acme", 3, &legacy, Ok(key.to_vec())),
            (&master, "acme", 3, "", Err(Unreadable)),
        ];
        for (i, (m, tenant, period, stored, want)) in cases.into_iter().enumerate() {
            assert_eq!(m.open_key(tenant, period, stored), want, "case {i}");
        }
        let mut tampered = STANDARD.decode(&sealed[SEALED.len()..]).unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        let tampered = format!("{SEALED}{}", STANDARD.encode(tampered));
        assert_eq!(master.open_key("acme", 3, &tampered), Err(Unreadable));
    }

    #[test]
    fn subject_and_shared_hashes_are_keyed_per_tenant_and_unambiguous() {
        let master = MasterKey::parse(HEX).unwrap();
        let other = MasterKey([7; 32]);
        let h = master.subject_hash("acme", "user-1");
        assert_eq!(h, master.subject_hash("acme", "user-1"));
        assert_eq!(h.len(), 64);
        for different in [
            master.subject_hash("globex", "user-1"),
            master.subject_hash("acme", "user-2"),
            other.subject_hash("acme", "user-1"),
            master.shared_hash("acme", "user-1", ""),
            // length-prefixed parts: moving a boundary changes the hash
            master.subject_hash("acmeu", "ser-1"),
        ] {
            assert_ne!(h, different);
        }
        assert_ne!(master.shared_hash("acme", "ip", "192.0.2.1"), master.shared_hash("acme", "wifi", "192.0.2.1"));
    }

    #[test]
    fn the_key_file_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(KEY_FILE);
        let first = MasterKey::load_or_create(&path).unwrap();
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(first.0, again.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "garbage").unwrap();
        let err = MasterKey::load_or_create(&path).unwrap_err();
        assert!(err.contains("must be 64 hex characters"), "{err}");
    }
}
