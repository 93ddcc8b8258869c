#!/usr/bin/env python3
"""Seeded completions under several sampling settings (greedy, Qwen's defaults, penalties,
logprobs, no top-k), sent concurrently so they share engine steps. Prints {"choices": [...]}
so two servers (e.g. `qwrun serve` with and without --no-device-sampling) can be compared:
the tokens must be identical. Standard library only."""
import argparse, json, threading, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--url", default="http://127.0.0.1:8000/v1/completions")
ap.add_argument("--max-tokens", type=int, default=48)
args = ap.parse_args()
settings = [
    {"temperature": 0},
    {"temperature": 0, "logprobs": 3, "repetition_penalty": 1.3},
    {"temperature": 0.7, "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.05},
    {"temperature": 1.0, "top_k": 5, "presence_penalty": 0.8, "frequency_penalty": 0.4, "logprobs": 5},
    {"temperature": 0.9, "top_k": 0, "top_p": 0.95},
]
out = [None] * len(settings)


def run(i):
    body = dict(settings[i], prompt="Tell me about the ports of the North Sea", n=2, seed=40 + i,
                max_tokens=args.max_tokens, ignore_eos=True)
    req = urllib.request.Request(args.url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        out[i] = [{"text": c["text"], "logprobs": c.get("logprobs")} for c in json.loads(r.read())["choices"]]


ts = [threading.Thread(target=run, args=(i,)) for i in range(len(settings))]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps({"choices": out}))
