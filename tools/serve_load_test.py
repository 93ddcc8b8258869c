#!/usr/bin/env python3
"""Closed-loop load on an OpenAI-compatible server: N concurrent clients each send
streaming /v1/completions requests (prompt of P random token ids, exactly M output tokens via
ignore_eos) until the duration ends. Reports throughput, TTFT and inter-token latency
percentiles and errors as one JSON object. Needs only the Python standard library + aiohttp."""
import argparse, asyncio, json, random, statistics, time

import aiohttp


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


async def client(session, url, args, rng, stats, deadline):
    while time.perf_counter() < deadline:
        prompt = [rng.randrange(1000, 150000) for _ in range(args.prompt_tokens)]
        body = {"prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0,
                "stream": True, "ignore_eos": True}
        t0 = time.perf_counter()
        last = None
        ntok = 0
        try:
            async with session.post(url, json=body) as r:
                if r.status != 200:
                    stats["errors"].append(r.status)
                    await r.read()
                    continue
                async for raw in r.content:
                    line = raw.decode().strip()
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        stats["errors"].append(chunk["error"].get("message"))
                        break
                    if not chunk.get("choices") or not chunk["choices"][0].get("text"):
                        continue
                    now = time.perf_counter()
                    if last is None:
                        stats["ttft"].append(now - t0)
                    else:
                        stats["itl"].append(now - last)
                    last = now
                    ntok += 1
        except Exception as e:  # noqa: BLE001 - every failure counts as an error
            stats["errors"].append(repr(e))
            continue
        stats["requests"] += 1
        stats["completion_chunks"] += ntok
        stats["completion_tokens"] += args.max_tokens
        stats["prompt_tokens"] += args.prompt_tokens
        stats["latency"].append(time.perf_counter() - t0)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000/v1/completions")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    stats = {"ttft": [], "itl": [], "latency": [], "errors": [], "requests": 0,
             "completion_tokens": 0, "completion_chunks": 0, "prompt_tokens": 0}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    conn = aiohttp.TCPConnector(limit=args.concurrency * 2)
    start = time.perf_counter()
    deadline = start + args.duration
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as s:
        await asyncio.gather(*[client(s, args.url, args, random.Random(args.seed + i), stats, deadline)
                               for i in range(args.concurrency)])
    wall = time.perf_counter() - start
    out = {
        "concurrency": args.concurrency, "prompt_tokens": args.prompt_tokens,
        "max_tokens": args.max_tokens, "wall_s": wall, "requests": stats["requests"],
        "errors": len(stats["errors"]), "error_samples": stats["errors"][:5],
        "output_tok_s": stats["completion_tokens"] / wall,
        "total_tok_s": (stats["completion_tokens"] + stats["prompt_tokens"]) / wall,
        "ttft_p50_ms": 1e3 * (pct(stats["ttft"], 50) or 0), "ttft_p99_ms": 1e3 * (pct(stats["ttft"], 99) or 0),
        "itl_p50_ms": 1e3 * (pct(stats["itl"], 50) or 0), "itl_p99_ms": 1e3 * (pct(stats["itl"], 99) or 0),
        "latency_p50_s": pct(stats["latency"], 50),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
