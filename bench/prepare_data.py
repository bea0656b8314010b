#!/usr/bin/env python3
"""Convert the labelled data sets in bench/data into uniform TSV files.

bench/data holds each set's original files gzip-compressed (bench/data/README.md
has their provenance and licences); a file is read as NAME or NAME.gz.  MRPC,
whose licence forbids redistribution, is not in the repository: it is read
from ../shared/data/mrpc when that exists (--mrpc), else skipped with a note.

Writes OUT/<name>/train.tsv and OUT/<name>/test.tsv with a header
"label<TAB>text" (tabs and newlines inside texts become spaces).  Sets
with a held-out split use it as test; sets without one get a fixed,
seeded (seed 13), stratified 80/20 split.  Sentence pairs (RTE, CB, MRPC)
(RTE, CB, MRPC, STS-B) are joined as "first || second" because use-lite
encodes one text; STS-B's label is its similarity score (0.0-5.0, regression).
--max-train N keeps a seeded, stratified sample of N training rows.
Standard library only.
"""
import argparse
import csv
import gzip
import io
import json
import os
import random
import sys
from collections import defaultdict


def open_text(path, encoding="utf-8", errors="strict", newline=None):
    """path as is, or path.gz (how bench/data stores them)."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        return io.TextIOWrapper(gzip.open(path + ".gz"), encoding=encoding, errors=errors,
                                newline=newline)
    return open(path, encoding=encoding, errors=errors, newline=newline)


def clean(text):
    return " ".join(text.replace("\t", " ").replace("\r", " ").replace("\n", " ").split())


def space_label_file(path):
    rows = []
    with open_text(path, encoding="utf-8", errors="replace", newline="\n") as f:
        for line in f.read().split("\n"):
            if not line.strip():
                continue
            label, _, text = line.partition(" ")
            rows.append((label, text))
    return rows


def tsv_rows(path, label_col, text_col, header=True, encoding="utf-8-sig"):
    rows = []
    with open_text(path, encoding=encoding, errors="replace") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip() or (header and i == 0):
            continue
        fields = line.split("\t")
        if len(fields) <= max(label_col, text_col):
            continue
        rows.append((fields[label_col], fields[text_col]))
    return rows


def jsonl_pairs(path):
    rows = []
    with open_text(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows.append((str(r["label"]), r["premise"] + " || " + r["hypothesis"]))
    return rows


def stratified_split(rows, test_fraction, seed):
    by_label = defaultdict(list)
    for r in rows:
        by_label[r[0]].append(r)
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(by_label):
        members = by_label[label]
        rng.shuffle(members)
        k = int(round(len(members) * test_fraction))
        test += members[:k]
        train += members[k:]
    return train, test


def sample(rows, n, seed):
    if n is None or len(rows) <= n:
        return rows
    _, kept = stratified_split(rows, n / len(rows), seed)
    return kept


def load(name, data, mrpc=None):
    d = os.path.join(data, name)
    if name == "sst2_glue":
        return tsv_rows(f"{d}/train.tsv", 0, 1), tsv_rows(f"{d}/dev.tsv", 0, 1)
    if name == "sst2_sentence":
        return space_label_file(f"{d}/stsa.binary.train"), space_label_file(f"{d}/stsa.binary.dev")
    if name in ("mr", "cr", "subj", "mpqa"):
        fname = {"mr": "rt-polarity.all", "cr": "custrev.all", "subj": "subj.all", "mpqa": "mpqa.all"}[name]
        return stratified_split(space_label_file(f"{d}/{fname}"), 0.2, 13)
    if name == "trec":
        return space_label_file(f"{d}/TREC.train.all"), space_label_file(f"{d}/TREC.test.all")
    if name in ("rte_superglue", "cb"):
        return jsonl_pairs(f"{d}/train.jsonl"), jsonl_pairs(f"{d}/val.jsonl")
    if name == "mrpc":
        d = mrpc

        def pairs(path):
            rows = []
            for i, line in enumerate(open_text(path, encoding="utf-8-sig").read().split("\n")):
                f = line.split("\t")
                if i == 0 or len(f) < 5:
                    continue
                rows.append((f[0], f[3] + " || " + f[4]))
            return rows
        return pairs(f"{d}/train.tsv"), pairs(f"{d}/dev.tsv")
    if name == "cola_glue":
        train = tsv_rows(f"{d}/train.tsv", 1, 3, header=False) + tsv_rows(f"{d}/val.tsv", 1, 3, header=False)
        return train, tsv_rows(f"{d}/dev.tsv", 1, 3, header=False)
    if name == "agnews":
        train = [(lab, txt) for txt, lab in tsv_rows(f"{d}/alps_dev.tsv", 0, 1, header=False)]
        classes = ["World", "Sports", "Business", "Sci/Tech"]
        test = []
        with open_text(f"{d}/test.csv", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                test.append((classes[int(r["Class Index"]) - 1], r["Title"] + ". " + r["Description"]))
        return train, test
    if name == "emotion_dair":
        def semi(path):
            rows = []
            for i, line in enumerate(open_text(path, encoding="utf-8").read().split("\n")):
                if i == 0 or ";" not in line:
                    continue
                text, _, label = line.rpartition(";")
                rows.append((label, text))
            return rows
        return semi(f"{d}/train.txt"), semi(f"{d}/test.txt")
    if name == "stsb":
        def scored(path):
            rows = []
            for line in open_text(path, encoding="utf-8").read().split("\n"):
                f = line.split("\t")
                if len(f) >= 7:
                    rows.append((f[4], f[5] + " || " + f[6]))
            return rows
        return scored(f"{d}/sts-train.csv"), scored(f"{d}/sts-dev.csv")
    if name == "sms_spam":
        return stratified_split(tsv_rows(f"{d}/SMSSpamCollection", 0, 1), 0.2, 13)
    raise SystemExit(f"unknown data set {name}")


# Sentence pairs kept apart (bench/accuracy --pairs): the data set's own column names and
# (label, first, second) rows; load() above joins them as "first || second" instead.
PAIR_COLUMNS = {"rte_superglue": ("premise", "hypothesis"), "cb": ("premise", "hypothesis"),
                "mrpc": ("sentence1", "sentence2")}


def load_pairs(name, data, mrpc=None):
    """(columns, train, test) with rows (label, first, second); MRPC's label is 0/1 (Quality)."""
    if name in ("rte_superglue", "cb"):
        def rows(path):
            out = []
            with open_text(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        out.append((str(r["label"]), r["premise"], r["hypothesis"]))
            return out
        d = os.path.join(data, name)
        return PAIR_COLUMNS[name], rows(f"{d}/train.jsonl"), rows(f"{d}/val.jsonl")
    if name == "mrpc":
        def rows(path):
            out = []
            for i, line in enumerate(open_text(path, encoding="utf-8-sig").read().split("\n")):
                f = line.split("\t")
                if i == 0 or len(f) < 5:
                    continue
                out.append((f[0], f[3], f[4]))
            return out
        return PAIR_COLUMNS[name], rows(f"{mrpc}/train.tsv"), rows(f"{mrpc}/dev.tsv")
    raise SystemExit(f"{name} is not a sentence-pair set (one of {', '.join(PAIR_COLUMNS)})")


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("label\ttext\n")
        for label, text in rows:
            text = clean(text)
            if text and label.strip():
                f.write(f"{label.strip()}\t{text}\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*", default=["sst2_glue", "trec", "sms_spam"])
    ap.add_argument("--data", default=os.path.join(here, "data"))
    # MRPC only: its licence forbids redistribution (bench/data/README.md)
    ap.add_argument("--mrpc", default=os.path.normpath(os.path.join(here, "..", "..", "shared", "data", "mrpc")))
    ap.add_argument("--out", default=os.path.join(here, "..", "build", "data"))
    ap.add_argument("--max-train", type=int)
    ap.add_argument("--max-test", type=int)
    args = ap.parse_args()
    for name in args.names:
        if name == "mrpc" and not os.path.exists(os.path.join(args.mrpc, "train.tsv")):
            for split in ("train", "test"):
                stale = os.path.join(args.out, name, split + ".tsv")
                if os.path.exists(stale):
                    os.remove(stale)
            print(f"mrpc: skipped: not redistributable, so not in bench/data, and {args.mrpc} "
                  "does not exist (--mrpc DIR: a directory with GLUE's train.tsv and dev.tsv)",
                  file=sys.stderr)
            continue
        train, test = load(name, args.data, args.mrpc)
        train = sample(train, args.max_train, 7)
        test = sample(test, args.max_test, 7)
        os.makedirs(os.path.join(args.out, name), exist_ok=True)
        write(os.path.join(args.out, name, "train.tsv"), train)
        write(os.path.join(args.out, name, "test.tsv"), test)
        print(f"{name}: {len(train)} train, {len(test)} test -> {args.out}/{name}", file=sys.stderr)


if __name__ == "__main__":
    main()
