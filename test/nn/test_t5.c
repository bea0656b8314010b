/*
 * test_t5.c: the T5 backbone, its kernels and the Unigram tokenizer of
 * tokenizer.json, against the golden fixtures
 * UNIT_HF_DIR()/t5-tiny-random (v1.0: ReLU FFN, tied head
 * with d^-0.5 output scaling) and t5-v1_1-tiny-random (gated-GELU tanh,
 * unscaled head), made with transformers 5.17, PyTorch float32, eager
 * attention (see their README).
 *
 * Accepted:
 *   tokenizer  every case of tokenizer_cases.jsonl equal (ids and token
 *              strings); the reference texts tokenize to input_ids (</s>
 *              appended); a Precompiled charsmap built here (a darts-clone
 *              double array) normalizes as `tokenizers` does; hostile
 *              tokenizer.json / charsmaps fail cleanly
 *   forward    encoder_last_hidden_state (valid positions) and logits (every
 *              position) within 1e-4 relative (max |diff| / max |ref|), the
 *              loss and label_log_likelihood within 1e-4
 *   backward   grad_word_embeddings and the DePT gradients dept_grad_P/A/B
 *              within 1e-3 relative; padded positions of dx exactly 0
 * Plus: finite differences of the pooled encoder (the Backbone interface),
 * rows alone vs batched, argument errors, and malformed model directories
 * (missing tensor, bad config.json, missing files) failing with
 * NN_ERR_FORMAT or NN_ERR_IO.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "adapters/adapter.h"
#include "models/backbone.h"
#include "tokenizers/unigram.h"
#include "formats/safetensors.h"
#include "models/t5/t5.h"
#include "models/t5/t5_kernels.h"
#include "hf_reference.h"
#include "ops/gemm_bf16.h"
#include "unit.h"
#include "variant_fixture.h"

#define D 32
#define NB 4					/* reference texts */
#define NT 48					/* their padded length */
#define NL 6					/* padded label length */
#define NC 2					/* candidate labels */
#define V 1000
#define M_PROMPT 5
#define S_MAX 64
#define RANK 3

/* ---- helpers ------------------------------------------------------------------ */

static const char *
path_in(const char *dir, const char *name)
{
	static char path[4096 + 256];

	snprintf(path, sizeof(path), "%s/%.200s", dir, name);
	return path;
}

static char *
read_all(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf;
	long		n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t) n + 1);
	if (buf == NULL || fread(buf, 1, (size_t) n, f) != (size_t) n)
	{
		free(buf);
		fclose(f);
		return NULL;
	}
	fclose(f);
	buf[n] = '\0';
	*len = (size_t) n;
	return buf;
}

static bool
write_all(const char *path, const void *data, size_t len)
{
	FILE	   *f = fopen(path, "wb");
	bool		ok;

	if (f == NULL)
		return false;
	ok = fwrite(data, 1, len, f) == len;
	return fclose(f) == 0 && ok;
}

/* ---- tokenizer ------------------------------------------------------------------ */

static void
test_tokenizer_cases(void)
{
	char		dir[4096 + 64];
	HfUnigram  *u = NULL;
	NnError		err;
	size_t		len;
	char	   *all,
			   *cursor;
	cJSON	   *c;
	int			total = 0,
				equal = 0;

	snprintf(dir, sizeof(dir), "%s/t5-tiny-random", UNIT_HF_DIR());
	CHECK(hf_unigram_load(&u, path_in(dir, "tokenizer.json"), &err) == NN_OK, "%s", err.msg);
	all = read_all(path_in(dir, "tokenizer_cases.jsonl"), &len);
	CHECK(all != NULL, "cannot read tokenizer_cases.jsonl");
	if (u == NULL || all == NULL)
	{
		hf_unigram_free(u);
		free(all);
		return;
	}
	cursor = all;
	while ((c = ef_next_case(&cursor, NULL)) != NULL)
	{
		const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
		const cJSON *ids = cJSON_GetObjectItem(c, "ids");
		const cJSON *toks = cJSON_GetObjectItem(c, "tokens");
		int32_t		out[1024];
		char	   *tk[1024];
		int			n = hf_unigram_encode(u, text, strlen(text), HFU_SPECIALS, out, tk, 1024);
		bool		eq = n == cJSON_GetArraySize(ids);

		for (int i = 0; eq && i < n; i++)
			eq = out[i] == cJSON_GetArrayItem(ids, i)->valueint &&
				strcmp(tk[i], cJSON_GetArrayItem(toks, i)->valuestring) == 0;
		CHECK(eq, "case %d: \"%.60s\" (%d ids, expected %d)", total, text, n,
			  cJSON_GetArraySize(ids));
		for (int i = 0; i < n; i++)
			free(tk[i]);
		equal += eq;
		total++;
		cJSON_Delete(c);
	}
	printf("# tokenizer_cases.jsonl: %d of %d cases identical (ids and tokens)\n", equal, total);
	CHECK(total >= 2000, "only %d cases", total);
	free(all);
	hf_unigram_free(u);
}

/* Encode a C string. */
static int
enc(const HfUnigram *u, const char *s, unsigned flags, int32_t *ids, int max_ids)
{
	return hf_unigram_encode(u, s, strlen(s), flags, ids, NULL, max_ids);
}

/* A tokenizer.json: the t5-tiny one with its normalizer / pre-tokenizer / post-processor replaced. */
static char *
tokenizer_variant(const char *normalizer, const char *pre, const char *post)
{
	char		dir[4096 + 64];
	size_t		len;
	char	   *txt,
			   *out;
	cJSON	   *root;

	snprintf(dir, sizeof(dir), "%s/t5-tiny-random", UNIT_HF_DIR());
	if ((txt = read_all(path_in(dir, "tokenizer.json"), &len)) == NULL)
		return NULL;
	root = cJSON_Parse(txt);
	free(txt);
	if (normalizer)
		cJSON_ReplaceItemInObject(root, "normalizer", cJSON_Parse(normalizer));
	if (pre)
		cJSON_ReplaceItemInObject(root, "pre_tokenizer", cJSON_Parse(pre));
	if (post)
		cJSON_ReplaceItemInObject(root, "post_processor", cJSON_Parse(post));
	out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return out;
}

static HfUnigram *
variant(const char *normalizer, const char *pre, const char *post, NnStatus expect)
{
	char	   *json = tokenizer_variant(normalizer, pre, post);
	HfUnigram  *u = NULL;
	NnError		err;
	NnStatus	s;

	CHECK(json != NULL, "cannot build a tokenizer.json variant");
	if (json == NULL)
		return NULL;
	s = hf_unigram_from_json(&u, json, strlen(json), &err);
	CHECK(s == expect, "status %d, expected %d (%s)", (int) s, (int) expect,
		  s ? err.msg : "ok");
	if (s != NN_OK && expect != NN_OK)
		printf("#   refused as expected: %s\n", err.msg);
	cJSON_free(json);
	return u;
}

/* Normalize a C string and compare. */
static void
check_norm(const HfUnigram *u, const char *in, const char *want)
{
	size_t		n;
	char	   *got = hf_unigram_normalize(u, in, strlen(in), &n);

	CHECK(got != NULL && n == strlen(want) && memcmp(got, want, n) == 0,
		  "normalize \"%s\" gave \"%s\", expected \"%s\"", in, got ? got : "(null)", want);
	free(got);
}

