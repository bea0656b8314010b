/*
 * gemm_packed.c: the float32 product over weights packed into 16-column
 * panels (design in gemm_packed.h).  The AVX-512 code sits in functions
 * with a target attribute and runs only where the CPU has it.
 */
#include "ops/gemm_packed.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/parallel.h"
#include "ops/blas.h"
#include "ops/packed_registry.h"

#define PANEL 16				/* output columns of a panel: one 512-bit vector */
#define MAX_BLOCK_ROWS 24		/* accumulators of a block; 32 registers in all */
#define PREFETCH_FLOATS 512		/* 32 rows of a panel ahead (2 kB) */

/* The panels of this process, looked up by the weight they were made from. */
static PackedRegistry registry = {.kind = PACKED_F32};

static bool packing_on;
static const char *packing_region;	/* NULL: any weight */
static size_t packing_region_len;

void
gemm_packed_enable(bool on, const void *region, size_t len)
{
	packing_on = on;
	packing_region = region;
	packing_region_len = len;
}

size_t
gemm_packed_bytes(void)
{
	return registry.private_bytes;
}

void
gemm_packed_forget_weights(void)
{
	packed_registry_forget(&registry);
}

void
gemm_packed_forget_region(const void *base, size_t len)
{
	packed_registry_forget_region(&registry, base, len);
}

bool
gemm_packed_map_shared(const char *path, const void *base, size_t len)
{
	return packed_registry_map(&registry, path, base, len);
}

int
gemm_packed_private_count(const void *base, size_t len)
{
	return packed_registry_private_count(&registry, base, len);
}

bool
gemm_packed_write_shared(const char *path, const void *base, size_t len)
{
	return packed_registry_write(&registry, path, base, len);
}

/*
 * The panels of a source W (OC, C) (transposed: the operand is W^T, C x
 * OC): data[(p C + k) 16 + j] = W[16 p + j][k].  NULL when out of memory.
 */
static PackedCopy *
pack_weight(const float *W, int C, int OC, bool transposed)
{
	PackedCopy *p = malloc(sizeof(*p));
	float	   *data;

	if (p == NULL)
		return NULL;
	if ((data = aligned_alloc(64, (size_t) OC * C * sizeof(float))) == NULL)
	{
		free(p);
		return NULL;
	}
	*p = (PackedCopy) {C, OC, transposed, false, data};
	for (int o = 0; o < OC; o++)
	{
		const float *row = W + (size_t) o * C;
		float	   *dst = data + (size_t) (o / PANEL) * C * PANEL + o % PANEL;

		for (int k = 0; k < C; k++)
			dst[(size_t) k * PANEL] = row[k];
	}
	return p;
}

const PackedWeight *
gemm_packed_weight(const float *W, int OC, int C)
{
	if (packing_region != NULL && ((const char *) W < packing_region ||
								   (const char *) W >= packing_region + packing_region_len))
		return NULL;			/* panels no shared file could hold */
	return packed_registry_get(&registry, W, C, OC, true, pack_weight);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/*
 * One panel against one block of R rows: xt holds the block transposed
 * (xt[k R + i] = x[i][k]), so the R broadcasts of a k are R consecutive
 * floats.  always_inline with a constant R keeps the accumulators in
 * registers.
 */
__attribute__((target("avx512f"), always_inline))
static inline void
panel_block(float *out, int ldo, const float *xt, const float *panel, const float *bias, int C,
			const int R)
{
	__m512		acc[MAX_BLOCK_ROWS];
	__m512		b = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();

	for (int i = 0; i < R; i++)
		acc[i] = _mm512_setzero_ps();
	for (int k = 0; k < C; k++)
	{
		const float *x = xt + (size_t) k * R;
		__m512		w = _mm512_load_ps(panel + (size_t) k * PANEL);

		_mm_prefetch((const char *) (panel + (size_t) k * PANEL + PREFETCH_FLOATS), _MM_HINT_T0);
#pragma GCC unroll 24
		for (int i = 0; i < R; i++)
			acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(x[i]), w, acc[i]);
	}
	for (int i = 0; i < R; i++)
		_mm512_storeu_ps(out + (size_t) i * ldo, _mm512_add_ps(acc[i], b));
}

#define PANEL_CASE(r) case r: panel_block(out, ldo, xt, panel, bias, C, r); break

