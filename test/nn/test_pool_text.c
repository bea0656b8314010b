/*
 * test_pool_text.c: pooling the text rows only (AdapterConfig.pool_text).
 *
 *   kernel    meanpool_tail_forward/backward against central differences
 *             in double, skipped rows getting exactly zero gradient, an
 *             all-skipped sequence pooling zeros, and skip 0 bit-identical
 *             to meanpool_forward/backward;
 *   use-lite  run_pool_skip(P) on a batch of P prompt rows + real tokens:
 *             the input gradient against finite differences of the float
 *             forward (along the gradient, h 1e-3 within 2% and 3e-4 within
 *             1%, and on the largest coordinates, h 1e-3, within 2% of the
 *             largest; pooling fewer rows makes the loss more curved than
 *             test_use_lite_grad.c's batch, so the steps are smaller: at
 *             h 3e-3 the largest coordinates are 5% off, at 1e-3 0.8%, and
 *             along dx the error goes 1.5%, 1.0%, 0.1% for h 3e-3, 1e-3,
 *             3e-4, the float forward's noise below that), prompt rows still receiving
 *             gradient through attention, and skip 0 afterwards giving the
 *             same bits as a fresh run;
 *   adapters  an adapter stored before text-row pooling (format version 1,
 *             pool_text 0) loads with pool_text 0 and classify_texts gives
 *             the bits of the old path (adapter, forward over every row,
 *             head, softmax), also on a run a text-pooling adapter used
 *             just before; a pool_text adapter (version 3) predicts from
 *             the text rows only, and leaves the run pooling every row.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter_io.h"
#include "models/backbone.h"
#include "ops/kernels.h"
#include "train/train.h"
#include "unit.h"

static Backbone *model;

static const char ZERO_FINGERPRINT[] = "0000000000000000000000000000000000000000000000000000000000000000";
static const char *const TEXTS[] = {
	"a gripping, beautifully acted film",
	"dull and far too long",
	"",
	"the plot makes no sense at all but the music is great"
};

/* ---- kernel ------------------------------------------------------------------ */

static double
pool_loss(const float *inp, const int *offsets, int B, int C, int skip, const float *W, float *out)
{
	double		L = 0;

	meanpool_tail_forward(out, inp, offsets, B, C, skip);
	for (int i = 0; i < B * C; i++)
		L += (double) out[i] * W[i];
	return L;
}