static void
test_tokenizer_edges(void)
{
	char		dir[4096 + 64];
	HfUnigram  *u = NULL,
			   *t = NULL;
	NnError		err;
	int32_t		ids[64];
	int			n;
	static const char t5_post[] =
		"{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
		"{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":"
		"{\"</s>\":{\"id\":\"</s>\",\"ids\":[1],\"tokens\":[\"</s>\"]}}}";

	snprintf(dir, sizeof(dir), "%s/t5-tiny-random", UNIT_HF_DIR());
	CHECK(hf_unigram_load(&u, path_in(dir, "tokenizer.json"), &err) == NN_OK, "%s", err.msg);
	if (u == NULL)
		return;
	CHECK(hf_unigram_eos_id(u) == 1 && hf_unigram_unk_id(u) == 2 &&
		  hf_unigram_vocab_size(u) == 1000, "eos %d unk %d size %d", hf_unigram_eos_id(u),
		  hf_unigram_unk_id(u), hf_unigram_vocab_size(u));
	CHECK(hf_unigram_piece_id(u, "\xE2\x96\x81the") == 8 &&
		  strcmp(hf_unigram_piece(u, 8), "\xE2\x96\x81the") == 0, "piece lookups");

	/* HFU_EOS appends </s>, truncation keeps it */
	n = enc(u, "the movie", HFU_SPECIALS | HFU_EOS, ids, 64);
	CHECK(n == 3 && ids[0] == 8 && ids[1] == 55 && ids[2] == 1, "the movie -> %d ids", n);
	n = enc(u, "the movie", HFU_SPECIALS | HFU_EOS, ids, 2);
	CHECK(n == 2 && ids[0] == 8 && ids[1] == 1, "truncated: %d ids, last %d", n, ids[n - 1]);
	n = enc(u, "", HFU_SPECIALS | HFU_EOS, ids, 64);
	CHECK(n == 1 && ids[0] == 1, "empty text -> just </s>");
	/* special tokens in the text are matched before normalization */
	n = enc(u, "a</s>b<pad>", HFU_SPECIALS, ids, 64);
	CHECK(n == 4 && ids[0] == 7 && ids[1] == 1 && ids[2] == 79 && ids[3] == 0,
		  "specials in text: %d ids", n);
	/* hostile bytes: invalid UTF-8 becomes U+FFFD (an unknown), NUL is a character */
	n = hf_unigram_encode(u, "a\xff\xfe\x80z\0b", 7, HFU_SPECIALS, ids, NULL, 64);
	CHECK(n > 0, "invalid UTF-8 -> %d", n);
	for (int len = 0; len < 24; len++)
	{
		char		junk[24];

		for (int i = 0; i < len; i++)
			junk[i] = (char) (0x80 + (i * 37) % 128);
		CHECK(hf_unigram_encode(u, junk, (size_t) len, HFU_SPECIALS | HFU_EOS, ids, NULL, 64) >= 1,
			  "junk of %d bytes", len);
	}

	/* the real T5 layout: Precompiled-free sequence, WhitespaceSplit + Metaspace, </s> template */
	t = variant("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},"
				"{\"type\":\"Strip\",\"strip_left\":false,\"strip_right\":true},"
				"{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" {2,}\"},\"content\":\"\xE2\x96\x81\"}]}",
				"{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"WhitespaceSplit\"},"
				"{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"add_prefix_space\":true}]}",
				t5_post, NN_OK);
	if (t != NULL)
	{
		check_norm(t, "  the   movie  ", "\xE2\x96\x81the\xE2\x96\x81movie");
		n = enc(t, "the\tmovie", HFU_SPECIALS | HFU_EOS, ids, 64);
		CHECK(n == 3 && ids[0] == 8 && ids[1] == 55 && ids[2] == 1,
			  "template </s> not doubled by HFU_EOS: %d ids", n);
		hf_unigram_free(t);
	}
	/* prepend_scheme first / never, split false */
	t = variant(NULL, "{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\","
				"\"prepend_scheme\":\"never\",\"split\":false}", NULL, NN_OK);
	if (t != NULL)
	{
		n = enc(t, "the", HFU_SPECIALS, ids, 64);
		CHECK(n >= 1 && ids[0] != 8, "never: no prefix, not the piece \"_the\"");
		hf_unigram_free(t);
	}
	t = variant("{\"type\":\"Lowercase\"}", NULL, NULL, NN_OK);
	if (t != NULL)
	{
		check_norm(t, "ThE \xC4\xB0", "the i\xCC\x87");
		hf_unigram_free(t);
	}

	/* refused configurations */
	hf_unigram_free(variant("{\"type\":\"BertNormalizer\"}", NULL, NULL, NN_ERR_FORMAT));
	hf_unigram_free(variant("{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\s+\"},"
							"\"content\":\" \"}", NULL, NULL, NN_ERR_FORMAT));
	hf_unigram_free(variant(NULL, "{\"type\":\"ByteLevel\"}", NULL, NN_ERR_FORMAT));
	hf_unigram_free(variant(NULL, NULL, "{\"type\":\"RobertaProcessing\"}", NN_ERR_FORMAT));
	{
		static const char *bad[] = {
			"", "[]", "{\"model\":{\"type\":\"BPE\",\"vocab\":{}}}",
			"{\"model\":{\"type\":\"Unigram\",\"vocab\":[],\"unk_id\":0}}",
			"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]],\"unk_id\":3}}",
			"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]],\"unk_id\":null}}",
			"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\"]],\"unk_id\":0}}",
			"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"\xff\",0.0]],\"unk_id\":0}}",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		{
			HfUnigram  *x = NULL;

			CHECK(hf_unigram_from_json(&x, bad[i], strlen(bad[i]), &err) == NN_ERR_FORMAT,
				  "bad tokenizer.json %zu accepted", i);
			hf_unigram_free(x);
		}
	}
	CHECK(hf_unigram_load(&t, "/nonexistent/tokenizer.json", &err) == NN_ERR_IO, "missing file");
	hf_unigram_free(u);
}

/* ---- Precompiled charsmap ------------------------------------------------------------ */

/*
 * A darts-clone double array for a few keys, built the simple way: each
 * node's children go at base ^ label for the first base no other node uses
 * (as darts-clone requires: a shared base would let a lookup stray into
 * another node's children) whose slots are free; the leaf (value | 1 << 31)
 * sits at base itself.
 */
#define DA_UNITS 4096

static bool da_base_used[DA_UNITS];

typedef struct DaKey
{
	const char *key;
	const char *rep;
} DaKey;

static bool
da_place(uint32_t *units, bool *used, size_t pos, const DaKey *keys, int nk,
		 const uint32_t *values, const char *prefix, size_t depth)
{
	bool		child[256] = {false};
	int			leaf = -1;
	size_t		base;

	for (int i = 0; i < nk; i++)
	{
		const char *k = keys[i].key;

		if (strlen(k) < depth || memcmp(k, prefix, depth) != 0)
			continue;
		if (strlen(k) == depth)
			leaf = i;
		else
			child[(uint8_t) k[depth]] = true;
	}
	for (base = 1; base < DA_UNITS - 256; base++)
	{
		bool		ok = !da_base_used[base] && (!used[base] || leaf < 0);

		for (int c = 1; c < 256 && ok; c++)
			ok = !child[c] || !used[base ^ (size_t) c];
		if (ok && (base ^ pos) < (1u << 21) && (leaf < 0 || !used[base]))
			break;
	}
	if (base >= DA_UNITS - 256)
		return false;
	da_base_used[base] = true;
	units[pos] |= (uint32_t) (base ^ pos) << 10;
	if (leaf >= 0)
	{
		units[pos] |= 1u << 8;
		used[base] = true;
		units[base] = values[leaf] | (1u << 31);
	}
	for (int c = 1; c < 256; c++)
		if (child[c])
		{
			used[base ^ (size_t) c] = true;
			units[base ^ (size_t) c] = (uint32_t) c;
		}
	for (int c = 1; c < 256; c++)
		if (child[c])
		{
			char		next[64];

			memcpy(next, prefix, depth);
			next[depth] = (char) c;
			if (!da_place(units, used, base ^ (size_t) c, keys, nk, values, next, depth + 1))
				return false;
		}
	return true;
}

static const char b64chars[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The base64 text of a charsmap blob for keys, or of raw bytes when keys is NULL. */
static char *
charsmap_b64(const DaKey *keys, int nk, const uint8_t *raw, size_t raw_len)
{
	static uint32_t units[DA_UNITS];
	static bool used[DA_UNITS];
	uint8_t    *blob;
	size_t		len = 0,
				n_units = 0;
	uint32_t	values[16];
	char		strings[256];
	size_t		sl = 0;
	char	   *out;
	size_t		o = 0;

	if (keys != NULL)
	{
		memset(units, 0, sizeof(units));
		memset(used, 0, sizeof(used));
		memset(da_base_used, 0, sizeof(da_base_used));
		used[0] = true;
		for (int i = 0; i < nk; i++)
		{
			values[i] = (uint32_t) sl;
			memcpy(strings + sl, keys[i].rep, strlen(keys[i].rep) + 1);
			sl += strlen(keys[i].rep) + 1;
		}
		if (!da_place(units, used, 0, keys, nk, values, "", 0))
			return NULL;
		for (size_t i = 0; i < DA_UNITS; i++)
			if (used[i])
				n_units = i + 1;
		blob = malloc(4 + 4 * n_units + sl);
		blob[0] = (uint8_t) (4 * n_units);
		blob[1] = (uint8_t) ((4 * n_units) >> 8);
		blob[2] = (uint8_t) ((4 * n_units) >> 16);
		blob[3] = 0;
		for (size_t i = 0; i < n_units; i++)
			for (int b = 0; b < 4; b++)
				blob[4 + 4 * i + b] = (uint8_t) (units[i] >> (8 * b));
		memcpy(blob + 4 + 4 * n_units, strings, sl);
		len = 4 + 4 * n_units + sl;
	}
	else
	{
		blob = malloc(raw_len + 1);
		memcpy(blob, raw, raw_len);
		len = raw_len;
	}
	out = malloc(len / 3 * 4 + 8);
	for (size_t i = 0; i < len; i += 3)
	{
		uint32_t	v = (uint32_t) blob[i] << 16 | (i + 1 < len ? (uint32_t) blob[i + 1] << 8 : 0) |
			(i + 2 < len ? blob[i + 2] : 0);

		out[o++] = b64chars[(v >> 18) & 63];
		out[o++] = b64chars[(v >> 12) & 63];
		out[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64chars[v & 63] : '=';
	}
	out[o] = '\0';
	free(blob);
	return out;
}

static HfUnigram *
precompiled_tokenizer(const char *b64, NnStatus expect)
{
	char		norm[8192];

	snprintf(norm, sizeof(norm), "{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"%s\"}", b64);
	return variant(norm, NULL, NULL, expect);
}

static void
test_precompiled(void)
{
	static const DaKey keys[] = {
		{"\xEF\xAC\x81", "fi"},		/* U+FB01 ligature */
		{"\xEF\xBC\xA1", "A"},		/* fullwidth A */
		{"e", "E"},
		{"e\xCC\x81", "\xC3\xA9"},	/* e + combining acute -> é (never reached: see below) */
		{"\xE2\x80\x8D", " "},		/* zero width joiner */
		{"x", ""},				/* deleted */
	};
	char	   *b64 = charsmap_b64(keys, (int) (sizeof(keys) / sizeof(keys[0])), NULL, 0);
	HfUnigram  *u;

	CHECK(b64 != NULL, "cannot build the double array");
	if (b64 == NULL)
		return;
	u = precompiled_tokenizer(b64, NN_OK);
	if (u != NULL)
	{
		check_norm(u, "\xEF\xAC\x81ne \xEF\xBC\xA1", "finE A");
		check_norm(u, "xex", "E");
		check_norm(u, "a\xE2\x80\x8D" "b", "a b");	/* "a+ZWJ" is one cluster, mapped per char */
		/*
		 * The cluster e + U+0301 (3 bytes) is replaced whole by its FIRST
		 * prefix match, "e" -> "E", as `tokenizers` does (SentencePiece's own
		 * longest match would give é); a cluster of 6+ bytes goes per char.
		 */
		check_norm(u, "e\xCC\x81", "E");
		check_norm(u, "e\xCC\x81\xCC\x81\xCC\x81", "E\xCC\x81\xCC\x81\xCC\x81");
		check_norm(u, "plain", "plain");
		hf_unigram_free(u);
	}
	free(b64);

	/* hostile blobs: a trie larger than the blob, bad UTF-8 strings, wild offsets */
	{
		uint8_t		big[8] = {0xFF, 0xFF, 0, 0, 1, 2, 3, 4};
		uint8_t		badutf[9] = {4, 0, 0, 0, 0, 0, 0, 0, 0xFF};
		uint8_t		wild[4 + 4 * 8 + 2];
		char	   *s;

		s = charsmap_b64(NULL, 0, big, sizeof(big));
		hf_unigram_free(precompiled_tokenizer(s, NN_ERR_FORMAT));
		free(s);
		s = charsmap_b64(NULL, 0, badutf, sizeof(badutf));
		hf_unigram_free(precompiled_tokenizer(s, NN_ERR_FORMAT));
		free(s);
		hf_unigram_free(precompiled_tokenizer("@@@@", NN_ERR_FORMAT));
		/* units with offsets and values pointing anywhere: lookups stay in bounds */
		memset(wild, 0, sizeof(wild));
		wild[0] = 32;
		for (int i = 0; i < 8; i++)
		{
			uint32_t	unit = 0xFFFFFD00u | (uint32_t) (i * 29 + 'a');

			for (int b = 0; b < 4; b++)
				wild[4 + 4 * i + b] = (uint8_t) (unit >> (8 * b));
		}
		wild[36] = 'z';
		s = charsmap_b64(NULL, 0, wild, sizeof(wild));
		u = precompiled_tokenizer(s, NN_OK);
		if (u != NULL)
		{
			int32_t		ids[64];

			CHECK(enc(u, "abcdefgh xyz \xC3\xA9", HFU_SPECIALS, ids, 64) > 0, "wild charsmap");
			hf_unigram_free(u);
		}
		free(s);
	}
}

/* ---- model: open and tokens ---------------------------------------------------------- */

static bool
open_fixture(const char *name)
{
	NnError		err;

	snprintf(ef_fixture, sizeof(ef_fixture), "%s/%s", UNIT_HF_DIR(), name);
	ef_H = D;
	ef_model = NULL;
	ef_ref = NULL;
	CHECK(t5_open(&ef_model, ef_fixture, &err) == NN_OK, "%s: %s", name, err.msg);
	CHECK(safetensors_open(&ef_ref, ef_path("reference.safetensors"), &err) == NN_OK,
		  "%s", err.msg);
	if (ef_model != NULL)
	{
		CHECK(t5_is(ef_model) && strcmp(ef_model->ops->family, "t5") == 0, "family");
		CHECK(ef_model->d_embed == D && ef_model->d_out == D && ef_model->vocab_size == V,
			  "dims %d %d %d", ef_model->d_embed, ef_model->d_out, ef_model->vocab_size);
		CHECK(strlen(ef_model->fingerprint) == 64, "fingerprint");
	}
	return ef_model != NULL && ef_ref != NULL;
}

static void
close_fixture(void)
{
	backbone_close(ef_model);
	safetensors_close(ef_ref);
	ef_model = NULL;
	ef_ref = NULL;
}

/* The reference texts tokenize to input_ids; the label strings to labels. */
static void
test_reference_tokens(void)
{
	static const char *texts[NB] = {
		"sentence: hide new secretions from the parental units",
		"sentence: the movie was absolutely wonderful , a joy from start to finish !",
		"sentence: Na\xC3\xAFve caf\xC3\xA9 owners' r\xC3\xA9sum\xC3\xA9s \xE2\x80\x94 42 reasons "
		"(and 3 more) to stay home.",
		"sentence: a"
	};
	static const char *labels[NB] = {"negative", "positive", "negative", "positive"};
	const int32_t *ids = ef_i32("input_ids", NB, NT);
	const int32_t *am = ef_i32("attention_mask", NB, NT);
	const int32_t *lab = ef_i32("labels", NB, NL);

	if (ids == NULL || am == NULL || lab == NULL)
		return;
	for (int b = 0; b < NB; b++)
	{
		int32_t		out[NT + 8];
		int			n = ef_model->ops->tokenize(ef_model, texts[b], strlen(texts[b]), out, NT + 8);
		int			want = 0;
		bool		eq;

		for (int t = 0; t < NT; t++)
			want += am[b * NT + t];
		eq = n == want && memcmp(out, ids + b * NT, sizeof(int32_t) * (size_t) n) == 0 &&
			out[n - 1] == t5_eos_id(ef_model);
		CHECK(eq, "text %d: %d ids, expected %d", b, n, want);
		n = ef_model->ops->tokenize(ef_model, labels[b], strlen(labels[b]), out, NL);
		eq = true;
		for (int t = 0; t < NL; t++)
			eq = eq && (t < n ? out[t] == lab[b * NL + t] : lab[b * NL + t] < 0);
		CHECK(eq, "label %d differs", b);
	}
}

/* ---- forward ------------------------------------------------------------------------ */

/* Candidates as the fixture scores them: each label's ids, then </s>, padded with -100. */
static void
candidate_ids(int32_t *cands)
{
	static const char *c[NC] = {"negative", "positive"};

	for (int k = 0; k < NC; k++)
	{
		int			n = ef_model->ops->tokenize(ef_model, c[k], strlen(c[k]), cands + k * NL, NL);

		for (int t = n; t < NL; t++)
			cands[k * NL + t] = -100;
	}
}

static void
test_forward_reference(void)
{
	static float x[NB * NT * D],
				hidden[NB * NT * D],
				logits[NB * NL * V];
	float		pooled[NB * D],
				loss,
				scores[NB * NC],
				one[NC];
	int32_t		cands[NC * NL];
	uint8_t		mask[NB * NT];
	const float *r_hidden = ef_f32("encoder_last_hidden_state", 3, NB, NT, D);
	const float *r_logits = ef_f32("logits", 3, NB, NL, V);
	const float *r_loss = ef_f32("loss", 1, 1, 0, 0);
	const float *r_ll = ef_f32("label_log_likelihood", 2, NB, NC, 0);
	const int32_t *labels = ef_i32("labels", NB, NL);
	BackboneRun *run;
	NnError		err;
	double		dh,
				dl,
				dll,
				alone = 0.0;

	if (!ef_inputs("input_ids", "attention_mask", NB, NT, x, mask) || !r_hidden || !r_logits ||
		!r_loss || !r_ll || !labels)
		return;
	run = ef_model->ops->run_new(ef_model, NB, NT);
	CHECK(run != NULL, "run_new");
	if (run == NULL)
		return;
	CHECK(t5_loss_forward(ef_model, run, x, mask, NB, NT, labels, NL, &loss, logits, &err) == NN_OK,
		  "%s", err.msg);
	t5_encoder_hidden(ef_model, run, hidden);
	dh = ef_rel_diff(hidden, r_hidden, NB * NT * D, mask, D);
	dl = ef_rel_diff(logits, r_logits, NB * NL * V, NULL, 1);
	printf("# forward vs transformers: encoder_last_hidden_state rel %.2e, logits rel %.2e, "
		   "loss %.7f vs %.7f\n", dh, dl, loss, r_loss[0]);
	CHECK(dh <= 1e-4, "encoder_last_hidden_state rel diff %.3e", dh);
	CHECK(dl <= 1e-4, "logits rel diff %.3e", dl);
	CHECK(fabs(loss - r_loss[0]) <= 1e-4 * fabs(r_loss[0]), "loss %.7f vs %.7f", loss, r_loss[0]);

	/* the loss without logits trims each row to its last target: same value */
	{
		float		loss2;

		CHECK(t5_loss_forward(ef_model, run, x, mask, NB, NT, labels, NL, &loss2, NULL, &err) == NN_OK &&
			  fabsf(loss2 - loss) <= 1e-6f * fabsf(loss), "trimmed loss %.7f vs %.7f", loss2, loss);
	}

	candidate_ids(cands);
	CHECK(t5_label_loglik(ef_model, run, x, mask, NB, NT, cands, NC, NL, scores, &err) == NN_OK,
		  "%s", err.msg);
	dll = ef_rel_diff(scores, r_ll, NB * NC, NULL, 1);
	printf("# label_log_likelihood rel %.2e (e.g. %.5f vs %.5f)\n", dll, scores[0], r_ll[0]);
	CHECK(dll <= 1e-4, "label_log_likelihood rel diff %.3e", dll);
	/* each row alone equals the batch (packing) */
	for (int b = 0; b < NB; b++)
	{
		CHECK(t5_label_loglik(ef_model, run, x + (size_t) b * NT * D, mask + b * NT, 1, NT, cands, NC,
							  NL, one, &err) == NN_OK, "%s", err.msg);
		for (int k = 0; k < NC; k++)
			alone = fmax(alone, fabs(one[k] - scores[b * NC + k]));
	}
	printf("# rows alone vs batched: max |diff| %.2e\n", alone);
	CHECK(alone <= 1e-4, "rows alone differ by %.3e", alone);

	/* the interface forward: mean of the encoder output over valid rows */
	CHECK(ef_model->ops->forward(ef_model, run, x, mask, NB, NT, pooled, &err) == NN_OK, "%s", err.msg);
	{
		double		worst = 0.0;

		for (int b = 0; b < NB; b++)
			for (int j = 0; j < D; j++)
			{
				double		s = 0.0;
				int			n = 0;

				for (int t = 0; t < NT; t++)
					if (mask[b * NT + t])
					{
						s += r_hidden[((size_t) b * NT + t) * D + j];
						n++;
					}
				worst = fmax(worst, fabs(pooled[b * D + j] - s / n));
			}
		CHECK(worst <= 1e-4, "pooled vs mean of the reference: %.3e", worst);
	}
	ef_model->ops->run_free(run);
}

/* ---- backward ----------------------------------------------------------------------- */

static void
test_backward_reference(void)
{
	static float x[NB * NT * D],
				dx[NB * NT * D],
				dx2[NB * NT * D];
	uint8_t		mask[NB * NT];
	const float *r_dx = ef_f32("grad_word_embeddings", 3, NB, NT, D);
	const int32_t *labels = ef_i32("labels", NB, NL);
	BackboneRun *run;
	NnError		err;
	float		loss;
	double		d,
				pad = 0.0;

	if (!ef_inputs("input_ids", "attention_mask", NB, NT, x, mask) || !r_dx || !labels)
		return;
	run = ef_model->ops->run_new(ef_model, NB, NT);
	CHECK(t5_loss_forward(ef_model, run, x, mask, NB, NT, labels, NL, &loss, NULL, &err) == NN_OK,
		  "%s", err.msg);
	for (int i = 0; i < NB * NT * D; i++)
		dx[i] = NAN;
	CHECK(t5_loss_backward(ef_model, run, dx, &err) == NN_OK, "%s", err.msg);
	d = ef_rel_diff(dx, r_dx, NB * NT * D, NULL, 1);
	for (int i = 0; i < NB * NT * D; i++)
		if (!mask[i / D])
		{
			pad = fmax(pad, fabs(r_dx[i]));
			CHECK(dx[i] == 0.0f, "dx at padding %d is %g", i, dx[i]);
		}
	printf("# backward vs transformers: grad_word_embeddings rel %.2e (reference max |grad| at "
		   "padding %.1e)\n", d, pad);
	CHECK(d <= 1e-3, "grad_word_embeddings rel diff %.3e", d);

	/* a second backward needs a fresh forward, and then repeats exactly */
	CHECK(t5_loss_backward(ef_model, run, dx2, &err) == NN_ERR_ARG, "backward twice accepted");
	CHECK(t5_loss_forward(ef_model, run, x, mask, NB, NT, labels, NL, &loss, NULL, &err) == NN_OK &&
		  t5_loss_backward(ef_model, run, dx2, &err) == NN_OK &&
		  memcmp(dx, dx2, sizeof(dx)) == 0, "second forward/backward differs");
	ef_model->ops->run_free(run);
}

static double
cosine(const float *a, const float *b, size_t n)
{
	double		ab = 0.0,
				aa = 0.0,
				bb = 0.0;

	for (size_t i = 0; i < n; i++)
	{
		ab += (double) a[i] * b[i];
		aa += (double) a[i] * a[i];
		bb += (double) b[i] * b[i];
	}
	return ab / sqrt(aa * bb + 1e-300);
}

/*
 * The encoder's and decoder's weight products in bfloat16 (gemm_bf16.h):
 * logits and label log-likelihoods against the float32 reference above
 * float32's own error (so bfloat16 did run) and within 1e-2 relative (about
 * 2^-8 per rounded operand), the input gradient within cosine 0.99 of the
 * reference's (it passes about a dozen rounded products, as in
 * test_gemm_bf16); back in float32 the logits equal a fresh float run's.
 */
static void
test_bf16(void)
{
	static float x[NB * NT * D],
				dx[NB * NT * D],
				logits[NB * NL * V],
				logits_f32[NB * NL * V];
	float		loss,
				scores[NB * NC];
	int32_t		cands[NC * NL];
	uint8_t		mask[NB * NT];
	const float *r_logits = ef_f32("logits", 3, NB, NL, V);
	const float *r_ll = ef_f32("label_log_likelihood", 2, NB, NC, 0);
	const float *r_dx = ef_f32("grad_word_embeddings", 3, NB, NT, D);
	const int32_t *labels = ef_i32("labels", NB, NL);
	BackboneRun *run,
			   *plain;
	NnError		err;
	double		dl,
				dll,
				dd;

	if (!gemm_bf16_usable(32, 32))
	{
		printf("# skip: this CPU runs neither AMX nor AVX512-BF16\n");
		return;
	}
	if (!ef_inputs("input_ids", "attention_mask", NB, NT, x, mask) || !r_logits || !r_ll ||
		!r_dx || !labels)
		return;
	run = ef_model->ops->run_new(ef_model, NB, NT);
	plain = ef_model->ops->run_new(ef_model, NB, NT);
	CHECK(run && plain && ef_model->ops->run_use_bf16(run, true), "bfloat16 run");
	if (run && plain)
	{
		CHECK(t5_loss_forward(ef_model, run, x, mask, NB, NT, labels, NL, &loss, logits, &err) ==
			  NN_OK && t5_loss_backward(ef_model, run, dx, &err) == NN_OK, "%s", err.msg);
		candidate_ids(cands);
		CHECK(t5_label_loglik(ef_model, run, x, mask, NB, NT, cands, NC, NL, scores, &err) ==
			  NN_OK, "%s", err.msg);
		dl = ef_rel_diff(logits, r_logits, NB * NL * V, NULL, 1);
		dll = ef_rel_diff(scores, r_ll, NB * NC, NULL, 1);
		dd = cosine(dx, r_dx, NB * NT * D);
		printf("# bfloat16 (%s) vs transformers' float32: logits rel %.2e, label_log_likelihood "
			   "rel %.2e, grad_word_embeddings cosine %.6f\n", gemm_bf16_engine(), dl, dll, dd);
		CHECK(dl <= 1e-2 && dl > 1e-6, "logits rel diff %.3e", dl);
		CHECK(dll <= 1e-2 && dll > 1e-6, "label_log_likelihood rel diff %.3e", dll);
		CHECK(dd >= 0.99 && dd < 1.0, "grad_word_embeddings cosine %.6f", dd);

		CHECK(!ef_model->ops->run_use_bf16(run, false), "run_use_bf16 off");
		CHECK(t5_loss_forward(ef_model, run, x, mask, NB, NT, labels, NL, &loss, logits, &err) ==
			  NN_OK && t5_loss_forward(ef_model, plain, x, mask, NB, NT, labels, NL, &loss,
									   logits_f32, &err) == NN_OK, "%s", err.msg);
		CHECK(memcmp(logits, logits_f32, sizeof(logits)) == 0,
			  "float32 after bfloat16 differs from float32");
	}
	ef_model->ops->run_free(run);
	ef_model->ops->run_free(plain);
}

static void
test_dept_reference(void)
{
	enum
	{
		T = M_PROMPT + NT
	};
	static float E[NB * NT * D],
				X[NB * T * D],
				dX[NB * T * D],
				hidden[NB * T * D],
				logits[NB * NL * V];
	uint8_t		emask[NB * NT],
				xmask[NB * T];
	AdapterConfig cfg = {.method = ADAPTER_DEPT,.d = D,.h_dim = D,.n_classes = 2,
	.prompt_len = M_PROMPT,.max_len = S_MAX,.rank = RANK,.alpha = 8.0f};
	Adapter    *a = NULL;
	const float *P = ef_f32("dept_P", 2, M_PROMPT, D, 0);
	const float *A = ef_f32("dept_A", 2, S_MAX, RANK, 0);
	const float *Bm = ef_f32("dept_B", 2, RANK, D, 0);
	const float *r_hidden = ef_f32("dept_encoder_last_hidden_state", 3, NB, T, D);
	const float *r_logits = ef_f32("dept_logits", 3, NB, NL, V);
	const float *r_loss = ef_f32("dept_loss", 1, 1, 0, 0);
	const float *r_scale = ef_f32("dept_scale", 1, 1, 0, 0);
	const float *gP = ef_f32("dept_grad_P", 2, M_PROMPT, D, 0);
	const float *gA = ef_f32("dept_grad_A", 2, S_MAX, RANK, 0);
	const float *gB = ef_f32("dept_grad_B", 2, RANK, D, 0);
	const int32_t *labels = ef_i32("labels", NB, NL);
	BackboneRun *run;
	NnError		err;
	float		loss;
	double		dh,
				dl;

	if (!ef_inputs("input_ids", "attention_mask", NB, NT, E, emask) || !P || !A || !Bm ||
		!r_hidden || !r_logits || !r_loss || !r_scale || !gP || !gA || !gB || !labels)
		return;
	CHECK(adapter_new(&a, &cfg, NB, 1, &err) == NN_OK, "%s", err.msg);
	if (a == NULL)
		return;
	CHECK(fabsf(a->scale - r_scale[0]) <= 1e-6f, "scale %g vs %g", a->scale, r_scale[0]);
	memcpy(a->prompt.w, P, sizeof(float) * M_PROMPT * D);
	memcpy(a->lora_a.w, A, sizeof(float) * S_MAX * RANK);
	memcpy(a->lora_b.w, Bm, sizeof(float) * RANK * D);
	adapter_forward(a, E, emask, NB, NT, X, xmask);

	run = ef_model->ops->run_new(ef_model, NB, T);
	CHECK(t5_loss_forward(ef_model, run, X, xmask, NB, T, labels, NL, &loss, logits, &err) == NN_OK,
		  "%s", err.msg);
	t5_encoder_hidden(ef_model, run, hidden);
	dh = ef_rel_diff(hidden, r_hidden, NB * T * D, xmask, D);
	dl = ef_rel_diff(logits, r_logits, NB * NL * V, NULL, 1);
	printf("# DePT forward: encoder_last_hidden_state rel %.2e, logits rel %.2e, loss %.7f vs %.7f\n",
		   dh, dl, loss, r_loss[0]);
	CHECK(dh <= 1e-4 && dl <= 1e-4, "DePT forward rel diffs %.3e %.3e", dh, dl);
	CHECK(fabs(loss - r_loss[0]) <= 1e-4 * fabs(r_loss[0]), "DePT loss %.7f vs %.7f", loss,
		  r_loss[0]);

	CHECK(t5_loss_backward(ef_model, run, dX, &err) == NN_OK, "%s", err.msg);
	ef_check_dept_grads(a, dX, NB, NT, gP, gA, gB);
	ef_model->ops->run_free(run);
	adapter_free(a);
}

/*
 * The Backbone interface's backward (pooled encoder) by central
 * differences along the gradient of loss <pooled, W>, within 2%.
 */
static void
test_pooled_fd(void)
{
	static float x[NB * NT * D],
				dx[NB * NT * D],
				xp[NB * NT * D];
	float		w[NB * D],
				out[NB * D];
	uint8_t		mask[NB * NT];
	BackboneRun *run;
	NnError		err;
	double		norm = 0.0,
				best = 1.0;

	if (!ef_inputs("input_ids", "attention_mask", NB, NT, x, mask))
		return;
	for (int i = 0; i < NB * D; i++)
		w[i] = sinf(0.7f * (float) i + 0.3f);
	run = ef_model->ops->run_new(ef_model, NB, NT);
	CHECK(ef_model->ops->forward(ef_model, run, x, mask, NB, NT, out, &err) == NN_OK &&
		  ef_model->ops->backward(ef_model, run, w, dx, &err) == NN_OK, "%s", err.msg);
	for (int i = 0; i < NB * NT * D; i++)
	{
		norm += (double) dx[i] * dx[i];
		if (!mask[i / D])
			CHECK(dx[i] == 0.0f, "pooled dx at padding %d", i);
	}
	norm = sqrt(norm);
	for (double h = 3e-2; h >= 3e-3; h /= 3.0)
	{
		double		lp = 0.0,
					lm = 0.0,
					rel;

		for (int s = -1; s <= 1; s += 2)
		{
			double		l = 0.0;

			for (int i = 0; i < NB * NT * D; i++)
				xp[i] = x[i] + (float) (s * h * dx[i] / norm);
			ef_model->ops->forward(ef_model, run, xp, mask, NB, NT, out, &err);
			for (int i = 0; i < NB * D; i++)
				l += (double) out[i] * w[i];
			if (s < 0)
				lm = l;
			else
				lp = l;
		}
		rel = fabs((lp - lm) / (2 * h) - norm) / norm;
		printf("# pooled encoder, h %.0e: central difference %.6f, |dx| %.6f (rel %.1e)\n", h,
			   (lp - lm) / (2 * h), norm, rel);
		best = fmin(best, rel);
	}
	CHECK(best <= 2e-2, "finite differences off by %.3e", best);
	ef_model->ops->run_free(run);
}

/* ---- one encoder block kept ---------------------------------------------------------- */

/*
 * t5_label_loglik's decoder keeps one block's activations, t5_loss_forward's
 * every one: each row's score of each candidate equals -loss * its token
 * count for that candidate as the label (within float rounding of the sums).
 */
static void
loglik_vs_loss(const Backbone *bb, BackboneRun *run, const float *x, const uint8_t *mask,
			   const int32_t *cands, const char *what)
{
	float		one[NC],
				loss;
	double		worst = 0.0,
				top = 0.0;
	NnError		err;

	for (int b = 0; b < NB; b++)
	{
		const float *xb = x + (size_t) b * NT * D;
		const uint8_t *mb = mask + b * NT;

		CHECK(t5_label_loglik(bb, run, xb, mb, 1, NT, cands, NC, NL, one, &err) == NN_OK, "%s: %s",
			  what, err.msg);
		for (int k = 0; k < NC; k++)
		{
			int			n = 0;

			for (int t = 0; t < NL; t++)
				n += cands[k * NL + t] >= 0;
			CHECK(t5_loss_forward(bb, run, xb, mb, 1, NT, cands + k * NL, NL, &loss, NULL, &err) ==
				  NN_OK, "%s: %s", what, err.msg);
			worst = fmax(worst, fabs((double) one[k] + (double) loss * n));
			top = fmax(top, fabs(one[k]));
		}
	}
	printf("# %s: label_loglik vs -loss x tokens: max |diff| %.2e of %.2e\n", what, worst, top);
	CHECK(worst <= 1e-6 * top, "%s: label_loglik differs from the loss by %.3e", what, worst);
}

/*
 * The ways through bb's runs that keep one encoder block or every one give
 * the same numbers bit for bit: a fresh run's forward (one block kept) and
 * the backward that recomputes the encoder, the forward and backward after
 * it (every block kept), t5_backward after t5_label_loglik, and
 * t5_loss_forward/backward on a fresh run and on one whose forwards kept
 * one block before.
 */
static void
kept_blocks_check(const Backbone *bb, const char *what)
{
	static float x[NB * NT * D],
				x2[NB * NT * D],
				hid[2][NB * NT * D],
				dx[4][NB * NT * D],
				dxl[3][NB * NT * D];
	float		w[NB * D],
				pooled[2][NB * D],
				other[NB * D],
				scores[2][NB * NC],
				loss;
	int32_t		cands[NC * NL];
	uint8_t		mask[NB * NT];
	const int32_t *labels = ef_i32("labels", NB, NL);
	BackboneRun *run[4];
	NnError		err;

	if (!ef_inputs("input_ids", "attention_mask", NB, NT, x, mask) || !labels)
	{
		CHECK(0, "%s: inputs or labels missing", what);
		return;
	}
	for (int i = 0; i < NB * D; i++)
		w[i] = sinf(0.7f * (float) i + 0.3f);
	for (int i = 0; i < NB * NT * D; i++)
		x2[i] = 0.5f * x[i];
	candidate_ids(cands);
	for (int r = 0; r < 4; r++)
		run[r] = bb->ops->run_new(bb, NB, NT);
	if (!run[0] || !run[1] || !run[2] || !run[3])
		CHECK(0, "%s: run_new", what);
	else
	{
		/* one block kept, the recomputing backward; then every block kept */
		CHECK(bb->ops->forward(bb, run[0], x, mask, NB, NT, pooled[0], &err) == NN_OK &&
			  bb->ops->backward(bb, run[0], w, dx[0], &err) == NN_OK, "%s: %s", what, err.msg);
		t5_encoder_hidden(bb, run[0], hid[0]);
		CHECK(bb->ops->forward(bb, run[0], x, mask, NB, NT, pooled[1], &err) == NN_OK &&
			  bb->ops->backward(bb, run[0], w, dx[1], &err) == NN_OK, "%s: %s", what, err.msg);
		t5_encoder_hidden(bb, run[0], hid[1]);
		/* a fresh run: another forward first, then the candidates' log-likelihoods */
		CHECK(bb->ops->forward(bb, run[1], x2, mask, NB, NT, other, &err) == NN_OK &&
			  t5_label_loglik(bb, run[1], x, mask, NB, NT, cands, NC, NL, scores[0], &err) ==
			  NN_OK && bb->ops->backward(bb, run[1], w, dx[2], &err) == NN_OK &&
			  t5_label_loglik(bb, run[1], x, mask, NB, NT, cands, NC, NL, scores[1], &err) ==
			  NN_OK, "%s: %s", what, err.msg);
		CHECK(memcmp(pooled[0], pooled[1], sizeof(pooled[0])) == 0 &&
			  memcmp(hid[0], hid[1], sizeof(hid[0])) == 0,
			  "%s: the forward keeping one block differs from the one keeping all", what);
		CHECK(memcmp(dx[0], dx[1], sizeof(dx[0])) == 0,
			  "%s: backward after a kept forward differs from the recomputed one", what);
		CHECK(memcmp(dx[0], dx[2], sizeof(dx[0])) == 0,
			  "%s: backward after label_loglik differs", what);
		CHECK(memcmp(scores[0], scores[1], sizeof(scores[0])) == 0,
			  "%s: label_loglik keeping one block differs from the one keeping all", what);
		loglik_vs_loss(bb, run[1], x, mask, cands, what);

		/* text-to-text training: on a fresh run, after a one-block forward, after a kept one */
		CHECK(t5_loss_forward(bb, run[2], x, mask, NB, NT, labels, NL, &loss, NULL, &err) == NN_OK &&
			  t5_loss_backward(bb, run[2], dxl[0], &err) == NN_OK, "%s: %s", what, err.msg);
		CHECK(bb->ops->forward(bb, run[3], x2, mask, NB, NT, other, &err) == NN_OK &&
			  t5_loss_forward(bb, run[3], x, mask, NB, NT, labels, NL, &loss, NULL, &err) == NN_OK &&
			  t5_loss_backward(bb, run[3], dxl[1], &err) == NN_OK, "%s: %s", what, err.msg);
		CHECK(t5_loss_forward(bb, run[0], x, mask, NB, NT, labels, NL, &loss, NULL, &err) == NN_OK &&
			  t5_loss_backward(bb, run[0], dxl[2], &err) == NN_OK, "%s: %s", what, err.msg);
		CHECK(memcmp(dxl[0], dxl[1], sizeof(dxl[0])) == 0 &&
			  memcmp(dxl[0], dxl[2], sizeof(dxl[0])) == 0,
			  "%s: the loss backward depends on the forwards before it", what);
		/* and the pooled backward after a loss forward's encoder */
		CHECK(bb->ops->forward(bb, run[2], x, mask, NB, NT, other, &err) == NN_OK &&
			  bb->ops->backward(bb, run[2], w, dx[3], &err) == NN_OK &&
			  memcmp(dx[0], dx[3], sizeof(dx[0])) == 0, "%s: pooled backward on a training run",
			  what);
	}
	for (int r = 0; r < 4; r++)
		bb->ops->run_free(run[r]);
}

/*
 * The fixture with 5 encoder and 5 decoder blocks (blocks 2, 3, 4 copies of
 * 0, 1, 0) in a temporary directory, so that the one-block forward's inputs
 * go round the slots more than once; NULL when it cannot be built.
 */
static Backbone *
open_deep_stacks(void)
{
	Safetensors *src = NULL;
	VfSt		st = {0};
	char		name[4][160];
	char	   *cfg,
			   *text;
	size_t		len;
	cJSON	   *root;
	Backbone   *bb = NULL;
	NnError		err;

	snprintf(vf_tmp_dir, sizeof(vf_tmp_dir), "/tmp/dept_t5_deep_XXXXXX");
	if (mkdtemp(vf_tmp_dir) == NULL || (cfg = read_all(ef_path("config.json"), &len)) == NULL)
		return NULL;
	root = cJSON_Parse(cfg);
	free(cfg);
	cJSON_DeleteItemFromObject(root, "num_layers");
	cJSON_AddNumberToObject(root, "num_layers", 5);
	cJSON_DeleteItemFromObject(root, "num_decoder_layers");
	cJSON_AddNumberToObject(root, "num_decoder_layers", 5);
	text = cJSON_Print(root);
	vf_write_file("config.json", text, strlen(text));
	free(text);
	cJSON_Delete(root);
	if (realpath(ef_fixture, vf_src_dir) == NULL || !vf_link_file("tokenizer.json"))
		return NULL;
	if (safetensors_open(&src, ef_path("model.safetensors"), &err) != NN_OK)
		return NULL;
	for (int i = 0; i < safetensors_count(src); i++)
	{
		const StTensor *t = safetensors_tensor(src, i);
		const char *dot = strchr(t->name, '.');
		int			copies = 1;
		size_t		stack = dot != NULL ? (size_t) (dot - t->name) : 0;

		snprintf(name[0], sizeof(name[0]), "%s", t->name);
		/* encoder.block.N. or decoder.block.N. (the stacks' names have 7 letters) */
		if (stack == 7 && strncmp(dot, ".block.0.", 9) == 0)
		{
			snprintf(name[1], sizeof(name[1]), "%.7s.block.2.%s", t->name, dot + 9);
			snprintf(name[2], sizeof(name[2]), "%.7s.block.4.%s", t->name, dot + 9);
			copies = 3;
		}
		else if (stack == 7 && strncmp(dot, ".block.1.", 9) == 0)
		{
			snprintf(name[1], sizeof(name[1]), "%.7s.block.3.%s", t->name, dot + 9);
			copies = 2;
		}
		for (int k = 0; k < copies && t->f32 != NULL; k++)
			vf_st_add(&st, name[k], "F32", t->ndim, t->shape, t->f32, sizeof(float) * t->numel);
	}
	vf_st_write(&st, "model.safetensors");
	CHECK(t5_open(&bb, vf_tmp_dir, &err) == NN_OK, "5-block stacks: %s", err.msg);
	safetensors_close(src);
	return bb;
}

static void
test_kept_blocks(void)
{
	Backbone   *deep;

	kept_blocks_check(ef_model, "fixture");
	if ((deep = open_deep_stacks()) == NULL)
		CHECK(0, "cannot build the 5-block stacks");
	else
	{
		float		x[NB * NT * D],
					a[NB * D],
					b[NB * D];
		uint8_t		mask[NB * NT];
		BackboneRun *run = ef_model->ops->run_new(ef_model, NB, NT),
				   *drun = deep->ops->run_new(deep, NB, NT);
		NnError		err;

		kept_blocks_check(deep, "5 blocks a stack");
		/* the extra blocks take effect */
		CHECK(ef_inputs("input_ids", "attention_mask", NB, NT, x, mask) &&
			  ef_model->ops->forward(ef_model, run, x, mask, NB, NT, a, &err) == NN_OK &&
			  deep->ops->forward(deep, drun, x, mask, NB, NT, b, &err) == NN_OK &&
			  memcmp(a, b, sizeof(a)) != 0, "5 encoder blocks embed as 2 do");
		ef_model->ops->run_free(run);
		deep->ops->run_free(drun);
	}
	backbone_close(deep);
	vf_remove_tmp(NULL);
}

/* Argument errors are reported, not crashed on. */
static void
test_arguments(void)
{
	static float x[NB * NT * D],
				dx[NB * NT * D];
	uint8_t		mask[NB * NT];
	int32_t		labels[NB * NL];
	BackboneRun *run = ef_model->ops->run_new(ef_model, 2, NT);
	NnError		err;
	float		loss,
				scores[NB * NC];

	if (!ef_inputs("input_ids", "attention_mask", NB, NT, x, mask) || run == NULL)
	{
		ef_model->ops->run_free(run);
		return;
	}
	for (int i = 0; i < NB * NL; i++)
		labels[i] = i % NL < 3 ? 5 + i : -100;
	CHECK(t5_loss_backward(ef_model, run, dx, &err) == NN_ERR_ARG, "backward before forward");
	CHECK(t5_loss_forward(ef_model, run, x, mask, NB, NT, labels, NL, &loss, NULL, &err) == NN_ERR_ARG,
		  "batch above the run's");
	labels[1] = V;
	CHECK(t5_loss_forward(ef_model, run, x, mask, 2, NT, labels, NL, &loss, NULL, &err) == NN_ERR_ARG,
		  "label id past the vocabulary");
	printf("#   refused as expected: %s\n", err.msg);
	labels[1] = 6;
	CHECK(t5_label_loglik(ef_model, run, x, mask, 2, NT, labels, 0, NL, scores, &err) == NN_ERR_ARG,
		  "no candidates");
	/* no targets at all: loss 0, gradient 0 */
	for (int i = 0; i < NB * NL; i++)
		labels[i] = -100;
	CHECK(t5_loss_forward(ef_model, run, x, mask, 2, NT, labels, NL, &loss, NULL, &err) == NN_OK &&
		  loss == 0.0f && t5_loss_backward(ef_model, run, dx, &err) == NN_OK, "no targets");
	for (int i = 0; i < 2 * NT * D; i++)
		CHECK(dx[i] == 0.0f, "dx %d without targets", i);
	/* an empty input row: its decoder cross-attends to nothing, still finite */
	memset(mask, 0, NT);
	for (int i = 0; i < NB * NL; i++)
		labels[i] = i % NL < 2 ? 7 : -100;
	CHECK(t5_loss_forward(ef_model, run, x, mask, 2, NT, labels, NL, &loss, NULL, &err) == NN_OK &&
		  isfinite(loss) && t5_loss_backward(ef_model, run, dx, &err) == NN_OK, "empty row");
	ef_model->ops->run_free(run);
}

/* Forward cost per token, printed for the record (no threshold). */
static void
test_speed(void)
{
	enum
	{
		B = 8, T = 64
	};
	static float x[B * T * D],
				dx[B * T * D];
	static uint8_t mask[B * T];
	int32_t		labels[B * 4];
	float		out[B * D],
				loss;
	BackboneRun *run = ef_model->ops->run_new(ef_model, B, T);
	NnError		err;
	struct timespec t0,
				t1;
	double		fwd,
				both;
	int			reps = 20;

	for (int i = 0; i < B * T * D; i++)
		x[i] = sinf((float) i);
	memset(mask, 1, sizeof(mask));
	for (int i = 0; i < B * 4; i++)
		labels[i] = 3 + i % 7;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int r = 0; r < reps; r++)
		ef_model->ops->forward(ef_model, run, x, mask, B, T, out, &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fwd = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / ((double) reps * B * T);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int r = 0; r < reps; r++)
	{
		t5_loss_forward(ef_model, run, x, mask, B, T, labels, 4, &loss, NULL, &err);
		t5_loss_backward(ef_model, run, dx, &err);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	both = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / ((double) reps * B * T);
	printf("# speed (%d x %d tokens): encoder forward %.0f ns/token, loss forward+backward "
		   "%.0f ns/input token\n", B, T, fwd, both);
	ef_model->ops->run_free(run);
}

/* ---- malformed model directories ------------------------------------------------------ */

/*
 * A copy of the fixture in a temporary directory, with config.json changed
 * (key = value JSON, value NULL removes it), a tensor renamed in the
 * safetensors header (same length, so offsets hold) and files left out.
 */
static bool
make_dir(char *dir, const char *cfg_key, const char *cfg_value, const char *tensor_from,
		 const char *tensor_to, const char *skip)
{
	static const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};

	strcpy(dir, "/tmp/dept_t5_XXXXXX");
	if (mkdtemp(dir) == NULL)
		return false;
	for (size_t i = 0; i < 3; i++)
	{
		size_t		len;
		char	   *data;

		if (skip != NULL && strcmp(skip, files[i]) == 0)
			continue;
		if ((data = read_all(ef_path(files[i]), &len)) == NULL)
			return false;
		if (i == 0 && cfg_key != NULL)
		{
			cJSON	   *root = cJSON_Parse(data);

			free(data);
			cJSON_DeleteItemFromObject(root, cfg_key);
			if (cfg_value != NULL)
				cJSON_AddItemToObject(root, cfg_key, cJSON_Parse(cfg_value));
			data = cJSON_Print(root);
			len = strlen(data);
			cJSON_Delete(root);
		}
		if (i == 1 && tensor_from != NULL)
		{
			char	   *p = memmem(data, len < 65536 ? len : 65536, tensor_from, strlen(tensor_from));

			if (p != NULL)
				memcpy(p, tensor_to, strlen(tensor_to));
		}
		if (!write_all(path_in(dir, files[i]), data, len))
		{
			free(data);
			return false;
		}
		free(data);
	}
	return true;
}

static void
remove_dir(const char *dir)
{
	static const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};

	for (size_t i = 0; i < 3; i++)
		unlink(path_in(dir, files[i]));
	rmdir(dir);
}

static void
test_bad_model_dirs(void)
{
	static const struct
	{
		const char *what;
		const char *key;
		const char *value;
		const char *from;
		const char *to;
		const char *skip;
		NnStatus	expect;
	}			cases[] = {
		{"missing tensor", NULL, NULL, "\"encoder.final_layer_norm.weight\"",
		"\"encoder.final_layer_norm.weighX\"", NULL, NN_ERR_FORMAT},
		{"missing block", NULL, NULL, "decoder.block.1.layer.2.layer_norm.weight",
		"decoder.block.9.layer.2.layer_norm.weight", NULL, NN_ERR_FORMAT},
		{"d_model disagrees with the tensors", "d_model", "48", NULL, NULL, NULL, NN_ERR_FORMAT},
		{"more layers than tensors", "num_layers", "3", NULL, NULL, NULL, NN_ERR_FORMAT},
		{"not t5", "model_type", "\"bert\"", NULL, NULL, NULL, NN_ERR_FORMAT},
		{"unknown activation", "feed_forward_proj", "\"gated-foo\"", NULL, NULL, NULL,
		NN_ERR_FORMAT},
		{"zero heads", "num_heads", "0", NULL, NULL, NULL, NN_ERR_FORMAT},
		{"fractional width", "d_ff", "64.5", NULL, NULL, NULL, NN_ERR_FORMAT},
		{"eos outside the vocabulary", "eos_token_id", "5000", NULL, NULL, NULL, NN_ERR_FORMAT},
		{"eos other than </s>", "eos_token_id", "2", NULL, NULL, NULL, NN_ERR_FORMAT},
		{"no config.json", NULL, NULL, NULL, NULL, "config.json", NN_ERR_IO},
		{"no model.safetensors", NULL, NULL, NULL, NULL, "model.safetensors", NN_ERR_IO},
		{"no tokenizer.json", NULL, NULL, NULL, NULL, "tokenizer.json", NN_ERR_IO},
	};
	char		dir[64];
	NnError		err;
	Backbone   *bb;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		NnStatus	s;

		if (!make_dir(dir, cases[i].key, cases[i].value, cases[i].from, cases[i].to,
					  cases[i].skip))
		{
			CHECK(0, "cannot build a model directory for %s", cases[i].what);
			continue;
		}
		bb = NULL;
		s = t5_open(&bb, dir, &err);
		CHECK(s == cases[i].expect && bb == NULL, "%s: status %d (%s)", cases[i].what, (int) s,
			  s ? err.msg : "opened");
		if (s != NN_OK)
			printf("# %s -> %s\n", cases[i].what, err.msg);
		backbone_close(bb);
		remove_dir(dir);
	}
	/* garbage config.json */
	if (make_dir(dir, NULL, NULL, NULL, NULL, NULL))
	{
		write_all(path_in(dir, "config.json"), "{\"model_type\": \"t5\", ", 21);
		bb = NULL;
		CHECK(t5_open(&bb, dir, &err) == NN_ERR_FORMAT && bb == NULL, "truncated config.json");
		remove_dir(dir);
	}
	bb = NULL;
	CHECK(t5_open(&bb, "/nonexistent/t5", &err) == NN_ERR_IO && bb == NULL, "missing directory");
}

