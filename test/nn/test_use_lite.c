/*
 * test_use_lite.c: the use-lite backbone against the original TF.js runtime.
 *
 * Golden data: reference_embeddings.json (4 texts, copied from
 * shared/models/use-lite into test/fixtures)
 * and test/fixtures/use_lite_embeddings.json (38 texts with the runtime's
 * token ids, made by tools/fixtures/gen-embedding-fixture.mjs).  Every
 * embedding must match within 1e-5 per component, from ids and from text,
 * in one padded batch and one text at a time.  Then the loader is fed
 * damaged model directories (copies under /tmp) and must answer with the
 * right NnStatus, never a crash; and SHA-256 and the weights reader get
 * their own small checks.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "models/backbone.h"
#include "ops/kernels.h"
#include "base/sha256.h"
#include "formats/tfjs_weights.h"
#include "unit.h"
#include "models/use_lite/use_lite.h"

#define TOL 1e-5
#define D_OUT 512
#define N_SHARDS 7

typedef struct Case
{
	char	   *text;
	size_t		len;
	int32_t    *ids;			/* NULL when the file has none */
	int			n_ids;
	float		emb[D_OUT];
} Case;

static Backbone *model;			/* opened once by test_open */

/* ---- helpers ------------------------------------------------------------ */

static char *
read_all(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf = NULL;
	long		n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
		(buf = malloc((size_t) n + 1)) != NULL)
	{
		if (fread(buf, 1, (size_t) n, f) != (size_t) n)
		{
			free(buf);
			buf = NULL;
		}
		else
		{
			buf[n] = '\0';
			if (len)
				*len = (size_t) n;
		}
	}
	fclose(f);
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

/* Load {"texts", "ids"?, "embeddings"} into cases; returns the count or -1. */
static int
load_cases(const char *path, Case **out)
{
	char	   *text = read_all(path, NULL);
	cJSON	   *root = text ? cJSON_Parse(text) : NULL;
	cJSON	   *texts = cJSON_GetObjectItem(root, "texts");
	cJSON	   *ids = cJSON_GetObjectItem(root, "ids");
	cJSON	   *embs = cJSON_GetObjectItem(root, "embeddings");
	int			n = cJSON_GetArraySize(texts);
	Case	   *cases;

	free(text);
	*out = NULL;
	if (root == NULL || n <= 0 || cJSON_GetArraySize(embs) != n)
	{
		cJSON_Delete(root);
		return -1;
	}
	cases = calloc((size_t) n, sizeof(Case));
	for (int i = 0; i < n; i++)
	{
		cJSON	   *e = cJSON_GetArrayItem(embs, i);

		cases[i].text = strdup(cJSON_GetArrayItem(texts, i)->valuestring);
		cases[i].len = strlen(cases[i].text);
		for (int j = 0; j < D_OUT; j++)
			cases[i].emb[j] = (float) cJSON_GetArrayItem(e, j)->valuedouble;
		if (ids != NULL)
		{
			cJSON	   *row = cJSON_GetArrayItem(ids, i);

			cases[i].n_ids = cJSON_GetArraySize(row);
			cases[i].ids = malloc(sizeof(int32_t) * (size_t) (cases[i].n_ids + 1));
			for (int j = 0; j < cases[i].n_ids; j++)
				cases[i].ids[j] = (int32_t) cJSON_GetArrayItem(row, j)->valueint;
		}
	}
	cJSON_Delete(root);
	*out = cases;
	return n;
}

static void
free_cases(Case *cases, int n)
{
	for (int i = 0; i < n; i++)
	{
		free(cases[i].text);
		free(cases[i].ids);
	}
	free(cases);
}

static double
max_abs_diff(const float *a, const float *b, int n)
{
	double		m = 0;

	for (int i = 0; i < n; i++)
	{
		double		d = fabs((double) a[i] - (double) b[i]);

		if (!(d <= m))
			m = d;				/* also catches NaN */
	}
	return m;
}

/*
 * Embed id lists with embed_tokens + forward in one batch padded to the
 * longest (clipped to max_tokens, as the graph's ClipToMaxLength does).
 */
static NnStatus
embed_ids(Backbone *bb, int32_t *const *ids, const int *n_ids, int n, float *out)
{
	int			seq = 1;
	NnError		err;
	NnStatus	s;
	BackboneRun *run;
	float	   *x;
	uint8_t    *mask;

	for (int i = 0; i < n; i++)
	{
		int			len = n_ids[i] < bb->max_tokens ? n_ids[i] : bb->max_tokens;

		if (len > seq)
			seq = len;
	}
	run = bb->ops->run_new(bb, n, seq);
	x = calloc((size_t) n * seq * bb->d_embed, sizeof(float));
	mask = calloc((size_t) n * seq, 1);
	s = (run == NULL || x == NULL || mask == NULL) ? NN_ERR_NOMEM : NN_OK;
	for (int i = 0; s == NN_OK && i < n; i++)
	{
		int			len = n_ids[i] < bb->max_tokens ? n_ids[i] : bb->max_tokens;

		bb->ops->embed_tokens(bb, ids[i], len, x + (size_t) i * seq * bb->d_embed,
							  mask + (size_t) i * seq);
	}
	if (s == NN_OK)
		s = bb->ops->forward(bb, run, x, mask, n, seq, out, &err);
	bb->ops->run_free(run);
	free(x);
	free(mask);
	return s;
}