static void
test_kernel(void)
{
	enum
	{
	B = 4, C = 5};
	const int	offsets[B + 1] = {0, 5, 7, 11, 11};	/* lengths 5, 2, 4, 0 */
	const int	N = 11,
				skip = 2;
	Rng			rng;
	float		inp[11 * C],
				W[B * C],
				out[B * C],
				out0[B * C],
				dinp[11 * C],
				dinp0[11 * C],
				ref[B * C],
				dref[11 * C];
	double		worst = 0;

	rng_seed(&rng, 7);
	for (int i = 0; i < N * C; i++)
		inp[i] = (float) (rng_uniform(&rng) * 2 - 1);
	for (int i = 0; i < B * C; i++)
		W[i] = (float) (rng_uniform(&rng) * 2 - 1);

	/* skip 0 is the old kernel, bit for bit */
	meanpool_forward(ref, inp, offsets, B, C);
	meanpool_tail_forward(out0, inp, offsets, B, C, 0);
	CHECK(memcmp(ref, out0, sizeof(ref)) == 0, "skip 0 forward differs from meanpool_forward");
	memset(dref, 0, sizeof(dref));
	memset(dinp0, 0, sizeof(dinp0));
	meanpool_backward(dref, W, offsets, B, C);
	meanpool_tail_backward(dinp0, W, offsets, B, C, 0);
	CHECK(memcmp(dref, dinp0, sizeof(dref)) == 0, "skip 0 backward differs from meanpool_backward");

	/* skip 2: sequence 1 (2 rows) and 3 (empty) pool zeros */
	pool_loss(inp, offsets, B, C, skip, W, out);
	for (int j = 0; j < C; j++)
	{
		double		mean = 0;

		for (int t = offsets[0] + skip; t < offsets[1]; t++)
			mean += inp[t * C + j];
		mean /= offsets[1] - offsets[0] - skip;
		CHECK(fabs(out[j] - mean) <= 1e-6, "sequence 0 column %d: %g, mean of its tail %g", j,
			  out[j], mean);
		CHECK(out[1 * C + j] == 0.0f && out[3 * C + j] == 0.0f, "no row left pools zeros");
	}
	memset(dinp, 0, sizeof(dinp));
	meanpool_tail_backward(dinp, W, offsets, B, C, skip);
	for (int b = 0; b < B; b++)
		for (int t = offsets[b]; t < offsets[b] + skip && t < offsets[b + 1]; t++)
			for (int j = 0; j < C; j++)
				CHECK(dinp[t * C + j] == 0.0f, "skipped row %d has gradient %g", t, dinp[t * C + j]);
	for (int i = 0; i < N * C; i++)
	{
		const float h = 1e-2f;
		float		save = inp[i];
		double		lp,
					lm,
					fd;

		inp[i] = save + h;
		lp = pool_loss(inp, offsets, B, C, skip, W, out);
		inp[i] = save - h;
		lm = pool_loss(inp, offsets, B, C, skip, W, out);
		inp[i] = save;
		fd = (lp - lm) / (double) ((save + h) - (save - h));
		worst = fmax(worst, fabs(fd - dinp[i]));
	}
	CHECK(worst <= 1e-4, "kernel: max |fd - grad| %.3g", worst);
	printf("# meanpool_tail skip %d: max |central difference - gradient| %.3g over %d inputs\n",
		   skip, worst, N * C);
}

/* ---- use-lite ----------------------------------------------------------------- */

typedef struct Batch
{
	int			B,
				P,
				T;
	float	   *x;				/* (B, T, 256) */
	uint8_t    *mask;			/* (B, T) */
	float	   *W;				/* (B, 512) */
} Batch;

/* B rows of P random prompt rows followed by the tokens of TEXTS, padded. */
static Batch
make_batch(int B, int P)
{
	Batch		bt = {B, P, 0, NULL, NULL, NULL};
	int32_t		ids[4][128];
	int			n[4];
	int			d = model->d_embed;
	Rng			rng;

	rng_seed(&rng, 99);
	for (int b = 0; b < B; b++)
	{
		n[b] = model->ops->tokenize(model, TEXTS[b], strlen(TEXTS[b]), ids[b], 64);
		if (P + n[b] > bt.T)
			bt.T = P + n[b];
	}
	bt.x = calloc((size_t) B * bt.T * d, sizeof(float));
	bt.mask = calloc((size_t) B * bt.T, 1);
	bt.W = malloc(sizeof(float) * B * model->d_out);
	for (int b = 0; b < B; b++)
	{
		float	   *xb = bt.x + (size_t) b * bt.T * d;

		for (int i = 0; i < P * d; i++)
			xb[i] = (float) (rng_uniform(&rng) * 0.2 - 0.1);
		memset(bt.mask + (size_t) b * bt.T, 1, P);
		model->ops->embed_tokens(model, ids[b], n[b], xb + (size_t) P * d,
								 bt.mask + (size_t) b * bt.T + P);
	}
	for (int i = 0; i < B * model->d_out; i++)
		bt.W[i] = (float) (rng_uniform(&rng) * 2 - 1);
	return bt;
}

static void
batch_free(Batch *bt)
{
	free(bt->x);
	free(bt->mask);
	free(bt->W);
}

