#!/usr/bin/env python3
"""Deterministic corpora for the tokenizer.

  golden: >= 2,000 strings covering the cases issue 3 lists (scripts, emoji, code,
          white space, digits, contractions, special tokens, NFC-changing combining marks,
          long words, random Unicode, invalid UTF-8). Written as JSON lines
          {"name": ..., "text": ...} or {"name": ..., "hex": ...} for invalid UTF-8 bytes.
  bench:  a mixed corpus of >= 10 MB of documents for the throughput benchmark, written as
          a sequence of (u32 little-endian length, UTF-8 bytes) records.

Usage: tokenizer_corpus.py golden OUT.jsonl | tokenizer_corpus.py bench OUT.bin [MB]
Only the standard library is used, and the output depends on nothing but this file.
"""
import json
import random
import struct
import sys
import unicodedata

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
            "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
            "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
            "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
            "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
            "<tool_response>", "</tool_response>", "<think>", "</think>"]

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you doing today?",
    "It's a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
    "I can't believe it's not butter; they'll never know what we've done.",
    "In 1969, Apollo 11 landed on the Moon at 20:17 UTC on July 20th.",
    "Large language models (LLMs) are trained on trillions of tokens.",
    "Please e-mail john.doe@example.com or visit https://example.org/path?q=1&r=2#frag.",
    "She said, \"Don't go there!\" -- but he went anyway...",
    "Price: $1,234.56 (incl. 20% VAT); discount 15.5%.",
    "To be, or not to be: that is the question.",
    "Mr. O'Neil's dog's bone isn't theirs; it's ours.",
    "UPPERCASE TEXT WITH NUMBERS 12345 AND SYMBOLS !@#$%^&*()",
    "well-known state-of-the-art end-to-end pipelines",
    "Tabs\tand\tnewlines\nmixed  with   spaces    here.",
]
CHINESE = ["你好，世界！", "我爱自然语言处理。", "今天天气很好，我们去公园散步吧。",
           "人工智能正在改变世界，大型语言模型是其中的重要组成部分。",
           "通义千问是阿里云研发的大语言模型。", "一二三四五六七八九十", "「引号」和《书名号》以及——破折号"]
JAPANESE = ["こんにちは、世界！", "日本語のテキストを正しくトークン化できますか？",
            "カタカナとひらがなと漢字が混ざっています。", "ｶﾀｶﾅ半角カナ", "東京都渋谷区１−２−３"]
KOREAN = ["안녕하세요, 세계!", "한국어 문장을 토큰화합니다.", "대한민국의 수도는 서울입니다.",
          "각 조합형 자모"]
ARABIC = ["مرحبا بالعالم!", "اللغة العربية جميلة جداً.", "السلام عليكم ورحمة الله وبركاته",
          "١٢٣٤٥٦٧٨٩٠ أرقام عربية"]
HINDI = ["नमस्ते दुनिया!", "हिन्दी भाषा में यह एक वाक्य है।", "क्षत्रिय ज्ञान श्री"]
RUSSIAN = ["Привет, мир!", "Съешь же ещё этих мягких французских булок, да выпей чаю.",
           "МОСКВА — СТОЛИЦА РОССИИ.", "Ёжик в тумане"]
OTHER_SCRIPTS = ["Γειά σου Κόσμε", "שלום עולם", "สวัสดีชาวโลก", "Xin chào thế giới",
                 "Zażółć gęślą jaźń", "Þetta er íslenska", "ኢትዮጵያ", "ᠮᠣᠩᠭᠣᠯ", "ꦧꦱꦗꦮ",
                 "Türkçe İıĞğŞş", "Straße ß ẞ", "ﬁ ﬂ ﬀ ligatures", "①②③ ⅠⅡⅢ ¼½¾ ²³"]
EMOJI = ["😀", "😀😃😄😁", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇯🇵🇨🇳🇩🇪", "🇬🇧", "❤️", "🧑🏿‍💻",
         "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣ #️⃣ *️⃣", "I ❤️ NY 🗽!", "emoji in text 🎉🎉 party 🥳", "👩‍❤️‍💋‍👨"]
CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "import numpy as np\nx = np.arange(10).reshape(2, 5)\nprint(x.T @ x)\n",
    "class Foo:\n\tdef __init__(self):\n\t\tself._x = {'a': [1, 2, 3]}\n",
    "#include <iostream>\nint main() {\n  std::cout << \"Hello\" << std::endl;\n  return 0;\n}\n",
    "template <typename T>\nauto add(T a, T b) -> decltype(a + b) { return a + b; }\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "{\"name\": \"qwen\", \"version\": 2.5, \"tags\": [\"llm\", \"chat\"], \"nested\": {\"k\": null}}",
    "{\n  \"a\": 1,\n  \"b\": [true, false],\n  \"c\": \"\\u00e9\\n\"\n}",
    "key: value\nlist:\n  - one\n  - two\nnested:\n  inner: 3.14\n",
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {app: web}\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "<html><body><div class=\"x\">Hi &amp; bye</div></body></html>",
    "$ ls -la | grep '\\.py$' && echo \"done\" > /dev/null 2>&1",
    "fn main() { let v: Vec<u32> = (0..10).collect(); println!(\"{:?}\", v); }",
    "x = lambda a, b: a**2 + b**2  # comment with 'quotes'\r\n",
]
WHITESPACE = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n", "\n ",
              "a  b", "a   b", "a\t\tb", "a \t b", "trailing   ", "   leading", "  both  ",
              "line1\r\nline2\r\n", "x\n\n\ny", "x \n \n y", "\u00a0nbsp\u00a0", "a\u3000b",
              "a\u2003b\u2009c", "a\u0085b", "a\u2028b\u2029c", "\x0b\x0c", "end with newline\n",
              " " * 50, "\t" * 20, "\n" * 10, " \t\n\r " * 5, "a" + " " * 17 + "b"]
DIGITS = ["0", "12", "123", "1234", "12345", "3.14159265358979", "1,000,000", "2024-05-17",
          "0x1F", "1e-10", "٣٤٥", "१२३", "１２３", "Ⅻ", "10⁴", "007", "9" * 40,
          "v1.2.3-rc4", "phone: +1 (555) 123-4567"]
CONTRACTIONS = ["don't", "DON'T", "Don't", "dOn'T", "We'Ll", "we'll", "WE'LL", "I'm", "I'M",
                "you're", "YOU'RE", "they've", "THEY'VE", "he'd", "HE'D", "it's", "IT'S",
                "isn't", "ISN'T", "'s", "'S", "'ll", "x'LL y'Ve z'D", "O'Reilly", "'tis",
                "rock 'n' roll", "don’t (curly)", "dſ 'ſ", "it'ſ", "''", "'", "' s"]
COMBINING = ["e\u0301", "cafe\u0301", "A\u030a", "n\u0303o", "o\u0308\u0304", "a\u0323\u0302",
             "a\u0302\u0323", "\u0041\u0327\u0301", "Ω Ω \u2126", "\u212b", "\u1100\u1161\u11a8",
             "\u1100\u1161", "\uac00\u11a8", "ｶﾞ", "\u0915\u093c", "\u05d0\u05b7\u05bc",
             "\u0071\u0307\u0323", "s\u0323\u0307", "\u1e9b\u0323", "e\u0301\u0301\u0301",
             "\u0301 starts with mark", "x\u0300\u0316\u0317y", "\u00c5\u0300", "ǆ Ǆ",
             "\u0f73 \u0f75 \u0f81", "\u2000\u2001", "\u2329\u232a", "\ufb1d \ufb2a"]


def special_strings(rng):
    out = []
    for s in SPECIALS:
        out.append(s)
        out.append("text before " + s + " text after")
        out.append(s + s)
        out.append(" " + s + " ")
        out.append("\n" + s + "\n")
    out += [
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
        "<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call><|im_end|>",
        "<|im_start <|im_end |im_end|> <|im_end|", "<|<|im_end|>|>", "<<|endoftext|>>",
        "<|IM_END|>", "<|im_end|>x<|endoftext|>y<|unknown|>", "<think>\nreasoning\n</think>\n\nanswer",
        "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>", "<|file_sep|>a.py\n<|repo_name|>r",
    ]
    for _ in range(60):
        parts = [rng.choice(SPECIALS + ENGLISH + CHINESE + [" ", "\n", "x"]) for _ in range(rng.randint(2, 6))]
        out.append("".join(parts))
    return out


def random_unicode(rng, n):
    """Random strings from assigned code points (Unicode version of this Python)."""
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
              (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x1E00, 0x1EFF),
              (0x2000, 0x206F), (0x2100, 0x22FF), (0x3000, 0x30FF), (0x4E00, 0x9FFF),
              (0xAC00, 0xD7A3), (0xF900, 0xFAFF), (0xFE00, 0xFE6F), (0xFF00, 0xFFEF),
              (0x1F300, 0x1FAFF), (0x10000, 0x1007F), (0x1D400, 0x1D7FF), (0x20000, 0x2A6DF)]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 40)):
            lo, hi = rng.choice(blocks)
            c = chr(rng.randint(lo, hi))
            if unicodedata.category(c) in ("Cn", "Cs", "Co"):
                continue
            chars.append(c)
        out.append("".join(chars))
    return out


def random_unicode_all(rng, n):
    """Random code points from the whole range, assigned or not (newer than this Python's
    Unicode too): checks Unicode-version agreement of NFC and \\p{L} / \\p{N} with HF."""
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(1, 20)):
            r = rng.random()
            c = ord(rng.choice(" a1.'\n")) if r < 0.3 else rng.randint(0x80, 0x3FFFF if r < 0.6 else 0x2FFF)
            if not 0xD800 <= c <= 0xDFFF:
                chars.append(chr(c))
        out.append("".join(chars))
    return out


