/*
 * fuzz_weights.c: libFuzzer harness for the TF.js weights-manifest reader
 * (tfjs_weights_from_buffers, src/nn/formats/tfjs_weights.h); build and run with
 * test/fuzz/run.sh.
 *
 * The input is model.json.  A mutated manifest almost never comes with
 * shards of the right sizes, so the harness works them out itself: it
 * walks the JSON with cJSON (leniently: anything odd counts as zero) and
 * sums 4 x the product of each weight's shape per group, then hands the
 * reader that many bytes of a known pattern, split over the group's paths
 * in a way the input chooses.  Each input is decoded three times: with
 * those shards, with one byte too many in the last shard, and with one
 * shard missing; the last two must be rejected.
 *
 * Properties checked beyond the sanitizers' own, abort() on a violation:
 *   - a rejection is NN_ERR_FORMAT (or NN_ERR_NOMEM) with a message and no
 *     result;
 *   - an accepted manifest lists unique, non-empty names, float32 or
 *     int32, 0..TFJS_MAX_DIMS dimensions whose product is numel, nbytes =
 *     4 x numel; tensors of a group lie back to back from offset 0 and end
 *     exactly at the bytes given; each tensor's bytes are the shard bytes at
 *     its offset (so a tensor spanning two shards reads both);
 *   - tfjs_weights_find and tfjs_weights_get find each tensor by name with
 *     its own dtype and shape, and refuse the other dtype and a wrong rank;
 *     the scalar getters accept exactly shapes [] and [1];
 *   - tfjs_weights_json returns the input bytes.
 *
 * FUZZ_TRACE=1 in the environment prints each decode's outcome, to see
 * what a reproducer or a seed does.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "formats/tfjs_weights.h"

#define MAX_SHARDS 64
#define MAX_GROUPS 256
#define MAX_TOTAL_BYTES ((size_t) 1 << 20)	/* larger manifests: only the rejection paths */

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what, size_t size)
{
	fprintf(stderr, "fuzz_weights: %s (input of %zu bytes)\n", what, size);
	abort();
}

/* The byte at absolute position pos of the concatenated shards of every group. */
static uint8_t
pattern(size_t pos)
{
	return (uint8_t) (pos * 131 + (pos >> 8) * 7 + 11);
}

/*
 * Shard sizes for the manifest in json, or -1 when it cannot be worked out
 * (not an object with a weightsManifest array, too many shards or groups,
 * too big).  sizes[i] is the byte count of the i-th path over all groups,
 * group_base[g] where group g starts in the concatenation of all shards;
 * the bytes of a group are split over its paths as the input's last byte
 * chooses.
 */
static int
plan_shards(const char *json, size_t len, size_t *sizes, size_t *group_base, uint8_t salt)
{
	cJSON	   *root = cJSON_ParseWithLength(json, len);
	const cJSON *manifest = cJSON_GetObjectItemCaseSensitive(root, "weightsManifest");
	const cJSON *group;
	int			n = 0,
				g = 0;
	size_t		total = 0;

	if (!cJSON_IsArray(manifest))
	{
		cJSON_Delete(root);
		return -1;
	}
	cJSON_ArrayForEach(group, manifest)
	{
		const cJSON *paths = cJSON_GetObjectItemCaseSensitive(group, "paths");
		const cJSON *weights = cJSON_GetObjectItemCaseSensitive(group, "weights");
		const cJSON *w;
		size_t		bytes = 0;
		int			np = cJSON_GetArraySize(paths);

		cJSON_ArrayForEach(w, weights)
		{
			const cJSON *shape = cJSON_GetObjectItemCaseSensitive(w, "shape");
			const cJSON *d;
			double		numel = 1;

			cJSON_ArrayForEach(d, shape)
			{
				/* clamped so that the product stays finite (0 x inf is NaN) */
				double		v = cJSON_IsNumber(d) && d->valuedouble > 0 ? d->valuedouble : 0;

				numel *= v < 1e9 ? v : 1e9;
			}
			if (!(numel * 4 <= (double) MAX_TOTAL_BYTES))
				goto too_big;
			bytes += (size_t) numel * 4;
		}
		if (g >= MAX_GROUPS || n + np > MAX_SHARDS || total + bytes > MAX_TOTAL_BYTES)
			goto too_big;
		group_base[g++] = total;
		total += bytes;
		/* every path but the last takes a share, the last the rest */
		for (int i = 0; i < np; i++)
		{
			size_t		share = i == np - 1 ? bytes : bytes * ((salt + 3 * (size_t) i) % 5) / 8;

			if (i < np - 1 && (salt & 16))
				share -= share % 4;	/* sometimes cut at value boundaries */
			sizes[n + i] = share;
			bytes -= share;
		}
		n += np;
	}
	cJSON_Delete(root);
	return n;
too_big:
	cJSON_Delete(root);
	return -1;
}

