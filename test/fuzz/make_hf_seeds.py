#!/usr/bin/env python3
"""Write the seed corpora of fuzz_hf_config, fuzz_wordpiece and fuzz_hf_unigram.

    test/fuzz/make_hf_seeds.py [HF_DIR]      (default test/fixtures/hf)

The seeds are small valid examples cut from the Hugging Face fixtures in
HF_DIR (bert-tiny-random: the real bert-base-uncased
tokenizer.json and vocab.txt; t5-tiny-random: a Unigram tokenizer.json),
variants of them that reach the readers' other branches, a few hostile
ones, and texts.  Precompiled charsmaps are darts-clone double arrays
built here the way test/nn/test_t5.c builds them.  Run from the repository
root; it rewrites test/fuzz/corpus/{hf_config,wordpiece,hf_unigram}/ and
prints the base64 charsmap that fuzz_hf_unigram.c embeds (CHARSMAP_B64).
"""
import base64
import copy
import json
import os
import struct
import sys

HF = sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/hf"
OUT = "test/fuzz/corpus"


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# ---- darts-clone double array (see hf_unigram.h) ---------------------------

def charsmap_blob(pairs):
    """pairs: [(key bytes, replacement bytes)] -> the Precompiled blob."""
    n = 4096
    units = [0] * n
    used = [False] * n
    base_used = [False] * n
    used[0] = True
    strings = b""
    values = []
    for _, rep in pairs:
        values.append(len(strings))
        strings += rep + b"\0"
    keys = [k for k, _ in pairs]

    def place(pos, prefix):
        depth = len(prefix)
        child = set()
        leaf = -1
        for i, k in enumerate(keys):
            if len(k) < depth or k[:depth] != prefix:
                continue
            if len(k) == depth:
                leaf = i
            else:
                child.add(k[depth])
        for base in range(1, n - 256):
            ok = not base_used[base] and (not used[base] or leaf < 0)
            ok = ok and all(not used[base ^ c] for c in child)
            if ok and (base ^ pos) < (1 << 21) and (leaf < 0 or not used[base]):
                break
        else:
            raise RuntimeError("double array full")
        base_used[base] = True
        units[pos] |= (base ^ pos) << 10
        if leaf >= 0:
            units[pos] |= 1 << 8
            used[base] = True
            units[base] = values[leaf] | (1 << 31)
        for c in child:
            used[base ^ c] = True
            units[base ^ c] = c
        for c in sorted(child):
            place(base ^ c, prefix + bytes([c]))

    place(0, b"")
    n_units = max(i for i in range(n) if used[i]) + 1
    trie = b"".join(struct.pack("<I", u) for u in units[:n_units])
    return struct.pack("<I", 4 * n_units) + trie + strings


def u(s):
    return s.encode("utf-8")


# an nmt_nfkc-like handful: ligature, full width, spaces, a deletion, a cluster, a long expansion
CHARSMAP_PAIRS = [
    (u("\ufb01"), u("fi")),
    (u("\uff21"), u("A")),
    (u("\uff41"), u("a")),
    (u("\u00a0"), u(" ")),
    (u("\u3000"), u(" ")),
    (u("\u200d"), u("")),
    (u("\u2460"), u("1")),
    (u("e\u0301"), u("\u00e9")),
    (u("\u1e9b\u0323"), u("\u1e69")),
    (u("\ufdfa"), u("\u0635\u0644\u0649 \u0627\u0644\u0644\u0647")),
    (u("\u2126"), u("\u03c9")),
    (u("\t"), u(" ")),
]


# ---- hf_config ------------------------------------------------------------

