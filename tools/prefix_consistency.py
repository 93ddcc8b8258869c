#!/usr/bin/env python3
"""Greedy completions of prompts that share a long prefix, sent one at a time, twice: against
a server with prefix caching the first request computes the prefix, the rest reuse it. Prints
{"texts": [...]} (pass 1 then pass 2) so two servers (caching on / off) can be compared.
Standard library only."""
import argparse, json, random, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--url", default="http://127.0.0.1:8000/v1/completions")
ap.add_argument("--prefix-tokens", type=int, default=1536)
ap.add_argument("--suffix-tokens", type=int, default=100)
ap.add_argument("--requests", type=int, default=4)
ap.add_argument("--max-tokens", type=int, default=32)
args = ap.parse_args()
rng = random.Random(7)
prefix = [rng.randrange(1000, 150000) for _ in range(args.prefix_tokens)]
prompts = [prefix + [rng.randrange(1000, 150000) for _ in range(args.suffix_tokens)]
           for _ in range(args.requests)]
texts = []
for _ in range(2):
    for p in prompts:
        body = json.dumps({"prompt": p, "max_tokens": args.max_tokens, "temperature": 0,
                           "ignore_eos": True}).encode()
        req = urllib.request.Request(args.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            texts.append(json.loads(r.read())["choices"][0]["text"])
print(json.dumps({"texts": texts}))
