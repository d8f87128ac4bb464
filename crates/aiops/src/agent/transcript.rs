//! The transcript of one investigation, bounded: each text in an entry is
//! cut at [`MAX_ENTRY_CHARS`], and past [`MAX_TRANSCRIPT_BYTES`] entries are
//! left out and counted in a closing note.

use serde_json::{json, Value};

/// Longest text kept in one transcript entry, in characters.
pub const MAX_ENTRY_CHARS: usize = 16 * 1024;
/// Largest transcript kept, in bytes of JSON.
pub const MAX_TRANSCRIPT_BYTES: usize = 512 * 1024;

#[derive(Debug, Default, Clone)]
pub struct Transcript {
    entries: Vec<Value>,
    bytes: usize,
    left_out: usize,
}

impl Transcript {
    pub fn push(&mut self, mut entry: Value) {
        cut_strings(&mut entry);
        let size = entry.to_string().len();
        if self.left_out > 0 || self.bytes + size > MAX_TRANSCRIPT_BYTES {
            self.left_out += 1;
            return;
        }
        self.bytes += size;
        self.entries.push(entry);
    }

    pub fn into_entries(mut self) -> Vec<Value> {
        if self.left_out > 0 {
            self.entries.push(json!({
                "role": "note",
                "content": format!("transcript cut at {MAX_TRANSCRIPT_BYTES} bytes: {} more entries left out", self.left_out),
            }));
        }
        self.entries
    }
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

fn cut_strings(v: &mut Value) {
    match v {
        Value::String(s) if s.len() > MAX_ENTRY_CHARS => *s = cut(s, MAX_ENTRY_CHARS),
        Value::Array(a) => a.iter_mut().for_each(cut_strings),
        Value::Object(o) => o.values_mut().for_each(cut_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_and_the_whole_is_bounded() {
        let mut t = Transcript::default();
        t.push(json!({"role": "tool", "content": "é".repeat(MAX_ENTRY_CHARS + 10)}));
        let n = 2 * MAX_TRANSCRIPT_BYTES / MAX_ENTRY_CHARS;
        for _ in 0..n {
            t.push(json!({"role": "tool", "content": "x".repeat(MAX_ENTRY_CHARS)}));
        }
        let entries = t.into_entries();
        let first = entries[0]["content"].as_str().unwrap();
        assert_eq!(first.chars().count(), MAX_ENTRY_CHARS + 1);
        assert!(first.ends_with('…'));
        let total: usize = entries.iter().map(|e| e.to_string().len()).sum();
        assert!(total <= MAX_TRANSCRIPT_BYTES + 200, "{total}");
        let note = entries.last().unwrap()["content"].as_str().unwrap();
        assert!(note.contains("more entries left out"), "{note}");
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdef", 3), "abc…");
    }
}