def config_seeds():
    for d in ("bert-tiny-random", "t5-tiny-random"):
        with open(os.path.join(HF, d, "config.json"), "rb") as f:
            put("hf_config", d + ".json", f.read())
    with open(os.path.join(HF, "bert-tiny-random", "config.json")) as f:
        bert = json.load(f)
    m = copy.deepcopy(bert)
    del m["model_type"]
    m["architectures"] = ["BertModel"]
    m.pop("layer_norm_eps", None)
    put("hf_config", "minilm_no_model_type.json", dumps(m))
    m = copy.deepcopy(bert)
    m.update(hidden_size=32.0, layer_norm_eps=1e-7, pad_token_id=-1, type_vocab_size=0,
             max_position_embeddings=None, hidden_act=None)
    put("hf_config", "floats_nulls.json", dumps(m))
    m = copy.deepcopy(bert)
    m.update(hidden_size=65536, num_attention_heads=65536, intermediate_size=16 * 65536,
             vocab_size=1 << 24, num_hidden_layers=1024, max_position_embeddings=1 << 20)
    put("hf_config", "limits.json", dumps(m))
    put("hf_config", "heads_do_not_divide.json",
        '{"hidden_size":30,"num_hidden_layers":1,"num_attention_heads":4,'
        '"intermediate_size":8,"vocab_size":9}')
    put("hf_config", "bad_values.json",
        '{"hidden_size":1e999,"num_hidden_layers":-0,"num_attention_heads":"4",'
        '"intermediate_size":8.5,"vocab_size":16777217,"layer_norm_eps":1,'
        '"hidden_act":"' + "g" * 70 + '"}')
    # member lists for the harness's completed mode
    put("hf_config", "members_eps.txt", '"layer_norm_eps": 1e-5, "model_type": "roberta"')
    put("hf_config", "members_arch.txt", '"architectures": ["BertForMaskedLM", 3], '
        '"position_embedding_type": "relative_key"')
    put("hf_config", "members_escape.txt", '"model_type": "be\\u0000rt", "hidden_act": "gelu\\n"')
    put("hf_config", "not_object.json", "[1, 2, {\"hidden_size\": 3}]")


# ---- wordpiece ------------------------------------------------------------

