//! The prefix-cache key of a prompt `sim serve` receives as plain text, a
//! completion's (a chat is keyed by its messages, in `server.rs`).
//!
//! vLLM finds a prompt's start in its cache by content: it hashes the prompt
//! block by block, each hash chained to the one before, and reuses every
//! leading block an earlier request computed. The engine's cache
//! ([`crate::engine`]) holds named entries two deep (a group's shared
//! prefix, and a conversation's history inside it), so the index below
//! hashes a prompt's text in blocks the same way and names the entries a
//! prompt opens with:
//!
//! - a prompt whose leading blocks end exactly where an earlier prompt's
//!   did (the same prompt again, or an earlier prompt with more text after
//!   it, as a multi-turn client sends `context + " " + answer + " " +
//!   question`) reuses that prompt's conversation, up to the blocks they
//!   share; the answer comes back as text the client joined, which
//!   tokenizes apart from the tokens the server generated, so it is not
//!   kept ([`PrefixKey::drop_answer`]);
//! - a prompt that leaves an earlier prompt part way (a system prompt
//!   shared by several questions) opens a group at that point, and the
//!   earlier prompt is moved under the same group; the first prompt to
//!   leave another at a new point does not find the shared part (the group
//!   does not exist yet), every later one does;
//! - anything else opens a conversation of its own.
//!
//! Only whole blocks are hashed, as vLLM matches only full blocks.

use std::collections::HashMap;

use fleetbench_workload::text::{hash_bytes, mix};

use crate::engine::PrefixKey;

/// Bytes of text per hashed block: vLLM's 16-token blocks at about four
/// characters a token.
const BLOCK_BYTES: usize = 64;

/// The index forgets everything past this many blocks (64 MiB of text), so
/// a server that runs for days stays bounded; a forgotten prompt is found
/// again once it is seen again, under the same names.
const MAX_BLOCKS: usize = 1 << 20;

const CHAIN_SEED: u64 = 0x0B10_C4A1_2C0F_FEE5;
const GROUP_SALT: u64 = 0x6209_5A17;
const NAME_SALT: u64 = 0x7A3E_0C05;

/// Where an earlier prompt's whole blocks ended: the group and the
/// conversation a prompt that repeats or continues it opens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ending {
    group: Option<(u64, u32)>,
    name: u64,
}

/// Every block of every prompt seen, by chained hash.
#[derive(Debug, Default)]
pub(crate) struct PromptIndex {
    /// A block's chained hash -> the chained hash of the last block of the
    /// first prompt that held it.
    blocks: HashMap<u64, u64>,
    /// The chained hash of a prompt's last whole block -> its keys.
    ends: HashMap<u64, Ending>,
}

impl PromptIndex {
    /// The key of a prompt of `prompt_tokens` tokens, and the prompt is
    /// remembered for the prompts after it.
    pub(crate) fn key(&mut self, text: &str, prompt_tokens: u32) -> PrefixKey {
        let bytes = text.as_bytes();
        let chain: Vec<u64> = bytes
            .chunks_exact(BLOCK_BYTES)
            .scan(CHAIN_SEED, |h, block| {
                *h = mix(*h, hash_bytes(block));
                Some(*h)
            })
            .collect();
        let Some(&last) = chain.last() else {
            return PrefixKey::default();
        };
        if self.blocks.len() + chain.len() > MAX_BLOCKS {
            self.blocks.clear();
            self.ends.clear();
        }
        // Tokens in the first `n` blocks, in proportion to the text.
        let tokens_at = |n: usize| ((n * BLOCK_BYTES) as f64 / bytes.len() as f64 * f64::from(prompt_tokens)) as u32;
        // Chained hashes: if a block was seen, so was every block before it.
        let seen = chain.partition_point(|h| self.blocks.contains_key(h));
        let (ending, shared) = match seen.checked_sub(1).map(|j| chain[j]) {
            None => (Ending { group: None, name: mix(last, NAME_SALT) }, prompt_tokens),
            Some(h) => match self.ends.get(&h) {
                Some(&e) => (e, tokens_at(seen)),
                None => {
                    (Ending { group: Some(self.branch(h, tokens_at(seen))), name: mix(last, NAME_SALT) }, prompt_tokens)
                }
            },
        };
        for &h in &chain {
            self.blocks.entry(h).or_insert(last);
        }
        self.ends.insert(last, ending);
        PrefixKey { group: ending.group, conversation: Some((ending.name, shared)), drop_answer: true }
    }

