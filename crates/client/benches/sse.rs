//! SSE decoder throughput on a realistic OpenAI chat stream.

use fleetbench_client::sse::{SseDecoder, SseError, SseEvent};

fn main() {
    divan::main();
}

fn stream(tokens: usize) -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..tokens {
        s.extend_from_slice(
            format!(
                "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" tok{i}\"}},\"finish_reason\":null}}]}}\n\n"
            )
            .as_bytes(),
        );
    }
    s.extend_from_slice(b"data: [DONE]\n\n");
    s
}

/// Decoding 1,000 chunks delivered in reads of the given size.
#[divan::bench(args = [64, 1024, 16384])]
fn decode_1000_events(bencher: divan::Bencher, read: usize) {
    let input = stream(1000);
    bencher.counter(divan::counter::ItemsCount::new(1000usize)).bench(|| {
        let mut d = SseDecoder::new(1 << 20);
        let mut bytes = 0;
        for c in input.chunks(read) {
            d.push(c, &mut |ev: &SseEvent| {
                bytes += ev.data.len();
                Ok::<_, SseError>(())
            })
            .unwrap();
        }
        bytes
    });
}

/// Decoding and parsing the JSON of each chunk, as the client does.
#[divan::bench]
fn decode_and_parse_1000_chunks(bencher: divan::Bencher) {
    let input = stream(1000);
    bencher.counter(divan::counter::ItemsCount::new(1000usize)).bench(|| {
        let mut d = SseDecoder::new(1 << 20);
        let mut tokens = 0;
        d.push(&input, &mut |ev: &SseEvent| {
            if let Some(c) = fleetbench_client::openai::parse_chunk(&ev.data).ok().flatten() {
                tokens += usize::from(c.has_token);
            }
            Ok::<_, SseError>(())
        })
        .unwrap();
        tokens
    });
}

/// Parsing one chunk, as servers send them.
#[divan::bench(args = [
    r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}"#,
    r#"{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"t1 "},"finish_reason":null}]}"#,
    r#"{"id":"5b1c","object":"chat.completion.chunk","created":1718000000,"model":"default","choices":[{"index":0,"delta":{"role":null,"content":" the","reasoning_content":null,"tool_calls":null},"logprobs":null,"finish_reason":null,"matched_stop":null}],"usage":null}"#,
])]
fn parse_one_chunk(bencher: divan::Bencher, chunk: &str) {
    bencher
        .bench(|| fleetbench_client::openai::parse_chunk(divan::black_box(chunk)).ok().flatten().map(|c| c.has_token));
}