/* Check every case from ids: one at a time and all in one batch. */
static void
check_cases_from_ids(Case *cases, int n, const char *what)
{
	float	   *batch = calloc((size_t) n * D_OUT, sizeof(float));
	int32_t   **ids = calloc((size_t) n, sizeof(int32_t *));
	int		   *n_ids = calloc((size_t) n, sizeof(int));
	double		worst1 = 0,
				worstb = 0,
				worstpad = 0;

	for (int i = 0; i < n; i++)
	{
		ids[i] = cases[i].ids;
		n_ids[i] = cases[i].n_ids;
	}
	CHECK(embed_ids(model, ids, n_ids, n, batch) == NN_OK, "%s: batched forward failed", what);
	for (int i = 0; i < n; i++)
	{
		float		one[D_OUT];
		double		d1,
					db;

		CHECK(embed_ids(model, &ids[i], &n_ids[i], 1, one) == NN_OK, "%s: forward failed", what);
		d1 = max_abs_diff(one, cases[i].emb, D_OUT);
		db = max_abs_diff(batch + (size_t) i * D_OUT, cases[i].emb, D_OUT);
		CHECK(d1 <= TOL, "%s case %d (%.40s): max abs diff %.3g alone", what, i, cases[i].text, d1);
		CHECK(db <= TOL, "%s case %d (%.40s): max abs diff %.3g in the batch", what, i,
			  cases[i].text, db);
		worst1 = fmax(worst1, d1);
		worstb = fmax(worstb, db);
		worstpad = fmax(worstpad, max_abs_diff(one, batch + (size_t) i * D_OUT, D_OUT));
	}
	printf("# %s from ids: %d cases, max abs diff %.3g alone, %.3g batched, %.3g between them\n",
		   what, n, worst1, worstb, worstpad);
	free(batch);
	free(ids);
	free(n_ids);
}

/* Check every case from text via backbone_embed_texts, batched and alone. */
static void
check_cases_from_text(Case *cases, int n, const char *what)
{
	const char **texts = calloc((size_t) n, sizeof(char *));
	size_t	   *lens = calloc((size_t) n, sizeof(size_t));
	float	   *batch = calloc((size_t) n * D_OUT, sizeof(float));
	BackboneRun *run = model->ops->run_new(model, n, model->max_tokens);
	NnError		err;
	double		worst1 = 0,
				worstb = 0;

	CHECK(run != NULL, "run_new(%d, %d) failed", n, model->max_tokens);
	if (run == NULL)
	{
		free(texts);
		free(lens);
		free(batch);
		return;
	}
	for (int i = 0; i < n; i++)
	{
		texts[i] = cases[i].text;
		lens[i] = cases[i].len;
	}
	CHECK(backbone_embed_texts(model, run, texts, lens, n, batch, &err) == NN_OK,
		  "%s: backbone_embed_texts: %s", what, err.msg);
	for (int i = 0; i < n; i++)
	{
		float		one[D_OUT];
		double		d1,
					db;

		CHECK(backbone_embed_texts(model, run, &texts[i], &lens[i], 1, one, &err) == NN_OK,
			  "%s: backbone_embed_texts: %s", what, err.msg);
		d1 = max_abs_diff(one, cases[i].emb, D_OUT);
		db = max_abs_diff(batch + (size_t) i * D_OUT, cases[i].emb, D_OUT);
		CHECK(d1 <= TOL, "%s case %d (%.40s): from text, max abs diff %.3g alone", what, i,
			  cases[i].text, d1);
		CHECK(db <= TOL, "%s case %d (%.40s): from text, max abs diff %.3g in the batch", what,
			  i, cases[i].text, db);
		worst1 = fmax(worst1, d1);
		worstb = fmax(worstb, db);
	}
	printf("# %s from text: %d cases, max abs diff %.3g alone, %.3g batched\n",
		   what, n, worst1, worstb);
	model->ops->run_free(run);
	free(texts);
	free(lens);
	free(batch);
}

/* ---- SHA-256 -------------------------------------------------------------- */