def wordpiece_seeds():
    with open(os.path.join(HF, "bert-tiny-random", "tokenizer.json")) as f:
        tj = json.load(f)
    vocab = tj["model"]["vocab"]
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    words = {"the", "a", "film", "good", "un", "##aff", "##able", "hello", "world", "!", ",", ".",
             "'", "caf", "##e", "cafe", "e", "##s", "is", "not", "bad", "[", "]", "中", "文",
             "##ing", "play", "fi", "##ne", "i", "##i"}
    keep = dict(by_id[:3] + by_id[100:104])  # [PAD] [unused0] [unused1] [UNK] [CLS] [SEP] [MASK]
    keep.update({k: v for k, v in by_id[1000:1100]})
    keep.update({w: vocab[w] for w in sorted(words) if w in vocab})
    small = copy.deepcopy(tj)
    small["model"]["vocab"] = keep
    small["truncation"] = None
    small["padding"] = None
    put("wordpiece", "tokenizer_small.json", dumps(small))
    # renumbered ids 0..n-1, BertProcessing, no normalizer, other prefix, small word limit
    ren = {t: i for i, t in enumerate(sorted(keep, key=keep.get))}
    v = copy.deepcopy(small)
    v["model"]["vocab"] = ren
    v["model"]["continuing_subword_prefix"] = "@@"
    v["model"]["max_input_chars_per_word"] = 7
    v["normalizer"] = None
    v["post_processor"] = {"type": "BertProcessing", "cls": ["[CLS]", ren["[CLS]"]],
                           "sep": ["[SEP]", ren["[SEP]"]]}
    v["added_tokens"] = [{"id": ren["[MASK]"], "content": "[MASK]", "special": True,
                          "normalized": False, "single_word": True},
                         {"id": ren["[SEP]"], "content": "[SEP]", "special": True}]
    put("wordpiece", "tokenizer_variant.json", dumps(v))
    v = copy.deepcopy(small)
    v["normalizer"] = {"type": "BertNormalizer", "clean_text": False, "handle_chinese_chars": False,
                       "strip_accents": True, "lowercase": False}
    v["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel"}, {"type": "RobertaProcessing", "cls": ["[CLS]", 101],
                                "sep": ["[SEP]", 102]}]}
    v["model"]["vocab"]["dup"] = 101                 # a second token for id 101
    put("wordpiece", "tokenizer_sequence.json", dumps(v))
    v = copy.deepcopy(small)
    v["post_processor"]["single"] = [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                     {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                     {"Sequence": {"id": "A", "type_id": 0}},
                                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}]
    put("wordpiece", "tokenizer_two_cls.json", dumps(v))
    put("wordpiece", "tokenizer_min.json",
        '{"model":{"type":"WordPiece","vocab":{"[UNK]":0,"a":1,"##b":2,"":3}},'
        '"pre_tokenizer":{"type":"BertPreTokenizer"},"normalizer":null,"post_processor":null,'
        '"added_tokens":[{"id":2,"content":"xy","special":true},{"id":1,"content":"",'
        '"special":true}]}')
    put("wordpiece", "tokenizer_bad_ids.json",
        '{"model":{"type":"WordPiece","vocab":{"[UNK]":16777216,"a":1.5}},'
        '"pre_tokenizer":{"type":"BertPreTokenizer"}}')
    # vocab.txt: the first 120 lines plus the words above, and variants
    with open(os.path.join(HF, "bert-tiny-random", "vocab.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    txt = lines[:110] + sorted(w for w in words if w in vocab)
    put("wordpiece", "vocab_small.txt", "\n".join(txt) + "\n")
    put("wordpiece", "vocab_crlf.txt", "[PAD]\r\n[UNK] \r\n[CLS]\t\r\n[SEP]\r\n\r\nab\r\n##c")
    put("wordpiece", "vocab_min.txt", "[UNK]\n[CLS]\n[SEP]")
    put("wordpiece", "vocab_no_sep.txt", "[UNK]\n[CLS]\n[PAD]\n[PAD]\n")
    with open(os.path.join(HF, "bert-tiny-random", "tokenizer_config.json"), "rb") as f:
        put("wordpiece", "tokenizer_config.json", f.read())
    put("wordpiece", "tokenizer_config_cased.json",
        '{"do_lower_case":false,"strip_accents":true,"tokenize_chinese_chars":false}')
    texts = {
        "text_ascii.txt": "Hello, world! This film isn't un-affable at all... [CLS] x [SEP]",
        "text_accents.txt": "Caf\u00e9 na\u00efve \u00c9COLE e\u0301 \u0130stanbul \u1e9b\u0323",
        "text_cjk.txt": "\u4e2d\u6587\u5b57 \ud55c\uad6d\uc5b4 \u65e5\u672c\u8a9e\u3002\U00020000",
        "text_controls.txt": "a\u0000b\u00adc\u200bd\ufffde\u0085f\u3000g\th\r\ni\u2028",
        "text_long_word.txt": "x" * 150 + " " + "\u00e9" * 120,
        "text_punct.txt": "\u00bfQu\u00e9? \u2014 \u00ab \u201cquoted\u201d \u00bb ((a))..!!",
        "text_marks.txt": "a" + "\u0301\u0308\u0903" * 20 + "b\u0903\u0301",
    }
    for name, t in texts.items():
        put("wordpiece", name, t)
    put("wordpiece", "text_invalid.bin", b"ab\xff\xfe\xc3 \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82")
    # what the fuzzer found (test/nn/test_hf_readers.c): a NUL in a word read past the arena
    put("wordpiece", "crash_nul_in_word.json",
        b'{"model":{"type":"WordPiece","vocab":{"[UNK]":0,"c":1}},'
        b'"pre_tokenizer":{"type":"BertPreTokenizer"},"normalizer":null} c\0')


# ---- hf_unigram -----------------------------------------------------------

T5_SPECIALS = {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}


def t5_layout(tj, b64):
    """The layout of real T5 checkpoints around tj's vocabulary."""
    t = copy.deepcopy(tj)
    t["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Precompiled", "precompiled_charsmap": b64},
        {"type": "Strip", "strip_left": False, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}]}
    t["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "special_tokens": T5_SPECIALS}
    return t


def unigram_seeds():
    with open(os.path.join(HF, "t5-tiny-random", "tokenizer.json")) as f:
        tj = json.load(f)
    tj["decoder"] = None
    small = copy.deepcopy(tj)
    small["model"]["vocab"] = tj["model"]["vocab"][:100]
    put("hf_unigram", "t5_small.json", dumps(small))
    blob = charsmap_blob(CHARSMAP_PAIRS)
    b64 = base64.b64encode(blob).decode()
    put("hf_unigram", "t5_precompiled.json", dumps(t5_layout(small, b64)))
    v = copy.deepcopy(small)
    v["model"]["byte_fallback"] = True
    v["model"]["vocab"] = small["model"]["vocab"][:60] + \
        [["<0x%02X>" % b, -30.0] for b in range(256)]
    v["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFD"}, {"type": "Lowercase"}, {"type": "NFC"},
        {"type": "Replace", "pattern": {"String": "``"}, "content": "\""},
        {"type": "Replace", "pattern": {"Regex": "a{2,3}"}, "content": "b"},
        {"type": "Replace", "pattern": {"Regex": "\\.+"}, "content": "."},
        {"type": "Strip", "strip_left": True, "strip_right": True}]}
    v["pre_tokenizer"] = {"type": "Metaspace", "replacement": "_", "prepend_scheme": "first",
                          "split": False}
    v["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [400, 401]},
                                              "</s>": {"id": "</s>", "ids": [1],
                                                       "tokens": ["</s>"]}}}
    v["added_tokens"] = tj["added_tokens"] + [
        {"id": 320, "content": "hello world", "normalized": True},
        {"id": 321, "content": "<mask>", "normalized": False}]
    put("hf_unigram", "byte_fallback_nfd.json", dumps(v))
    v = copy.deepcopy(small)
    v["normalizer"] = {"type": "NFKD"}
    v["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": False}
    v["post_processor"] = None
    v["added_tokens"] = [{"id": 7, "content": "</s>", "normalized": False}]
    v["model"]["vocab"] = [p for p in small["model"]["vocab"] if p[0] != "</s>"]
    put("hf_unigram", "eos_only_added.json", dumps(v))
    put("hf_unigram", "min.json",
        '{"model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0],["a",-1],["ab",-1.5],'
        '["b",-1e308]]},"normalizer":null,"pre_tokenizer":null,"post_processor":null}')
    put("hf_unigram", "bad_regex.json",
        '{"model":{"type":"Unigram","unk_id":0,"vocab":[["x",0]]},'
        '"normalizer":{"type":"Replace","pattern":{"Regex":"\\\\s+"},"content":" "}}')
    put("hf_unigram", "bad_charsmap.json",
        '{"model":{"type":"Unigram","unk_id":0,"vocab":[["x",0]]},'
        '"normalizer":{"type":"Precompiled","precompiled_charsmap":"//8AAAECAwQ="}}')
    # charsmap blobs for the harness's charsmap mode: byte 0 = trie units, then units, strings
    n_units = struct.unpack("<I", blob[:4])[0] // 4
    if n_units < 256:
        put("hf_unigram", "charsmap_nfkc_like.bin", bytes([n_units]) + blob[4:])
    small_blob = charsmap_blob([(u("x"), u("")), (u("\u00e9"), u("e")), (u("ab"), u("AB"))])
    put("hf_unigram", "charsmap_small.bin",
        bytes([struct.unpack("<I", small_blob[:4])[0] // 4]) + small_blob[4:])
    wild = bytes([8]) + b"".join(struct.pack("<I", 0xFFFFFD00 | (i * 29 + 97)) for i in range(8)) + b"z"
    put("hf_unigram", "charsmap_wild.bin", wild)
    texts = {
        "text_ascii.txt": "Hello world, this is a film.  It's   good! <mask> </s>",
        "text_unicode.txt": "\ufb01ne \uff21\uff41 caf\u00e9 e\u0301 \u2460 \u1e9b\u0323 \ufdfa \u2126 \u3000x\u00a0y",
        "text_spaces.txt": "  \u2581 leading\t\ttabs \u2581\u2581 trailing   ",
        "text_cjk_emoji.txt": "\u4e2d\u6587 \ud55c\uad6d\uc5b4 \U0001f600\U0001f3fd \u0130 \u00df",
        "text_clusters.txt": "e\u0301\u0301\u0301 \U0001f469\u200d\U0001f469\u200d\U0001f467 a\u200db",
    }
    for name, t in texts.items():
        put("hf_unigram", name, t)
    put("hf_unigram", "text_invalid.bin", b"ab\xff\xfe\xc3 \xed\xa0\x80 \x00 \xf4\x90\x80\x80 \xe2\x82")
    # what the fuzzer found (test/nn/test_hf_readers.c)
    model = b'{"model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0],["a",-1]]},'
    put("hf_unigram", "crash_eos_added_only.json",
        model + b'"added_tokens":[{"id":5,"content":"</s>"}]}')
    put("hf_unigram", "crash_replace_not_utf8.json",
        model + b'"normalizer":{"type":"Replace","pattern":{"String":"a"},"content":"\xff"}} a')
    put("hf_unigram", "crash_regex_not_utf8.json",
        model + b'"normalizer":{"type":"Replace","pattern":{"Regex":"\xc3"},"content":"x"}} \xc3\xa9')
    put("hf_unigram", "crash_empty_piece.json",
        b'{"model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0],["\0\0\0\x80e",-1]]}}')
    r = {"type": "Replace", "pattern": {"String": "a"}, "content": "aaaaaaaa"}
    put("hf_unigram", "crash_replace_blowup.json",
        model + b'"normalizer":' + dumps({"type": "Sequence", "normalizers": [r] * 12}).encode() + b"}")
    # charsmap mode: x -> offset 1 of "\xc3\xa9" (three units: root, 'x' with a leaf, the value)
    units = [0x79 << 10, (3 << 10) | 0x100 | 0x78, 0x80000001]
    put("hf_unigram", "crash_charsmap_mid_char.bin",
        bytes([len(units)]) + b"".join(struct.pack("<I", x) for x in units) + b"\xc3\xa9\0 axa")
    return b64


if __name__ == "__main__":
    config_seeds()
    wordpiece_seeds()
    print(unigram_seeds())
