#!/usr/bin/env node
// Probes HF `tokenizers` (npm package "tokenizers", the same Rust crate as the Python
// package) for the Unicode data it really uses, and prints it as JSON for
// tools/gen_unicode_tables.py:
//   - NFC/NFD: HF normalizes with the unicode-normalization-alignments crate, whose tables are
//     older than current Unicode (e.g. it gives U+089C, new in 14.0, combining class 0), so
//     Python's or ICU's tables would disagree with HF; the normalizers are probed directly.
//   - \p{L}, \p{N}, \s as HF's Oniguruma matches them (newer Unicode than PCRE2 10.42).
// Usage: (cd SOMEDIR && npm install tokenizers@0.23.2) ; NODE_PATH=SOMEDIR/node_modules \
//        node tools/probe_hf_unicode.js TOKENIZER_JSON CCC_CANDIDATES_JSON > probe.json
const fs = require('fs');
const { Tokenizer, nfdNormalizer, nfcNormalizer } = require('tokenizers');

const MAX_CP = 0x10ffff;
const SEP = '\u0001';  // a starter that no decomposition contains: segments normalize alone
const CHUNK = 4096;
const nfd = nfdNormalizer();
const nfc = nfcNormalizer();
const cps = [];
for (let c = 0; c <= MAX_CP; c++) if (c < 0xd800 || c > 0xdfff) cps.push(c);
const str = (c) => String.fromCodePoint(c);
const arr = (s) => [...s].map((ch) => ch.codePointAt(0));

// Normalizes SEP+x for each x of xs and returns the normalized x's.
function batch(norm, xs) {
  const out = [];
  for (let i = 0; i < xs.length; i += CHUNK) {
    const parts = norm.normalizeString(xs.slice(i, i + CHUNK).map((x) => SEP + x).join('')).split(SEP);
    out.push(...parts.slice(1));
  }
  return out;
}

function main() {
  const [tokenizerJson, cccCandidatesPath] = process.argv.slice(2);
  const result = { source: 'tokenizers npm ' + require('tokenizers/package.json').version };
  // Full canonical decompositions and NFC of single code points.
  const normCps = cps.filter((c) => c !== SEP.codePointAt(0));  // SEP is itself stable
  const nfdOf = batch(nfd, normCps.map(str));
  const nfcOf = batch(nfc, normCps.map(str));
  result.decomp = [];
  result.not_nfc = [];
  normCps.forEach((c, i) => {
    if (nfdOf[i] !== str(c)) result.decomp.push([c, arr(nfdOf[i])]);
    if (nfcOf[i] !== str(c)) result.not_nfc.push(c);
  });
  // Combining classes: reference marks per class value, kept only where HF agrees that the
  // reference orders after U+0334 (class 1).
  const cand = JSON.parse(fs.readFileSync(cccCandidatesPath, 'utf8'));
  const refs = [];
  for (const v of Object.keys(cand).map(Number).sort((a, b) => a - b)) {
    if (v === 1) { refs.push([1, 0x334]); continue; }
    const ok = cand[v].find((r) => nfd.normalizeString(str(r) + '\u0334') === '\u0334' + str(r));
    if (ok !== undefined) refs.push([v, ok]);
  }
  result.ccc_refs = refs;
  const simple = normCps.filter((c, i) => nfdOf[i] === str(c));
  const r1 = str(0x334), rMax = str(refs[refs.length - 1][1]);
  const a = batch(nfd, simple.map((c) => str(c) + r1));
  const b = batch(nfd, simple.map((c) => rMax + str(c)));
  result.ccc = [];
  simple.forEach((c, i) => {
    const nonzero = a[i] === r1 + str(c) || b[i] === str(c) + rMax ||
                    c === 0x334 || c === refs[refs.length - 1][1];
    if (!nonzero) return;
    let lower = 0, upper = 256;
    for (const [v, r] of refs) {
      if (nfd.normalizeString(str(c) + str(r)) === str(r) + str(c)) lower = Math.max(lower, v);
      if (nfd.normalizeString(str(r) + str(c)) === str(c) + str(r)) upper = Math.min(upper, v);
    }
    const inside = refs.map(([v]) => v).filter((v) => v > lower && v < upper);
    result.ccc.push([c, inside.length === 1 ? inside[0] : Math.floor((lower + upper) / 2)]);
  });
  // Primary composites: composable code points and the pair they compose from.
  const dec = result.decomp.filter(([c]) => !(c >= 0xac00 && c <= 0xd7a3));
  const recomposed = batch(nfc, dec.map(([, d]) => d.map(str).join('')));
  const prefixes = batch(nfc, dec.map(([, d]) => d.slice(0, -1).map(str).join('')));
  result.compose = [];
  dec.forEach(([c, d], i) => {
    if (recomposed[i] !== str(c) || d.length < 2) return;
    const p = arr(prefixes[i]);
    if (p.length === 1) result.compose.push([p[0], d[d.length - 1], c]);
  });
  // Regex classes as HF's Oniguruma sees them: encode with a Split(Removed) pre-tokenizer and
  // see which code points leave tokens behind.
  const j = JSON.parse(fs.readFileSync(tokenizerJson, 'utf8'));
  j.normalizer = null;
  j.added_tokens = [];
  result.classes = {};
  const pending = [];
  for (const [name, re] of [['L', '\\p{L}'], ['N', '\\p{N}'], ['s', '\\s']]) {
    j.pre_tokenizer = { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: re }, behavior: 'Removed', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }] };
    const t = Tokenizer.fromString(JSON.stringify(j));
    pending.push((async () => {
      const members = [];
      for (let i = 0; i < cps.length; i += CHUNK) {
        const chunk = cps.slice(i, i + CHUNK);
        const e = await t.encode(chunk.map(str).join(''), null, { addSpecialTokens: false });
        const kept = new Uint8Array(chunk.length);
        for (const [s, en] of e.getOffsets()) for (let k = s; k < en; k++) kept[k] = 1;
        chunk.forEach((c, k) => { if (!kept[k]) members.push(c); });
      }
      result.classes[name] = members;
    })());
  }
  Promise.all(pending).then(() => process.stdout.write(JSON.stringify(result)));
}

main();