/* Every property of an accepted manifest. */
static void
check_accepted(const TfjsWeights *w, const uint8_t *data, size_t size, const size_t *group_base)
{
	int			n = tfjs_weights_count(w);
	size_t		json_len;
	const char *json = tfjs_weights_json(w, &json_len);
	int			last_group = -1;
	size_t		next_offset = 0;

	if (json_len != size || (size > 0 && memcmp(json, data, size) != 0))
		fail("tfjs_weights_json is not the input", size);
	if (tfjs_weights_tensor(w, -1) != NULL || tfjs_weights_tensor(w, n) != NULL)
		fail("a tensor for an index out of range", size);
	for (int i = 0; i < n; i++)
	{
		const TfjsTensor *t = tfjs_weights_tensor(w, i);
		size_t		numel = 1;
		const uint8_t *bytes;
		const void *p;
		NnError		err;
		TfjsDtype	other;
		int64_t		shape[TFJS_MAX_DIMS + 1];
		float		f;
		int32_t		k;
		bool		scalar;

		if (t == NULL || t->name == NULL || t->name[0] == '\0')
			fail("a tensor without a name", size);
		if (t->dtype != TFJS_FLOAT32 && t->dtype != TFJS_INT32)
			fail("a dtype other than float32 and int32", size);
		if (t->ndim < 0 || t->ndim > TFJS_MAX_DIMS)
			fail("a rank outside 0..TFJS_MAX_DIMS", size);
		for (int d = 0; d < t->ndim; d++)
		{
			if (t->shape[d] < 0 || t->shape[d] > INT32_MAX)
				fail("a dimension outside 0..INT32_MAX", size);
			numel *= (size_t) t->shape[d];
		}
		if (numel != t->numel || t->nbytes != 4 * t->numel)
			fail("numel or nbytes disagree with the shape", size);
		if (t->group != last_group)
		{
			if (t->group < last_group || t->offset != 0)
				fail("a group's tensors do not start at offset 0", size);
			last_group = t->group;
			next_offset = 0;
		}
		if (t->offset != next_offset)
			fail("a group's tensors are not back to back", size);
		next_offset += t->nbytes;
		if (tfjs_weights_find(w, t->name) != t)
			fail("tfjs_weights_find does not find a tensor by its name", size);
		bytes = tfjs_weights_data(w, t);
		if ((bytes == NULL) != (t->nbytes == 0))
			fail("data is NULL exactly when a tensor is empty", size);
		for (size_t b = 0; b < t->nbytes; b++)
			if (bytes[b] != pattern(group_base[t->group] + t->offset + b))
				fail("a tensor's bytes are not the shard bytes at its offset", size);

		nn_error_clear(&err);
		if (tfjs_weights_get(w, t->name, t->dtype, t->ndim, t->shape, &p, &err) != NN_OK ||
			p != (const void *) bytes)
			fail("tfjs_weights_get refuses a tensor's own dtype and shape", size);
		other = t->dtype == TFJS_FLOAT32 ? TFJS_INT32 : TFJS_FLOAT32;
		if (tfjs_weights_get(w, t->name, other, t->ndim, t->shape, &p, &err) != NN_ERR_FORMAT ||
			p != NULL)
			fail("tfjs_weights_get accepts the other dtype", size);
		memcpy(shape, t->shape, sizeof(t->shape));
		shape[t->ndim] = 1;
		if (t->ndim < TFJS_MAX_DIMS &&
			tfjs_weights_get(w, t->name, t->dtype, t->ndim + 1, shape, &p, &err) != NN_ERR_FORMAT)
			fail("tfjs_weights_get accepts a wrong rank", size);
		scalar = t->ndim == 0 || (t->ndim == 1 && t->shape[0] == 1);
		if ((tfjs_weights_scalar_f32(w, t->name, &f, &err) == NN_OK) !=
			(scalar && t->dtype == TFJS_FLOAT32))
			fail("tfjs_weights_scalar_f32 disagrees with the shape and dtype", size);
		if ((tfjs_weights_scalar_i32(w, t->name, &k, &err) == NN_OK) != (scalar && t->dtype == TFJS_INT32))
			fail("tfjs_weights_scalar_i32 disagrees with the shape and dtype", size);
		if (scalar && memcmp(t->dtype == TFJS_FLOAT32 ? (void *) &f : (void *) &k, bytes, 4) != 0)
			fail("a scalar getter returned other bytes", size);
	}
	if (tfjs_weights_find(w, "") != NULL)
		fail("a tensor found under the empty name", size);
}

