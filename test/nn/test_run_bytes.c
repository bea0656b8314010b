/*
 * test_run_bytes.c: each backbone's run_bytes estimate against the heap a
 * run really takes.
 *
 * dept.max_training_memory refuses a training run from run_bytes before any
 * buffer exists, so the estimate must never be below what run_new (and,
 * for T5, the decoder growth of t5_loss_forward) allocates, and must not be
 * so far above it that reasonable runs are refused: the test asks for
 * measured <= estimate <= 2 x measured on small and large shapes.  The
 * heap in use is read from glibc (mallinfo2: arena bytes in use plus
 * mmap'ed chunks) or, under AddressSanitizer, from its allocator.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/backbone.h"
#include "models/t5/t5.h"
#include "ops/blas.h"
#include "unit.h"

#if defined(__SANITIZE_ADDRESS__)
#define USE_ASAN_STATS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define USE_ASAN_STATS 1
#endif
#endif

#ifdef USE_ASAN_STATS
/* from the sanitizer runtime (gcc ships no allocator_interface.h) */
extern size_t __sanitizer_get_current_allocated_bytes(void);

static size_t
heap_in_use(void)
{
	return __sanitizer_get_current_allocated_bytes();
}
#else
#include <malloc.h>

static size_t
heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}
#endif

typedef struct Shape
{
	int			batch;
	int			seq;
} Shape;

/* the last row stands for "as many positions as the model takes" (at most 512) */
static const Shape shapes[] = {{1, 8}, {4, 40}, {32, 188}, {64, 256}, {8, 0}};

static Backbone *
open_or_skip(const char *dir)
{
	Backbone   *bb = NULL;
	NnError		err;

	CHECK(backbone_open(&bb, dir, &err) == NN_OK, "%s: %s", dir, err.msg);
	return bb;
}

/* run_new's heap for each shape against run_bytes. */
static void
check_encoder_shapes(const Backbone *bb)
{
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
	{
		int			B = shapes[i].batch,
					S = shapes[i].seq ? shapes[i].seq : (bb->max_positions < 512 ? bb->max_positions : 512);
		size_t		before,
					used,
					est;
		BackboneRun *run;

		if (S > bb->max_positions)
			continue;
		est = backbone_run_bytes(bb, B, S, 0, 0);
		before = heap_in_use();
		run = bb->ops->run_new(bb, B, S);
		used = heap_in_use() - before;
		CHECK(run != NULL, "%s run_new(%d, %d)", bb->ops->family, B, S);
		CHECK(est >= used && est <= 2 * used, "%s %d x %d: estimate %zu, allocated %zu",
			  bb->ops->family, B, S, est, used);
		printf("# %s batch %d x %d positions: estimate %zu bytes, allocated %zu (%.3f)\n",
			   bb->ops->family, B, S, est, used, used ? (double) est / used : 0.0);
		bb->ops->run_free(run);
	}
	CHECK(backbone_run_bytes(bb, 1, bb->max_positions + 1, 0, 0) == SIZE_MAX,
		  "a shape run_new refuses is SIZE_MAX");
	CHECK(backbone_run_bytes(bb, 0, 8, 0, 0) == SIZE_MAX, "an empty batch is SIZE_MAX");
}

static void
test_use_lite(void)
{
	Backbone   *bb = open_or_skip(UNIT_MODEL_DIR());

	if (bb == NULL)
		return;
	check_encoder_shapes(bb);
	/* the encoder-only families ignore max_label */
	CHECK(backbone_run_bytes(bb, 4, 40, 4, 9) == backbone_run_bytes(bb, 4, 40, 0, 0), "no decoder");
	backbone_close(bb);
}

static void
check_encoder(const char *name)
{
	char		dir[4096];
	Backbone   *bb;

	snprintf(dir, sizeof(dir), "%s/%s", UNIT_HF_DIR(), name);
	if ((bb = open_or_skip(dir)) == NULL)
		return;
	check_encoder_shapes(bb);
	backbone_close(bb);
}

static void
test_bert(void)
{
	check_encoder("bert-tiny-random");
}

/* the other families of bert.c: the same run, other shapes of tables */
static void
test_bert_families(void)
{
	check_encoder("roberta-tiny-random");
	check_encoder("xlm-roberta-tiny-random");
	check_encoder("distilbert-tiny-random");
}

