/*
 * adapter_io.h: the versioned adapter binary format (docs/design.md section 5).
 *
 * An adapter is stored as one self-contained byte string (a bytea in
 * PostgreSQL, a file for dept-train).  Only the trained values are
 * stored: gradients, AdamW moments and forward caches are not.  Every
 * integer is little endian and written byte by byte, so the encoding is
 * the same on every host; float32 values are IEEE-754 binary32 bit
 * patterns, little endian.  There is no padding and no alignment.
 *
 * Layout, format versions 1, 2 and 3 (they differ only in the head and
 * pooling fields):
 *
 *   offset  size  field
 *   ------  ----  -----------------------------------------------------------
 *        0     4  magic          "DEPT" (0x44 0x45 0x50 0x54)
 *        4     4  u32 version    1 (linear head), 2 (text-to-text head) or
 *                                3 (linear head pooling the text rows only);
 *                                4 and 5: regressions, 6: a pair encoding (below)
 *        8     4  u32 header_size ADAPTER_IO_HEADER_SIZE (104): bytes 0..103
 *       12     4  u32 method     0 probe, 1 PT, 2 DePT, 3 EPT (AdapterMethod)
 *       16     4  u32 d          token embedding width       1..16384
 *       20     4  u32 h_dim      pooled vector width         1..16384
 *       24     4  u32 n_classes  C                           2..10000
 *       28     4  u32 prompt_len l (PT) or m (DePT, EPT)     0..4096
 *       32     4  u32 max_len    s                           0..8192
 *       36     4  u32 rank       r                           0..d
 *       40     4  u32 subspaces  K (EPT)                     0..64
 *       44     4  u32 subspace_rank q (EPT)                  0..d
 *       48     4  f32 alpha      DePT scale numerator, finite
 *       52     4  u32 n_tensors  number of tensor records that follow
 *       56     8  u64 total_size length of the whole byte string, CRC included
 *       64    32  fingerprint    the backbone's SHA-256, 32 raw bytes
 *       96     4  u32 head       version 1: reserved, must be 0 (a linear
 *                                head); version 2: must be 1 (ADAPTER_HEAD_TEXT:
 *                                T5 text-to-text, no head tensors, classes
 *                                ranked by the log-likelihood of their names);
 *                                version 3: must be 0 (linear)
 *      100     4  u32 pooling    versions 1 and 2: reserved, must be 0 (the
 *                                head's vector pools every row, prompt rows
 *                                included); version 3: must be 1 (it pools
 *                                the text rows only, AdapterConfig.pool_text)
 *
 *      104        class names:   u32 count (== n_classes), then per class
 *                                u32 length (1..1024) + that many bytes of
 *                                UTF-8 (no terminator; no NUL, no overlong
 *                                form, no surrogate, nothing past U+10FFFF);
 *                                names are distinct; class i is logit i
 *                                (text-to-text: class i is the label string
 *                                the decoder scores, tokenized at load time)
 *
 *        .        tensors:       n_tensors records, each
 *                                u32 name_len (1..32), name bytes (ASCII),
 *                                u32 ndim, ndim x u32 shape,
 *                                u64 byte_len (== 4 x product of shape),
 *                                byte_len bytes of float32 values,
 *                                row-major, every value finite
 *
 *  total_size-4    4  u32 crc32      CRC-32 (IEEE 802.3: reflected polynomial
 *                                0xEDB88320, initial value and final xor
 *                                0xFFFFFFFF, as zlib's crc32) of every byte
 *                                before it
 *
 * The configuration is stored in canonical form: fields a method ignores
 * are zero.  probe: prompt_len = rank = subspaces = subspace_rank = 0.
 * PT: prompt_len >= 1, rank = subspaces = subspace_rank = 0.  DePT:
 * prompt_len >= 0, rank >= 0 (max_len >= 1 when rank >= 1), subspaces =
 * subspace_rank = 0.  EPT: prompt_len, rank, max_len, subspaces and
 * subspace_rank all >= 1.  max_len is kept for every method (the input
 * truncation length at prediction time, 0 meaning the backbone's own);
 * alpha is kept as given.  adapter_serialize writes the canonical form of
 * any configuration adapter_new accepts, so a PT adapter built with a
 * stray rank is stored with rank 0.
 *
 * Tensors, in this order, each present exactly once when its shape has
 * no zero dimension (P = prompt_len, 0 for probe; r = rank; K = subspaces;
 * q = subspace_rank) and absent otherwise:
 *
 *   "prompt" (P, d)   "lora_a" (s, r)   "lora_b" (r, d)
 *   "ept_u" (K, d, q) "ept_v" (K, q, d) "gate_w" (K, d)  "gate_b" (K)
 *   "head_w" (C, h_dim)                 "head_b" (C)   (linear head only)
 *
 * Versions: a linear-head adapter is written as version 1, exactly as
 * builds before version 2 wrote it (so they still read it), and a
 * text-to-text adapter as version 2, the only thing version 2 adds.  The
 * reader takes both; a version-2 header whose head is not 1 is refused,
 * since the writer would have stored that adapter as version 1 (one
 * encoding per adapter).  A probe is never text-to-text.  Version 3 adds
 * the pooling field: an adapter whose linear head pools its text rows
 * only (past the prompt rows; the default for PT/DePT/EPT trained on
 * use-lite since version 3) is written as version 3 with pooling 1, and
 * nothing else is, so every adapter written before keeps its bytes and,
 * read back with pool_text false, predicts exactly as before.  pool_text
 * is canonical only with a linear head and at least one prompt row
 * (elsewhere it changes nothing and is stored as false); a version-3
 * header with another head, no prompt rows or pooling != 1 is refused.
 *
 * Version 4 adds regression (AdapterConfig.regression): a linear head
 * with one output, n_classes 1 (one class name, the label column's), the
 * head field 2, the pooling field 0 or 1 as in version 3, and one more
 * tensor after "head_b": "target" (2), the mean and standard deviation of
 * the training targets (a prediction is mean + sd * output).  Only a
 * regression is written as version 4, so every classifier keeps its
 * bytes; a version-4 header with another head is refused.
 *
 * Version 5 adds T5's text-to-text regression (AdapterConfig.regression
 * with a text-to-text head): the head field 1 and the pooling field 0 as
 * in version 2, n_classes >= 2 bins whose class names are their values
 * (adapter_bin_name_value: "3.4"; anything else is refused, writing and
 * reading), and no tensor beyond version 2's (no "target").  Only such an
 * adapter is written as version 5; a version-5 header with another head
 * or pooling is refused.
 *
 * Version 6 adds the pair encoding (AdapterConfig.pair, adapter.h
 * AdapterPair): its header_size is 108, and the u32 at offset 104 is 1
 * (NATIVE: the backbone's own pair template and token types) or 2
 * (SIAMESE: each text pooled on its own, the head reads [u; v; |u - v|;
 * u * v], h_dim a multiple of 4); the head field is 0 (linear) or 2
 * (regression, with the "target" tensor as in version 4) and the pooling
 * field 0 or 1 as in version 3.  Only an adapter with one of these two
 * encodings is written as version 6: a pair joined into one text
 * (JOINED, 0) is stored as before, so every adapter written before
 * version 6 keeps its bytes and is read back as JOINED.
 *
 * Size limits, so that a forged header cannot make the reader allocate
 * much more than the bytes it was given: the per-field ranges above, at
 * most ADAPTER_IO_MAX_FLOATS stored values in all, and at most
 * ADAPTER_IO_MAX_ALLOC_FLOATS floats allocated by adapter_new for the
 * configuration (values, gradients, moments and the forward caches that
 * do not depend on the batch size).
 *
 * Each valid adapter has exactly one encoding: the reader accepts nothing
 * the writer would not write, so adapter_serialize(adapter_deserialize(b))
 * reproduces b byte for byte.  The reader checks, in this order and
 * before it allocates anything: magic, version, header size, total_size
 * against the length it was given (truncation), the CRC, the reserved
 * fields, the configuration and its size limits, the class names and
 * every tensor record (name, shape, byte length, finite values) against
 * the configuration, and that nothing follows the last tensor; then it
 * copies the names, checks they are distinct, and only then allocates the
 * adapter.  The CRC is checked early but nothing relies on it: every
 * later check holds on its own.  Any failure is NN_ERR_FORMAT with a
 * message naming the faulty field, with its byte offset where that helps.
 */
