"""Measures mean TTFT against an OpenAI-compatible server with the openai
Python SDK: C concurrent streams (closed loop), each sending the same chat
request N times in all. The SDK sends each request and decides which chunk
is the first carrying content; the clock is read at the wire, as fleetbench
reads its own: it starts once the request's bytes are written (httpcore's
trace of the exchange) and stops at the arrival of the bytes that held that
chunk. What the SDK and its HTTP stack do before and after, in Python, is
left out: on a 2-core machine that was 1.0 to 1.5 ms before the write and
0.1 to 0.2 ms of parsing after, where fleetbench adds tens of microseconds.
Prints one JSON object: {"client": "openai-sdk", "mean_ttft_ms": ...,
"median_ttft_ms": ..., "requests": ..., "ttfts_ms": [each request's TTFT,
in the order they ended], "sdk_ttfts_ms": [the same requests timed from the
SDK's call to the parsed chunk]}.

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

# Per request (keyed by its x-peer-request header): when its bytes were
# written, and when the latest bytes of its response arrived.
SENT = {}
ARRIVED = {}


class TimedStream(httpx.AsyncByteStream):
    """A response body that notes when each piece of it arrives."""

    def __init__(self, inner, key):
        self.inner = inner
        self.key = key

    async def __aiter__(self):
        async for piece in self.inner:
            ARRIVED[self.key] = time.perf_counter()
            yield piece

    async def aclose(self):
        await self.inner.aclose()


class TimedTransport(httpx.AsyncBaseTransport):
    """The SDK's usual transport, with the clock read where bytes leave and arrive."""

    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request):
        key = request.headers["x-peer-request"]

        async def trace(event, _info):
            # httpcore reports each step of the exchange: the request is
            # sent once its body has been written to the socket.
            if event == "http11.send_request_body.complete":
                SENT[key] = time.perf_counter()

        request.extensions["trace"] = trace
        response = await self.inner.handle_async_request(request)
        if key not in SENT:
            raise RuntimeError("httpcore did not report the request sent (is this HTTP/1.1?)")
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=TimedStream(response.stream, key),
            extensions=response.extensions,
        )

    async def aclose(self):
        await self.inner.aclose()


async def one(client, args, prompt, n):
    """One request's TTFT in ms: at the wire, and from the SDK's call to its parsed chunk."""
    key = str(n)
    first = None
    called = time.perf_counter()
    stream = await client.chat.completions.create(
        model=args.model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=args.max_tokens,
        stream=True,
        extra_headers={"x-peer-request": key},
    )
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = (ARRIVED[key], time.perf_counter())
    if first is None:
        raise RuntimeError("the stream carried no content")
    sent = SENT.pop(key)
    ARRIVED.pop(key, None)
    return ((first[0] - sent) * 1000.0, (first[1] - called) * 1000.0)


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
    http = httpx.AsyncClient(transport=TimedTransport(), timeout=60)
    client = openai.AsyncOpenAI(base_url=args.url, api_key="none", max_retries=0, http_client=http)
    for i in range(args.warmup):
        await one(client, args, prompt, -1 - i)
    left = args.requests
    ttfts = []
    sdk = []

    async def agent():
        nonlocal left
        while left > 0:
            left -= 1
            wire, in_sdk = await one(client, args, prompt, left)
            ttfts.append(wire)
            sdk.append(in_sdk)

    await asyncio.gather(*(agent() for _ in range(args.concurrency)))
    print(json.dumps({
        "client": "openai-sdk",
        "mean_ttft_ms": statistics.fmean(ttfts),
        "median_ttft_ms": statistics.median(ttfts),
        "requests": len(ttfts),
        "ttfts_ms": ttfts,
        "sdk_ttfts_ms": sdk,
    }))


asyncio.run(main())