/* ---- kernels -------------------------------------------------------------------------- */

static void
test_buckets(void)
{
	/* HF's _relative_position_bucket for 32 buckets, max distance 128 */
	static const struct
	{
		int			rel;
		int			bi;
		int			causal;
	}			want[] = {
		{0, 0, 0}, {1, 17, 0}, {-1, 1, 1}, {7, 23, 0}, {-7, 7, 7}, {8, 24, 0}, {-8, 8, 8},
		{15, 25, 0}, {-16, 10, 16}, {16, 26, 0}, {-31, 11, 21}, {32, 28, 0}, {-32, 12, 21},
		{-64, 14, 26}, {-127, 15, 31}, {-128, 15, 31}, {-1000, 15, 31}, {1000, 31, 0},
	};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
	{
		int			b = t5_relative_bucket(want[i].rel, true, 32, 128);
		int			c = t5_relative_bucket(want[i].rel, false, 32, 128);

		CHECK(b == want[i].bi && c == want[i].causal, "rel %d: buckets %d %d, expected %d %d",
			  want[i].rel, b, c, want[i].bi, want[i].causal);
	}
	/* the per-head table by distance reads the (bucket, head) bias */
	{
		float		rel_bias[32 * 2],
					pb[2 * 81];

		for (int i = 0; i < 64; i++)
			rel_bias[i] = (float) i;
		t5_position_bias(pb, rel_bias, 2, 40, true, 32, 128);
		for (int r = -40; r <= 40; r++)
			for (int h = 0; h < 2; h++)
				CHECK(pb[h * 81 + r + 40] == (float) (t5_relative_bucket(r, true, 32, 128) * 2 + h),
					  "position bias at %d, head %d", r, h);
	}
}

