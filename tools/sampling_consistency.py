#!/usr/bin/env python3
"""Seeded completions under several sampling settings (greedy, Qwen's defaults, penalties,
logprobs, no top-k). Prints {"choices": [...]} so two servers (e.g. `qwrun serve` with and
without --no-device-sampling) can be compared: the tokens must be identical. Requests go one
at a time by default: concurrent ones batch differently from run to run, and a different
batch gives logits that differ in the last bits, which flips samples from a random-weight
model's flat distribution. --concurrent sends them together (they share engine steps).
`--compare A.json B.json` prints how many completions of two such outputs are identical (exit
1 unless all are). Standard library only."""
import argparse, json, threading, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--url", default="http://127.0.0.1:8000/v1/completions")
ap.add_argument("--max-tokens", type=int, default=48)
ap.add_argument("--concurrent", action="store_true")
ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
args = ap.parse_args()
if args.compare:
    a, b = (json.load(open(f))["choices"] for f in args.compare)
    pairs = [(x, y) for xs, ys in zip(a, b) for x, y in zip(xs, ys)]
    same = sum(x["text"] == y["text"] for x, y in pairs)
    lp = lambda c: (c["logprobs"] or {}).get("token_logprobs") or []
    dlp = max([abs(p - q) for x, y in pairs for p, q in zip(lp(x), lp(y))] or [0])
    print(f"{same}/{len(pairs)} completions identical, max |dlogprob| {dlp:.2e}")
    raise SystemExit(0 if same == len(pairs) else 1)
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
