/*
 * gemm_rows.c: the packing-free AVX-512 product for a few rows (design in
 * gemm_rows.h).  Compiled for every x86-64 machine: the AVX-512 code sits in
 * functions with a target attribute and runs only where the CPU has it.
 */
#include "ops/gemm_rows.h"

#include <stddef.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/parallel.h"
#include "ops/blas.h"

#define ROW_BLOCK 6
#define COL_BLOCK 64
#define GEMM_ROWS_PREFETCH 8
#define NT_ROWS 4				/* gemm_rows_nt's register block: 4 rows x 4 columns */
#define NT_COLS 4
#define NT_DOTS_MAX_N 2		/* above, the broadcast form (gemm_rows.h) */
#define BC_WEIGHT_ROWS 8		/* the broadcast form's block: 8 weight rows x 48 input rows */
#define BC_PANEL 48

/*
 * One block of R (<= 6) output rows by 64 columns.  always_inline with a
 * constant R lets the compiler keep every accumulator in a register.
 */
__attribute__((target("avx512f"), always_inline))
static inline void
block_6x64(float *out, const float *inp, const float *W, const float *bias, int C, int OC,
		   const int R)
{
	__m512		acc[ROW_BLOCK][4];

#pragma GCC unroll 6
	for (int r = 0; r < R; r++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			acc[r][v] = bias ? _mm512_loadu_ps(bias + 16 * v) : _mm512_setzero_ps();
	for (int k = 0; k < C; k++)
	{
		const float *w = W + (size_t) k * OC;

		/*
		 * W's rows are OC floats apart, a stride the hardware prefetcher
		 * does not follow across pages: fetch the slab's rows ahead.
		 */
		if (k + GEMM_ROWS_PREFETCH < C)
			for (int line = 0; line < 4; line++)
				_mm_prefetch((const char *) (w + (size_t) GEMM_ROWS_PREFETCH * OC + 16 * line),
							 _MM_HINT_T0);
		__m512		w0 = _mm512_loadu_ps(w),
					w1 = _mm512_loadu_ps(w + 16),
					w2 = _mm512_loadu_ps(w + 32),
					w3 = _mm512_loadu_ps(w + 48);

#pragma GCC unroll 6
		for (int r = 0; r < R; r++)
		{
			__m512		a = _mm512_set1_ps(inp[(size_t) r * C + k]);

			acc[r][0] = _mm512_fmadd_ps(a, w0, acc[r][0]);
			acc[r][1] = _mm512_fmadd_ps(a, w1, acc[r][1]);
			acc[r][2] = _mm512_fmadd_ps(a, w2, acc[r][2]);
			acc[r][3] = _mm512_fmadd_ps(a, w3, acc[r][3]);
		}
	}
#pragma GCC unroll 6
	for (int r = 0; r < R; r++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			_mm512_storeu_ps(out + (size_t) r * OC + 16 * v, acc[r][v]);
}

/* Columns [j_begin, j_end) of the product, every row. */
__attribute__((target("avx512f")))
static void
gemm_rows_avx512(float *out, const float *inp, const float *W, const float *bias,
				 int N, int C, int OC, int j_begin, int j_end)
{
	for (int j = j_begin; j < j_end; j += COL_BLOCK)
	{
		const float *b = bias ? bias + j : NULL;

		for (int n = 0; n < N; n += ROW_BLOCK)
		{
			float	   *o = out + (size_t) n * OC + j;
			const float *x = inp + (size_t) n * C;

			switch (N - n < ROW_BLOCK ? N - n : ROW_BLOCK)
			{
				case 6: block_6x64(o, x, W + j, b, C, OC, 6); break;
				case 5: block_6x64(o, x, W + j, b, C, OC, 5); break;
				case 4: block_6x64(o, x, W + j, b, C, OC, 4); break;
				case 3: block_6x64(o, x, W + j, b, C, OC, 3); break;
				case 2: block_6x64(o, x, W + j, b, C, OC, 2); break;
				default: block_6x64(o, x, W + j, b, C, OC, 1); break;
			}
		}
	}
}

/*
 * out[0..R) x [0..J) = inp (R rows, C) . W (J rows, C) + bias: the products
 * of the Hugging Face (out, in) layout, each a dot product over k in
 * vectors of 16, summed across lanes at the end.  R x J accumulators,
 * R + J loads per R x J multiply-adds.
 */
__attribute__((target("avx512f"), always_inline))
static inline void
block_dots(float *out, int ldo, const float *inp, const float *W, const float *bias, int C,
		   const int R, const int J)
{
	__m512		acc[NT_ROWS][NT_COLS];

	for (int r = 0; r < R; r++)
		for (int j = 0; j < J; j++)
			acc[r][j] = _mm512_setzero_ps();
	for (int k = 0; k < C; k += 16)
	{
		__m512		w[NT_COLS];

		for (int j = 0; j < J; j++)
			w[j] = _mm512_loadu_ps(W + (size_t) j * C + k);
		for (int r = 0; r < R; r++)
		{
			__m512		x = _mm512_loadu_ps(inp + (size_t) r * C + k);

			for (int j = 0; j < J; j++)
				acc[r][j] = _mm512_fmadd_ps(x, w[j], acc[r][j]);
		}
	}
	for (int r = 0; r < R; r++)
		for (int j = 0; j < J; j++)
			out[(size_t) r * ldo + j] = _mm512_reduce_add_ps(acc[r][j]) + (bias ? bias[j] : 0.0f);
}

/* block_dots for R (1..NT_ROWS) rows and NT_COLS columns, each made with constants. */
__attribute__((target("avx512f")))
static void
dots_rows(float *out, int ldo, const float *inp, const float *W, const float *bias, int C, int R)
{
	switch (R)
	{
		case 4: block_dots(out, ldo, inp, W, bias, C, 4, NT_COLS); break;
		case 3: block_dots(out, ldo, inp, W, bias, C, 3, NT_COLS); break;
		case 2: block_dots(out, ldo, inp, W, bias, C, 2, NT_COLS); break;
		default: block_dots(out, ldo, inp, W, bias, C, 1, NT_COLS); break;
	}
}

/* One call of gemm_rows_nt, shared by its parts. */
typedef struct NtJob
{
	float	   *out;
	int			ldo;
	const float *inp,
			   *W,
			   *bias;
	int			N,
				C;
} NtJob;

/* Column blocks [begin, end) of NT_COLS columns, every block of rows of each. */
static void
nt_column_blocks(void *ctx, int begin, int end)
{
	const NtJob *j = ctx;

	for (int jb = begin; jb < end; jb++)
	{
		const int	col = jb * NT_COLS;

		for (int n = 0; n < j->N; n += NT_ROWS)
			dots_rows(j->out + (size_t) n * j->ldo + col, j->ldo, j->inp + (size_t) n * j->C,
					  j->W + (size_t) col * j->C, j->bias ? j->bias + col : NULL, j->C,
					  j->N - n < NT_ROWS ? j->N - n : NT_ROWS);
	}
}

/*
 * The broadcast form of out = inp @ W^T for 3..96 rows (gemm_rows.h):
 * W's rows are read where they lie, one value of each of 8 rows broadcast
 * per k, against the input, transposed once per call into panels of up to
 * 48 rows (xt[k * width + i] = inp[n0 + i][k]).  A panel is V vectors of 16
 * rows and, when H, one of 8 (a 256-bit half: on CPUs that split 512-bit
 * operations in two, such as AMD's Zen 4, a half costs half a full
 * multiply-add, so 20 rows cost 24 lanes, not 32).  8 x (V + H)
 * accumulators hold out^T for 8 columns; they are written back through a
 * small tile.  Each output is one sum over k in order.
 */
__attribute__((target("avx512f,fma"), always_inline))
static inline void
block_broadcast(float *out, int ldo, const float *xt, const float *W, const float *bias, int C,
				int rows, const int V, const int H)
{
	const int	width = 16 * V + 8 * H;
	__m512		acc[BC_WEIGHT_ROWS][BC_PANEL / 16];
	__m256		half[BC_WEIGHT_ROWS];
	float		tile[BC_WEIGHT_ROWS][BC_PANEL] __attribute__((aligned(64)));

	for (int r = 0; r < BC_WEIGHT_ROWS; r++)
	{
		for (int v = 0; v < V; v++)
			acc[r][v] = _mm512_setzero_ps();
		half[r] = _mm256_setzero_ps();
	}
	for (int k = 0; k < C; k++)
	{
		const float *x = xt + (size_t) k * width;
		__m512		x0 = V > 0 ? _mm512_loadu_ps(x) : _mm512_setzero_ps(),
					x1 = V > 1 ? _mm512_loadu_ps(x + 16) : x0,
					x2 = V > 2 ? _mm512_loadu_ps(x + 32) : x0;
		__m256		xh = H ? _mm256_loadu_ps(x + 16 * V) : _mm256_setzero_ps();

#pragma GCC unroll 8
		for (int r = 0; r < BC_WEIGHT_ROWS; r++)
		{
			__m512		w = _mm512_set1_ps(W[(size_t) r * C + k]);

			if (V > 0)
				acc[r][0] = _mm512_fmadd_ps(w, x0, acc[r][0]);
			if (V > 1)
				acc[r][1] = _mm512_fmadd_ps(w, x1, acc[r][1]);
			if (V > 2)
				acc[r][2] = _mm512_fmadd_ps(w, x2, acc[r][2]);
			if (H)
				half[r] = _mm256_fmadd_ps(_mm512_castps512_ps256(w), xh, half[r]);
		}
	}
	for (int r = 0; r < BC_WEIGHT_ROWS; r++)
	{
		for (int v = 0; v < V; v++)
			_mm512_store_ps(&tile[r][16 * v], acc[r][v]);
		if (H)
			_mm256_store_ps(&tile[r][16 * V], half[r]);
	}
	for (int i = 0; i < rows; i++)
		for (int r = 0; r < BC_WEIGHT_ROWS; r++)
			out[(size_t) i * ldo + r] = tile[r][i] + (bias ? bias[r] : 0.0f);
}

/*
 * Rows of the panel starting at row n0 of N, and its width: a multiple of
 * 8, at least 16 (bench/products.sh: at 4 and 8 rows one 16-row vector ran
 * 1.05-1.2x a half alone).
 */
static int
panel_rows(int N, int n0, int *width)
{
	int			rows = N - n0 < BC_PANEL ? N - n0 : BC_PANEL;

	*width = rows <= 16 ? 16 : (rows + 7) / 8 * 8;
	return rows;
}

/* One call of the broadcast form, shared by its parts. */
typedef struct BcJob
{
	float	   *out;
	int			ldo;
	const float *xt,
			   *W,
			   *bias;
	int			N,
				C;
} BcJob;

/* Weight row blocks [begin, end) of BC_WEIGHT_ROWS, against every panel. */
__attribute__((target("avx512f,fma")))
static void
broadcast_blocks(void *ctx, int begin, int end)
{
	const BcJob *j = ctx;

	for (int b = begin; b < end; b++)
	{
		const int	col = b * BC_WEIGHT_ROWS;
		const float *w = j->W + (size_t) col * j->C;
		const float *bias = j->bias ? j->bias + col : NULL;

		for (int n0 = 0; n0 < j->N; n0 += BC_PANEL)
		{
			int			width,
						rows = panel_rows(j->N, n0, &width);
			float	   *o = j->out + (size_t) n0 * j->ldo + col;
			const float *xt = j->xt + (size_t) n0 * j->C;

			switch (width / 8)
			{
				case 6: block_broadcast(o, j->ldo, xt, w, bias, j->C, rows, 3, 0); break;
				case 5: block_broadcast(o, j->ldo, xt, w, bias, j->C, rows, 2, 1); break;
				case 4: block_broadcast(o, j->ldo, xt, w, bias, j->C, rows, 2, 0); break;
				case 3: block_broadcast(o, j->ldo, xt, w, bias, j->C, rows, 1, 1); break;
				default: block_broadcast(o, j->ldo, xt, w, bias, j->C, rows, 1, 0); break;
			}
		}
	}
}

/*
 * inp (N, C) transposed into panels, zero rows padding the last; NULL when
 * out of memory.  The buffer is kept for the next call: one thread at a
 * time calls the products (kernels.h), as gemm_bf16's input copy.
 */
static float *
transposed_panels(const float *inp, int N, int C)
{
	static float *buffer;
	static size_t capacity;
	size_t		need = (size_t) (N + BC_PANEL) * C;

	if (need > capacity)
	{
		free(buffer);
		capacity = 0;
		if ((buffer = aligned_alloc(64, need * sizeof(float))) == NULL)
			return NULL;
		capacity = need;
	}
	for (int n0 = 0; n0 < N; n0 += BC_PANEL)
	{
		int			width,
					rows = panel_rows(N, n0, &width);
		float	   *p = buffer + (size_t) n0 * C;

		/* k outer: each k's values are written together, each input line read for 16 k */
		for (int k = 0; k < C; k++)
		{
			for (int i = 0; i < rows; i++)
				p[(size_t) k * width + i] = inp[(size_t) (n0 + i) * C + k];
			for (int i = rows; i < width; i++)
				p[(size_t) k * width + i] = 0.0f;
		}
	}
	return buffer;
}

bool
gemm_rows_nt_usable(int N, int C, int OC)
{
	return nn_cpu_avx512() && N > 0 && N <= GEMM_ROWS_NT_MAX_N && C > 0 && C % 16 == 0 &&
		OC % NT_COLS == 0;
}

void
gemm_rows_nt(float *out, int ldo, const float *inp, const float *W, const float *bias, int N,
			 int C, int OC)
{
	NtJob		job = {out, ldo, inp, W, bias, N, C};
	int			threads = (double) N * C * OC < 1048576.0 ? 1 : nn_parallel_threads();
	const float *xt;

	if (N > NT_DOTS_MAX_N && OC % BC_WEIGHT_ROWS == 0 &&
		(xt = transposed_panels(inp, N, C)) != NULL)
	{
		BcJob		bc = {out, ldo, xt, W, bias, N, C};

		nn_parallel_for(broadcast_blocks, &bc, OC / BC_WEIGHT_ROWS, threads);
		return;
	}
	nn_parallel_for(nt_column_blocks, &job, OC / NT_COLS, threads);
}

bool
gemm_rows_usable(int N, int C, int OC)
{
	return nn_cpu_avx512() && N > 0 && N <= GEMM_ROWS_MAX_N && C > 0 && OC % COL_BLOCK == 0;
}

/* One call's operands, shared by the parts of a split product (parallel.h). */
typedef struct GemmJob
{
	float	   *out;
	const float *inp,
			   *W,
			   *bias;
	int			N,
				C,
				OC;
} GemmJob;

/* The column blocks [begin, end) of a product. */
static void
column_blocks(void *ctx, int begin, int end)
{
	const GemmJob *j = ctx;

	gemm_rows_avx512(j->out, j->inp, j->W, j->bias, j->N, j->C, j->OC, begin * COL_BLOCK,
					 end * COL_BLOCK);
}

void
gemm_rows(float *out, const float *inp, const float *W, const float *bias, int N, int C, int OC)
{
	GemmJob		job = {out, inp, W, bias, N, C, OC};

	/* below a million multiply-adds a hand-off costs more than it saves */
	nn_parallel_for(column_blocks, &job, OC / COL_BLOCK,
					(double) N * C * OC < 1048576.0 ? 1 : nn_parallel_threads());
}

#else

bool
gemm_rows_usable(int N, int C, int OC)
{
	return false;
}

bool
gemm_rows_nt_usable(int N, int C, int OC)
{
	return false;
}

void
gemm_rows_nt(float *out, int ldo, const float *inp, const float *W, const float *bias, int N,
			 int C, int OC)
{
}

void
gemm_rows(float *out, const float *inp, const float *W, const float *bias, int N, int C, int OC)
{
}

#endif
