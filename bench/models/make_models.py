#!/usr/bin/python3
"""
make_models.py: Hugging Face model directories at the real shapes, with
random weights, for bench/run --models (issue 16, item 5).

  make_models.py OUT_DIR [NAME ...]      (default: every name below)
  make_models.py OUT_DIR --smoke         tiny shapes of the same families, for a smoke run

Each OUT_DIR/<name>/ holds what a hub checkpoint of that model holds and our
loaders read: config.json with the real configuration (layers, widths,
heads, FFN, positions, vocabulary size), model.safetensors with every tensor
of the real checkpoint at its real shape (random, fixed seed: speed does not
depend on the values), and a tokenizer of the real vocabulary size:

  - BERT, DistilBERT, MiniLM: the real bert-base-uncased WordPiece files
    (30,522 pieces), copied from test/fixtures/hf/bert-tiny-random;
  - RoBERTa: a byte-level BPE tokenizer.json of 50,265 pieces and their
    merges, synthesised from the words of the texts in bench/data (each
    frequent word built left to right, one merge per prefix) in the layout
    of test/fixtures/hf/roberta-tiny-random;
  - T5: a Unigram tokenizer.json of 32,000 pieces + 100 <extra_id_N>
    (32,100; the embedding has 32,128 rows as in t5-small/t5-base), pieces
    and scores (log frequency) from the same words and their prefixes and
    suffixes, NFKC + Metaspace, "</s>" appended, as the hub's t5 files are
    laid out (without their Precompiled normalizer blob);
  - XLM-RoBERTa (multilingual-e5-small): a Unigram tokenizer.json of
    250,002 ids as xlm-roberta-base's is numbered (<s> <pad> </s> <unk>,
    the pieces, <mask> last; the embedding has 250,037 rows as in
    intfloat/multilingual-e5-small), in the layout of
    test/fixtures/hf/xlm-roberta-tiny-random (NFKC, Metaspace, the RoBERTa
    template <s> A </s>).  The pieces are T5's kind (words, prefixes and
    suffixes of the bench/data words), the 150,000 most frequent as they
    are; the rest of the 249,997 are taken down the same frequency list
    and spelled in other scripts, a letter at a time -- Cyrillic and Greek
    (2 bytes a letter) and CJK ideographs (one for each pair of letters, 3
    bytes), a third each -- so that the file has the multilingual mix of
    multi-byte pieces (9.3 MB as written here) and the trie its wider
    branching; scores are log frequencies, and the transliterated pieces
    keep their word's.  The corpus gives 316k distinct pieces, so none has
    to be invented.  Like T5's, without the hub's Precompiled normalizer.

Only numpy is needed (safetensors are written by hand: an 8-byte header
length, the JSON header, the tensors little-endian, every offset 8-aligned).
bert-base-bf16 is bert-base's weights in BF16, to time the one conversion
to float32 at load.
"""
import gzip
import json
import math
import os
import re
import shutil
import sys
from collections import Counter

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(ROOT, "test", "fixtures", "hf")

BERT_COMMON = {"hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
               "initializer_range": 0.02, "layer_norm_eps": 1e-12, "position_embedding_type": "absolute",
               "transformers_version": "4.36.0", "use_cache": True}

