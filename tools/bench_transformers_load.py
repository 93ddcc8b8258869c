#!/usr/bin/env python3
"""Process start -> weights resident on the GPU with transformers from_pretrained(device_map="cuda").
  bench_transformers_load.py CKPT [--dtype fp16]    prints one JSON line"""
import os, sys, time
t_import0 = time.time()
def since_start():
    with open("/proc/self/stat") as f:
        s = f.read()
    start_ticks = int(s[s.rfind(")") + 2:].split()[19])
    boot_now = time.clock_gettime(time.CLOCK_BOOTTIME)
    return boot_now - start_ticks / os.sysconf("SC_CLK_TCK")
import json
import torch
from transformers import AutoModelForCausalLM
t0 = time.time()
dt = torch.float16 if "--dtype" not in sys.argv or sys.argv[sys.argv.index("--dtype") + 1] == "fp16" else torch.bfloat16
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=dt, device_map="cuda")
torch.cuda.synchronize()
t1 = time.time()
print(json.dumps({"tool": "transformers.from_pretrained", "from_pretrained_s": t1 - t0,
                  "imports_s": t0 - t_import0, "process_start_to_ready_s": since_start(),
                  "gpu_bytes": torch.cuda.memory_allocated()}))
