/*
 * test_unigram_trie.c: the Unigram reader's vocabulary trie (built in the
 * pieces' sorted order, nodes with many children in tables) against a
 * plain scan of the vocabulary, on random vocabularies whose pieces share
 * prefixes, repeat (the last id of a repeated piece counts, as in
 * `tokenizers`) and branch up to 40 ways under one node.
 *
 * Checked: hf_unigram_piece_id of every piece and of strings that are not
 * pieces; hf_unigram_encode of random texts against a Viterbi written here
 * over the vocabulary scanned piece by piece (unigram.h, step 4: the best
 * score, ties to the earlier candidate, a character no piece starts with
 * is unknown at min(score) - 10, adjacent unknowns fused).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "base/rng.h"
#include "tokenizers/unigram.h"

#define N_PIECES 3000
#define MAX_TEXT 64

/* the alphabet: 26 letters, U+2581, 12 two- and three-byte characters (the last two in no piece) */
static const char *const symbols[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l",
	"m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "\xC3\xA9",
	"\xC3\xA8", "\xD0\xB0", "\xD0\xB1", "\xCE\xB1", "\xCE\xB2", "\xE4\xB8\xAD",
	"\xE4\xB8\x80", "\xE6\x96\x87", "\xE5\xAD\x97", "\xE2\x96\x81", "\xE3\x81\x82",
"\xE3\x81\x84"};
#define N_SYMBOLS ((int) (sizeof(symbols) / sizeof(symbols[0])))

typedef struct Vocab
{
	char	   *piece[N_PIECES];
	double		score[N_PIECES];
} Vocab;

/* A random string of 1..max_symbols symbols, from the first n_symbols of them. */
static void
random_string(Rng *rng, char *out, int max_symbols, int n_symbols)
{
	int			n = 1 + (int) (rng_uniform(rng) * max_symbols);

	out[0] = '\0';
	for (int k = 0; k < n; k++)
		strcat(out, symbols[(int) (rng_uniform(rng) * n_symbols)]);
}

/* pieces 1.. random (some repeated), id 0 "<unk>"; the tokenizer.json text */
static char *
make_vocab(Rng *rng, Vocab *v)
{
	size_t		cap = 64 + (size_t) N_PIECES * 96,
				len = 0;
	char	   *json = malloc(cap);

	v->piece[0] = strdup("<unk>");
	v->score[0] = 0.0;
	for (int i = 1; i < N_PIECES; i++)
	{
		char		buf[64];

		if (i > 10 && rng_uniform(rng) < 0.05)
			strcpy(buf, v->piece[1 + (int) (rng_uniform(rng) * (i - 1))]);
		else
			random_string(rng, buf, 5, N_SYMBOLS - 2);
		v->piece[i] = strdup(buf);
		v->score[i] = -1.0 - 10.0 * rng_uniform(rng);
	}
	len += (size_t) snprintf(json + len, cap - len,
							 "{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [");
	for (int i = 0; i < N_PIECES; i++)
		len += (size_t) snprintf(json + len, cap - len, "%s[\"%s\", %.17g]", i ? ", " : "",
								 v->piece[i], v->score[i]);
	snprintf(json + len, cap - len, "]}}");
	return json;
}

/* The id a lookup of s should give: the last piece equal to it, or -1. */
static int32_t
scan_id(const Vocab *v, const char *s, size_t len)
{
	int32_t		id = -1;

	for (int i = 1; i < N_PIECES; i++)
		if (strlen(v->piece[i]) == len && memcmp(v->piece[i], s, len) == 0)
			id = i;
	return id;
}