/* DeBERTa (models/deberta): the attention window scratch on top of BERT's buffers */
static void
test_deberta(void)
{
	check_encoder("deberta-v3-tiny-random");
}

/* ModernBERT (models/modernbert): per-layer RoPE/attention buffers, GeGLU's 2F-wide rows */
static void
test_modernbert(void)
{
	check_encoder("modernbert-tiny-random");
}

/*
 * The encoder as above; then the decoder a label loss grows (one sequence
 * per row) and the one rank classification grows (one per row and
 * candidate), each measured from before run_new.
 */
static void
check_t5(const char *name)
{
	char		dir[4096];
	Backbone   *bb;
	NnError		err;

	snprintf(dir, sizeof(dir), "%s/%s", UNIT_HF_DIR(), name);
	if ((bb = open_or_skip(dir)) == NULL)
		return;
	check_encoder_shapes(bb);
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
	{
		int			B = shapes[i].batch,
					S = shapes[i].seq ? shapes[i].seq : 300,
					L = 3 + (int) i * 4;
		size_t		n = (size_t) B * S * bb->d_embed;
		float	   *x = calloc(n, sizeof(float));
		uint8_t    *mask = malloc((size_t) B * S);
		int			rows = B > 3 ? B : 3;	/* label rows, also the 3 candidates */
		int32_t    *labels = malloc(sizeof(int32_t) * (size_t) rows * L);
		size_t		before,
					used,
					est = backbone_run_bytes(bb, B, S, B, L);
		BackboneRun *run;
		float		loss;

		CHECK(x && mask && labels, "inputs");
		if (!x || !mask || !labels)
			break;
		memset(mask, 1, (size_t) B * S);
		for (int j = 0; j < rows * L; j++)
			labels[j] = j % L == L - 1 ? t5_eos_id(bb) : 5 + j % 7;
		before = heap_in_use();
		run = bb->ops->run_new(bb, B, S);
		CHECK(run != NULL, "run_new");
		CHECK(t5_loss_forward(bb, run, x, mask, B, S, labels, L, &loss, NULL, &err) == NN_OK,
			  "%s", err.msg);
		used = heap_in_use() - before;
		CHECK(est >= used && est <= 2 * used, "%s %d x %d, labels of %d: estimate %zu, allocated %zu",
			  name, B, S, L, est, used);
		printf("# %s batch %d x %d positions, %d-token labels: estimate %zu bytes, allocated %zu (%.3f)\n",
			   name, B, S, L, est, used, (double) est / used);
		CHECK(est > backbone_run_bytes(bb, B, S, 0, 0), "the decoder counts");
		bb->ops->run_free(run);

		/* rank classification over 3 candidates: B x 3 decoder sequences */
		{
			float	   *scores = malloc(sizeof(float) * (size_t) B * 3);

			est = backbone_run_bytes(bb, B, S, B * 3, L);
			before = heap_in_use();
			run = bb->ops->run_new(bb, B, S);
			CHECK(run != NULL && scores != NULL, "run_new");
			CHECK(t5_label_loglik(bb, run, x, mask, B, S, labels, 3, L, scores, &err) == NN_OK,
				  "%s", err.msg);
			used = heap_in_use() - before;
			CHECK(est >= used && est <= 2 * used,
				  "%s %d x %d, 3 candidates of %d: estimate %zu, allocated %zu", name, B, S, L, est, used);
			printf("# %s batch %d x %d positions, 3 candidates of %d tokens: estimate %zu bytes, allocated %zu (%.3f)\n",
				   name, B, S, L, est, used, (double) est / used);
			bb->ops->run_free(run);
			free(scores);
		}
		free(x);
		free(mask);
		free(labels);
	}
	backbone_close(bb);
}

static void
test_t5_v1_0(void)
{
	check_t5("t5-tiny-random");
}

static void
test_t5_v1_1(void)
{
	check_t5("t5-v1_1-tiny-random");
}

int
main(void)
{
	NnError		err;

	/* OpenBLAS loads at the first large product and allocates then: not the run's memory */
	nn_blas_load(&err);
	RUN_TEST(test_use_lite);
	RUN_TEST(test_bert);
	RUN_TEST(test_bert_families);
	RUN_TEST(test_deberta);
	RUN_TEST(test_modernbert);
	RUN_TEST(test_t5_v1_0);
	RUN_TEST(test_t5_v1_1);
	return unit_finish();
}
