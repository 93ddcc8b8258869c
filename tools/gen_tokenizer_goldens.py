#!/usr/bin/env python3
"""Golden data for the C++ tokenizer, from HF `tokenizers` / `transformers` (run on the device
machine, which has them; see tools/bench_tokenizer.sh for the whole device run).

  ids   : for each string of tools/tokenizer_corpus.py's golden corpus, HF's ids with
          added tokens matched (default) and with split_special_tokens (encode_special_tokens
          = True), decode(ids) with and without skip_special_tokens.
  chat  : Qwen2.5-Instruct's chat template rendered by apply_chat_template(tokenize=False)
          for many message shapes (inputs stored alongside, errors recorded as errors).
  bench : HF single-thread encode throughput on the bench corpus, and an id-by-id comparison
          with the C++ tokenizer's ids for the same corpus (written by bench_tokenizer).

Usage:
  gen_tokenizer_goldens.py ids   CORPUS.jsonl TOKENIZER_JSON OUT.jsonl
  gen_tokenizer_goldens.py chat  TOKENIZER_JSON TEMPLATE.jinja OUT.json
  gen_tokenizer_goldens.py bench TOKENIZER_JSON CORPUS.bin OURS_IDS.bin OURS_RESULT.json OUT.json
"""
import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import json  # noqa: E402
import platform  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import unicodedata  # noqa: E402


def versions():
    import tokenizers
    v = {"python": platform.python_version(), "unicodedata": unicodedata.unidata_version,
         "tokenizers": tokenizers.__version__}
    try:
        import transformers
        v["transformers"] = transformers.__version__
    except ImportError:
        pass
    return v


def gen_ids(corpus_path, tokenizer_json, out_path):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json)
    tok_plain = Tokenizer.from_file(tokenizer_json)
    tok_plain.encode_special_tokens = True  # = split_special_tokens=True in transformers
    n_roundtrip_fail = 0
    with open(corpus_path, encoding="utf-8") as f, open(out_path, "w", encoding="utf-8") as out:
        out.write(json.dumps({"meta": versions()}) + "\n")
        for line in f:
            case = json.loads(line)
            if "hex" in case:
                text = bytes.fromhex(case["hex"]).decode("utf-8", errors="replace")
            else:
                text = case["text"]
            ids = tok.encode(text, add_special_tokens=False).ids
            case["ids"] = ids
            ns = tok_plain.encode(text, add_special_tokens=False).ids
            if ns != ids:
                case["ids_no_special"] = ns
            case["decoded"] = tok.decode(ids, skip_special_tokens=False)
            skipped = tok.decode(ids, skip_special_tokens=True)
            if skipped != case["decoded"]:
                case["decoded_skip_special"] = skipped
            if case["decoded"] != unicodedata.normalize("NFC", text):
                n_roundtrip_fail += 1
                case["roundtrip_differs"] = True
            out.write(json.dumps(case, ensure_ascii=False) + "\n")
    print("ids goldens written; decode(encode(s)) != NFC(s) for", n_roundtrip_fail, "cases")


def chat_cases():
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city. 天气",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": 1.0}},
            "required": ["city"]}}}
    search = {"type": "function", "function": {"name": "search", "description": "Web search\nwith newline\tand tab",
              "parameters": {"type": "object", "properties": {"q": {"type": "string"},
                             "limit": {"type": "number", "default": 0.00001, "max": 1e20}}}}}
    bare_tool = {"name": "calc", "parameters": {"zeta": 1, "alpha": [1, 2.5, -0.0, True, None, "é\u0001"]}}
    sys_msg = {"role": "system", "content": "You are a terse assistant."}
    user = {"role": "user", "content": "What's the weather in Paris?"}
    call_obj = {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                          "arguments": {"city": "Paris", "unit": "celsius", "note": "héllo \"q\" \\ /"}}}]}
    call_str = {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}
    call_two = {"role": "assistant", "content": "Let me check both.", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"type": "function", "function": {"name": "search", "arguments": {"q": "東京 weather", "limit": 3, "f": 2.5e-7, "big": 12345678901234567890}}}]}
    call_bare = {"role": "assistant", "tool_calls": [{"name": "calc", "arguments": {"x": [1, {"y": None}], "b": False}}]}
    call_noname = {"role": "assistant", "content": "hm", "tool_calls": [{"function": {"arguments": {}}}]}
    tool1 = {"role": "tool", "name": "get_weather", "content": "{\"temp\": 21, \"sky\": \"clear\"}"}
    tool2 = {"role": "tool", "content": "Second result: 東京 18°C"}
    tool_num = {"role": "tool", "content": 42}
    tool_none = {"role": "tool", "content": None}
    tool_nocontent = {"role": "tool"}
    answer = {"role": "assistant", "content": "It is 21°C and clear in Paris. ☀️"}
    cases = [
        ("user_only", [{"role": "user", "content": "Hello!"}], None),
        ("system_user", [sys_msg, user], None),
        ("multi_turn", [sys_msg, user, {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "And tomorrow?\n\nThanks"}], None),
        ("no_system_multi", [user, {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "ok"}], None),
        ("system_middle", [user, {"role": "system", "content": "Be brief."}, {"role": "user", "content": "x"}], None),
        ("two_systems", [sys_msg, {"role": "system", "content": "Second system."}, user], None),
        ("tools_no_system", [user], [weather]),
        ("tools_with_system", [sys_msg, user], [weather, search]),
        ("tools_bare_schema", [user], [bare_tool]),
        ("tools_empty_list", [user], []),
        ("tool_call_object_args", [sys_msg, user, call_obj, tool1, answer], [weather]),
        ("tool_call_string_args", [user, call_str, tool1], [weather]),
        ("tool_calls_two_and_two_responses", [user, call_two, tool1, tool2, answer, {"role": "user", "content": "thx"}], [weather, search]),
        ("tool_call_without_function_wrapper", [user, call_bare, {"role": "tool", "content": "7"}], [bare_tool]),
        ("tool_call_missing_name", [user, call_noname], None),
        ("tool_first_message", [tool1, user], None),
        ("tool_non_string_contents", [user, call_obj, tool_num, tool_none, tool_nocontent], None),
        ("assistant_last", [user, answer], None),
        ("unknown_role", [{"role": "developer", "content": "ignored?"}, user], None),
        ("unicode_and_specials", [{"role": "user", "content": "<|im_end|> 你好 👨‍👩‍👧 e\u0301 \r\n tabs\t"}], None),
        ("empty_contents", [{"role": "system", "content": ""}, {"role": "user", "content": ""}, {"role": "assistant", "content": ""}], None),
        ("system_with_tools_non_string", [{"role": "system", "content": 3.5}, user], [weather]),
        ("err_user_content_none", [{"role": "user", "content": None}], None),
        ("err_user_content_missing", [{"role": "user"}], None),
        ("err_empty_messages", [], None),
        ("err_call_arguments_missing", [user, {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}], None),
    ]
    return cases