/* Finite differences of the element-wise and row kernels without a reference. */
static void
test_kernels_fd(void)
{
	enum
	{
		N = 3, C = 7
	};
	float		x[N * C],
				w[C],
				y[N * C],
				r[N],
				dy[N * C],
				dx[N * C];
	double		worst = 0.0;

	for (int i = 0; i < N * C; i++)
	{
		x[i] = sinf(1.3f * (float) i) * 2.0f;
		dy[i] = cosf(0.9f * (float) i);
	}
	for (int j = 0; j < C; j++)
		w[j] = 0.5f + 0.1f * (float) j;
	rmsnorm_forward(y, r, x, w, N, C, 1e-6f);
	memset(dx, 0, sizeof(dx));
	rmsnorm_backward(dx, dy, x, w, r, N, C);
	for (int i = 0; i < N * C; i++)
	{
		double		h = 1e-3,
					lp = 0.0,
					lm = 0.0;
		float		save = x[i];

		x[i] = save + (float) h;
		rmsnorm_forward(y, r, x, w, N, C, 1e-6f);
		for (int k = 0; k < N * C; k++)
			lp += (double) y[k] * dy[k];
		x[i] = save - (float) h;
		rmsnorm_forward(y, r, x, w, N, C, 1e-6f);
		for (int k = 0; k < N * C; k++)
			lm += (double) y[k] * dy[k];
		x[i] = save;
		worst = fmax(worst, fabs((lp - lm) / (2 * h) - dx[i]));
	}
	CHECK(worst <= 2e-3, "rmsnorm backward vs finite differences: %.3e", worst);

	/* activations: act' and the gated product */
	for (int a = T5_ACT_RELU; a <= T5_ACT_SILU; a++)
		for (int i = 0; i < 40; i++)
		{
			float		v = -3.0f + 0.1537f * (float) i,
						lin = 0.7f,
						one = 1.0f,
						g,
						fp,
						fm,
						dg,
						dl;

			t5_act_backward(&g, &one, &v, 1, (T5Act) a);
			v += 1e-3f;
			gated_act_forward(&fp, &v, &lin, 1, (T5Act) a);
			v -= 2e-3f;
			gated_act_forward(&fm, &v, &lin, 1, (T5Act) a);
			v += 1e-3f;
			gated_act_backward(&dg, &dl, &one, &v, &lin, 1, (T5Act) a);
			if (a == T5_ACT_RELU && fabsf(v) < 2e-3f)
				continue;
			CHECK(fabsf((fp - fm) / 2e-3f - dg) <= 2e-3f && fabsf(dg - lin * g) <= 1e-5f,
				  "act %d at %g: fd %g vs %g", a, v, (fp - fm) / 2e-3f, dg);
		}
}