#ifndef DEPT_NN_ADAPTER_IO_H
#define DEPT_NN_ADAPTER_IO_H

#include <stddef.h>
#include <stdint.h>

#include "adapters/adapter.h"
#include "base/nn_common.h"

#define ADAPTER_IO_MAGIC "DEPT"
#define ADAPTER_IO_VERSION 6		/* the newest version read and written */
#define ADAPTER_IO_VERSION_TEXT_HEAD 2	/* the first with a text-to-text head */
#define ADAPTER_IO_VERSION_POOL_TEXT 3	/* the first with text-row pooling */
#define ADAPTER_IO_VERSION_REGRESSION 4	/* the first with a regression head */
#define ADAPTER_IO_HEAD_REGRESSION 2	/* the head field of a version-4 adapter */
#define ADAPTER_IO_VERSION_TEXT_REGRESSION 5	/* the first with a text-to-text regression */
#define ADAPTER_IO_VERSION_PAIR 6	/* the first with a pair encoding (its own header size) */
#define ADAPTER_IO_HEADER_SIZE 104
#define ADAPTER_IO_HEADER_SIZE_PAIR 108
#define ADAPTER_IO_MIN_SIZE (ADAPTER_IO_HEADER_SIZE + 4 + 4)	/* + class count + CRC */

