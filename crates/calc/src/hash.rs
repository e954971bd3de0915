//! Short stable hashes for IP set and rule ids: SHA-224, base64url without
//! padding, truncated. Stable across releases because the ids name kernel
//! objects (nft sets, rule comments) that survive an agent restart.

use sha2::{Digest, Sha224};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The first `chars` characters of base64url(sha224(input)).
pub(crate) fn b64_hash(input: &[u8], chars: usize) -> String {
    let digest = Sha224::digest(input);
    let mut out = String::with_capacity(chars + 4);
    for chunk in digest.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
        }
    }
    out.truncate(chars);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_url_safe() {
        let h = b64_hash(b"abc", 38);
        assert_eq!(h.len(), 38);
        assert_eq!(h, b64_hash(b"abc", 38));
        assert_ne!(h, b64_hash(b"abd", 38));
        assert!(h
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(b64_hash(b"abc", 16), h[..16]);
    }
}
