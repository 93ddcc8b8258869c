#!/usr/bin/env python3
"""Closed-loop load on an OpenAI-compatible server: N concurrent clients each send
streaming /v1/completions requests (prompt of P random token ids, exactly M output tokens via
ignore_eos) until the duration ends. Reports throughput, TTFT and inter-token latency
percentiles and errors as one JSON object. Needs only the Python standard library + aiohttp.

--shared-prefix-tokens N: every prompt starts with the same N ids (a shared system prompt),
so a server with prefix caching computes them once.
--response-format json_object: every request constrained to JSON (grammar overhead).
--watch-pid PID: a soak; every --sample-every seconds record the server's RSS, its GPU memory
(nvidia-smi) and /metrics' KV blocks in use, and after the load check that every KV block
came back. The summary says whether RSS and GPU memory stayed flat."""
import argparse, asyncio, json, random, re, statistics, subprocess, time, urllib.request

import aiohttp


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


async def client(session, url, args, rng, stats, deadline):
    while time.perf_counter() < deadline:
        own = max(0, args.prompt_tokens - len(args.shared_prefix))
        prompt = args.shared_prefix[:args.prompt_tokens] + [rng.randrange(1000, 150000) for _ in range(own)]
        body = {"prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0,
                "stream": True, "ignore_eos": True}
        if args.response_format:
            body["response_format"] = {"type": args.response_format}
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


def metric(base, name):
    try:
        body = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    except Exception:  # noqa: BLE001
        return None
    m = re.search(r"^" + re.escape(name) + r"\{[^}]*\} ([0-9.e+-]+)$", body, re.M)
    return float(m.group(1)) if m else None


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


def gpu_mb(pid):
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except Exception:  # noqa: BLE001
        return None
    total = [float(l.split(",")[1]) for l in out.splitlines() if l.split(",")[0].strip() == str(pid)]
    return sum(total) if total else None


async def watch(args, base, timeline, deadline):
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        timeline.append({"t_s": round(time.perf_counter() - t0, 1), "rss_mb": rss_mb(args.watch_pid),
                         "gpu_mb": gpu_mb(args.watch_pid),
                         "kv_blocks_used": metric(base, "qwrun:kv_cache_blocks_used")})
        await asyncio.sleep(args.sample_every)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default="http://127.0.0.1:8000/v1/completions")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--duration", type=float, default=120)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shared-prefix-tokens", type=int, default=0)
    ap.add_argument("--watch-pid", type=int, default=0)
    ap.add_argument("--sample-every", type=float, default=15)
    ap.add_argument("--response-format", default="",
                    help="json_object: grammar-constrained replies (they end when the JSON does, "
                         "so compare inter-token latency, not throughput)")
    args = ap.parse_args()
    args.shared_prefix = [random.Random(args.seed - 1).randrange(1000, 150000)
                          for _ in range(args.shared_prefix_tokens)]
    base = args.url.split("/v1/")[0]
    timeline = []
    stats = {"ttft": [], "itl": [], "latency": [], "errors": [], "requests": 0,
             "completion_tokens": 0, "completion_chunks": 0, "prompt_tokens": 0}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    conn = aiohttp.TCPConnector(limit=args.concurrency * 2)
    start = time.perf_counter()
    deadline = start + args.duration
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as s:
        tasks = [client(s, args.url, args, random.Random(args.seed + i), stats, deadline)
                 for i in range(args.concurrency)]
        if args.watch_pid:
            tasks.append(watch(args, base, timeline, deadline))
        await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    out = {
        "concurrency": args.concurrency, "prompt_tokens": args.prompt_tokens,
        "max_tokens": args.max_tokens, "response_format": args.response_format or None, "wall_s": wall, "requests": stats["requests"],
        "errors": len(stats["errors"]), "error_samples": stats["errors"][:5],
        "output_tok_s": stats["completion_tokens"] / wall,
        "streamed_chunks_s": stats["completion_chunks"] / wall,
        "total_tok_s": (stats["completion_tokens"] + stats["prompt_tokens"]) / wall,
        "ttft_p50_ms": 1e3 * (pct(stats["ttft"], 50) or 0), "ttft_p99_ms": 1e3 * (pct(stats["ttft"], 99) or 0),
        "itl_p50_ms": 1e3 * (pct(stats["itl"], 50) or 0), "itl_p99_ms": 1e3 * (pct(stats["itl"], 99) or 0),
        "latency_p50_s": pct(stats["latency"], 50),
    }
    if args.shared_prefix_tokens:
        out["shared_prefix_tokens"] = args.shared_prefix_tokens
        out["prefix_cache_hit_rate"] = metric(base, "qwrun:prefix_cache_hit_rate")
    if args.watch_pid:
        for _ in range(60):  # the last requests drain
            if metric(base, "qwrun:num_requests_running") == 0:
                break
            time.sleep(1)
        end = {"rss_mb": rss_mb(args.watch_pid), "gpu_mb": gpu_mb(args.watch_pid),
               "kv_blocks_used": metric(base, "qwrun:kv_cache_blocks_used")}
        # Flat: the second half of the run grows RSS by < 5 % over its first sample (warm-up
        # allocations happen early), GPU memory not at all.
        half = [p for p in timeline if p["t_s"] >= timeline[-1]["t_s"] / 2] if timeline else []
        rss = [p["rss_mb"] for p in half if p["rss_mb"]]
        gpu = [p["gpu_mb"] for p in half if p["gpu_mb"]]
        out["soak"] = {"samples": len(timeline), "end": end, "timeline": timeline,
                       "rss_growth_second_half": (max(rss) / rss[0] - 1) if rss else None,
                       "gpu_mb_second_half": [min(gpu), max(gpu)] if gpu else None,
                       "all_kv_blocks_free": end["kv_blocks_used"] == 0}
        out["soak"]["flat"] = bool(out["soak"]["all_kv_blocks_free"] and rss and
                                   out["soak"]["rss_growth_second_half"] < 0.05 and
                                   (not gpu or max(gpu) == min(gpu)))
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
