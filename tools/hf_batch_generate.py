#!/usr/bin/env python3
"""The transformers peer for the serving load test: one batch of B random prompts of P tokens,
exactly M new tokens each (greedy, fp16, static shapes), timed after a warm-up. Prints JSON."""
import argparse, json, time

import torch
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--prompt-tokens", type=int, default=512)
ap.add_argument("--max-tokens", type=int, default=256)
args = ap.parse_args()
model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float16, device_map="cuda")
model.eval()
g = torch.Generator().manual_seed(0)
ids = torch.randint(1000, 150000, (args.batch, args.prompt_tokens), generator=g).cuda()
mask = torch.ones_like(ids)
kw = dict(do_sample=False, min_new_tokens=args.max_tokens, max_new_tokens=args.max_tokens, pad_token_id=0)
with torch.no_grad():
    model.generate(ids[:2], attention_mask=mask[:2], **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = model.generate(ids, attention_mask=mask, **kw)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
new = (out.shape[1] - args.prompt_tokens) * args.batch
print(json.dumps({"peer": "transformers generate (eager, fp16)", "batch": args.batch,
                  "prompt_tokens": args.prompt_tokens, "max_tokens": args.max_tokens,
                  "seconds": dt, "output_tok_s": new / dt,
                  "total_tok_s": (new + args.prompt_tokens * args.batch) / dt}))
