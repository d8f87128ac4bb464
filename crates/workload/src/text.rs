//! Filler text of a given size: common English words that most BPE
//! tokenizers encode as one token each (with their leading space), so N
//! words are about N tokens. Text is a pure function of a seed, and the text
//! of N words is a prefix of the text of M > N words from the same seed, so
//! a growing history keeps a byte-identical prefix.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(crate) const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he",
    "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were", "their",
    "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would", "who", "so", "no",
    "time", "out", "up", "into", "some", "could", "them", "than", "other", "its", "only", "new", "two", "may", "first",
    "then", "do", "any", "like", "my", "now", "over", "such", "our", "man", "me", "even", "most", "made", "after",
    "also", "did", "many", "before", "must", "through", "back", "years", "where", "much", "your", "way", "well",
    "down", "should", "because", "each", "just", "those", "people", "how", "too", "little", "state", "good", "very",
    "make", "world", "still", "own", "see", "men", "work", "long", "get", "here", "between", "both", "life", "being",
    "under", "never", "day", "same", "another", "know", "while", "last", "might", "us", "great", "old", "year", "off",
    "come", "since", "against", "go", "came", "right", "used", "take", "three",
];

/// Mixes a seed with a stream tag into an independent seed.
pub fn mix(seed: u64, tag: u64) -> u64 {
    let mut z = seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a string (FNV-1a), for seeding by name.
pub fn hash_str(s: &str) -> u64 {
    hash_bytes(s.as_bytes())
}

/// A stable 64-bit hash of bytes (FNV-1a), as [`hash_str`] hashes a string's.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

/// `words` words drawn from the list, seeded; starts with a space-free word.
pub fn words(seed: u64, words: u32) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut text = String::with_capacity(words as usize * 6);
    for i in 0..words {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_text_extends_shorter_text() {
        let a = words(7, 40);
        let b = words(7, 90);
        assert!(b.starts_with(&a));
        assert_eq!(a.split(' ').count(), 40);
        assert_ne!(words(8, 40), a);
        assert_ne!(mix(1, 2), mix(1, 3));
        assert_eq!(hash_str("g1"), hash_str("g1"));
        assert_ne!(hash_str("g1"), hash_str("g2"));
    }
}