static size_t
char_len(const char *s)
{
	unsigned char c = (unsigned char) s[0];

	return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* The reference Viterbi of s (the test's alphabet only); returns the id count. */
static int
scan_encode(const Vocab *v, const char *s, int32_t *ids)
{
	size_t		n = strlen(s);
	double		best[MAX_TEXT * 4 + 1],
				min_score = INFINITY;
	int			start[MAX_TEXT * 4 + 1];
	int32_t		id[MAX_TEXT * 4 + 1],
				rev[MAX_TEXT * 4 + 1];
	int			nt = 0,
				out = 0;

	for (int i = 0; i < N_PIECES; i++)
		min_score = fmin(min_score, v->score[i]);
	for (size_t i = 0; i <= n; i++)
		start[i] = -1, best[i] = 0.0, id[i] = 0;
	for (size_t at = 0; at < n; at += char_len(s + at))
	{
		bool		single = false;

		for (size_t end = at + 1; end <= n; end++)
		{
			int32_t		p = scan_id(v, s + at, end - at);
			double		cand;

			if (p < 0)
				continue;
			cand = v->score[p] + best[at];
			if (start[end] < 0 || cand > best[end])
				best[end] = cand, start[end] = (int) at, id[end] = p;
			single = single || end - at == char_len(s + at);
		}
		if (!single)
		{
			size_t		end = at + char_len(s + at);
			double		cand = min_score - 10.0 + best[at];

			if (start[end] < 0 || cand > best[end])
				best[end] = cand, start[end] = (int) at, id[end] = 0;
		}
	}
	for (int end = (int) n; end > 0; end = start[end])
		if (!(id[end] == 0 && nt > 0 && rev[nt - 1] == 0))
			rev[nt++] = id[end];
	while (nt > 0)
		ids[out++] = rev[--nt];
	return out;
}

static void
test_piece_ids(void)
{
	Rng			rng;
	Vocab		v;
	char	   *json;
	HfUnigram  *u = NULL;
	NnError		err;
	int			found = 0;

	rng_seed(&rng, 7);
	json = make_vocab(&rng, &v);
	CHECK(hf_unigram_from_json(&u, json, strlen(json), &err) == NN_OK, "%s", err.msg);
	for (int i = 1; u != NULL && i < N_PIECES; i++)
		CHECK(hf_unigram_piece_id(u, v.piece[i]) == scan_id(&v, v.piece[i], strlen(v.piece[i])),
			  "piece %d \"%s\": %d", i, v.piece[i], hf_unigram_piece_id(u, v.piece[i]));
	for (int k = 0; u != NULL && k < 5000; k++)
	{
		char		buf[64];
		int32_t		want;

		random_string(&rng, buf, 6, N_SYMBOLS);
		want = scan_id(&v, buf, strlen(buf));
		found += want >= 0;
		CHECK(hf_unigram_piece_id(u, buf) == want, "\"%s\": %d, not %d", buf,
			  hf_unigram_piece_id(u, buf), want);
	}
	CHECK(found > 100 && found < 4900, "%d of the random strings are pieces", found);
	hf_unigram_free(u);
	for (int i = 0; i < N_PIECES; i++)
		free(v.piece[i]);
	free(json);
}

static void
test_encode(void)
{
	Rng			rng;
	Vocab		v;
	char	   *json;
	HfUnigram  *u = NULL;
	NnError		err;
	int			unknowns = 0;

	rng_seed(&rng, 11);
	json = make_vocab(&rng, &v);
	CHECK(hf_unigram_from_json(&u, json, strlen(json), &err) == NN_OK, "%s", err.msg);
	for (int k = 0; u != NULL && k < 150; k++)
	{
		char		text[MAX_TEXT * 4 + 1] = "";
		int32_t		got[MAX_TEXT * 4],
					want[MAX_TEXT * 4];
		int			n_got,
					n_want;

		random_string(&rng, text, MAX_TEXT - 1, N_SYMBOLS);
		n_got = hf_unigram_encode(u, text, strlen(text), 0, got, NULL, MAX_TEXT * 4);
		n_want = scan_encode(&v, text, want);
		CHECK(n_got == n_want && memcmp(got, want, sizeof(int32_t) * (size_t) n_want) == 0,
			  "text %d \"%s\": %d ids, %d wanted", k, text, n_got, n_want);
		for (int i = 0; i < n_want; i++)
			unknowns += want[i] == 0;
	}
	CHECK(unknowns > 0, "no text had an unknown character");
	hf_unigram_free(u);
	for (int i = 0; i < N_PIECES; i++)
		free(v.piece[i]);
	free(json);
}

int
main(void)
{
	RUN_TEST(test_piece_ids);
	RUN_TEST(test_encode);
	return unit_finish();
}