static void
test_sha256(void)
{
	char		hex[65];
	Sha256		ctx;
	uint8_t		d[32];
	char		chunk[1000];
	char	   *json;
	size_t		len;

	/* FIPS 180-4 examples (NIST CSRC "SHA256.pdf") and the empty message */
	sha256_hex("", 0, hex);
	CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0, "%s", hex);
	sha256_hex("abc", 3, hex);
	CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0, "%s", hex);
	sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
	CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0, "%s", hex);
	/* one million 'a', fed in uneven pieces to exercise the buffering */
	memset(chunk, 'a', sizeof(chunk));
	sha256_init(&ctx);
	for (size_t done = 0, step = 1; done < 1000000; step = step % 997 + 1)
	{
		size_t		n = step < 1000000 - done ? step : 1000000 - done;

		sha256_update(&ctx, chunk, n);
		done += n;
	}
	sha256_final(&ctx, d);
	for (int i = 0; i < 32; i++)
		sprintf(hex + 2 * i, "%02x", d[i]);
	CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0, "%s", hex);

	/* the model fingerprint is the hash of model.json (sha256sum agrees) */
	{
		char		path[4096];

		snprintf(path, sizeof(path), "%s/model.json", UNIT_MODEL_DIR());
		json = read_all(path, &len);
		CHECK(json != NULL, "cannot read %s", path);
		if (json)
		{
			sha256_hex(json, len, hex);
			CHECK(strcmp(hex, "507d11df18b070f99e0ad650b9a4e6534a4cfb05040127e8ce579f00c8fa3b53") == 0,
				  "model.json hashes to %s", hex);
			free(json);
		}
	}
}

/* ---- weights reader --------------------------------------------------------- */

static void
test_weights_reader(void)
{
	TfjsWeights *w;
	NnError		err;
	const TfjsTensor *t;
	size_t		total = 0;
	char		path[4096];
	size_t		len;
	char	   *shard1,
			   *shard2;

	CHECK(tfjs_weights_open(&w, UNIT_MODEL_DIR(), &err) == NN_OK, "open: %s", err.msg);
	if (w == NULL)
		return;
	CHECK(tfjs_weights_mapped(w), "shards of 4 MiB should be mapped, not copied");
	CHECK(tfjs_weights_count(w) == 61, "%d tensors", tfjs_weights_count(w));
	for (int i = 0; i < tfjs_weights_count(w); i++)
	{
		t = tfjs_weights_tensor(w, i);
		CHECK(t->offset == total, "tensor %d offset %zu, expected %zu", i, t->offset, total);
		total += t->nbytes;
	}
	CHECK(total == 27903656, "manifest covers %zu bytes", total);
	t = tfjs_weights_find(w, "module/Embeddings_en");
	CHECK(t && t->ndim == 2 && t->shape[0] == 8002 && t->shape[1] == 256 &&
		  t->dtype == TFJS_FLOAT32, "embedding table");

	/* A tensor that spans shards 1 and 2 reads as the concatenated bytes. */
	snprintf(path, sizeof(path), "%s/group1-shard1of7", UNIT_MODEL_DIR());
	shard1 = read_all(path, &len);
	snprintf(path, sizeof(path), "%s/group1-shard2of7", UNIT_MODEL_DIR());
	shard2 = read_all(path, NULL);
	CHECK(shard1 && shard2 && len == 4194304, "cannot read shards");
	for (int i = 0; shard1 && shard2 && i < tfjs_weights_count(w); i++)
	{
		t = tfjs_weights_tensor(w, i);
		if (t->offset < len && t->offset + t->nbytes > len)
		{
			const char *p = tfjs_weights_data(w, t);
			size_t		head = len - t->offset;

			CHECK(memcmp(p, shard1 + t->offset, head) == 0 &&
				  memcmp(p + head, shard2, t->nbytes - head) == 0,
				  "tensor %s across shards 1-2 differs from the files", t->name);
		}
	}
	free(shard1);
	free(shard2);

	/* lookups with the wrong shape or dtype, and a missing name */
	{
		const void *p;
		int64_t		wrong[2] = {8002, 255};
		float		f;
		int32_t		v;

		CHECK(tfjs_weights_get(w, "module/Embeddings_en", TFJS_FLOAT32, 2, wrong, &p, &err) ==
			  NN_ERR_FORMAT && strstr(err.msg, "expected") != NULL, "wrong shape accepted");
		CHECK(tfjs_weights_get(w, "module/Embeddings_en", TFJS_INT32, 2, t ? t->shape : wrong, &p, &err) ==
			  NN_ERR_FORMAT, "wrong dtype accepted");
		CHECK(tfjs_weights_get(w, "no/such/tensor", TFJS_FLOAT32, 0, NULL, &p, &err) ==
			  NN_ERR_FORMAT && strstr(err.msg, "no/such/tensor") != NULL, "missing: %s", err.msg);
		CHECK(tfjs_weights_scalar_f32(w, "module_apply_default/Encoder_en/hidden_layers/l2_normalize/Maximum/y",
									  &f, &err) == NN_OK && f == 1e-12f, "l2 epsilon %g", f);
		CHECK(tfjs_weights_scalar_i32(w, "module_apply_default/Encoder_en/KonaTransformer/ClipToMaxLength/Less/y",
									  &v, &err) == NN_OK && v == 128, "clip %d", (int) v);
	}
	tfjs_weights_close(w);
}