    /// The group of a prompt that leaves an earlier one after block `h`
    /// (`tokens` tokens in): the earlier prompt's group where it has one
    /// that ends no later, else a new group at `h`, which the earlier prompt
    /// moves under (with a conversation of a new name, holding what follows).
    fn branch(&mut self, h: u64, tokens: u32) -> (u64, u32) {
        let owner = self.blocks.get(&h).copied();
        let ending = owner.and_then(|o| self.ends.get_mut(&o));
        match ending {
            Some(Ending { group: Some(g), .. }) if g.1 <= tokens => *g,
            Some(e) => {
                let g = (mix(h, GROUP_SALT), tokens);
                *e = Ending { group: Some(g), name: mix(e.name, g.0) };
                g
            }
            None => (mix(h, GROUP_SALT), tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(seed: u64, bytes: usize) -> String {
        (0..bytes).map(|i| char::from(b'a' + (mix(seed, i as u64) % 26) as u8)).collect()
    }

    #[test]
    fn a_prompt_again_finds_its_conversation() {
        let mut ix = PromptIndex::default();
        let p = text(1, 640);
        let first = ix.key(&p, 160);
        assert_eq!(first.group, None);
        let again = ix.key(&p, 160);
        assert_eq!(again.conversation.map(|c| c.0), first.conversation.map(|c| c.0));
        assert_eq!(again.conversation.map(|c| c.1), Some(160));
        assert!(again.drop_answer);
    }

    #[test]
    fn questions_after_one_system_prompt_share_a_group_and_the_first_moves_under_it() {
        let mut ix = PromptIndex::default();
        let system = text(2, 64 * 40);
        let ask = |q: u64| format!("{system}{}", text(100 + q, 64 * 10));
        let a = ix.key(&ask(1), 800);
        let b = ix.key(&ask(2), 800);
        let c = ix.key(&ask(3), 800);
        // The second opens the group at the end of the system prompt (40 of
        // 50 blocks: 640 of 800 tokens); the third finds it.
        assert_eq!(b.group.map(|g| g.1), Some(640));
        assert_eq!(c.group, b.group);
        assert_ne!(b.conversation.map(|k| k.0), c.conversation.map(|k| k.0));
        // The first prompt, sent again, now opens with the group, under a
        // conversation of a new name.
        let a2 = ix.key(&ask(1), 800);
        assert_eq!(a2.group, b.group);
        assert_ne!(a2.conversation.map(|k| k.0), a.conversation.map(|k| k.0));
    }

    #[test]
    fn a_turn_that_carries_the_last_prompt_continues_its_conversation_up_to_it() {
        let mut ix = PromptIndex::default();
        let turn1 = text(3, 64 * 20 + 10);
        let first = ix.key(&turn1, 330);
        let turn2 = format!("{turn1} an answer the client joined {}", text(4, 64 * 8));
        let second = ix.key(&turn2, 500);
        assert_eq!(second.conversation.map(|k| k.0), first.conversation.map(|k| k.0));
        // Found: the 20 whole blocks of the first turn, not the answer.
        let shared = second.conversation.map(|k| k.1).unwrap_or(0);
        assert_eq!(shared, (20.0 * 64.0 / turn2.len() as f64 * 500.0) as u32);
        assert!(second.drop_answer);
        // The third turn continues from the second's end, the same conversation.
        let turn3 = format!("{turn2} another answer {}", text(5, 64 * 8));
        let third = ix.key(&turn3, 700);
        assert_eq!(third.conversation.map(|k| k.0), first.conversation.map(|k| k.0));
    }

    #[test]
    fn a_prompt_shorter_than_a_block_is_not_cached() {
        let mut ix = PromptIndex::default();
        assert_eq!(ix.key("hello", 2), PrefixKey::default());
        assert_eq!(ix.key("hello", 2), PrefixKey::default());
    }
}
