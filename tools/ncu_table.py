#!/usr/bin/env python3
"""Per-kernel table from `ncu --csv --metrics ...` output (raw rows, several files may be
concatenated, optionally prefixed by grep's 'file:'): kernel, grid, time, DRAM bytes, GB/s."""
import csv, sys, collections
rows = collections.OrderedDict()
for path in sys.argv[1:]:
    # grep over several logs prefixes each line with its log's name: keep it as the source
    src_lines = [(l.split(':"', 1)[0], '"' + l.split(':"', 1)[1]) if not l.startswith('"') and ':"' in l
                 else ("", l) for l in open(path)]
    src_lines = [(s, l) for s, l in src_lines if l.startswith('"')]
    srcs = [s for s, _ in src_lines]
    lines = [l for _, l in src_lines]
    hdr = None
    for i, rec in enumerate(csv.reader(lines)):
        if rec and rec[0] == "ID":
            hdr = rec
            continue
        if not hdr:
            continue
        d = dict(zip(hdr, rec))
        key = (path, srcs[i], d["ID"])
        r = rows.setdefault(key, {"kernel": d["Kernel Name"].split("(")[0]})
        r[d["Metric Name"]] = (d["Metric Value"].replace(",", ""), d.get("Metric Unit", ""))
def num(r, k, unit_scale=None):
    v, u = r.get(k, ("nan", ""))
    try:
        x = float(v)
    except ValueError:
        return float("nan")
    scale = {"ns": 1e-9, "us": 1e-6, "usecond": 1e-6, "nsecond": 1e-9, "msecond": 1e-3, "ms": 1e-3,
             "byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}.get(u, 1)
    return x * scale
print(f"{'kernel':28s} {'grid':>7s} {'regs':>4s} {'time us':>8s} {'DRAM rd MB':>10s} {'GB/s':>7s} {'%peak':>6s}")
for r in rows.values():
    t = num(r, "gpu__time_duration.sum")
    rd = num(r, "dram__bytes_read.sum")
    wr = num(r, "dram__bytes_write.sum")
    print(f"{r['kernel'][:28]:28s} {r.get('launch__grid_size', ('?',))[0]:>7s} {r.get('launch__registers_per_thread', ('?',))[0]:>4s} "
          f"{t*1e6:8.2f} {rd/1e6:10.2f} {(rd+wr)/t/1e9 if t > 0 else 0:7.0f} {num(r, 'dram__throughput.avg.pct_of_peak_sustained_elapsed'):6.1f}")
