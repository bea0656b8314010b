/*
 * attention_head.c: one head of one short sequence of attention_forward in
 * AVX-512 registers (contract in kernels.h, attention_head_forward).
 *
 * Why: a head's two products are tiny (n x n x hs and n x hs x n; 20 x 20
 * x 32 for MiniLM on a sentence), below the size at which nn_sgemm calls
 * OpenBLAS, so they ran in nn_sgemm's plain scalar loops: 15% of
 * MiniLM's batch-32 forward of 20-token texts (perf).  Here
 * both are C (M x N) = alpha A (M x K) B (K x N), row-major, in tiles of up
 * to 4 rows by 64 columns (16 accumulators, the last columns masked),
 * every sum over k in order, one FMA a step from zero, alpha applied last:
 * the order of OpenBLAS's kernel when K fits one block, which gives the
 * same bits.  The scores take k^T, copied into scratch once per head, as B.
 */
#include "ops/kernels.h"

#include <stdbool.h>

#include "ops/blas.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TILE_ROWS 4
#define TILE_COLS 64

/* C[r][0..w) = alpha * sum_k A[r][k] B[k][0..w) for R rows, w <= 64 columns. */
__attribute__((target("avx512f"), always_inline))
static inline void
tile(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int K, int w,
	 float alpha, const int R)
{
	__m512		acc[TILE_ROWS][4];
	__mmask16	m[4];
	int			nv = (w + 15) / 16;

	for (int v = 0; v < 4; v++)
	{
		int			left = w - 16 * v;

		m[v] = left >= 16 ? (__mmask16) 0xFFFF : left > 0 ? (__mmask16) ((1u << left) - 1) : 0;
	}
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			acc[r][v] = _mm512_setzero_ps();
	for (int k = 0; k < K; k++)
	{
		const float *b = B + (size_t) k * ldb;
		__m512		bv[4];

#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			bv[v] = v < nv ? _mm512_maskz_loadu_ps(m[v], b + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 4
		for (int r = 0; r < R; r++)
		{
			__m512		a = _mm512_set1_ps(A[(size_t) r * lda + k]);

#pragma GCC unroll 4
			for (int v = 0; v < 4; v++)
				acc[r][v] = _mm512_fmadd_ps(a, bv[v], acc[r][v]);
		}
	}
#pragma GCC unroll 4
	for (int r = 0; r < R; r++)
#pragma GCC unroll 4
		for (int v = 0; v < 4; v++)
			if (v < nv)
				_mm512_mask_storeu_ps(C + (size_t) r * ldc + 16 * v, m[v],
									  _mm512_mul_ps(acc[r][v], _mm512_set1_ps(alpha)));
}

/* C (M x N) = alpha A (M x K) B (K x N), row-major, in tiles. */
__attribute__((target("avx512f")))
static void
small_gemm(float *C, int ldc, const float *A, int lda, const float *B, int ldb, int M, int N,
		   int K, float alpha)
{
	for (int j = 0; j < N; j += TILE_COLS)
	{
		int			w = N - j < TILE_COLS ? N - j : TILE_COLS;
		int			i = 0;

		for (; i + TILE_ROWS <= M; i += TILE_ROWS)
			tile(C + (size_t) i * ldc + j, ldc, A + (size_t) i * lda, lda, B + j, ldb, K, w,
				 alpha, 4);
		switch (M - i)
		{
			case 3:
				tile(C + (size_t) i * ldc + j, ldc, A + (size_t) i * lda, lda, B + j, ldb, K, w,
					 alpha, 3);
				break;
			case 2:
				tile(C + (size_t) i * ldc + j, ldc, A + (size_t) i * lda, lda, B + j, ldb, K, w,
					 alpha, 2);
				break;
			case 1:
				tile(C + (size_t) i * ldc + j, ldc, A + (size_t) i * lda, lda, B + j, ldb, K, w,
					 alpha, 1);
				break;
			default:
				break;
		}
	}
}

bool
attention_head_forward(float *out, int ldo, float *p, const float *q, const float *k,
					   const float *v, int ld, int n, int hs, float scale, float *kt)
{
	static int	usable = -1;

	if (usable < 0)
	{
		__builtin_cpu_init();
		usable = __builtin_cpu_supports("avx512f") && nn_cpu_avx512_allowed() ? 1 : 0;
	}
	if (!usable || n > ATTENTION_HEAD_MAX_N || hs > ATTENTION_HEAD_MAX_HS ||
		(double) n * n * hs > ATTENTION_HEAD_MAX_WORK)
		return false;
	for (int d = 0; d < hs; d++)
		for (int j = 0; j < n; j++)
			kt[(size_t) d * n + j] = k[(size_t) j * ld + d];
	small_gemm(p, n, q, ld, kt, n, n, n, hs, scale);
	softmax_rows(p, n, n);
	small_gemm(out, ldo, p, n, v, ld, n, hs, n, 1.0f);
	return true;
}

#else

bool
attention_head_forward(float *out, int ldo, float *p, const float *q, const float *k,
					   const float *v, int ld, int n, int hs, float scale, float *kt)
{
	return false;
}

#endif