/* The in-memory entry point: offsets, spanning, and malformed manifests. */
static void
test_weights_from_buffers(void)
{
	static const char good[] =
		"{\"weightsManifest\":[{\"paths\":[\"a\",\"b\"],\"weights\":["
		"{\"name\":\"x\",\"shape\":[3],\"dtype\":\"float32\"},"
		"{\"name\":\"s\",\"shape\":[],\"dtype\":\"int32\"},"
		"{\"name\":\"m\",\"shape\":[2,2],\"dtype\":\"float32\"}]}]}";
	static const char *bad[] = {
		"not json",
		"{}",
		"{\"weightsManifest\":[]}",
		"{\"weightsManifest\":[{\"paths\":[\"a\",\"b\"]}]}",
		"{\"weightsManifest\":[{\"paths\":[\"../a\",\"b\"],\"weights\":[]}]}",
		"{\"weightsManifest\":[{\"paths\":[\"a\",\"b\"],\"weights\":[{\"name\":\"x\",\"shape\":[8],\"dtype\":\"float16\"}]}]}",
		"{\"weightsManifest\":[{\"paths\":[\"a\",\"b\"],\"weights\":[{\"name\":\"x\",\"shape\":[-8],\"dtype\":\"float32\"}]}]}",
		"{\"weightsManifest\":[{\"paths\":[\"a\",\"b\"],\"weights\":[{\"name\":\"x\",\"shape\":[2.5],\"dtype\":\"float32\"}]}]}",
		"{\"weightsManifest\":[{\"paths\":[\"a\",\"b\"],\"weights\":[{\"name\":\"x\",\"shape\":[2147483647,2147483647,2147483647],\"dtype\":\"float32\"}]}]}",
		"{\"weightsManifest\":[{\"paths\":[\"a\",\"b\"],\"weights\":[{\"name\":\"x\",\"shape\":[1,1,1,1,1,1,1,1,1],\"dtype\":\"float32\"}]}]}",
		"{\"weightsManifest\":[{\"paths\":[\"a\",\"b\"],\"weights\":[{\"name\":\"x\",\"shape\":[4],\"dtype\":\"float32\"},{\"name\":\"x\",\"shape\":[4],\"dtype\":\"float32\"}]}]}",
		"{\"weightsManifest\":[{\"paths\":[\"a\",\"b\"],\"weights\":[{\"name\":\"x\",\"shape\":[8],\"dtype\":\"float32\",\"quantization\":{\"dtype\":\"uint8\"}}]}]}",
		"{\"weightsManifest\":[{\"paths\":[\"a\",\"b\"],\"weights\":[{\"name\":\"x\",\"shape\":[9],\"dtype\":\"float32\"}]}]}",
		"{\"weightsManifest\":[{\"paths\":[\"a\",\"b\"],\"weights\":[{\"shape\":[8],\"dtype\":\"float32\"}]}]}",
	};
	float		data[8] = {1, 2, 3, 0, 5, 6, 7, 8};
	const void *shards[2];
	size_t		sizes[2] = {10, 22};
	TfjsWeights *w;
	NnError		err;

	memcpy(&data[3], &(int32_t) {42}, 4);
	shards[0] = data;
	shards[1] = (const char *) data + 10;
	CHECK(tfjs_weights_from_buffers(&w, good, strlen(good), shards, sizes, 2, &err) == NN_OK,
		  "good manifest: %s", err.msg);
	if (w != NULL)
	{
		const float *x,
				   *m;
		int32_t		s = 0;
		int64_t		sh3[1] = {3},
					sh22[2] = {2, 2};

		CHECK(tfjs_weights_get(w, "x", TFJS_FLOAT32, 1, sh3, (const void **) &x, &err) == NN_OK &&
			  x[0] == 1 && x[2] == 3, "x spans the shards");
		CHECK(tfjs_weights_scalar_i32(w, "s", &s, &err) == NN_OK && s == 42, "s = %d", (int) s);
		CHECK(tfjs_weights_get(w, "m", TFJS_FLOAT32, 2, sh22, (const void **) &m, &err) == NN_OK &&
			  m[0] == 5 && m[3] == 8, "m");
		CHECK(!tfjs_weights_mapped(w), "buffers are copied");
		tfjs_weights_close(w);
	}
	sizes[1] = 23;
	CHECK(tfjs_weights_from_buffers(&w, good, strlen(good), shards, sizes, 2, &err) ==
		  NN_ERR_FORMAT && w == NULL, "one byte too many accepted");
	CHECK(tfjs_weights_from_buffers(&w, good, strlen(good), shards, sizes, 1, &err) ==
		  NN_ERR_FORMAT, "wrong shard count accepted");
	sizes[1] = 22;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		NnStatus	s = tfjs_weights_from_buffers(&w, bad[i], strlen(bad[i]), shards, sizes, 2, &err);

		CHECK(s == NN_ERR_FORMAT && w == NULL && err.msg[0] != '\0',
			  "bad manifest %zu gave status %d", i, (int) s);
	}
}