/* ---- main ------------------------------------------------------------------------------ */

int
main(void)
{
	static const char *fixtures[] = {"t5-tiny-random", "t5-v1_1-tiny-random"};

	RUN_TEST(test_tokenizer_cases);
	RUN_TEST(test_tokenizer_edges);
	RUN_TEST(test_precompiled);
	RUN_TEST(test_buckets);
	RUN_TEST(test_kernels_fd);
	for (size_t f = 0; f < 2; f++)
	{
		bool		ok;

		printf("# --- %s\n", fixtures[f]);
		unit_current_failures = 0;
		ok = open_fixture(fixtures[f]);
		unit_tests_run++;
		if (!ok || unit_current_failures)
		{
			unit_tests_failed++;
			printf("not ok %d - open %s\n", unit_tests_run, fixtures[f]);
			close_fixture();
			continue;
		}
		printf("ok %d - open %s\n", unit_tests_run, fixtures[f]);
		RUN_TEST(test_reference_tokens);
		RUN_TEST(test_forward_reference);
		RUN_TEST(test_backward_reference);
		RUN_TEST(test_dept_reference);
		RUN_TEST(test_bf16);
		RUN_TEST(test_pooled_fd);
		RUN_TEST(test_kept_blocks);
		RUN_TEST(test_arguments);
		RUN_TEST(test_speed);
		if (f == 0)
			RUN_TEST(test_bad_model_dirs);
		close_fixture();
	}
	return unit_finish();
}