def random_ascii(rng, n):
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + " " * 10 + "\t\n\r.,;:'\"!?-_()[]{}<>/\\|@#$%^&*+=~`"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(n)]


def long_words(rng):
    return ["a" * 1000, "ab" * 700, "supercalifragilisticexpialidocious" * 30, "你" * 800,
            "".join(rng.choice("abcdefghij") for _ in range(3000)), "x" + "😀" * 300,
            "https://" + "/".join("seg%d" % i for i in range(300)), "1" * 500, "-" * 400,
            "=" * 257, " " * 1000 + "x", "\n" * 300, "Ab" * 1000, "аб" * 600]


def invalid_utf8():
    cases = [b"\xff", b"abc\xffdef", b"\xc3", b"\xc3(", b"\xe4\xbd", b"\xe4\xbd\xa0\xe4", b"\xed\xa0\x80",
             b"\xf0\x9f\x98", b"\xf0\x9f\x98x", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\xe0\x80\xaf",
             b"\x80\x80\x80", b"ok \xfe\xfe ok", b"<|im_end|>\xff<|im_start|>", b"caf\x65\xcc",
             b"\xf8\x88\x80\x80\x80", b"a\xe2\x82", b"\xe2\x82\xac\xe2\x82"]
    return cases


def golden_cases():
    rng = random.Random(20240531)
    groups = {
        "english": ENGLISH, "chinese": CHINESE, "japanese": JAPANESE, "korean": KOREAN,
        "arabic": ARABIC, "hindi": HINDI, "russian": RUSSIAN, "other_scripts": OTHER_SCRIPTS,
        "emoji": EMOJI, "code": CODE, "whitespace": WHITESPACE, "digits": DIGITS,
        "contractions": CONTRACTIONS, "combining": COMBINING, "special": special_strings(rng),
        "long": long_words(rng), "random_unicode": random_unicode(rng, 500),
        "random_ascii": random_ascii(rng, 300),
        "random_unicode_all": random_unicode_all(rng, 300),
    }
    # Mixed strings: random concatenations across groups with random separators.
    base = [s for g in ("english", "chinese", "japanese", "korean", "arabic", "hindi", "russian",
                        "other_scripts", "emoji", "code", "whitespace", "digits", "contractions",
                        "combining") for s in groups[g]]
    seps = ["", " ", "  ", "\n", "\t", "\r\n", " \n", "'", "'s ", "123", "。"]
    groups["mixed"] = ["".join(rng.choice(base) + rng.choice(seps) for _ in range(rng.randint(2, 8)))
                       for _ in range(900)]
    cases = []
    for name, items in groups.items():
        for i, s in enumerate(items):
            cases.append({"name": "%s/%d" % (name, i), "text": s})
            if name in ("english", "code", "contractions", "whitespace"):
                cases.append({"name": "%s/%d/upper" % (name, i), "text": s.upper()})
                cases.append({"name": "%s/%d/spaced" % (name, i), "text": " " + s + "  "})
    for i, b in enumerate(invalid_utf8()):
        cases.append({"name": "invalid_utf8/%d" % i, "hex": b.hex()})
    return cases


def bench_documents(target_bytes):
    """Mixed documents: prose, CJK, code, JSON, multilingual, all shuffled deterministically."""
    rng = random.Random(7)
    pools = {
        "en": ENGLISH * 3 + CONTRACTIONS,
        "zh": CHINESE + JAPANESE + KOREAN,
        "multi": ARABIC + HINDI + RUSSIAN + OTHER_SCRIPTS + EMOJI + COMBINING,
        "code": CODE,
        "num": DIGITS,
    }
    words = sorted(set(w for s in ENGLISH for w in s.split()))
    docs, total = [], 0
    while total < target_bytes:
        kind = rng.choices(["en", "zh", "multi", "code", "num", "words"], [35, 20, 15, 20, 3, 7])[0]
        if kind == "words":
            doc = " ".join(rng.choice(words) for _ in range(rng.randint(100, 600)))
        else:
            sep = "\n" if kind == "code" else rng.choice([" ", "\n", "\n\n"])
            doc = sep.join(rng.choice(pools[kind]) + (" %d" % rng.randint(0, 10**6) if rng.random() < 0.1 else "")
                           for _ in range(rng.randint(20, 120)))
        b = doc.encode("utf-8")
        docs.append(b)
        total += len(b)
    return docs


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "golden":
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            for c in golden_cases():
                f.write(json.dumps(c, ensure_ascii=False) + "\n")
    elif len(sys.argv) >= 3 and sys.argv[1] == "bench":
        mb = float(sys.argv[3]) if len(sys.argv) > 3 else 12.0
        with open(sys.argv[2], "wb") as f:
            for d in bench_documents(int(mb * 1e6)):
                f.write(struct.pack("<I", len(d)))
                f.write(d)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