/* ---- the model ------------------------------------------------------------ */

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void
test_open(void)
{
	NnError		err;
	double		t0 = now_ms(),
				t1;

	CHECK(backbone_open(&model, UNIT_MODEL_DIR(), &err) == NN_OK, "open %s: %s",
		  UNIT_MODEL_DIR(), err.msg);
	t1 = now_ms();
	if (model == NULL)
		return;
	printf("# use-lite loaded in %.2f ms\n", t1 - t0);
	CHECK(strcmp(model->ops->family, "use-lite") == 0, "family %s", model->ops->family);
	CHECK(model->vocab_size == 8002 && model->d_embed == 256 && model->d_out == 512 &&
		  model->max_tokens == 128 && model->max_positions == USE_LITE_MAX_POSITIONS,
		  "dims %d %d %d %d %d", model->vocab_size, model->d_embed, model->d_out,
		  model->max_tokens, model->max_positions);
	CHECK(strcmp(model->fingerprint,
				 "507d11df18b070f99e0ad650b9a4e6534a4cfb05040127e8ce579f00c8fa3b53") == 0,
		  "fingerprint %s", model->fingerprint);
}

/* The 4 texts of reference_embeddings.json with their ids (from the runtime's tokenizer). */
static int
load_reference(Case **out)
{
	static int32_t ids0[] = {2002, 102, 311};
	static int32_t ids1[] = {9, 1394, 152, 2009, 26, 132, 9, 6266, 959};
	static int32_t ids2[] = {1148, 53, 47, 103, 1541, 400};
	static int32_t ids3[] = {180, 888, 33, 2532, 3781, 78};
	int32_t    *ids[] = {ids0, ids1, ids2, ids3};
	int			n_ids[] = {3, 9, 6, 6};
	char		path[4096];
	Case	   *cases;
	int			n;

	snprintf(path, sizeof(path), "%s/reference_embeddings.json",
			 unit_env("DEPT_FIXTURE_DIR", "test/fixtures"));
	n = load_cases(path, &cases);
	CHECK(n == 4, "cannot read %s", path);
	if (n != 4)
	{
		if (n > 0)
			free_cases(cases, n);
		return -1;
	}
	for (int i = 0; i < n; i++)
	{
		cases[i].ids = malloc(sizeof(int32_t) * (size_t) n_ids[i]);
		memcpy(cases[i].ids, ids[i], sizeof(int32_t) * (size_t) n_ids[i]);
		cases[i].n_ids = n_ids[i];
	}
	*out = cases;
	return n;
}

static void
test_reference_from_ids(void)
{
	Case	   *cases;
	int			n;

	if (model == NULL || (n = load_reference(&cases)) <= 0)
		return;
	check_cases_from_ids(cases, n, "reference");
	free_cases(cases, n);
}

static void
test_reference_from_text(void)
{
	Case	   *cases;
	int			n;

	if (model == NULL || (n = load_reference(&cases)) <= 0)
		return;
	check_cases_from_text(cases, n, "reference");
	free_cases(cases, n);
}

static int
load_fixture(Case **cases)
{
	char		path[4096];
	int			n;

	snprintf(path, sizeof(path), "%s/use_lite_embeddings.json",
			 unit_env("DEPT_FIXTURE_DIR", "test/fixtures"));
	n = load_cases(path, cases);
	CHECK(n > 0 && (*cases)[0].ids != NULL, "cannot read %s", path);
	return n;
}

static void
test_fixture_from_ids(void)
{
	Case	   *cases;
	int			n;

	if (model == NULL || (n = load_fixture(&cases)) <= 0)
		return;
	check_cases_from_ids(cases, n, "fixture");
	free_cases(cases, n);
}

/* The tokenizer gives the runtime's ids (first max_tokens of them). */
static void
test_fixture_tokenize(void)
{
	Case	   *cases;
	int			n;

	if (model == NULL || (n = load_fixture(&cases)) <= 0)
		return;
	for (int i = 0; i < n; i++)
	{
		int32_t		ids[128];
		int			want = cases[i].n_ids < 128 ? cases[i].n_ids : 128;
		int			got = model->ops->tokenize(model, cases[i].text, cases[i].len, ids, 128);

		CHECK(got == want && memcmp(ids, cases[i].ids, sizeof(int32_t) * (size_t) want) == 0,
			  "case %d (%.40s): %d ids, expected %d", i, cases[i].text, got, want);
	}
	free_cases(cases, n);
}

static void
test_fixture_from_text(void)
{
	Case	   *cases;
	int			n;

	if (model == NULL || (n = load_fixture(&cases)) <= 0)
		return;
	check_cases_from_text(cases, n, "fixture");
	free_cases(cases, n);
}

/* embed_tokens: unknown 0 is a token, negatives are padding, big ids read as 0. */
static void
test_embed_tokens(void)
{
	int32_t		ids[4] = {0, -1, 8001, 9000};
	float		x[4 * 256];
	uint8_t		mask[4];

	if (model == NULL)
		return;
	model->ops->embed_tokens(model, ids, 4, x, mask);
	CHECK(mask[0] == 1 && mask[1] == 0 && mask[2] == 1 && mask[3] == 1, "mask %d %d %d %d",
		  mask[0], mask[1], mask[2], mask[3]);
	CHECK(memcmp(x + 3 * 256, x, sizeof(float) * 256) == 0, "id 9000 is not read as 0");
	for (int j = 0; j < 256; j++)
		CHECK(x[256 + j] == 0.0f, "padding row not zero");
}

