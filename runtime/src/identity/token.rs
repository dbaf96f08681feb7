//! Bearer tokens: generated at random, stored only as SHA-256 hashes.

use ring::rand::{SecureRandom, SystemRandom};

/// Every token starts with this, so a leaked one is easy to recognise and scan for.
pub const PREFIX: &str = "alk_";

/// A fresh random token: `alk_` followed by 64 hex digits (256 bits).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random number generator is available");
    format!("{PREFIX}{}", hex(&bytes))
}

/// The SHA-256 of a token: what a configuration stores instead of the token.
pub fn hash(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The hash as the 64 lowercase hex digits a configuration file holds.
pub fn hash_hex(token: &str) -> String {
    hex(&hash(token))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_round_trips() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 64);
        assert_eq!(parse_hex32(&hash_hex(&a)), Some(hash(&a)));
        assert_eq!(parse_hex32("zz"), None);
        assert_eq!(parse_hex32(&"g".repeat(64)), None);
    }
}
