"""Starts llama.cpp's server (xllamacpp) on loopback with a tiny GGUF model."""
import argparse
import os
import signal
import sys
import threading

import xllamacpp

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--port", type=int, default=8080)
ap.add_argument("--parallel", type=int, default=4)
ap.add_argument("--ctx", type=int, default=8192)
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()

p = xllamacpp.CommonParams()
p.model.path = a.model
p.n_ctx = a.ctx
p.n_parallel = a.parallel
p.cpuparams.n_threads = a.threads
p.cpuparams_batch.n_threads = a.threads
p.hostnames = ["127.0.0.1"]
p.port = a.port
p.endpoint_metrics = True
p.model_alias = ["smollm2-135m"]
# Jinja chat templates, with SmolLM2's own template extended for tools
# (its original has none), so that requests with `tools` get tool calls back:
# llama.cpp parses the Hermes-style <tool_call> blocks into `tool_calls`.
p.use_jinja = True
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "smollm2_tools.jinja")) as f:
    p.chat_template = f.read()
server = xllamacpp.Server(p)
print(f"ready on http://127.0.0.1:{a.port}/v1", flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
threading.Event().wait()
