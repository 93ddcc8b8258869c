#!/usr/bin/env python3
"""Golden outputs from transformers for the CPU runtime tests (tests/cpu/test_cpu_goldens.cpp).

Run where torch + transformers are installed (the device machine; no GPU needed):

    qwc make-test-model --preset tiny --seed 1 --tokenizer tests/data -o /tmp/tiny
    qwc make-test-model --preset tiny --seed 1 --tokenizer tests/data -o /tmp/tiny_yarn \
        --rope-scaling '{"type":"yarn","factor":4.0,"original_max_position_embeddings":4096}'
    python3 tools/gen_cpu_goldens.py --plain /tmp/tiny --yarn /tmp/tiny_yarn \
        --out tests/data/goldens

Every variant loads the checkpoint with Qwen2ForCausalLM, rounds the weights exactly as
the artifact stores them (bf16: as written; fp16: bf16 -> fp16 round-to-nearest-even) and
then computes in float64 on the CPU, so the goldens are the exact function of the stored
weights. Written:
  cpu_tiny_goldens.json  prompts, greedy continuations + top1-top2 margins, RoPE
                         inverse frequencies, checkpoint sha256s, offsets into the .bin
  cpu_tiny_goldens.bin   little-endian: per variant and prompt the final-normed hidden
                         state of every position (float64 [n, hidden]); then one full
                         logits row from transformers (float32 [vocab])
The full vocabulary is 151,936 wide, so logits rows are not stored per position: the test
recomputes them as hidden . lm_head^T in float64 from the artifact's own lm_head, and the
one stored row checks that this equals transformers' logits.
"""
import argparse
import hashlib
import inspect
import json
import os
import random
import struct
import sys

import torch
import transformers
from transformers import Qwen2ForCausalLM

GREEDY_STEPS = 32
# Regular (non-special) token ids of the Qwen2 vocabulary.
REGULAR_IDS = 151643


def prompts():
    rng = random.Random(20240601)
    short = [rng.randrange(REGULAR_IDS) for _ in range(7)]
    long = [rng.randrange(REGULAR_IDS) for _ in range(80)]  # past 64 positions
    repeats = [rng.randrange(REGULAR_IDS) for _ in range(5)] * 4
    return {"short": short, "long": long, "repeats": repeats}


def sha256s(ckpt):
    out = {}
    for name in sorted(os.listdir(ckpt)):
        if name.endswith(".safetensors"):
            h = hashlib.sha256()
            with open(os.path.join(ckpt, name), "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[name] = h.hexdigest()
    return out


def load(ckpt, rounding):
    kwargs = {"attn_implementation": "eager"}
    try:
        model = Qwen2ForCausalLM.from_pretrained(ckpt, dtype=torch.float32, **kwargs)
    except TypeError:
        model = Qwen2ForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32, **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            if rounding == "f16":
                p.data = p.data.to(torch.float16)
            p.data = p.data.to(torch.float64)
    model = model.to(torch.float64)
    model.eval()
    return model


def greedy(model, ids):
    ids = list(ids)
    out, margins = [], []
    with torch.no_grad():
        for _ in range(GREEDY_STEPS):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            top = torch.topk(logits, 2)
            out.append(int(top.indices[0]))
            margins.append(float(top.values[0] - top.values[1]))
            ids.append(out[-1])
    return out, margins


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plain", required=True, help="tiny checkpoint, plain RoPE")
    ap.add_argument("--yarn", required=True, help="the same checkpoint with YaRN rope_scaling")
    ap.add_argument("--out", required=True)
    ap.add_argument("--source-dump", help="also write transformers' RoPE source here")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    os.makedirs(args.out, exist_ok=True)

    ps = prompts()
    blob = bytearray()
    meta = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "seed": 1,
        "preset": "tiny",
        "greedy_steps": GREEDY_STEPS,
        "prompts": ps,
        "checkpoint_sha256": sha256s(args.plain),
        "variants": [],
    }
    variants = [("bf16", args.plain, "bf16"), ("f16", args.plain, "f16"), ("yarn_f16", args.yarn, "f16")]
    for name, ckpt, rounding in variants:
        try:
            model = load(ckpt, rounding)
        except Exception:  # keep the other variants of a (scarce) device run
            import traceback
            traceback.print_exc()
            continue
        rot = model.model.rotary_emb
        v = {
            "name": name,
            "dtype": rounding,
            "rope_scaling": json.load(open(os.path.join(ckpt, "config.json"))).get("rope_scaling"),
            "rope_parameters": str(getattr(model.config, "rope_parameters", None)),
            "inv_freq": [float(x) for x in rot.inv_freq.to(torch.float32)],
            "attention_scaling": float(rot.attention_scaling),
            "prompts": {},
        }
        head = model.lm_head.weight
        for pname, ids in ps.items():
            with torch.no_grad():
                hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
                logits = model(input_ids=torch.tensor([ids])).logits[0]
            # The test rebuilds logits as hidden . lm_head^T: check that this is what
            # transformers computes.
            recomputed = hidden @ head.T
            err = float((recomputed - logits).abs().max() / logits.abs().max())
            assert err < 1e-12, f"{name}/{pname}: hidden . lm_head^T differs from logits by {err}"
            entry = {"hidden_offset": len(blob), "positions": len(ids)}
            flat = hidden.contiguous().flatten().tolist()
            blob += struct.pack(f"<{len(flat)}d", *flat)
            if pname in ("short", "long"):
                entry["greedy"], entry["margins"] = greedy(model, ids)
            if name == "bf16" and pname == "long":
                pos = len(ids) - 1
                entry["logits_row"] = {"position": pos, "offset": len(blob)}
                row = logits[pos].to(torch.float32).tolist()
                blob += struct.pack(f"<{len(row)}f", *row)
            v["prompts"][pname] = entry
        meta["hidden_size"] = int(model.config.hidden_size)
        meta["vocab_size"] = int(model.config.vocab_size)
        meta["variants"].append(v)
        print(f"{name}: inv_freq[:4]={v['inv_freq'][:4]} attention_scaling={v['attention_scaling']}",
              file=sys.stderr)

    with open(os.path.join(args.out, "cpu_tiny_goldens.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(args.out, "cpu_tiny_goldens.json"), "w") as f:
        json.dump(meta, f, indent=1)
    if args.source_dump:
        from transformers import modeling_rope_utils as mru
        with open(args.source_dump, "w") as f:
            f.write(inspect.getsource(mru._compute_yarn_parameters))
            f.write("\n\n# standardize / rope_parameters handling\n")
            try:
                f.write(inspect.getsource(mru))
            except (OSError, TypeError):
                pass
    print(f"wrote {len(blob)} bytes of binary goldens", file=sys.stderr)


if __name__ == "__main__":
    main()