#define ADAPTER_IO_MAX_D 16384			/* d and h_dim */
#define ADAPTER_IO_MAX_CLASSES 10000
#define ADAPTER_IO_MAX_PROMPT 4096
#define ADAPTER_IO_MAX_LEN 8192
#define ADAPTER_IO_MAX_CLASS_NAME 1024	/* bytes */
#define ADAPTER_IO_MAX_TENSOR_NAME 32	/* bytes */
#define ADAPTER_IO_MAX_FLOATS ((size_t) 1 << 26)		/* 256 MiB of values */
#define ADAPTER_IO_MAX_ALLOC_FLOATS ((size_t) 1 << 28)	/* 1 GiB in memory */

/*
 * Encode a and its metadata: backbone_fingerprint is the backbone's
 * SHA-256 as 64 hex digits, class_names its n_classes labels (UTF-8,
 * 1..ADAPTER_IO_MAX_CLASS_NAME bytes, distinct).  On success *out is a
 * malloc'ed buffer of *out_len bytes.  NN_ERR_ARG for arguments the format
 * cannot hold (including non-finite tensor values), NN_ERR_NOMEM.
 */
NnStatus	adapter_serialize(const Adapter *a, const char *backbone_fingerprint,
							  const char *const *class_names, uint8_t **out,
							  size_t *out_len, NnError *err);

/*
 * Decode and validate buf (len bytes).  On success *out is a new adapter
 * for up to max_batch rows (free with adapter_free; optimizer state is
 * zero), fingerprint holds the backbone's SHA-256 as 64 lower-case hex
 * digits and a NUL, and *class_names a malloc'ed array of
 * (*out)->cfg.n_classes malloc'ed strings (free with
 * adapter_free_class_names); no output pointer may be NULL.  On failure
 * *out and *class_names are NULL:
 * NN_ERR_FORMAT for bytes that are not a valid adapter, NN_ERR_ARG for
 * max_batch <= 0, NN_ERR_NOMEM.
 */
NnStatus	adapter_deserialize(const uint8_t *buf, size_t len, int max_batch,
								Adapter **out, char fingerprint[65], char ***class_names,
								NnError *err);

/* Free what adapter_deserialize returned in class_names (NULL is fine). */
void		adapter_free_class_names(char **names, int n);

/* CRC-32 (IEEE) of len bytes, as stored in the last four bytes. */
uint32_t	adapter_io_crc32(const uint8_t *buf, size_t len);

#endif							/* DEPT_NN_ADAPTER_IO_H */
