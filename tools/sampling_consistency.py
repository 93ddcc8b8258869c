#!/usr/bin/env python3
"""Seeded completions under several sampling settings (greedy, Qwen's defaults, penalties,
logprobs, no top-k). Prints {"choices": [...]} so two servers (e.g. `qwrun serve` with and
without --no-device-sampling) can be compared: the tokens must be identical. Requests go one
at a time by default: concurrent ones batch differently from run to run, and a different
batch gives logits that differ in the last bits, which flips samples from a random-weight
model's flat distribution. --concurrent sends them together (they share engine steps).
Standard library only."""
import argparse, json, threading, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--url", default="http://127.0.0.1:8000/v1/completions")
ap.add_argument("--max-tokens", type=int, default=48)
ap.add_argument("--concurrent", action="store_true")
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


if args.concurrent:
    ts = [threading.Thread(target=run, args=(i,)) for i in range(len(settings))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
else:
    for i in range(len(settings)):
        run(i)
print(json.dumps({"choices": out}))