MODELS = {
    # sentence-transformers/all-MiniLM-L6-v2: 6 x 384, mean pooling (1_Pooling)
    "minilm-l6": ("bert", dict(BERT_COMMON, architectures=["BertModel"], model_type="bert", hidden_size=384,
                               num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                               max_position_embeddings=512, type_vocab_size=2, vocab_size=30522,
                               pad_token_id=0)),
    "bert-base": ("bert", dict(BERT_COMMON, architectures=["BertModel"], model_type="bert", hidden_size=768,
                               num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                               max_position_embeddings=512, type_vocab_size=2, vocab_size=30522,
                               pad_token_id=0)),
    "distilbert-base": ("distilbert", {"activation": "gelu", "architectures": ["DistilBertModel"],
                                       "attention_dropout": 0.1, "dim": 768, "dropout": 0.1, "hidden_dim": 3072,
                                       "initializer_range": 0.02, "max_position_embeddings": 512,
                                       "model_type": "distilbert", "n_heads": 12, "n_layers": 6,
                                       "pad_token_id": 0, "qa_dropout": 0.1, "seq_classif_dropout": 0.2,
                                       "sinusoidal_pos_embds": False, "tie_weights_": True,
                                       "transformers_version": "4.36.0", "vocab_size": 30522}),
    "roberta-base": ("roberta", dict(BERT_COMMON, architectures=["RobertaModel"], model_type="roberta",
                                     hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
                                     vocab_size=50265, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                                     eos_token_id=2)),
    "t5-small": ("t5", {"architectures": ["T5ForConditionalGeneration"], "d_ff": 2048, "d_kv": 64,
                        "d_model": 512, "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1,
                        "feed_forward_proj": "relu", "initializer_factor": 1.0, "is_encoder_decoder": True,
                        "layer_norm_epsilon": 1e-6, "model_type": "t5", "n_positions": 512,
                        "num_decoder_layers": 6, "num_heads": 8, "num_layers": 6, "pad_token_id": 0,
                        "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32,
                        "tie_word_embeddings": True, "transformers_version": "4.36.0", "use_cache": True,
                        "vocab_size": 32128}),
    "t5-base": ("t5", {"architectures": ["T5ForConditionalGeneration"], "d_ff": 3072, "d_kv": 64,
                       "d_model": 768, "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1,
                       "feed_forward_proj": "relu", "initializer_factor": 1.0, "is_encoder_decoder": True,
                       "layer_norm_epsilon": 1e-6, "model_type": "t5", "n_positions": 512,
                       "num_decoder_layers": 12, "num_heads": 12, "num_layers": 12, "pad_token_id": 0,
                       "relative_attention_max_distance": 128, "relative_attention_num_buckets": 32,
                       "tie_word_embeddings": True, "transformers_version": "4.36.0", "use_cache": True,
                       "vocab_size": 32128}),
}
# intfloat/multilingual-e5-small's widths and vocabulary, as the xlm-roberta family (the hub's
# config.json says model_type "bert": BertModel, 512 positions, pad 0, type_vocab 2, with
# XLMRobertaTokenizer; this one is XLM-RoBERTa, positions after the padding id), mean pooling
MODELS["multilingual-e5-small"] = ("xlm-roberta", dict(
    BERT_COMMON, architectures=["XLMRobertaModel"], model_type="xlm-roberta", hidden_size=384,
    num_hidden_layers=12, num_attention_heads=12, intermediate_size=1536, max_position_embeddings=514,
    type_vocab_size=1, vocab_size=250037, layer_norm_eps=1e-12, pad_token_id=1, bos_token_id=0,
    eos_token_id=2, tie_word_embeddings=True))
MODELS["bert-base-bf16"] = MODELS["bert-base"]
# models added later draw the seeds after the first seven's (which keep theirs)
LATER = ["multilingual-e5-small"]


def seed_of(name):
    return (sorted(n for n in MODELS if n not in LATER) + LATER).index(name) + 1


def smoke_config(family, cfg):
    """The same family at fixture-like widths (bench/run --models --smoke)."""
    c = dict(cfg)
    if family in ("bert", "roberta", "xlm-roberta"):
        c.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
    elif family == "distilbert":
        c.update(dim=64, n_layers=2, n_heads=4, hidden_dim=128)
    else:
        c.update(d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2, num_decoder_layers=2)
    return c


# --- weights -------------------------------------------------------------------