/*
 * forward's contract: argument checks, a padding hole in the middle changes
 * nothing but the positions, and sequences up to max_positions work.
 */
static void
test_forward_contract(void)
{
	int			P = USE_LITE_MAX_POSITIONS;
	BackboneRun *run;
	float	   *x,
			   *out;
	uint8_t    *mask;
	NnError		err;
	double		norm = 0;

	if (model == NULL)
		return;
	CHECK(model->ops->run_new(model, 1, P + 1) == NULL, "run longer than max_positions");
	CHECK(model->ops->run_new(model, 0, 8) == NULL, "run of 0 rows");
	run = model->ops->run_new(model, 2, P);
	x = calloc((size_t) 2 * P * 256, sizeof(float));
	mask = calloc((size_t) 2 * P, 1);
	out = calloc(2 * 512, sizeof(float));
	CHECK(run != NULL, "run_new(2, %d)", P);
	if (run == NULL)
		return;
	CHECK(model->ops->forward(model, run, x, mask, 3, 4, out, &err) == NN_ERR_ARG,
		  "batch over max_batch");
	CHECK(model->ops->forward(model, run, x, mask, 1, P + 1, out, &err) == NN_ERR_ARG,
		  "seq over max_seq");

	/* a full-length sequence of prompt-like rows */
	for (int t = 0; t < P; t++)
	{
		int32_t		id = 100 + t;

		model->ops->embed_tokens(model, &id, 1, x + (size_t) t * 256, mask + t);
	}
	CHECK(model->ops->forward(model, run, x, mask, 1, P, out, &err) == NN_OK, "%s", err.msg);
	for (int j = 0; j < 512; j++)
		norm += (double) out[j] * out[j];
	CHECK(fabs(norm - 1.0) < 1e-5, "norm^2 %g at %d positions", norm, P);
	model->ops->run_free(run);
	free(x);
	free(mask);
	free(out);
}

/* ---- damaged model directories ---------------------------------------------- */

static const char *shard_names[N_SHARDS] = {
	"group1-shard1of7", "group1-shard2of7", "group1-shard3of7", "group1-shard4of7",
	"group1-shard5of7", "group1-shard6of7", "group1-shard7of7"
};

/* A fresh directory with model.json and vocab.json copied and the shards symlinked. */
static char *
model_copy(void)
{
	char		tmpl[] = "/tmp/dept-use-lite-XXXXXX";
	char		src[PATH_MAX];
	char		from[PATH_MAX + 64],
				to[PATH_MAX + 64];
	char	   *dir;

	if (realpath(UNIT_MODEL_DIR(), src) == NULL || mkdtemp(tmpl) == NULL)
		return NULL;
	dir = strdup(tmpl);
	for (int i = 0; i < 2; i++)
	{
		const char *name = i == 0 ? "model.json" : "vocab.json";
		size_t		len;
		char	   *buf;

		snprintf(from, sizeof(from), "%s/%s", src, name);
		snprintf(to, sizeof(to), "%s/%s", dir, name);
		buf = read_all(from, &len);
		if (buf == NULL || !write_all(to, buf, len))
			fprintf(stderr, "cannot copy %s\n", from);
		free(buf);
	}
	for (int i = 0; i < N_SHARDS; i++)
	{
		snprintf(from, sizeof(from), "%s/%s", src, shard_names[i]);
		snprintf(to, sizeof(to), "%s/%s", dir, shard_names[i]);
		if (symlink(from, to) != 0)
			fprintf(stderr, "cannot link %s\n", to);
	}
	return dir;
}

static void
remove_dir(char *dir)
{
	DIR		   *d = opendir(dir);
	struct dirent *e;
	char		path[PATH_MAX + 300];

	while (d && (e = readdir(d)) != NULL)
	{
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(dir);
	free(dir);
}

#define KEEP_ALL LONG_MAX

/*
 * Replace a (symlinked) file by a real copy of its first keep bytes (keep < 0:
 * all but -keep; KEEP_ALL: all) followed by extra bytes of 0x5a.
 */
static void
rewrite_shard(const char *dir, const char *name, long keep, size_t extra)
{
	char		path[PATH_MAX + 64];
	size_t		len;
	char	   *buf;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	buf = read_all(path, &len);
	unlink(path);
	if (buf == NULL)
		return;
	if (keep == KEEP_ALL)
		keep = (long) len;
	else if (keep < 0)
		keep = (long) len + keep;
	buf = realloc(buf, (size_t) keep + extra + 1);
	if (buf == NULL)
		return;
	memset(buf + keep, 0x5a, extra);
	write_all(path, buf, (size_t) keep + extra);
	free(buf);
}

/* Apply edit to the parsed model.json of dir and write it back. */
static void
edit_manifest(const char *dir, void (*edit) (cJSON *root))
{
	char		path[PATH_MAX + 64];
	char	   *text,
			   *out;
	cJSON	   *root;

	snprintf(path, sizeof(path), "%s/model.json", dir);
	text = read_all(path, NULL);
	root = cJSON_Parse(text);
	free(text);
	if (root == NULL)
		return;
	edit(root);
	out = cJSON_PrintUnformatted(root);
	write_all(path, out, strlen(out));
	free(out);
	cJSON_Delete(root);
}

static cJSON *
manifest_weight(cJSON *root, const char *name)
{
	cJSON	   *ws = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "weightsManifest"), 0),
										 "weights");
	cJSON	   *w;

	cJSON_ArrayForEach(w, ws)
		if (strcmp(cJSON_GetObjectItem(w, "name")->valuestring, name) == 0)
		return w;
	return NULL;
}