static double
run_loss(BackboneRun *run, const Batch *bt, const float *x, float *out)
{
	NnError		err;
	double		L = 0;

	if (model->ops->forward(model, run, x, bt->mask, bt->B, bt->T, out, &err) != NN_OK)
		return NAN;
	for (int i = 0; i < bt->B * model->d_out; i++)
		L += (double) out[i] * bt->W[i];
	return L;
}

static void
test_use_lite_open(void)
{
	NnError		err;

	CHECK(backbone_open(&model, UNIT_MODEL_DIR(), &err) == NN_OK, "open: %s", err.msg);
	CHECK(model == NULL || backbone_pool_skips(model), "use-lite can pool past prompt rows");
}

static void
test_use_lite_fd(void)
{
	Batch		bt;
	BackboneRun *run,
			   *fresh;
	size_t		nx;
	float	   *x,
			   *dx,
			   *out,
			   *out_all,
			   *out_fresh;
	double		norm = 0,
				prompt_norm = 0,
				worst = 0,
				max_dx = 0;
	int			probes[4],
				d;
	NnError		err;

	if (model == NULL)
		return;
	d = model->d_embed;
	bt = make_batch(3, 6);
	nx = (size_t) bt.B * bt.T * d;
	run = model->ops->run_new(model, bt.B, bt.T);
	fresh = model->ops->run_new(model, bt.B, bt.T);
	x = malloc(sizeof(float) * nx);
	dx = malloc(sizeof(float) * nx);
	out = malloc(sizeof(float) * bt.B * model->d_out);
	out_all = malloc(sizeof(float) * bt.B * model->d_out);
	out_fresh = malloc(sizeof(float) * bt.B * model->d_out);
	memcpy(x, bt.x, sizeof(float) * nx);

	run_loss(fresh, &bt, x, out_fresh);
	CHECK(backbone_run_pool_skip(model, run, bt.P), "run_pool_skip honoured");
	run_loss(run, &bt, x, out);
	CHECK(memcmp(out, out_fresh, sizeof(float) * bt.B * model->d_out) != 0,
		  "pooling past the prompt changes the sentence vector");
	CHECK(model->ops->backward(model, run, bt.W, dx, &err) == NN_OK, "backward: %s", err.msg);
	for (size_t i = 0; i < nx; i++)
	{
		norm += (double) dx[i] * dx[i];
		max_dx = fmax(max_dx, fabs(dx[i]));
		if ((i / d) % bt.T < (size_t) bt.P)
			prompt_norm += (double) dx[i] * dx[i];
	}
	norm = sqrt(norm);
	CHECK(prompt_norm > 0, "prompt rows still get gradient (through attention)");

	for (int k = 0; k < 2; k++)
	{
		double		h = k == 0 ? 1e-3 : 3e-4,
					l[2],
					fd;

		for (int s = 0; s < 2; s++)
		{
			for (size_t i = 0; i < nx; i++)
				x[i] = bt.x[i] + (float) ((s ? -h : h) * dx[i] / norm);
			l[s] = run_loss(run, &bt, x, out);
		}
		fd = (l[0] - l[1]) / (2 * h);
		CHECK(fabs(fd - norm) <= (k == 0 ? 0.02 : 0.01) * norm, "along dx, h %g: fd %.6g, |dx| %.6g",
			  h, fd, norm);
		printf("# skip %d, along dx/|dx|, h %g: central difference %.6g, |dx| %.6g (rel %.1e)\n",
			   bt.P, h, fd, norm, fabs(fd - norm) / norm);
	}
	memcpy(x, bt.x, sizeof(float) * nx);
	for (int p = 0; p < 4; p++)
	{
		int			best = -1;

		for (size_t i = 0; i < nx; i++)
		{
			bool		taken = false;

			for (int q = 0; q < p; q++)
				taken |= probes[q] == (int) i;
			if (!taken && (best < 0 || fabsf(dx[i]) > fabsf(dx[best])))
				best = (int) i;
		}
		probes[p] = best;
	}
	for (int p = 0; p < 4; p++)
	{
		int			i = probes[p];
		const float h = 1e-3f;
		double		l[2],
					fd;

		for (int s = 0; s < 2; s++)
		{
			x[i] = bt.x[i] + (s ? -h : h);
			l[s] = run_loss(run, &bt, x, out);
		}
		x[i] = bt.x[i];
		fd = (l[0] - l[1]) / (double) ((bt.x[i] + h) - (bt.x[i] - h));
		CHECK(fabs(fd - dx[i]) <= 0.02 * max_dx, "x[%d]: fd %.6g, grad %.6g", i, fd, dx[i]);
		worst = fmax(worst, fabs(fd - dx[i]));
	}
	printf("# skip %d, 4 largest coordinates, h 1e-3: max |fd - grad| %.3g (max |dx| %.3g)\n",
		   bt.P, worst, max_dx);

	/* a prompt coordinate: its gradient only reaches the loss through attention */
	{
		int			best = -1;
		double		l[2],
					fd;
		const float h = 1e-3f;

		for (size_t i = 0; i < nx; i++)
			if ((i / d) % bt.T < (size_t) bt.P && (best < 0 || fabsf(dx[i]) > fabsf(dx[best])))
				best = (int) i;
		for (int s = 0; s < 2; s++)
		{
			x[best] = bt.x[best] + (s ? -h : h);
			l[s] = run_loss(run, &bt, x, out);
		}
		x[best] = bt.x[best];
		fd = (l[0] - l[1]) / (double) ((bt.x[best] + h) - (bt.x[best] - h));
		CHECK(fabs(fd - dx[best]) <= 0.02 * max_dx, "prompt x[%d]: fd %.6g, grad %.6g", best, fd,
			  dx[best]);
		printf("# largest prompt coordinate: fd %.6g, grad %.6g\n", fd, dx[best]);
	}

	/* back to every row: the bits of a run that never skipped */
	CHECK(backbone_run_pool_skip(model, run, 0), "reset");
	run_loss(run, &bt, bt.x, out_all);
	CHECK(memcmp(out_all, out_fresh, sizeof(float) * bt.B * model->d_out) == 0,
		  "skip 0 after skip %d is bit-identical to a fresh run", bt.P);

	model->ops->run_free(run);
	model->ops->run_free(fresh);
	free(x);
	free(dx);
	free(out);
	free(out_all);
	free(out_fresh);
	batch_free(&bt);
}