/* One decode; expect_ok: -1 anything, 0 must fail. Returns the weights or NULL. */
static TfjsWeights *
decode(const uint8_t *data, size_t size, const void *const *shards, const size_t *sizes, int n,
	   int expect_ok)
{
	TfjsWeights *w = (TfjsWeights *) 0x1;	/* must be reset to NULL on failure */
	NnError		err;
	NnStatus	st;

	nn_error_clear(&err);
	st = tfjs_weights_from_buffers(&w, (const char *) data, size, shards, sizes, n, &err);
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "fuzz_weights: %d shards: %s\n", n,
				st == NN_OK ? "accepted" : err.msg);
	if (st != NN_OK)
	{
		if ((st != NN_ERR_FORMAT && st != NN_ERR_NOMEM) || w != NULL || err.msg[0] == '\0')
			fail("a rejection must be NN_ERR_FORMAT with a message and no result", size);
		return NULL;
	}
	if (w == NULL)
		fail("success without a result", size);
	if (expect_ok == 0)
		fail("shards of the wrong size or count were accepted", size);
	return w;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		sizes[MAX_SHARDS + 1],
				group_base[MAX_GROUPS];
	const void *shards[MAX_SHARDS + 1];
	uint8_t    *bytes;
	size_t		total = 0,
				off = 0;
	int			n;
	TfjsWeights *w;

	n = plan_shards((const char *) data, size, sizes, group_base, size > 0 ? data[size - 1] : 0);
	if (n < 0)
	{
		/* not a manifest the harness can feed: the rejection paths only */
		w = decode(data, size, NULL, NULL, 0, -1);
		if (w != NULL)
		{
			memset(group_base, 0, sizeof(group_base));
			if (tfjs_weights_count(w) < 0)
				fail("a negative tensor count", size);
			tfjs_weights_close(w);
		}
		return 0;
	}
	for (int i = 0; i < n; i++)
		total += sizes[i];
	if ((bytes = malloc(total + 1)) == NULL)
		return 0;
	for (size_t i = 0; i <= total; i++)
		bytes[i] = pattern(i);
	for (int i = 0; i < n; i++)
	{
		shards[i] = bytes + off;
		off += sizes[i];
	}

	w = decode(data, size, shards, sizes, n, -1);
	if (w != NULL)
	{
		check_accepted(w, data, size, group_base);
		tfjs_weights_close(w);
		/* the same manifest with wrong shards must be refused */
		if (n > 0)
		{
			sizes[n - 1]++;
			decode(data, size, shards, sizes, n, 0);
			sizes[n - 1]--;
			decode(data, size, shards, sizes, n - 1, 0);
		}
		shards[n] = bytes + total;
		sizes[n] = 0;
		decode(data, size, shards, sizes, n + 1, 0);
	}
	free(bytes);
	return 0;
}