#define CONV1_L1 "module_apply_default/Encoder_en/KonaTransformer/Encode/TransformerStack/Layer_1/TransformerLayer/FFN/conv1/Tensordot/Reshape_1"

static void
edit_transpose_conv1(cJSON *root)
{
	cJSON	   *w = manifest_weight(root, CONV1_L1);
	int			dims[2] = {1536, 512};

	cJSON_ReplaceItemInObject(w, "shape", cJSON_CreateIntArray(dims, 2));
}

static void
edit_unknown_dtype(cJSON *root)
{
	cJSON_ReplaceItemInObject(manifest_weight(root, "module/Embeddings_en"), "dtype",
							  cJSON_CreateString("float16"));
}

static void
edit_rename_embeddings(cJSON *root)
{
	cJSON_ReplaceItemInObject(manifest_weight(root, "module/Embeddings_en"), "name",
							  cJSON_CreateString("module/Embeddings_xx"));
}

static void
edit_negative_dim(cJSON *root)
{
	int			dims[2] = {-8002, 256};

	cJSON_ReplaceItemInObject(manifest_weight(root, "module/Embeddings_en"), "shape",
							  cJSON_CreateIntArray(dims, 2));
}

static void
edit_path_traversal(cJSON *root)
{
	cJSON	   *paths = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "weightsManifest"), 0),
											"paths");

	cJSON_ReplaceItemInArray(paths, 0, cJSON_CreateString("../group1-shard1of7"));
}

static void
edit_drop_manifest(cJSON *root)
{
	cJSON_DeleteItemFromObject(root, "weightsManifest");
}

/* Re-split the weights into 3 shards of odd sizes (forces the read fallback). */
static void
edit_three_shards(cJSON *root)
{
	cJSON	   *paths = cJSON_CreateArray();

	cJSON_AddItemToArray(paths, cJSON_CreateString("odd1"));
	cJSON_AddItemToArray(paths, cJSON_CreateString("odd2"));
	cJSON_AddItemToArray(paths, cJSON_CreateString("odd3"));
	cJSON_ReplaceItemInObject(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "weightsManifest"), 0),
							  "paths", paths);
}

static void
write_odd_shards(const char *dir)
{
	size_t		total = 0,
				len,
				cut[3];
	char	   *all = NULL;
	char		path[PATH_MAX + 64];

	for (int i = 0; i < N_SHARDS; i++)
	{
		char	   *buf;

		snprintf(path, sizeof(path), "%s/%s", dir, shard_names[i]);
		buf = read_all(path, &len);
		all = realloc(all, total + len);
		memcpy(all + total, buf, len);
		total += len;
		free(buf);
	}
	cut[0] = 1000003;
	cut[1] = 17;
	cut[2] = total - cut[0] - cut[1];
	for (int i = 0, off = 0; i < 3; off += (int) cut[i], i++)
	{
		snprintf(path, sizeof(path), "%s/odd%d", dir, i + 1);
		write_all(path, all + off, cut[i]);
	}
	free(all);
}

static NnStatus
open_status(const char *dir, NnError *err)
{
	Backbone   *bb = NULL;
	NnStatus	s;

	nn_error_clear(err);
	s = backbone_open(&bb, dir, err);
	CHECK((s == NN_OK) == (bb != NULL), "status %d with backbone %p", (int) s, (void *) bb);
	backbone_close(bb);
	return s;
}