/* ---- adapters ------------------------------------------------------------------ */

/* A random DePT adapter on use-lite, through serialize + deserialize. */
static Adapter *
stored_adapter(int pool_text, int *version)
{
	AdapterConfig cfg = {.method = ADAPTER_DEPT, .d = model->d_embed, .h_dim = model->d_out,
		.n_classes = 3, .prompt_len = 5, .max_len = 32, .rank = 2, .alpha = 8.0f,
	.pool_text = pool_text};
	const char *const names[] = {"a", "b", "c"};
	AdapterParam *params[4];
	Adapter    *a = NULL,
			   *b = NULL;
	uint8_t    *buf = NULL;
	size_t		len = 0;
	char		fp[65],
			  **got = NULL;
	NnError		err;
	Rng			rng;

	if (adapter_new(&a, &cfg, 4, 3, &err) != NN_OK)
		return NULL;
	params[0] = &a->prompt;
	params[1] = &a->lora_b;
	params[2] = &a->head_w;
	params[3] = &a->head_b;
	rng_seed(&rng, 1234);
	for (int k = 0; k < 4; k++)
		for (size_t i = 0; i < params[k]->n; i++)
			params[k]->w[i] = (float) (rng_uniform(&rng) * 0.4 - 0.2) * (k == 2 ? 20.0f : 1.0f);
	CHECK(adapter_serialize(a, ZERO_FINGERPRINT, names, &buf, &len, &err) == NN_OK, "%s", err.msg);
	adapter_free(a);
	if (buf == NULL)
		return NULL;
	*version = buf[4];
	CHECK(adapter_deserialize(buf, len, 4, &b, fp, &got, &err) == NN_OK, "%s", err.msg);
	free(buf);
	if (b)
		adapter_free_class_names(got, b->cfg.n_classes);
	return b;
}

