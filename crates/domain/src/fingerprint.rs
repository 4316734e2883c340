//! The dedup key of an event when the sender gives none.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::vocabulary::Source;

/// A stable key from source, title and the labels sorted by key (the map keeps them
/// sorted): the same problem reported twice gets the same fingerprint. 128 bits of
/// SHA-256, hex encoded. Fields are separated by bytes that cannot occur in UTF-8 text,
/// so `("ab","c")` and `("a","bc")` never collide.
pub fn derive_fingerprint(source: Source, title: &str, labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(source.as_str().as_bytes());
    hasher.update([0xff]);
    hasher.update(title.as_bytes());
    for (key, value) in labels {
        hasher.update([0xfe]);
        hasher.update(key.as_bytes());
        hasher.update([0xfd]);
        hasher.update(value.as_bytes());
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

/// A fingerprint for a sender's key that cannot be used as it is (too long, or in the
/// reserved `manual:` space): 128 bits of its SHA-256, hex encoded.
pub fn derive_fingerprint_of_text(text: &str) -> String {
    hex::encode(fingerprint_key(text))
}

/// A fixed-size key for any fingerprint, given or derived (128 bits of SHA-256): stores
/// index it instead of the text, so the dedup index stays small whatever senders write.
pub fn fingerprint_key(fingerprint: &str) -> [u8; 16] {
    let digest = Sha256::digest(fingerprint.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn same_problem_same_fingerprint_whatever_the_label_order() {
        let a = derive_fingerprint(Source::Sentinel, "drift", &labels(&[("model", "m"), ("env", "prod")]));
        let b = derive_fingerprint(Source::Sentinel, "drift", &labels(&[("env", "prod"), ("model", "m")]));
        assert_eq!(a, b);
    }

    #[test]
    fn any_difference_changes_the_fingerprint() {
        let base = derive_fingerprint(Source::Sentinel, "drift", &labels(&[("model", "m")]));
        assert_ne!(
            base,
            derive_fingerprint(Source::Shield, "drift", &labels(&[("model", "m")]))
        );
        assert_ne!(
            base,
            derive_fingerprint(Source::Sentinel, "drift!", &labels(&[("model", "m")]))
        );
        assert_ne!(
            base,
            derive_fingerprint(Source::Sentinel, "drift", &labels(&[("model", "n")]))
        );
        let ab_c = derive_fingerprint(Source::Api, "t", &labels(&[("ab", "c")]));
        let a_bc = derive_fingerprint(Source::Api, "t", &labels(&[("a", "bc")]));
        assert_ne!(ab_c, a_bc);
    }
}