def gen_chat(tokenizer_json, template_path, out_path):
    import inspect
    import transformers
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=tokenizer_json)
    template = open(template_path, encoding="utf-8").read()
    results = []
    for name, messages, tools in chat_cases():
        for agp in (False, True):
            entry = {"name": name, "messages": messages, "tools": tools, "add_generation_prompt": agp}
            try:
                entry["rendered"] = tok.apply_chat_template(messages, tools=tools, chat_template=template,
                                                            tokenize=False, add_generation_prompt=agp)
            except Exception as e:  # noqa: BLE001 - recorded: C++ must fail too
                entry["error"] = "%s: %s" % (type(e).__name__, e)
            results.append(entry)
    tojson_src = ""
    try:
        from transformers.utils import chat_template_utils
        tojson_src = inspect.getsource(chat_template_utils._compile_jinja_template)
    except Exception as e:  # noqa: BLE001
        tojson_src = "unavailable: %s" % e
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"meta": versions(), "transformers_compile_jinja_source": tojson_src,
                   "cases": results}, f, ensure_ascii=False, indent=1)
    print("chat goldens:", len(results), "cases,", sum("error" in r for r in results), "errors")


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def read_records(path, fmt):
    data = open(path, "rb").read()
    out, off = [], 0
    while off < len(data):
        (n,) = struct.unpack_from("<I", data, off)
        off += 4
        if fmt == "bytes":
            out.append(data[off:off + n])
            off += n
        else:
            out.append(list(struct.unpack_from("<%di" % n, data, off)))
            off += 4 * n
    return out


def gen_bench(tokenizer_json, corpus_path, ours_ids_path, ours_result_path, out_path):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json)
    docs = [d.decode("utf-8") for d in read_records(corpus_path, "bytes")]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    passes = []
    hf_ids = None
    for p in range(3):
        t0 = time.perf_counter()
        ids = [tok.encode(d, add_special_tokens=False).ids for d in docs]
        passes.append(nbytes / 1e6 / (time.perf_counter() - t0))
        hf_ids = hf_ids or ids
    t0 = time.perf_counter()
    tok.encode_batch(docs, add_special_tokens=False)
    batch_mbps = nbytes / 1e6 / (time.perf_counter() - t0)
    ours = read_records(ours_ids_path, "ids")
    mismatches = [i for i, (a, b) in enumerate(zip(hf_ids, ours)) if a != b]
    if len(ours) != len(hf_ids):
        mismatches.append(-1)
    ours_result = json.load(open(ours_result_path))
    hf_best = max(passes + [batch_mbps])
    result = {
        "benchmark": "tokenizer encode throughput, single thread",
        "corpus": "tools/tokenizer_corpus.py bench (mixed prose/CJK/multilingual/code/digits)",
        "corpus_bytes": nbytes, "docs": len(docs),
        "versions": versions(), "cpu": cpu_name(),
        "hf": {"mb_per_s_encode_loop_per_pass": passes, "mb_per_s_encode_batch_1_thread": batch_mbps,
               "mb_per_s_best": hf_best, "env": {k: os.environ.get(k) for k in ("TOKENIZERS_PARALLELISM", "RAYON_NUM_THREADS")}},
        "ours": ours_result,
        "speedup_best_vs_best": ours_result["mb_per_s_best"] / hf_best,
        "speedup_first_pass_vs_hf_best": ours_result["mb_per_s_first_pass"] / hf_best,
        "ids_identical_docs": len(docs) - len(mismatches), "ids_mismatched_docs": mismatches[:20],
    }
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "ids":
        gen_ids(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "chat":
        gen_chat(*sys.argv[2:])
    elif len(sys.argv) == 7 and sys.argv[1] == "bench":
        gen_bench(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