def bert_tensors(family, c):
    """(name, shape, kind) of every tensor of the checkpoint; kind: w (linear), e (embedding), 1, 0."""
    if family == "distilbert":
        H, F, L, V, P = c["dim"], c["hidden_dim"], c["n_layers"], c["vocab_size"], c["max_position_embeddings"]
        t = [("embeddings.word_embeddings.weight", (V, H), "e"),
             ("embeddings.position_embeddings.weight", (P, H), "e"),
             ("embeddings.LayerNorm.weight", (H,), "1"), ("embeddings.LayerNorm.bias", (H,), "0")]
        for l in range(L):
            p = f"transformer.layer.{l}."
            for lin in ("q_lin", "k_lin", "v_lin", "out_lin"):
                t += [(p + f"attention.{lin}.weight", (H, H), "w"), (p + f"attention.{lin}.bias", (H,), "0")]
            t += [(p + "sa_layer_norm.weight", (H,), "1"), (p + "sa_layer_norm.bias", (H,), "0"),
                  (p + "ffn.lin1.weight", (F, H), "w"), (p + "ffn.lin1.bias", (F,), "0"),
                  (p + "ffn.lin2.weight", (H, F), "w"), (p + "ffn.lin2.bias", (H,), "0"),
                  (p + "output_layer_norm.weight", (H,), "1"), (p + "output_layer_norm.bias", (H,), "0")]
        return t
    H, F, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    t = [("embeddings.word_embeddings.weight", (V, H), "e"),
         ("embeddings.position_embeddings.weight", (c["max_position_embeddings"], H), "e"),
         ("embeddings.token_type_embeddings.weight", (c["type_vocab_size"], H), "e"),
         ("embeddings.LayerNorm.weight", (H,), "1"), ("embeddings.LayerNorm.bias", (H,), "0")]
    for l in range(L):
        p = f"encoder.layer.{l}."
        for lin in ("query", "key", "value"):
            t += [(p + f"attention.self.{lin}.weight", (H, H), "w"), (p + f"attention.self.{lin}.bias", (H,), "0")]
        t += [(p + "attention.output.dense.weight", (H, H), "w"), (p + "attention.output.dense.bias", (H,), "0"),
              (p + "attention.output.LayerNorm.weight", (H,), "1"), (p + "attention.output.LayerNorm.bias", (H,), "0"),
              (p + "intermediate.dense.weight", (F, H), "w"), (p + "intermediate.dense.bias", (F,), "0"),
              (p + "output.dense.weight", (H, F), "w"), (p + "output.dense.bias", (H,), "0"),
              (p + "output.LayerNorm.weight", (H,), "1"), (p + "output.LayerNorm.bias", (H,), "0")]
    t += [("pooler.dense.weight", (H, H), "w"), ("pooler.dense.bias", (H,), "0")]
    return t


def t5_tensors(c):
    d, F, kv, h, V = c["d_model"], c["d_ff"], c["d_kv"], c["num_heads"], c["vocab_size"]
    inner, nb = kv * h, c["relative_attention_num_buckets"]
    t = [("shared.weight", (V, d), "e")]
    for side, L in (("encoder", c["num_layers"]), ("decoder", c["num_decoder_layers"])):
        for l in range(L):
            p = f"{side}.block.{l}.layer."
            t += [(p + f"0.SelfAttention.{x}.weight", (inner, d) if x != "o" else (d, inner), "w") for x in "qkvo"]
            if l == 0:
                t.append((p + "0.SelfAttention.relative_attention_bias.weight", (nb, h), "e"))
            t.append((p + "0.layer_norm.weight", (d,), "1"))
            ff = 1
            if side == "decoder":
                t += [(p + f"1.EncDecAttention.{x}.weight", (inner, d) if x != "o" else (d, inner), "w")
                      for x in "qkvo"]
                t.append((p + "1.layer_norm.weight", (d,), "1"))
                ff = 2
            t += [(p + f"{ff}.DenseReluDense.wi.weight", (F, d), "w"),
                  (p + f"{ff}.DenseReluDense.wo.weight", (d, F), "w"),
                  (p + f"{ff}.layer_norm.weight", (d,), "1")]
        t.append((f"{side}.final_layer_norm.weight", (d,), "1"))
    return t