static void
test_bad_model_dirs(void)
{
	NnError		err;
	NnStatus	s;
	char	   *dir;
	char		path[PATH_MAX + 64];
	Backbone   *bb;

	/* nonexistent directory, through both entry points */
	CHECK(open_status("/nonexistent/dept/model", &err) == NN_ERR_IO, "nonexistent dir");
	CHECK(use_lite_open(&bb, "/nonexistent/dept/model", &err) == NN_ERR_IO && bb == NULL,
		  "nonexistent dir (use_lite_open): %s", err.msg);

	/* an untouched copy opens (checks the harness itself) */
	dir = model_copy();
	CHECK(dir != NULL, "cannot make a model copy");
	if (dir == NULL)
		return;
	CHECK(open_status(dir, &err) == NN_OK, "copy: %s", err.msg);
	remove_dir(dir);

	/* missing shard */
	dir = model_copy();
	snprintf(path, sizeof(path), "%s/%s", dir, shard_names[2]);
	unlink(path);
	s = open_status(dir, &err);
	CHECK(s == NN_ERR_IO, "missing shard: %d %s", (int) s, err.msg);
	remove_dir(dir);

	/* truncated last shard, truncated middle shard, extra bytes */
	dir = model_copy();
	rewrite_shard(dir, shard_names[6], -4, 0);
	s = open_status(dir, &err);
	CHECK(s == NN_ERR_FORMAT, "truncated shard: %d %s", (int) s, err.msg);
	remove_dir(dir);
	dir = model_copy();
	rewrite_shard(dir, shard_names[3], 4096 * 3, 0);
	s = open_status(dir, &err);
	CHECK(s == NN_ERR_FORMAT, "truncated middle shard: %d %s", (int) s, err.msg);
	remove_dir(dir);
	dir = model_copy();
	rewrite_shard(dir, shard_names[6], KEEP_ALL, 1);
	s = open_status(dir, &err);
	CHECK(s == NN_ERR_FORMAT, "extra byte: %d %s", (int) s, err.msg);
	remove_dir(dir);

	/* model.json: not JSON, cut short, edited */
	dir = model_copy();
	snprintf(path, sizeof(path), "%s/model.json", dir);
	write_all(path, "this is not json", 16);
	s = open_status(dir, &err);
	CHECK(s == NN_ERR_FORMAT, "not JSON: %d %s", (int) s, err.msg);
	rewrite_shard(dir, "model.json", 0, 0);	/* empty file */
	s = open_status(dir, &err);
	CHECK(s == NN_ERR_FORMAT, "empty model.json: %d %s", (int) s, err.msg);
	remove_dir(dir);
	dir = model_copy();
	rewrite_shard(dir, "model.json", 120000, 0);
	s = open_status(dir, &err);
	CHECK(s == NN_ERR_FORMAT, "cut model.json: %d %s", (int) s, err.msg);
	remove_dir(dir);

	{
		struct
		{
			const char *what;
			void		(*edit) (cJSON *);
		}			edits[] = {
			{"transposed FFN kernel", edit_transpose_conv1},
			{"unknown dtype", edit_unknown_dtype},
			{"missing tensor", edit_rename_embeddings},
			{"negative dimension", edit_negative_dim},
			{"path outside the directory", edit_path_traversal},
			{"no weightsManifest", edit_drop_manifest},
		};

		for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++)
		{
			dir = model_copy();
			edit_manifest(dir, edits[i].edit);
			s = open_status(dir, &err);
			CHECK(s == NN_ERR_FORMAT, "%s: status %d (%s)", edits[i].what, (int) s, err.msg);
			if (s == NN_ERR_FORMAT)
				printf("# %s -> %s\n", edits[i].what, err.msg);
			remove_dir(dir);
		}
	}

	/* missing vocab.json */
	dir = model_copy();
	snprintf(path, sizeof(path), "%s/vocab.json", dir);
	unlink(path);
	s = open_status(dir, &err);
	CHECK(s == NN_ERR_IO, "missing vocab.json: %d %s", (int) s, err.msg);
	remove_dir(dir);

	/* shards that are not whole pages load through the read fallback, same answers */
	dir = model_copy();
	write_odd_shards(dir);
	edit_manifest(dir, edit_three_shards);
	for (int i = 0; i < N_SHARDS; i++)
	{
		snprintf(path, sizeof(path), "%s/%s", dir, shard_names[i]);
		unlink(path);
	}
	{
		TfjsWeights *w = NULL;

		CHECK(tfjs_weights_open(&w, dir, &err) == NN_OK && !tfjs_weights_mapped(w),
			  "odd shards: %s", err.msg);
		tfjs_weights_close(w);
	}
	CHECK(use_lite_open(&bb, dir, &err) == NN_OK, "odd shards: %s", err.msg);
	if (bb != NULL && model != NULL)
	{
		int32_t		ids[] = {2002, 102, 311};
		int32_t    *pids = ids;
		int			n = 3;
		float		a[D_OUT],
					b[D_OUT];

		CHECK(embed_ids(bb, &pids, &n, 1, a) == NN_OK && embed_ids(model, &pids, &n, 1, b) == NN_OK &&
			  memcmp(a, b, sizeof(a)) == 0, "copied weights give other results");
	}
	backbone_close(bb);
	remove_dir(dir);
}

int
main(void)
{
	RUN_TEST(test_sha256);
	RUN_TEST(test_weights_reader);
	RUN_TEST(test_weights_from_buffers);
	RUN_TEST(test_open);
	RUN_TEST(test_reference_from_ids);
	RUN_TEST(test_fixture_from_ids);
	RUN_TEST(test_fixture_tokenize);
	RUN_TEST(test_reference_from_text);
	RUN_TEST(test_fixture_from_text);
	RUN_TEST(test_embed_tokens);
	RUN_TEST(test_forward_contract);
	RUN_TEST(test_bad_model_dirs);
	backbone_close(model);
	return unit_finish();
}
