/*
 * dept-bench: the standalone C figures of bench/run, one JSON object per
 * line on stdout, so that bench/report.py can set them beside the peers'.
 *
 *   dept-bench peak    [--threads T]                  the machine's sgemm GFLOP/s (2048^3)
 *   dept-bench products [--threads T]                 each weight product the backbones run,
 *                                                    ours (the kernel kernels.c picks) beside
 *                                                    OpenBLAS's sgemm, GFLOP/s per shape
 *   dept-bench embed   --texts F [--batch B] [--threads T] [--limit N]
 *   dept-bench predict --texts F --method M [--batch B] [--threads T] [--limit N]
 *   dept-bench train   --texts F --method M [--batch B] [--steps N] [--threads T]
 *   dept-bench tokenize --texts F [--limit N]        label and ids of each text, a line each
 *   dept-bench vectors --texts F --limit N           the first N sentence vectors, as JSON
 *   dept-bench load                                  open the model, then embed one text:
 *                                                    the times and the process's memory
 *
 * Every command takes --model DIR (default build/model/use-lite: any
 * directory backbone_open reads, bench/run --models passes Hugging Face
 * ones) and --max-length S, the tokens a text keeps and the s of DePT's A
 * (default: the model's limit, at most 128 as in dept_train); embed and
 * predict take --warmup N, texts run (in batches of --batch) before the timing
 * starts (0).  Every timed figure also gives the process's CPU seconds over
 * the timed part, which other jobs on the machine change less than wall time.  On T5
 * the adapter of predict and train is text-to-text (the DePT paper's
 * setting, dept_train's default there): its classes are the label strings
 * of the TSV, predict ranks them by decoder log-likelihood and train takes
 * the teacher-forced label loss.
 *
 * embed, predict, vectors and train take --precision bfloat16 to run the
 * encoder's products on AMX or AVX512-BF16 (gemm_bf16.h; what dept.matmul_precision =
 * bfloat16 does in SQL, and dept_train's "precision" option in training).
 *
 * F is a TSV with the header "label<TAB>text".  embed and predict time
 * the whole path a user pays for -- tokenize, embed, adapter, encoder,
 * pooling, head -- over every text, in file order, in batches of B (1 is
 * one text per call).  train times the DePT/PT step of train.c: forward,
 * softmax cross-entropy, input-backward through the frozen encoder, the
 * adapter's backward, clipping and AdamW, on batches of B texts taken in
 * file order and padded to the batch's longest, after 2 warm-up steps.
 * Tokens are counted as the encoder sees them: prompt rows plus real
 * tokens (padding is packed away by use-lite, see use_lite.c).
 *
 * "gflop" is the dense work of the use-lite forward, counted exactly:
 * 2 x rows x weights for every projection, plus 4 n^2 d for the two
 * attention products of each sequence of n rows and width d.  It is only
 * printed for the use-lite backbone.
 */
#include "ops/blas.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "adapters/adapter.h"
#include "models/backbone.h"
#include "train/dataset.h"
#include "ops/kernels.h"
#include "ops/gemm_packed.h"
#include "ops/optim.h"
#include "ops/blas.h"
#include "train/train.h"

typedef struct BenchArgs
{
	const char *texts_path;
	const char *model_dir;
	const char *method;
	int			batch;
	int			threads;
	int			limit;
	int			steps;
	bool		bf16;			/* --precision bfloat16: products on AMX or AVX512-BF16 */
	int			max_length;		/* tokens kept per text, DePT's s; 0: the model's, <= 128 */
	int			warmup;			/* batches run before an inference timing */
} BenchArgs;

/* The tokens a text keeps (and DePT's s) on bb: --max-length, else the model's limit up to 128. */
static int
max_length_of(const BenchArgs *a, const Backbone *bb)
{
	int			s = a->max_length > 0 ? a->max_length : 128;

	return s < bb->max_tokens ? s : bb->max_tokens;
}