def write_safetensors(path, tensors, seed, bf16=False, emb_std=0.02):
    """Random tensors: linear weights N(0, 1/fan_in), embeddings N(0, emb_std^2), norms 1, biases 0."""
    rng = np.random.default_rng(seed)
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    elt = 2 if bf16 else 4
    for name, shape, _ in tensors:
        n = int(np.prod(shape)) * elt
        header[name] = {"dtype": "BF16" if bf16 else "F32", "shape": list(shape),
                        "data_offsets": [offset, offset + n]}
        offset += n + (-n) % 8
        header[name]["_pad"] = (-n) % 8
    pads = {k: v.pop("_pad") for k, v in header.items() if k != "__metadata__"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-len(text)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for name, shape, kind in tensors:
            if kind == "1":
                a = np.ones(shape, np.float32)
            elif kind == "0":
                a = np.zeros(shape, np.float32)
            else:
                a = rng.standard_normal(shape, dtype=np.float32)
                a *= emb_std if kind == "e" else 1.0 / math.sqrt(shape[-1])
            if bf16:
                f.write((a.view(np.uint32) >> 16).astype("<u2").tobytes())
            else:
                f.write(a.astype("<f4").tobytes())
            f.write(b"\0" * pads[name])
    os.replace(tmp, path)


# --- tokenizers ----------------------------------------------------------------

def corpus_words():
    """Word counts of every text in bench/data (lower and mixed case as written)."""
    counts = Counter()
    data = os.path.join(ROOT, "bench", "data")
    for dirpath, _, files in os.walk(data):
        for fn in files:
            if not fn.endswith(".gz"):
                continue
            with gzip.open(os.path.join(dirpath, fn), "rt", encoding="utf-8", errors="replace") as f:
                for line in f:
                    counts.update(re.findall(r"[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]", line))
    return counts


def bytes_to_unicode():
    """GPT-2's byte -> printable character table (the ByteLevel pre-tokenizer's alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def bpe_tokenizer(words, size):
    """Byte-level BPE of `size` ids: specials, the 256 bytes, then word prefixes by frequency."""
    b2u = bytes_to_unicode()
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for b in range(256):
        vocab.setdefault(b2u[b], len(vocab))
    merges = []
    last = size - 1     # <mask> is the last id, as in roberta-base
    for w, _ in words.most_common():
        for form in ("Ġ" + w, w):
            enc = "".join(b2u[b] for b in form.encode("utf-8")) if form[0] != "Ġ" else \
                "Ġ" + "".join(b2u[b] for b in w.encode("utf-8"))
            for k in range(2, len(enc) + 1):
                if len(vocab) >= last:
                    break
                piece = enc[:k]
                if piece not in vocab:
                    merges.append([enc[:k - 1], enc[k - 1]])
                    vocab[piece] = len(vocab)
        if len(vocab) >= last:
            break
    i = 0
    while len(vocab) < last:    # too few words: pieces of two pieces
        a, b = merges[i % len(merges)][0], merges[(7 * i + 3) % len(merges)][0]
        if a + b not in vocab:
            merges.append([a, b])
            vocab[a + b] = len(vocab)
        i += 1
    vocab["<mask>"] = last
    src = json.load(open(os.path.join(FIX, "roberta-tiny-random", "tokenizer.json")))
    src["added_tokens"] = [dict(t, id=vocab[t["content"]]) for t in src["added_tokens"]]
    src["model"]["vocab"] = vocab
    src["model"]["merges"] = merges
    return src


def unigram_tokenizer(words, pieces_wanted):
    """T5's layout: the most frequent of unigram_counts, specials first, <extra_id_N> last."""
    counts = unigram_counts(words)
    chosen = [p for p, _ in counts.most_common(pieces_wanted - 3)]
    total = sum(counts[p] for p in chosen)
    vocab = [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
    vocab += [[p, math.log(counts[p] / total)] for p in chosen]
    added = [{"id": i, "content": v[0], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, v in enumerate(vocab[:3])]
    for k in range(99, -1, -1):    # t5's <extra_id_99> .. <extra_id_0> end the vocabulary
        added.append({"id": len(vocab), "content": f"<extra_id_{k}>", "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": False, "special": True})
        vocab.append([f"<extra_id_{k}>", 0.0])
    src = json.load(open(os.path.join(FIX, "t5-tiny-random", "tokenizer.json")))
    src["added_tokens"] = added
    src["model"]["vocab"] = vocab
    src["post_processor"] = {"type": "TemplateProcessing",
                             "single": [{"Sequence": {"id": "A", "type_id": 0}},
                                        {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                             "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}},
                                      {"Sequence": {"id": "B", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                             "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}}
    return src


def unigram_counts(words):
    """Unigram candidates: whole words with the Metaspace mark, their prefixes and suffixes, characters."""
    counts = Counter()
    for w, c in words.items():
        counts["▁" + w] += c
        for k in range(1, len(w)):
            counts["▁" + w[:k]] += c // 2 + 1
            counts[w[k:]] += c // 4 + 1
        for ch in w:
            counts[ch] += c
    counts["▁"] += sum(words.values())
    return counts


CYRILLIC = "абцдефгхийклмнопярстужвьызАБЦДЕФГХИЙКЛМНОПЯРСТУЖВЬЫЗ"
GREEK = "αβψδεφγηιξκλμνοπθρστυωςχυζΑΒΨΔΕΦΓΗΙΞΚΛΜΝΟΠΘΡΣΤΥΩΣΧΥΖ"


def transliterate(piece, script):
    """piece (ASCII letters, digits, marks) in another script: 0 Cyrillic, 1 Greek, 2 CJK."""
    mark = "▁" if piece.startswith("▁") else ""
    body = piece[len(mark):]
    if script < 2:
        table = CYRILLIC if script == 0 else GREEK
        return mark + "".join(table[ord(ch) - 97] if "a" <= ch <= "z" else
                              table[ord(ch) - 39] if "A" <= ch <= "Z" else ch for ch in body)
    # one ideograph per pair of characters, from U+4E00 (the CJK block's 20,992)
    return mark + "".join(chr(0x4E00 + (ord(body[i]) * 131 + ord(body[i + 1] if i + 1 < len(body) else " ")) % 20992)
                          for i in range(0, len(body), 2))


def xlmr_tokenizer(words, pieces_wanted=250002, ascii_pieces=150000):
    """XLM-R's Unigram layout: <s> <pad> </s> <unk>, the pieces, <mask> last (see the docstring)."""
    counts = unigram_counts(words)
    ranked = counts.most_common()
    total = sum(c for _, c in ranked)
    seen = {"<s>", "<pad>", "</s>", "<unk>", "<mask>"}
    vocab = [["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
    want = pieces_wanted - 5
    for p, c in ranked[:ascii_pieces]:
        seen.add(p)
        vocab.append([p, math.log(c / total)])
    k = 0
    for p, c in ranked[ascii_pieces:]:
        if len(vocab) - 4 >= want:
            break
        t = transliterate(p, k % 3)
        if t in seen or t == "▁":
            continue
        seen.add(t)
        vocab.append([t, math.log(c / total)])
        k += 1
    if len(vocab) - 4 < want:
        raise SystemExit(f"the corpus gave {len(vocab) - 4} pieces, {want} wanted")
    vocab.append(["<mask>", 0.0])
    src = json.load(open(os.path.join(FIX, "xlm-roberta-tiny-random", "tokenizer.json")))
    ids = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": len(vocab) - 1}
    src["added_tokens"] = [dict(t, id=ids[t["content"]]) for t in src["added_tokens"]]
    src["model"]["vocab"] = vocab
    src["model"]["unk_id"] = 3
    for name, sp in src["post_processor"]["special_tokens"].items():
        sp["ids"] = [ids[name]]
    return src


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=None if path.endswith("tokenizer.json") else 2)


def make(out, name, smoke, words_cache):
    family, cfg = MODELS[name]
    if smoke:
        cfg = smoke_config(family, cfg)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, "config.json"), cfg)
    seed = seed_of(name)
    if family == "t5":
        write_safetensors(os.path.join(d, "model.safetensors"), t5_tensors(cfg), seed, emb_std=1.0)
    else:
        write_safetensors(os.path.join(d, "model.safetensors"), bert_tensors(family, cfg),
                          seed_of(name.replace("-bf16", "")), bf16=name.endswith("-bf16"))
    if family in ("bert", "distilbert"):
        for fn in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(os.path.join(FIX, "bert-tiny-random", fn), d)
    else:
        if "words" not in words_cache:
            words_cache["words"] = corpus_words()
        if family == "roberta":
            tok = bpe_tokenizer(words_cache["words"], cfg["vocab_size"])
            shutil.copy(os.path.join(FIX, "roberta-tiny-random", "tokenizer_config.json"), d)
        elif family == "xlm-roberta":
            tok = xlmr_tokenizer(words_cache["words"])
            shutil.copy(os.path.join(FIX, "xlm-roberta-tiny-random", "tokenizer_config.json"), d)
        else:
            tok = unigram_tokenizer(words_cache["words"], 32000)
            shutil.copy(os.path.join(FIX, "t5-tiny-random", "tokenizer_config.json"), d)
        write_json(os.path.join(d, "tokenizer.json"), tok)
    if name in ("minilm-l6", "multilingual-e5-small"):    # sentence-transformers' mean pooling
        os.makedirs(os.path.join(d, "1_Pooling"), exist_ok=True)
        write_json(os.path.join(d, "1_Pooling", "config.json"),
                   {"word_embedding_dimension": 384, "pooling_mode_cls_token": False,
                    "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                    "pooling_mode_mean_sqrt_len_tokens": False})
    size = os.path.getsize(os.path.join(d, "model.safetensors"))
    print(json.dumps({"model": name, "dir": d, "family": family, "safetensors_bytes": size}))


def main():
    out = sys.argv[1]
    args = sys.argv[2:]
    smoke = "--smoke" in args
    names = [a for a in args if a != "--smoke"] or list(MODELS)
    cache = {}
    for n in names:
        if n not in MODELS:
            raise SystemExit(f"unknown model {n}; known: {' '.join(MODELS)}")
        make(out, n, smoke, cache)


if __name__ == "__main__":
    main()