/* Probabilities the way every build computed them: adapter, forward with skip, head, softmax. */
static void
reference_probs(Adapter *a, BackboneRun *run, int skip, float *probs)
{
	int			B = 4,
				P = adapter_prompt_rows(&a->cfg),
				C = a->cfg.n_classes,
				n = 1,
				d = model->d_embed;
	int32_t		ids[4][32];
	int			cnt[4];
	float	   *E,
			   *X,
				h[4 * 512];
	uint8_t    *em,
			   *xm;
	NnError		err;

	for (int b = 0; b < B; b++)
	{
		cnt[b] = model->ops->tokenize(model, TEXTS[b], strlen(TEXTS[b]), ids[b], a->cfg.max_len);
		if (cnt[b] > n)
			n = cnt[b];
	}
	E = calloc((size_t) B * n * d, sizeof(float));
	em = calloc((size_t) B * n, 1);
	X = malloc(sizeof(float) * B * (P + n) * d);
	xm = malloc((size_t) B * (P + n));
	for (int b = 0; b < B; b++)
		model->ops->embed_tokens(model, ids[b], cnt[b], E + (size_t) b * n * d, em + (size_t) b * n);
	adapter_forward(a, E, em, B, n, X, xm);
	backbone_run_pool_skip(model, run, skip);
	CHECK(model->ops->forward(model, run, X, xm, B, P + n, h, &err) == NN_OK, "%s", err.msg);
	head_forward(a, h, B, probs);
	for (int b = 0; b < B; b++)
	{
		float	   *row = probs + b * C,
					max = row[0];
		double		sum = 0;

		for (int c = 1; c < C; c++)
			max = fmaxf(max, row[c]);
		for (int c = 0; c < C; c++)
			sum += (row[c] = expf(row[c] - max));
		for (int c = 0; c < C; c++)
			row[c] = (float) (row[c] / sum);
	}
	free(E);
	free(em);
	free(X);
	free(xm);
}

