#!/usr/bin/env python3
"""The transformers peer of `qwrun bench`, on the same checkpoint and GPU, same figures:
TTFT at 128/2048-token prompts, decode ms/step and tok/s at batch 1/8/32 (128-token
prompts, greedy generate), peak GPU memory. Modes: eager (dynamic cache) and, with
--compile, static cache + torch.compile(mode="reduce-overhead") at batch 1 (bounded by
--compile-budget-s). With --ours BENCH.json, prints our figures beside them.

  bench_transformers_peer.py CKPT [--dtype fp16] [--new-tokens 128] [--compile] [--ours F] [-o OUT]
"""
import argparse, json, signal, statistics, sys, time
import torch
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("ckpt")
ap.add_argument("--dtype", default="fp16")
ap.add_argument("--new-tokens", type=int, default=128)
ap.add_argument("--batches", default="1,8,32")
ap.add_argument("--compile", action="store_true")
ap.add_argument("--compile-budget-s", type=int, default=240)
ap.add_argument("--ours")
ap.add_argument("-o", "--out")
a = ap.parse_args()
dt = torch.float16 if a.dtype == "fp16" else torch.bfloat16
gen = torch.Generator().manual_seed(1234)
t0 = time.time()
model = AutoModelForCausalLM.from_pretrained(a.ckpt, dtype=dt, device_map="cuda").eval()
torch.cuda.synchronize()
res = {"peer": "transformers", "load_s": time.time() - t0, "device": torch.cuda.get_device_name(),
       "attn_implementation": model.config._attn_implementation, "torch": torch.__version__}
V = model.config.vocab_size


def rand_ids(b, n):
    return torch.randint(0, min(V, 150000), (b, n), generator=gen).cuda()


def timed(f, reps=3):
    f()  # warm-up
    ts = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        f()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def generate(ids, n, **kw):
    return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                          do_sample=False, pad_token_id=0, **kw)


def decode_step_ms(b, n, reps=2, **kw):
    ids = rand_ids(b, 128)
    t1 = timed(lambda: generate(ids, 1, **kw), reps)
    tn = timed(lambda: generate(ids, n, **kw), reps)
    return (tn - t1) / (n - 1) * 1e3


with torch.no_grad():
    eager = {"ttft_ms": {}, "decode_step_ms": {}, "decode_tok_s": {}}
    for n in (128, 2048):
        ids = rand_ids(1, n)
        eager["ttft_ms"][str(n)] = timed(lambda: model(ids, use_cache=True)) * 1e3
    for b in [int(x) for x in a.batches.split(",")]:
        ms = decode_step_ms(b, a.new_tokens)
        eager["decode_step_ms"][str(b)] = ms
        eager["decode_tok_s"][str(b)] = b / ms * 1e3
        print(f"eager b{b}: {ms:.2f} ms/step", file=sys.stderr, flush=True)
    eager["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    res["eager"] = eager
    if a.compile:
        comp = {"decode_step_ms": {}, "decode_tok_s": {}}

        def on_alarm(*_):
            raise TimeoutError("compile budget exceeded")

        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(a.compile_budget_s)
        try:
            tc = time.time()
            model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
            ids = rand_ids(1, 128)
            generate(ids, 4, cache_implementation="static")  # compiles
            comp["compile_s"] = time.time() - tc
            ms = decode_step_ms(1, a.new_tokens, cache_implementation="static")
            comp["decode_step_ms"]["1"] = ms
            comp["decode_tok_s"]["1"] = 1e3 / ms
            print(f"static+compile b1: {ms:.2f} ms/step", file=sys.stderr, flush=True)
        except Exception as e:  # noqa: BLE001 - report, keep the eager figures
            comp["error"] = f"{type(e).__name__}: {e}"[:300]
        finally:
            signal.alarm(0)
        res["static_compile"] = comp

best = dict(res["eager"]["decode_tok_s"])
for k, v in res.get("static_compile", {}).get("decode_tok_s", {}).items():
    best[k] = max(best.get(k, 0), v)
res["best_decode_tok_s"] = best
if a.ours:
    ours = json.load(open(a.ours))
    side = {}
    for k, v in ours.get("decode_tok_s", {}).items():
        if k in best:
            side[f"decode_b{k}_tok_s"] = {"qwrun": v, "transformers_best": best[k], "speedup": v / best[k]}
    for k, v in ours.get("ttft_ms", {}).items():
        if k in res["eager"]["ttft_ms"]:
            side[f"ttft_{k}_ms"] = {"qwrun": v, "transformers": res["eager"]["ttft_ms"][k],
                                   "speedup": res["eager"]["ttft_ms"][k] / v}
    res["side_by_side"] = side
    for k, v in side.items():
        print(f"{k:22s} qwrun {v['qwrun']:10.2f}   transformers {v.get('transformers_best', v.get('transformers')):10.2f}"
              f"   x{v['speedup']:.2f}", file=sys.stderr)
s = json.dumps(res)
print(s)
if a.out:
    open(a.out, "w").write(json.dumps(res, indent=2) + "\n")