/* panel_block with R made a constant (1..MAX_BLOCK_ROWS). */
__attribute__((target("avx512f")))
static void
panel_rows(float *out, int ldo, const float *xt, const float *panel, const float *bias, int C,
		   int R)
{
	switch (R)
	{
			PANEL_CASE(24); PANEL_CASE(23); PANEL_CASE(22); PANEL_CASE(21);
			PANEL_CASE(20); PANEL_CASE(19); PANEL_CASE(18); PANEL_CASE(17);
			PANEL_CASE(16); PANEL_CASE(15); PANEL_CASE(14); PANEL_CASE(13);
			PANEL_CASE(12); PANEL_CASE(11); PANEL_CASE(10); PANEL_CASE(9);
			PANEL_CASE(8); PANEL_CASE(7); PANEL_CASE(6); PANEL_CASE(5);
			PANEL_CASE(4); PANEL_CASE(3); PANEL_CASE(2);
		default:
			panel_block(out, ldo, xt, panel, bias, C, 1);
			break;
	}
}

/* One call, shared by its parts: row blocks b start at row b * rows_each. */
typedef struct PackedJob
{
	float	   *out;
	int			ldo;
	const float *xt,			/* block b at xt + b * rows_each * C */
			   *bias;
	const PackedWeight *W;
	int			N,
				rows_each;
} PackedJob;

/* Panels [begin, end), every row block of each. */
static void
panel_range(void *ctx, int begin, int end)
{
	const PackedJob *j = ctx;
	const int	C = j->W->C;

	for (int p = begin; p < end; p++)
	{
		const float *panel = (const float *) j->W->data + (size_t) p * C * PANEL;
		const float *bias = j->bias ? j->bias + p * PANEL : NULL;

		for (int n0 = 0; n0 < j->N; n0 += j->rows_each)
		{
			int			R = j->N - n0 < j->rows_each ? j->N - n0 : j->rows_each;

			panel_rows(j->out + (size_t) n0 * j->ldo + p * PANEL, j->ldo,
					   j->xt + (size_t) n0 * C, panel, bias, C, R);
		}
	}
}

/*
 * inp (N, C) as row blocks of rows_each (the last may be shorter), each
 * transposed; NULL when out of memory.  The buffer is kept for the next
 * call: one thread at a time calls the products (kernels.h).
 */
static float *
transposed_blocks(const float *inp, int N, int C, int rows_each)
{
	static float *buffer;
	static size_t capacity;
	size_t		need = (size_t) N * C;

	if (need > capacity)
	{
		free(buffer);
		capacity = 0;
		if ((buffer = malloc(need * sizeof(float))) == NULL)
			return NULL;
		capacity = need;
	}
	for (int n0 = 0; n0 < N; n0 += rows_each)
	{
		int			R = N - n0 < rows_each ? N - n0 : rows_each;
		float	   *block = buffer + (size_t) n0 * C;

		/* k outer: each k's R values are written together, each input line read for 16 k */
		for (int k = 0; k < C; k++)
			for (int i = 0; i < R; i++)
				block[(size_t) k * R + i] = inp[(size_t) (n0 + i) * C + k];
	}
	return buffer;
}

bool
gemm_packed_available(void)
{
	return nn_cpu_avx512();
}

bool
gemm_packed_usable(int N, int C, int OC)
{
	return packing_on && nn_cpu_avx512() && N >= 3 && N <= GEMM_PACKED_MAX_N && C > 0 &&
		OC > 0 && OC % PANEL == 0;
}

bool
gemm_packed(float *out, int ldo, const float *inp, const PackedWeight *W, const float *bias,
			int N)
{
	int			blocks = (N + MAX_BLOCK_ROWS - 1) / MAX_BLOCK_ROWS,
				rows_each = (N + blocks - 1) / blocks,
				threads = (double) N * W->C * W->OC < 1048576.0 ? 1 : nn_parallel_threads();
	const float *xt = transposed_blocks(inp, N, W->C, rows_each);
	PackedJob	job = {out, ldo, xt, bias, W, N, rows_each};

	if (xt == NULL)
		return false;
	nn_parallel_for(panel_range, &job, W->OC / PANEL, threads);
	return true;
}

#else							/* no AVX-512 code on this compiler or CPU */

bool
gemm_packed_available(void)
{
	return false;
}

bool
gemm_packed_usable(int N, int C, int OC)
{
	return false;
}

bool
gemm_packed(float *out, int ldo, const float *inp, const PackedWeight *W, const float *bias,
			int N)
{
	return false;
}

#endif