static void
test_adapters(void)
{
	Adapter    *old,
			   *pooled;
	int			v_old = 0,
				v_new = 0;
	size_t		lens[4];
	float		p_old[12],
				p_new[12],
				ref[12],
				e1[4 * 512],
				e2[4 * 512];
	BackboneRun *run,
			   *fresh;
	NnError		err;

	if (model == NULL)
		return;
	for (int i = 0; i < 4; i++)
		lens[i] = strlen(TEXTS[i]);
	old = stored_adapter(0, &v_old);
	pooled = stored_adapter(1, &v_new);
	CHECK(old && pooled, "adapters");
	if (!old || !pooled)
		return;
	CHECK(v_old == 1 && !old->cfg.pool_text, "pool_text 0: format version 1 (%d), read back 0", v_old);
	CHECK(v_new == 3 && pooled->cfg.pool_text, "pool_text 1: format version 3 (%d), read back 1", v_new);
	run = model->ops->run_new(model, 4, model->max_tokens + 5);
	fresh = model->ops->run_new(model, 4, model->max_tokens + 5);

	/* the old adapter: the bits of the old path, on a fresh run ... */
	reference_probs(old, fresh, 0, ref);
	CHECK(classify_texts(model, run, old, TEXTS, lens, 4, 4, p_old, &err) == NN_OK, "%s", err.msg);
	CHECK(memcmp(p_old, ref, sizeof(ref)) == 0, "old adapter: classify_texts = old path, bit for bit");
	/* ... and after a text-pooling adapter used the same run (a server's shared run) */
	CHECK(classify_texts(model, run, pooled, TEXTS, lens, 4, 4, p_new, &err) == NN_OK, "%s", err.msg);
	CHECK(classify_texts(model, run, old, TEXTS, lens, 4, 4, p_old, &err) == NN_OK, "%s", err.msg);
	CHECK(memcmp(p_old, ref, sizeof(ref)) == 0, "old adapter after a pooled one: same bits");

	/* the new adapter pools past its 5 prompt rows */
	reference_probs(pooled, fresh, 5, ref);
	CHECK(memcmp(p_new, ref, sizeof(ref)) == 0, "pooled adapter: text rows only, bit for bit");
	reference_probs(pooled, fresh, 0, ref);
	CHECK(memcmp(p_new, ref, sizeof(ref)) != 0, "pooled adapter: not the every-row prediction");

	/* the run is left pooling every row: dept_embed on it is unchanged */
	backbone_run_pool_skip(model, fresh, 0);
	CHECK(classify_texts(model, run, pooled, TEXTS, lens, 4, 4, p_new, &err) == NN_OK, "%s", err.msg);
	CHECK(model->ops->forward != NULL &&
		  backbone_embed_texts(model, run, TEXTS, lens, 4, e1, &err) == NN_OK &&
		  backbone_embed_texts(model, fresh, TEXTS, lens, 4, e2, &err) == NN_OK &&
		  memcmp(e1, e2, sizeof(float) * 4 * model->d_out) == 0,
		  "sentence vectors after a pooled adapter are a fresh run's");
	backbone_run_pool_skip(model, run, 3);
	CHECK(backbone_embed_texts(model, run, TEXTS, lens, 4, e1, &err) == NN_OK &&
		  memcmp(e1, e2, sizeof(float) * 4 * model->d_out) == 0,
		  "backbone_embed_texts pools every row whatever the run was set to");

	model->ops->run_free(run);
	model->ops->run_free(fresh);
	adapter_free(old);
	adapter_free(pooled);
}

/* Training records pool_text in the adapter, and the option turns it off. */
static void
test_train_records(void)
{
	Dataset    *ds = dataset_new();
	TrainOptions opt;
	TrainResult res;
	NnError		err;
	char		text[64];

	if (model == NULL || ds == NULL)
		return;
	for (int i = 0; i < 24; i++)
	{
		snprintf(text, sizeof(text), "%s number %d", i % 2 ? "good film" : "bad film", i);
		dataset_add(ds, text, strlen(text), i % 2 ? "pos" : "neg", 3, &err);
	}
	CHECK(dataset_finish(ds, &err) == NN_OK, "%s", err.msg);
	for (int k = 0; k < 3; k++)
	{
		train_options_default(&opt);
		CHECK(opt.pool_text, "text-row pooling is the default");
		opt.prompt_len = 4;
		opt.max_len = 16;
		opt.max_steps = 2;
		opt.epochs = 0;
		opt.batch_size = 8;
		opt.pool_text = k != 1;
		opt.method = k == 2 ? ADAPTER_PROBE : ADAPTER_DEPT;
		opt.valid_tail = 8;
		CHECK(train_adapter(model, ds, &opt, &res, &err) == NN_OK, "train: %s", err.msg);
		if (res.adapter)
			CHECK(res.adapter->cfg.pool_text == (k == 0) && res.n_valid == 8 && res.n_train == 16,
				  "case %d: pool_text %d, %d/%d rows", k, res.adapter->cfg.pool_text, res.n_train,
				  res.n_valid);
		train_result_free(&res);
	}
	opt.valid_tail = 24;
	CHECK(train_adapter(model, ds, &opt, &res, &err) == NN_ERR_ARG, "valid_tail leaving no rows refused");
	dataset_free(ds);
}

int
main(void)
{
	RUN_TEST(test_kernel);
	RUN_TEST(test_use_lite_open);
	RUN_TEST(test_use_lite_fd);
	RUN_TEST(test_adapters);
	RUN_TEST(test_train_records);
	if (model)
		backbone_close(model);
	return unit_finish();
}
