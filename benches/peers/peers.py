#!/usr/bin/env python3
"""Helper for benches/peers/run.sh (standard library only, except `tokenizer`).

  peers.py measure OUT.json -- CMD...   run CMD, write its wall time, CPU (user+sys) and peak RSS
  peers.py tokenizer DIR                write a small word-level Hugging Face tokenizer to DIR
                                        (needs `tokenizers`/`transformers`: run with the venv's python)
  peers.py row CLIENT C REQUESTS TOKENS TTFT_MS MEASURE.json RESULT   print one Markdown row
  peers.py cpu-row CLIENT SERVER C REQUESTS TOKENS MEASURE.json   one row of the zero-delay table

RESULT is the client's own output file (fleetbench --json-out, GuideLLM's
benchmarks.json, AIPerf's profile_export_aiperf.json); the TTFT mean/median
and the ITL mean are found in it by name, in milliseconds.
"""
import json
import os
import resource
import subprocess
import sys
import time


def measure(out, cmd):
    t0 = time.monotonic()
    with open(out + ".log", "w") as log:
        p = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as f:
        json.dump({"rc": p.returncode, "wall_s": wall, "cpu_s": r.ru_utime + r.ru_stime,
                   "maxrss_mb": r.ru_maxrss / 1024}, f)
    return p.returncode


def tokenizer(d):
    # Words "w0".."w999" plus the server's and the peers' usual text: every
    # whitespace-separated word is one token, unknown words are [UNK].
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {"[UNK]": 0, "[PAD]": 1, "</s>": 2}
    for i in range(1000):
        vocab.setdefault(f"w{i}", len(vocab))
    words = ("the of and to a in is it that for on with as was he be at by this had not are but from or have an they "
             "which one you were her all she there would their we him been has when who will more no if out so said what "
             "up its about into than them can only other new some could time these two may then do first any my now such "
             "like our over man me even most made after also did many before must through back years where much your way "
             "well down should because each just those people how too little state good very make world still own see men "
             "work long get here between both life being under never day same another know while last might us great old "
             "year off come since against go came right used take three hello token").split()
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="</s>")
    fast.save_pretrained(d)


def walk(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + (str(k).lower(),))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (str(i),))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, float(node)


def find(data, names, stats, prefer=("successful",), avoid=("incomplete", "errored", "total", "std", "p9")):
    """The first number whose path names one of `names` and ends in one of `stats`,
    preferring paths that contain `prefer` and skipping ones that contain `avoid`."""
    hits = []
    for path, v in walk(data):
        joined = "/".join(path)
        if not any(n in joined for n in names) or path[-1] not in stats:
            continue
        if any(a in p for a in avoid for p in path[:-1]):
            continue
        score = sum(p in path for p in prefer)
        hits.append((-score, len(path), joined, v))
    if not hits:
        return None, None
    hits.sort(key=lambda h: (h[0], h[1]))
    return hits[0][3], hits[0][2]


def to_ms(value, path):
    if value is None:
        return None
    p = path.lower()
    if p.endswith("_s") or "_s/" in p or "seconds" in p:
        return value * 1000.0
    if "_us" in p or "micro" in p:
        return value / 1000.0
    if "_ns" in p or "nano" in p:
        return value / 1e6
    return value


def latencies(client, data):
    if client in ("fleetbench", "fleetbench-cold", "vllm"):  # flat keys: mean_ttft_ms, median_ttft_ms, mean_itl_ms
        return {"ttft_mean": data.get("mean_ttft_ms"), "ttft_median": data.get("median_ttft_ms"),
                "itl_mean": data.get("mean_itl_ms")}
    if client == "fleetbench":
        ttft = ("ttft",)
        itl = ("itl",)
    elif client == "guidellm":
        ttft = ("time_to_first_token_ms",)
        itl = ("inter_token_latency_ms",)
    else:  # aiperf, vllm
        ttft = ("time_to_first_token", "ttft")
        itl = ("inter_token_latency", "itl")
    mean = ("mean", "avg", "average")
    median = ("median", "p50", "median_ms", "mean_ms", "p50_ms")
    out = {}
    for key, names, stats in (("ttft_mean", ttft, mean + ("mean_ttft_ms",)), ("ttft_median", ttft, ("median", "p50")),
                              ("itl_mean", itl, mean)):
        v, path = find(data, names, stats)
        out[key] = to_ms(v, path or "")
    return out


def lateness(root, path):
    """Fetches (and so resets) the lean server's report of how late it wrote
    first tokens; "{}" from a server without one. Writes it to path ("-": nowhere)."""
    import urllib.request
    try:
        with urllib.request.urlopen(root + "/lateness", timeout=5) as r:
            data = r.read()
    except Exception:  # the scripted server has no report: the column shows "–"
        data = b"{}"
    if path != "-":
        with open(path, "wb") as f:
            f.write(data)


def row(client, c, requests, tokens, ttft_ref, measure_file, result, lateness_file):
    m = json.load(open(measure_file))
    try:
        late = json.load(open(lateness_file))
    except (OSError, ValueError):
        late = {}
    lat = {"ttft_mean": None, "ttft_median": None, "itl_mean": None}
    note = ""
    try:
        lat = latencies(client, json.load(open(result)))
    except (OSError, ValueError) as e:
        note = f" (no result file: {e.__class__.__name__})"
    streamed = requests * tokens
    if m["rc"] != 0:
        note = f" (exit {m['rc']}, see log)" + note

    def ms(v, added=False):
        if v is None:
            return "–"
        return f"{v - ttft_ref:+.2f}" if added else f"{v:.2f}"

    print(f"| {client}{note} | {c:,} ({requests:,}) | {m['cpu_s'] / streamed * 1e6:.2f} | "
          f"{streamed / m['wall_s']:,.0f} | {m['maxrss_mb']:.0f} | "
          f"{ms(lat['ttft_mean'])} / {ms(lat['ttft_median'])} | "
          f"{ms(lat['ttft_mean'], True)} / {ms(lat['ttft_median'], True)} | "
          f"{ms(late.get('mean_ms'))} / {ms(late.get('median_ms'))} | {ms(lat['itl_mean'])} |")


def cpu_row(client, server, c, requests, tokens, measure_file):
    m = json.load(open(measure_file))
    note = f" (exit {m['rc']}, see log)" if m["rc"] != 0 else ""
    streamed = requests * tokens
    print(f"| {client}{note} | {server} | {c:,} ({requests:,}) | {m['cpu_s'] / streamed * 1e6:.3f} | {m['cpu_s']:.2f} | "
          f"{m['wall_s']:.2f} | {streamed / m['wall_s']:,.0f} | {m['maxrss_mb']:.0f} |")


def main(argv):
    if len(argv) >= 3 and argv[0] == "measure" and argv[2] == "--":
        return measure(argv[1], argv[3:])
    if len(argv) == 2 and argv[0] == "tokenizer":
        return tokenizer(argv[1])
    if len(argv) == 9 and argv[0] == "row":
        return row(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), float(argv[5]), argv[6], argv[7], argv[8])
    if len(argv) == 3 and argv[0] == "lateness":
        return lateness(argv[1], argv[2])
    if len(argv) == 7 and argv[0] == "cpu-row":
        return cpu_row(argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5]), argv[6])
    if len(argv) == 3 and argv[0] == "latencies":  # debugging aid: what would be read from a file
        print(latencies(argv[1], json.load(open(argv[2]))))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) or 0)
