#!/usr/bin/env python3
"""TP=N logits against the TP=1 run of the same checkpoint (issue 11's check).

compare_tp_logits.py TP1.f32 TPN.f32 VOCAB [--tol 1e-2] [--greedy1 A.json --greedyN B.json]
Per position: max|tpN - tp1| / max|tp1| must be <= tol. With the greedy JSON files
(`qwgpu greedy`: tokens + margins), tokens must agree up to the first position where the
TP=1 margin is <= 1e-2 (a near tie may flip on rounding; after a flip the texts diverge).
Prints one summary line; exit 1 on failure.
"""
import argparse, json, sys
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("tp1"); ap.add_argument("tpn"); ap.add_argument("vocab", type=int)
ap.add_argument("--tol", type=float, default=1e-2)
ap.add_argument("--greedy1"); ap.add_argument("--greedyN")
a = ap.parse_args()
x = np.fromfile(a.tp1, dtype=np.float32).reshape(-1, a.vocab)
y = np.fromfile(a.tpn, dtype=np.float32).reshape(-1, a.vocab)
if x.shape != y.shape:
    print(f"FAIL shapes differ {x.shape} vs {y.shape}"); sys.exit(1)
rel = np.abs(y - x).max(axis=1) / np.maximum(np.abs(x).max(axis=1), 1e-30)
ok = bool(np.all(np.isfinite(y))) and float(rel.max()) <= a.tol
msg = f"positions {x.shape[0]} worst rel {rel.max():.2e} median {np.median(rel):.2e} (tol {a.tol})"
if a.greedy1 and a.greedyN:
    g1, gn = json.load(open(a.greedy1)), json.load(open(a.greedyN))
    n_checked = 0
    for t1, tn, m in zip(g1["tokens"], gn["tokens"], g1["margins"]):
        if m <= 1e-2:
            break
        if t1 != tn:
            ok = False
            break
        n_checked += 1
    msg += f"; greedy equal for {n_checked}/{len(g1['tokens'])} tokens (up to the first margin <= 1e-2)"
print(("ok " if ok else "FAIL ") + msg)
sys.exit(0 if ok else 1)