static bool
is_use_lite(const Backbone *bb)
{
	return strcmp(bb->ops->family, "use-lite") == 0;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU seconds (user + system) this process has used: a figure robust to other jobs. */
static double
cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
		(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static long
peak_rss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* Dense FLOPs of the use-lite forward over one sequence of n rows. */
static double
use_lite_flops(int n)
{
	/* layer 0 (256 wide): qkv, output, AdjustResidualInput, FFN */
	double		w0 = 256.0 * 768 + 256.0 * 512 + 256.0 * 512 + 512.0 * 1536 * 2;
	/* layer 1 (512 wide): qkv, output, FFN */
	double		w1 = 512.0 * 1536 + 512.0 * 512 + 512.0 * 1536 * 2;
	double		attention = 4.0 * n * n * (256 + 512);

	return 2.0 * n * (w0 + w1) + attention + 2.0 * 512 * 512;
}

static void
print_blas(void)
{
	printf("\"blas_core\": \"%s\", \"threads\": %d", nn_blas_core(),
		   nn_blas_threads());
}

static int
bench_peak(const BenchArgs *a)
{
	int			n = 2048;
	float	   *x = malloc(sizeof(float) * n * n),
			   *y = malloc(sizeof(float) * n * n),
			   *z = malloc(sizeof(float) * n * n);
	double		best = 0;

	for (long i = 0; i < (long) n * n; i++)
	{
		x[i] = (float) (i % 7) * 0.1f;
		y[i] = (float) (i % 5) * 0.1f;
	}
	for (int rep = 0; rep < 6; rep++)
	{
		double		t0 = now_seconds();
		double		gf;

		nn_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, x, n, y, n,
					0.0f, z, n);
		gf = 2.0 * n * n * n / (now_seconds() - t0) * 1e-9;
		if (gf > best)
			best = gf;
	}
	printf("{\"bench\": \"peak\", ");
	print_blas();
	printf(", \"m\": %d, \"sgemm_gflops\": %.1f}\n", n, best);
	free(x);
	free(y);
	free(z);
	return 0;
}

/*
 * Best GFLOP/s of 5 timings of reps calls of one product, the weight taken
 * in turn from copies consecutive copies (w, w + C * OC, ...): with 16 copies
 * of the larger shapes the weights come from memory, not the cache, as a
 * real model's do.  hf: linear_forward, else matmul_forward.
 */
typedef enum ProductImpl
{
	PRODUCT_OURS,				/* linear_forward / matmul_forward: no copy of the weight */
	PRODUCT_OPENBLAS,			/* the bias, then OpenBLAS's sgemm */
	PRODUCT_PACKED				/* linear_product with packing on (gemm_packed.h) */
} ProductImpl;

static double
product_gflops(ProductImpl impl, bool hf, float *out, const float *x, const float *w,
			   const float *b, int N, int C, int OC, int reps, int copies)
{
	double		best = 0;

	for (int t = 0; t < 5; t++)
	{
		double		t0 = now_seconds(),
					gf;

		for (int r = 0; r < reps; r++)
		{
			const float *wr = w + (size_t) (r % copies) * C * OC;

			if (impl == PRODUCT_PACKED)
				linear_product(false, out, x, wr, b, N, C, OC, OC);
			else if (impl == PRODUCT_OURS && hf)
				linear_forward(out, x, wr, b, N, C, OC, OC);
			else if (impl == PRODUCT_OURS)
				matmul_forward(out, x, wr, b, N, C, OC);
			else
			{
				/* what the kernels did before their own products: the bias, then sgemm */
				for (int n = 0; n < N; n++)
					memcpy(out + (size_t) n * OC, b, sizeof(float) * OC);
				nn_sgemm(CblasRowMajor, CblasNoTrans, hf ? CblasTrans : CblasNoTrans, N, OC, C,
						 1.0f, x, C, wr, hf ? C : OC, 1.0f, out, OC);
			}
		}
		gf = 2.0 * N * C * OC * reps / (now_seconds() - t0) * 1e-9;
		best = gf > best ? gf : best;
	}
	return best;
}

/*
 * The weight products of the backbones at the row counts of their calls
 * (1 to 32 rows: a sentence; 80: DePT's 60 prompt rows and a sentence;
 * 640: a batch), in both layouts: Hugging Face's (out, in), linear_forward,
 * and TensorFlow's (in, out) of use-lite, matmul_forward; ours beside
 * OpenBLAS's sgemm (weights packed by it on every call) on the same data.
 * "warm": one weight, in the cache after the first call; "cold": 16 copies
 * taken in turn (75 to 150 MB), so each call reads its weight from memory.
 */
static int
bench_products(void)
{
	static const int rows[] = {1, 2, 4, 8, 20, 32, 48, 64, 80, 96, 128, 640};
	static const int hf_shapes[][2] = {{384, 384}, {384, 1536}, {1536, 384}, {768, 768},
	{768, 2304}, {768, 3072}, {3072, 768}, {512, 2048}, {2048, 512}};
	static const int tf_shapes[][2] = {{512, 1536}, {512, 512}, {512, 2048}, {2048, 512},
	{256, 768}, {1536, 512}};
	const size_t max = (size_t) 16 * 3072 * 768;
	float	   *x = malloc(sizeof(float) * 640 * 3072),
			   *w = malloc(sizeof(float) * max),
			   *b = malloc(sizeof(float) * 3072),
			   *out = malloc(sizeof(float) * 640 * 3072);

	for (size_t i = 0; i < max; i++)
		w[i] = (float) ((long) (i * 7919 % 2001) - 1000) * 1e-3f;
	for (int i = 0; i < 640 * 3072; i++)
		x[i] = (float) (((long) i * 104729) % 2001 - 1000) * 1e-3f;
	for (int i = 0; i < 3072; i++)
		b[i] = (float) (i % 13) * 0.01f;
	for (int cold = 0; cold < 2; cold++)
		for (int layout = 0; layout < 2; layout++)
			for (int s = 0; s < (layout == 0 ? 9 : 6); s++)
				for (int r = 0; r < 12; r++)
				{
					int			C = layout == 0 ? hf_shapes[s][0] : tf_shapes[s][0],
								OC = layout == 0 ? hf_shapes[s][1] : tf_shapes[s][1],
								N = rows[r],
								copies = cold ? 16 : 1;
					int			reps = (int) (2e8 / (2.0 * N * C * OC)) + copies;
					double		ours = product_gflops(PRODUCT_OURS, layout == 0, out, x, w, b, N,
													  C, OC, reps, copies),
								blas = product_gflops(PRODUCT_OPENBLAS, layout == 0, out, x, w, b,
													  N, C, OC, reps, copies);

					printf("{\"bench\": \"product\", \"weights\": \"%s\", \"layout\": \"%s\", "
						   "\"rows\": %d, \"c\": %d, \"oc\": %d, \"ours_gflops\": %.1f, "
						   "\"openblas_gflops\": %.1f, ", cold ? "cold" : "warm",
						   layout == 0 ? "out_in" : "in_out", N, C, OC, ours, blas);
					gemm_packed_enable(true, NULL, 0);
					if (layout == 0 && gemm_packed_usable(N, C, OC))
					{
						/* packed once per copy in the first of the timings, which best-of-5 drops */
						printf("\"packed_gflops\": %.1f, ",
							   product_gflops(PRODUCT_PACKED, true, out, x, w, b, N, C, OC,
											  reps, copies));
						gemm_packed_forget_weights();
					}
					gemm_packed_enable(false, NULL, 0);
					print_blas();
					printf("}\n");
					fflush(stdout);
				}
	free(x);
	free(w);
	free(b);
	free(out);
	return 0;
}

static Dataset *
load_texts(const BenchArgs *a)
{
	Dataset    *ds = NULL;
	NnError		err;

	if (dataset_load(&ds, a->texts_path, '\t', "text", "label", &err) != NN_OK ||
		dataset_finish(ds, &err) != NN_OK)
	{
		fprintf(stderr, "dept-bench: %s: %s\n", a->texts_path, err.msg);
		exit(1);
	}
	if (a->limit > 0 && a->limit < ds->n_rows)
		ds->n_rows = a->limit;
	return ds;
}

static Backbone *
open_model(const BenchArgs *a)
{
	Backbone   *bb = NULL;
	NnError		err;

	if (backbone_open(&bb, a->model_dir, &err) != NN_OK)
	{
		fprintf(stderr, "dept-bench: %s: %s\n", a->model_dir, err.msg);
		exit(1);
	}
	return bb;
}

static AdapterMethod
method_of(const char *name)
{
	AdapterMethod m;

	if (adapter_method_parse(name, &m) == 0)
		return m;
	fprintf(stderr, "dept-bench: unknown method %s\n", name);
	exit(2);
}

/*
 * An adapter as dept_train makes it by default (PT l = 100; DePT m = 60
 * with r from the budget of 100 at s = 128; the text rows pooled), with the prompt from sampled
 * vocabulary rows and, for prediction, B non-zero, so that every product
 * of a trained adapter is computed.
 */
static Adapter *
make_adapter(const Backbone *bb, AdapterMethod method, const Dataset *ds, int max_len,
			 int max_batch)
{
	AdapterConfig cfg = {0};
	Adapter    *ad = NULL;
	NnError		err;
	int			P;

	cfg.method = method;
	cfg.d = bb->d_embed;
	cfg.h_dim = bb->d_out;
	cfg.n_classes = ds->n_classes;
	cfg.max_len = max_len;
	cfg.head = backbone_has_text_head(bb) && method != ADAPTER_PROBE ? ADAPTER_HEAD_TEXT :
		ADAPTER_HEAD_LINEAR;
	cfg.alpha = 8.0f;
	cfg.prompt_len = method == ADAPTER_PT ? 100 : method == ADAPTER_PROBE ? 0 : 60;
	/* the text rows pooled, as train_adapter's default (adapter_new keeps it where it applies) */
	cfg.pool_text = backbone_pool_skips(bb);
	if (method == ADAPTER_EPT)
	{
		cfg.subspaces = 4;
		cfg.subspace_rank = 4;
	}
	if (method == ADAPTER_DEPT || method == ADAPTER_EPT)
		cfg.rank = adapter_rank_for_budget(100, cfg.d, cfg.max_len, cfg.prompt_len,
										   cfg.subspaces, cfg.subspace_rank);
	if (adapter_new(&ad, &cfg, max_batch, 42, &err) != NN_OK ||
		text_head_bind_labels(bb, ad, (const char *const *) ds->class_names, &err) != NN_OK)
	{
		fprintf(stderr, "dept-bench: %s\n", err.msg);
		exit(1);
	}
	P = adapter_prompt_rows(&cfg);
	if (P > 0)
	{
		int32_t    *ids = malloc(sizeof(int32_t) * P);
		float	   *rows = malloc(sizeof(float) * P * bb->d_embed);
		uint8_t    *mask = malloc(P);

		for (int i = 0; i < P; i++)
			ids[i] = 6 + (i * 37) % 5000;
		bb->ops->embed_tokens(bb, ids, P, rows, mask);
		adapter_init_prompt(ad, rows, P);
		free(ids);
		free(rows);
		free(mask);
	}
	for (size_t i = 0; i < ad->lora_b.n; i++)
		ad->lora_b.w[i] = 1e-3f * (float) ((int) (i % 13) - 6);
	return ad;
}

/* Rows the encoder sees for each text: prompt rows + tokens. */
static void
count_tokens(const Backbone *bb, const Dataset *ds, int prompt_rows, int max_len,
			 long *tokens, double *gflop)
{
	int32_t    *ids = malloc(sizeof(int32_t) * bb->max_tokens);

	*tokens = 0;
	*gflop = 0;
	for (int i = 0; i < ds->n_rows; i++)
	{
		int			n = bb->ops->tokenize(bb, ds->texts[i], ds->text_lens[i], ids, max_len);

		*tokens += n + prompt_rows;
		*gflop += use_lite_flops(n + prompt_rows) * 1e-9;
	}
	free(ids);
}

/* The first n texts of ds in batches of batch: classified by ad, or embedded without one. */
static NnStatus
infer_batches(const Backbone *bb, BackboneRun *run, Adapter *ad, const Dataset *ds, int n,
			  int batch, float *out, NnError *err)
{
	NnStatus	st = NN_OK;

	if (n > ds->n_rows)
		n = ds->n_rows;
	if (ad)
		return classify_texts(bb, run, ad, (const char *const *) ds->texts, ds->text_lens,
							  n, batch, out, err);
	for (int s = 0; s < n && st == NN_OK; s += batch)
	{
		int			B = n - s < batch ? n - s : batch;

		st = backbone_embed_texts(bb, run, (const char *const *) ds->texts + s,
								  ds->text_lens + s, B, out + (size_t) s * bb->d_out, err);
	}
	return st;
}

static int
bench_infer(const BenchArgs *a, bool with_adapter)
{
	Dataset    *ds = load_texts(a);
	Backbone   *bb = open_model(a);
	AdapterMethod method = with_adapter ? method_of(a->method) : ADAPTER_PROBE;
	int			S = max_length_of(a, bb);
	Adapter    *ad = with_adapter ? make_adapter(bb, method, ds, S, a->batch) : NULL;
	int			P = ad ? adapter_prompt_rows(&ad->cfg) : 0;
	BackboneRun *run = bb->ops->run_new(bb, a->batch, P + S);
	bool		bf16 = a->bf16 && backbone_run_use_bf16(bb, run, true);
	float	   *out = malloc(sizeof(float) * (size_t) ds->n_rows *
							 (ad ? ds->n_classes : bb->d_out));
	long		tokens;
	double		gflop,
				t0,
				c0,
				secs,
				cpu;
	NnError		err;
	NnStatus	st = NN_OK;

	count_tokens(bb, ds, P, S, &tokens, &gflop);
	if (a->warmup > 0)
		st = infer_batches(bb, run, ad, ds, a->warmup, a->batch, out, &err);
	t0 = now_seconds();
	c0 = cpu_seconds();
	if (st == NN_OK)
		st = infer_batches(bb, run, ad, ds, ds->n_rows, a->batch, out, &err);
	secs = now_seconds() - t0;
	cpu = cpu_seconds() - c0;
	if (st != NN_OK)
	{
		fprintf(stderr, "dept-bench: %s\n", err.msg);
		return 1;
	}
	printf("{\"bench\": \"%s\", \"method\": \"%s\", \"precision\": \"%s\", ",
		   ad ? "predict" : "embed", ad ? a->method : "none", bf16 ? "bfloat16" : "float32");
	print_blas();
	printf(", \"batch\": %d, \"texts\": %d, \"tokens\": %ld, \"seconds\": %.4f, "
		   "\"texts_per_second\": %.1f, \"tokens_per_second\": %.0f, ",
		   a->batch, ds->n_rows, tokens, secs, ds->n_rows / secs, tokens / secs);
	if (is_use_lite(bb))
		printf("\"gflops\": %.1f, ", gflop / secs);
	printf("\"family\": \"%s\", \"max_length\": %d, \"warmup_texts\": %d, \"cpu_seconds\": %.4f, "
		   "\"peak_rss_kb\": %ld}\n", bb->ops->family, S, a->warmup, cpu, peak_rss_kb());
	free(out);
	bb->ops->run_free(run);
	adapter_free(ad);
	backbone_close(bb);
	dataset_free(ds);
	return 0;
}

/* Training buffers for batches of B texts of up to s tokens after P prompt rows. */
typedef struct StepBuffers
{
	int32_t    *ids;
	int		   *count;
	float	   *E,
			   *X,
			   *dX,
			   *h,
			   *dh,
			   *logits;
	uint8_t    *e_mask,
			   *x_mask;
	int		   *labels;
	int32_t    *targets;		/* text-to-text: each row's label ids (B, label_len) */
	int			s;				/* tokens kept per text */
} StepBuffers;

static void
step_buffers_init(StepBuffers *sb, const Backbone *bb, int B, int P, int S, int label_len)
{
	size_t		s = S,
				d = bb->d_embed;

	sb->s = S;
	sb->targets = malloc(sizeof(int32_t) * B * (label_len > 0 ? label_len : 1));

	sb->ids = malloc(sizeof(int32_t) * B * s);
	sb->count = malloc(sizeof(int) * B);
	sb->E = malloc(sizeof(float) * B * s * d);
	sb->e_mask = malloc(B * s);
	sb->X = malloc(sizeof(float) * B * (P + s) * d);
	sb->dX = malloc(sizeof(float) * B * (P + s) * d);
	sb->x_mask = malloc(B * (P + s));
	sb->h = malloc(sizeof(float) * B * bb->d_out);
	sb->dh = malloc(sizeof(float) * B * bb->d_out);
	sb->logits = malloc(sizeof(float) * B * 64);
	sb->labels = malloc(sizeof(int) * B);
}

static void
step_buffers_free(StepBuffers *sb)
{
	free(sb->ids);
	free(sb->count);
	free(sb->E);
	free(sb->e_mask);
	free(sb->X);
	free(sb->dX);
	free(sb->x_mask);
	free(sb->h);
	free(sb->dh);
	free(sb->logits);
	free(sb->labels);
	free(sb->targets);
}

/* One training step on rows [first, first + B) of ds; returns the loss. */
static double
train_step(const Backbone *bb, BackboneRun *run, Adapter *ad, AdamW *opt, StepBuffers *sb,
		   const Dataset *ds, int first, int B, long *tokens)
{
	int			P = adapter_prompt_rows(&ad->cfg),
				s = sb->s,
				n = 1;
	size_t		d = bb->d_embed;
	double		loss;
	NnError		err;

	for (int b = 0; b < B; b++)
	{
		int			row = (first + b) % ds->n_rows;

		sb->count[b] = bb->ops->tokenize(bb, ds->texts[row], ds->text_lens[row],
										 sb->ids + (size_t) b * s, s);
		sb->labels[b] = ds->labels[row];
		if (sb->count[b] > n)
			n = sb->count[b];
		*tokens += P + sb->count[b];
	}
	memset(sb->E, 0, sizeof(float) * (unsigned) B * (unsigned) n * d);
	memset(sb->e_mask, 0, (size_t) (unsigned) B * (unsigned) n);
	for (int b = 0; b < B; b++)
		bb->ops->embed_tokens(bb, sb->ids + (size_t) b * s, sb->count[b],
							  sb->E + (size_t) b * n * d, sb->e_mask + (size_t) b * n);
	adamw_zero_grad(opt);
	adapter_forward(ad, sb->E, sb->e_mask, B, n, sb->X, sb->x_mask);
	if (ad->cfg.head == ADAPTER_HEAD_TEXT)
	{
		/* train.c's text_step: the teacher-forced loss of each row's label string */
		int			L = ad->label_len;
		float		l = 0.0f;

		for (int b = 0; b < B; b++)
			memcpy(sb->targets + (size_t) b * L, ad->label_ids + (size_t) sb->labels[b] * L,
				   sizeof(int32_t) * L);
		if (bb->ops->label_loss_forward(bb, run, sb->X, sb->x_mask, B, P + n, sb->targets, L,
										&l, NULL, &err) != NN_OK ||
			bb->ops->label_loss_backward(bb, run, sb->dX, &err) != NN_OK)
			goto fail;
		loss = l;
	}
	else
	{
		if (bb->ops->forward(bb, run, sb->X, sb->x_mask, B, P + n, sb->h, &err) != NN_OK)
			goto fail;
		head_forward(ad, sb->h, B, sb->logits);
		if (head_loss_backward(ad, sb->h, sb->logits, sb->labels, B, sb->dh, &loss, &err) != NN_OK)
			goto fail;
		if (bb->ops->backward(bb, run, sb->dh, sb->dX, &err) != NN_OK)
			goto fail;
	}
	adapter_backward(ad, sb->dX, B, n);
	clip_grad_norm(opt, 1.0);
	adamw_step(opt, 1.0f);
	return loss;
fail:
	fprintf(stderr, "dept-bench: %s\n", err.msg);
	exit(1);
}

static int
bench_train(const BenchArgs *a)
{
	Dataset    *ds = load_texts(a);
	Backbone   *bb = open_model(a);
	int			S = max_length_of(a, bb);
	Adapter    *ad = make_adapter(bb, method_of(a->method), ds, S, a->batch);
	int			P = adapter_prompt_rows(&ad->cfg);
	BackboneRun *run = bb->ops->run_new(bb, a->batch, P + S);
	bool		bf16 = a->bf16 && backbone_run_use_bf16(bb, run, true);
	StepBuffers sb;
	AdamW		opt;
	long		tokens = 0;
	double		t0,
				c0,
				secs,
				cpu,
				loss = 0;

	step_buffers_init(&sb, bb, a->batch, P, S, ad->label_len);
	adamw_init(&opt);
	opt.lr[GROUP_PROMPT] = 3e-2f;
	opt.lr[GROUP_LOWRANK] = 1e-3f;
	opt.lr[GROUP_EPT] = 1e-3f;
	opt.lr[GROUP_HEAD] = 1e-2f;
	adapter_register(ad, &opt);
	for (int i = 0; i < 2; i++)
		train_step(bb, run, ad, &opt, &sb, ds, i * a->batch, a->batch, &tokens);
	tokens = 0;
	t0 = now_seconds();
	c0 = cpu_seconds();
	for (int i = 0; i < a->steps; i++)
		loss = train_step(bb, run, ad, &opt, &sb, ds, (i + 2) * a->batch, a->batch, &tokens);
	secs = now_seconds() - t0;
	cpu = cpu_seconds() - c0;
	printf("{\"bench\": \"train\", \"method\": \"%s\", \"precision\": \"%s\", ", a->method,
		   bf16 ? "bfloat16" : "float32");
	print_blas();
	printf(", \"batch\": %d, \"steps\": %d, \"prompt_rows\": %d, \"rank\": %d, "
		   "\"trainable_params\": %zu, \"tokens\": %ld, \"seconds\": %.4f, "
		   "\"ms_per_step\": %.2f, \"tokens_per_second\": %.0f, \"last_loss\": %.4f, "
		   "\"family\": \"%s\", \"head\": \"%s\", \"max_length\": %d, \"cpu_seconds\": %.4f, \"peak_rss_kb\": %ld}\n",
		   a->batch, a->steps, P, ad->cfg.rank, adapter_param_count(&ad->cfg), tokens, secs,
		   secs / a->steps * 1e3, tokens / secs, loss, bb->ops->family,
		   ad->cfg.head == ADAPTER_HEAD_TEXT ? "text" : "linear", S, cpu, peak_rss_kb());
	step_buffers_free(&sb);
	bb->ops->run_free(run);
	adapter_free(ad);
	backbone_close(bb);
	dataset_free(ds);
	return 0;
}

/* "VmRSS": 123 kB, ... of /proc/self/status, printed as "\"vmrss_kb\": 123, " and so on. */
static void
print_memory(const char *prefix)
{
	static const char *const keys[] = {"VmRSS", "RssAnon", "RssFile", "VmHWM"};
	FILE	   *f = fopen("/proc/self/status", "r");
	char		line[256];

	while (f && fgets(line, sizeof(line), f))
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		{
			size_t		n = strlen(keys[k]);

			if (strncmp(line, keys[k], n) == 0 && line[n] == ':')
			{
				printf("\"%s_", prefix);
				for (size_t c = 0; c < n; c++)
					putchar(keys[k][c] >= 'A' && keys[k][c] <= 'Z' ? keys[k][c] + 32 : keys[k][c]);
				printf("_kb\": %ld, ", atol(line + n + 1));
			}
		}
	if (f)
		fclose(f);
}

/*
 * A new process's first call: open the model (mmap the safetensors, read
 * the tokenizer, convert F16/BF16 tensors once), then embed one sentence
 * (OpenBLAS loads on the first large product), each timed, with the
 * process's memory after each: RssFile is the mapped weights the pages
 * touched so far, RssAnon what was copied or allocated.
 */
static int
bench_load(const BenchArgs *a)
{
	static const char text[] = "the first call of a new process loads the model";
	double		t0 = now_seconds(),
				open_ms,
				embed_ms;
	Backbone   *bb = open_model(a);
	BackboneRun *run;
	float	   *out;
	size_t		len = strlen(text);
	const char *texts[1] = {text};
	NnError		err;

	open_ms = (now_seconds() - t0) * 1e3;
	printf("{\"bench\": \"load\", \"family\": \"%s\", \"open_ms\": %.2f, ", bb->ops->family,
		   open_ms);
	print_memory("open");
	t0 = now_seconds();
	run = bb->ops->run_new(bb, 1, max_length_of(a, bb));
	out = malloc(sizeof(float) * bb->d_out);
	if (run == NULL || out == NULL ||
		backbone_embed_texts(bb, run, texts, &len, 1, out, &err) != NN_OK)
	{
		fprintf(stderr, "dept-bench: the first embed failed\n");
		return 1;
	}
	embed_ms = (now_seconds() - t0) * 1e3;
	printf("\"first_embed_ms\": %.2f, ", embed_ms);
	print_memory("embed");
	printf("\"blas_core\": \"%s\"}\n", nn_blas_core());
	free(out);
	bb->ops->run_free(run);
	backbone_close(bb);
	return 0;
}

/* The token ids of every text, space-separated, a line each: the PyTorch peer's input. */
static int
bench_tokenize(const BenchArgs *a)
{
	Dataset    *ds = load_texts(a);
	Backbone   *bb = open_model(a);
	int32_t    *ids = malloc(sizeof(int32_t) * bb->max_tokens);
	int			S = max_length_of(a, bb);

	for (int i = 0; i < ds->n_rows; i++)
	{
		int			n = bb->ops->tokenize(bb, ds->texts[i], ds->text_lens[i], ids, S);

		printf("%d", ds->labels[i]);
		for (int j = 0; j < n; j++)
			printf(" %d", ids[j]);
		putchar('\n');
	}
	free(ids);
	backbone_close(bb);
	dataset_free(ds);
	return 0;
}

/* Sentence vectors of the texts as one JSON array, to check a peer's agreement. */
static int
bench_vectors(const BenchArgs *a)
{
	Dataset    *ds = load_texts(a);
	Backbone   *bb = open_model(a);
	BackboneRun *run = bb->ops->run_new(bb, ds->n_rows, bb->max_tokens);
	float	   *out = malloc(sizeof(float) * (size_t) ds->n_rows * bb->d_out);
	NnError		err;

	if (a->bf16)
		backbone_run_use_bf16(bb, run, true);
	if (backbone_embed_texts(bb, run, (const char *const *) ds->texts, ds->text_lens,
							 ds->n_rows, out, &err) != NN_OK)
	{
		fprintf(stderr, "dept-bench: %s\n", err.msg);
		return 1;
	}
	putchar('[');
	for (int i = 0; i < ds->n_rows; i++)
	{
		printf("%s[", i ? ", " : "");
		for (int j = 0; j < bb->d_out; j++)
			printf("%s%.9g", j ? ", " : "", out[(size_t) i * bb->d_out + j]);
		putchar(']');
	}
	printf("]\n");
	free(out);
	bb->ops->run_free(run);
	backbone_close(bb);
	dataset_free(ds);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"texts", required_argument, NULL, 't'},
		{"model", required_argument, NULL, 'm'},
		{"method", required_argument, NULL, 'M'},
		{"batch", required_argument, NULL, 'b'},
		{"threads", required_argument, NULL, 'T'},
		{"limit", required_argument, NULL, 'n'},
		{"steps", required_argument, NULL, 's'},
		{"precision", required_argument, NULL, 'p'},
		{"max-length", required_argument, NULL, 'S'},
		{"warmup", required_argument, NULL, 'w'},
		{NULL, 0, NULL, 0}
	};
	BenchArgs	a = {NULL, "build/model/use-lite", "dept", 1, 1, 0, 20, false, 0, 0};
	const char *cmd;
	int			c;

	if (argc < 2)
	{
		fprintf(stderr, "usage: dept-bench peak|products|load|embed|predict|train|tokenize|vectors [options]\n");
		return 2;
	}
	cmd = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 't': a.texts_path = optarg; break;
			case 'm': a.model_dir = optarg; break;
			case 'M': a.method = optarg; break;
			case 'b': a.batch = atoi(optarg); break;
			case 'T': a.threads = atoi(optarg); break;
			case 'n': a.limit = atoi(optarg); break;
			case 's': a.steps = atoi(optarg); break;
			case 'p': a.bf16 = strcmp(optarg, "bfloat16") == 0; break;
			case 'S': a.max_length = atoi(optarg); break;
			case 'w': a.warmup = atoi(optarg); break;
			default: return 2;
		}
	}
	nn_blas_setup(a.threads);
	/* inference packs the frozen float32 weights once (gemm_packed.h), as dept_predict does */
	gemm_packed_enable(getenv("DEPT_NO_PACKED") == NULL && strcmp(cmd, "train") != 0, NULL, 0);
	if (strcmp(cmd, "peak") == 0)
		return bench_peak(&a);
	if (strcmp(cmd, "load") == 0)
		return bench_load(&a);
	if (strcmp(cmd, "products") == 0)
		return bench_products();
	if (a.texts_path == NULL || a.batch < 1)
	{
		fprintf(stderr, "dept-bench: --texts FILE and --batch >= 1 are needed\n");
		return 2;
	}
	if (strcmp(cmd, "embed") == 0)
		return bench_infer(&a, false);
	if (strcmp(cmd, "predict") == 0)
		return bench_infer(&a, true);
	if (strcmp(cmd, "train") == 0)
		return bench_train(&a);
	if (strcmp(cmd, "tokenize") == 0)
		return bench_tokenize(&a);
	if (strcmp(cmd, "vectors") == 0)
		return bench_vectors(&a);
	fprintf(stderr, "dept-bench: unknown command %s\n", cmd);
	return 2;
}
