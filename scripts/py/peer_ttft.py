"""Measures mean TTFT against an OpenAI-compatible server with the openai
Python SDK: C concurrent streams (closed loop), each sending the same chat
request N times in all. TTFT is the time from just before the request is
handed to the HTTP client (an httpx request hook, so the SDK's own request
building is not counted, as fleetbench counts from its send) to the first
chunk carrying content. Prints one JSON object: {"client": "openai-sdk", "mean_ttft_ms": ...,
"median_ttft_ms": ..., "requests": ..., "ttfts_ms": [each request's TTFT, in the order they ended]}.

    python3 peer_ttft.py --url http://127.0.0.1:8000/v1 --model m --prompt-file p.txt \
        --max-tokens 64 --concurrency 8 --requests 32
"""
import argparse
import asyncio
import json
import statistics
import time

import openai

# The SDK's own HTTP client: newer openai releases build on the httpx2
# package, older ones on httpx.
try:
    import httpx2 as httpx
except ImportError:
    import httpx

SENT = {}


async def on_request(request):
    SENT[request.headers["x-peer-request"]] = time.perf_counter()


async def one(client, args, prompt, n):
    key = str(n)
    first = None
    stream = await client.chat.completions.create(
        model=args.model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=args.max_tokens,
        stream=True,
        extra_headers={"x-peer-request": key},
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
    if first is None:
        raise RuntimeError("the stream carried no content")
    return (first - SENT.pop(key)) * 1000.0


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-file", required=True)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2, help="requests sent first and not counted")
    args = ap.parse_args()
    with open(args.prompt_file) as f:
        prompt = f.read()
    http = httpx.AsyncClient(event_hooks={"request": [on_request]}, timeout=60)
    client = openai.AsyncOpenAI(base_url=args.url, api_key="none", max_retries=0, http_client=http)
    for i in range(args.warmup):
        await one(client, args, prompt, -1 - i)
    left = args.requests
    ttfts = []

    async def agent():
        nonlocal left
        while left > 0:
            left -= 1
            ttfts.append(await one(client, args, prompt, left))

    await asyncio.gather(*(agent() for _ in range(args.concurrency)))
    print(json.dumps({
        "client": "openai-sdk",
        "mean_ttft_ms": statistics.fmean(ttfts),
        "median_ttft_ms": statistics.median(ttfts),
        "requests": len(ttfts),
        "ttfts_ms": ttfts,
    }))


asyncio.run(main())
