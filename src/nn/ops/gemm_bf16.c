/*
 * gemm_bf16.c: the bfloat16 product on AMX or AVX512-BF16, and its packed
 * weights (design in gemm_bf16.h).
 */
#include "ops/gemm_bf16.h"
#include "ops/blas.h"
#include "ops/packed_registry.h"
#include "base/parallel.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

#define TILE_ROWS 16			/* rows of a C or A tile */
#define TILE_K 32				/* bfloat16 values of k per A row (64 bytes) */
#define TILE_COLS 16			/* float32 columns of a C tile */

/* The packed weights of this process, looked up by the float weight they were made from. */
static PackedRegistry registry = {.kind = PACKED_BF16};

/* The input rows in bfloat16, kept between calls (one thread calls, see gemm_bf16.h). */
static struct
{
	uint16_t   *rows;
	size_t		cap;			/* bfloat16 values */
}			scratch;

typedef enum Bf16Engine
{
	ENGINE_NONE,
	ENGINE_AMX,
	ENGINE_AVX512_BF16
} Bf16Engine;

static Bf16Engine engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static bool
env_set(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

static void
check_engine(void)
{
	__builtin_cpu_init();
	if (!nn_cpu_avx512_allowed() ||
		!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bf16"))
		return;
	engine = ENGINE_AVX512_BF16;
	if (env_set("DEPT_NO_AMX"))
		return;
	/* AMX has no __builtin_cpu_supports name in GCC 12: CPUID leaf 7 EDX bits 22, 24 */
	{
		unsigned int a,
					b,
					c,
					d;

		__asm__ volatile ("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
		if (!(d & (1u << 22)) || !(d & (1u << 24)))
			return;
	}
	/* the kernel hands out the 8 KB tile state only to processes that ask */
	if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0)
		engine = ENGINE_AMX;
}

bool
gemm_bf16_usable(int C, int OC)
{
	pthread_once(&engine_once, check_engine);
	return engine != ENGINE_NONE && C > 0 && OC > 0 && C % TILE_K == 0 &&
		OC % (2 * TILE_COLS) == 0;
}

const char *
gemm_bf16_engine(void)
{
	pthread_once(&engine_once, check_engine);
	return engine == ENGINE_AMX ? "amx" : engine == ENGINE_AVX512_BF16 ? "avx512-bf16" : "none";
}

/*
 * One row of tile B: columns c..c+16 of rows k and k+1 as 16 (W[k][c],
 * W[k+1][c]) pairs, rounded to nearest even by the conversion instruction;
 * row k's value is the low half of each 32-bit pair.
 */
__attribute__((target("avx512f,avx512bf16")))
static void
pack_pair_row(uint16_t *dst, const float *row_k, const float *row_k1)
{
	__m512i		lo = _mm512_cvtepu16_epi32((__m256i) _mm512_cvtneps_pbh(_mm512_loadu_ps(row_k))),
				hi = _mm512_cvtepu16_epi32((__m256i) _mm512_cvtneps_pbh(_mm512_loadu_ps(row_k1)));

	_mm512_storeu_si512((void *) dst, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
}

/*
 * Column j of the packed operand from row j (C floats) of a transposed
 * source: its k pairs (row[2kp], row[2kp+1]), rounded by the conversion
 * instruction, are 32-bit values that land 16 apart in their column block
 * (C % 32 == 0).
 */
__attribute__((target("avx512f,avx512bf16")))
static void
pack_source_row(uint16_t *data, const float *row, int j, int C)
{
	uint32_t   *col = (uint32_t *) (data + (size_t) (j / TILE_COLS) * C * TILE_COLS) + j % TILE_COLS;
	const __m512i stride = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8,
															   7, 6, 5, 4, 3, 2, 1, 0),
											  _mm512_set1_epi32(TILE_COLS));

	for (int k = 0; k < C; k += 32, col += TILE_COLS * TILE_COLS)
	{
		__m512i		pairs = (__m512i) _mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + k + 16),
														  _mm512_loadu_ps(row + k));

		_mm512_i32scatter_epi32((void *) col, stride, pairs, 4);
	}
}

/*
 * The packed (C, OC) operand: W itself, or, transposed, the W^T of a
 * source W (OC, C) -- what the input-backward dinp = dout W^T multiplies by.
 */
static PackedCopy *
pack_weight(const float *W, int C, int OC, bool transposed)
{
	PackedCopy *p = malloc(sizeof(PackedCopy));
	uint16_t   *data,
			   *dst;

	if (p == NULL)
		return NULL;
	if ((data = aligned_alloc(64, (size_t) C * OC * sizeof(uint16_t))) == NULL)
	{
		free(p);
		return NULL;
	}
	*p = (PackedCopy) {C, OC, transposed, false, data};
	/* [OC/16][C/32][16 k pairs][16 columns][2]: per column block, k pairs in order */
	dst = data;
	if (transposed)
		for (int j = 0; j < OC; j++)
			pack_source_row(data, W + (size_t) j * C, j, C);
	else
		for (int jb = 0; jb < OC / TILE_COLS; jb++)
			for (int k = 0; k < C; k += 2, dst += 2 * TILE_COLS)
				pack_pair_row(dst, W + (size_t) k * OC + jb * TILE_COLS,
							  W + (size_t) (k + 1) * OC + jb * TILE_COLS);
	return p;
}

const Bf16Weight *
gemm_bf16_weight(const float *W, int C, int OC)
{
	return packed_registry_get(&registry, W, C, OC, false, pack_weight);
}

const Bf16Weight *
gemm_bf16_weight_transposed(const float *W, int C, int OC)
{
	return packed_registry_get(&registry, W, OC, C, true, pack_weight);
}

bool
gemm_bf16_map_shared(const char *path, const void *base, size_t len)
{
	return packed_registry_map(&registry, path, base, len);
}

void
gemm_bf16_forget_region(const void *base, size_t len)
{
	packed_registry_forget_region(&registry, base, len);
}

int
gemm_bf16_private_count(const void *base, size_t len)
{
	return packed_registry_private_count(&registry, base, len);
}

bool
gemm_bf16_write_shared(const char *path, const void *base, size_t len)
{
	return packed_registry_write(&registry, path, base, len);
}

void
gemm_bf16_forget_weights(void)
{
	packed_registry_forget(&registry);
	free(scratch.rows);
	scratch.rows = NULL;
	scratch.cap = 0;
}

typedef struct TileConfig
{
	uint8_t		palette;
	uint8_t		start_row;
	uint8_t		reserved[14];
	uint16_t	bytes_per_row[16];
	uint8_t		rows[16];
} TileConfig;

/*
 * Tiles for blocks of 32 rows: C00 C01 (rows 0-15, two 16-column halves) in
 * tmm0-1, C10 C11 (rows 16-31) in tmm2-3, their A rows in tmm4-5, the two B
 * column halves in tmm6-7.  Every tile is 16 rows of 64 bytes.
 */
__attribute__((target("amx-tile")))
static void
configure_tiles(void)
{
	TileConfig	cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.palette = 1;
	for (int t = 0; t < 8; t++)
	{
		cfg.rows[t] = TILE_ROWS;
		cfg.bytes_per_row[t] = 64;
	}
	/* GCC 12 does not see that ldtilecfg reads all 64 bytes and drops the stores */
	__asm__ volatile ("" : : "m"(cfg) : "memory");
	_tile_loadconfig(&cfg);
}

/*
 * Row-major bfloat16 copy (rows of C, C % 32 == 0) of N rows of src lying
 * lds floats apart, round to nearest even.
 */
__attribute__((target("avx512f,avx512bf16")))
static void
rows_to_bf16(uint16_t *dst, const float *src, int N, int C, int lds)
{
	for (int r = 0; r < N; r++)
	{
		const float *s = src + (size_t) r * lds;
		uint16_t   *d = dst + (size_t) r * C;

		for (int i = 0; i < C; i += 32)
		{
			__m512bh	pair = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + i + 16),
												   _mm512_loadu_ps(s + i));

			_mm512_storeu_si512((void *) (d + i), (__m512i) pair);
		}
	}
}

/*
 * out[0..32) x [0..32) = a (32 rows, padded) @ the 32 packed columns at b0,
 * written to out with row stride ld.  The B column pair is reused by every
 * row block (the caller loops columns outside rows), so each weight comes
 * from memory once per product.
 */
__attribute__((target("amx-tile,amx-bf16")))
static void
block_32x32(float *out, int ld, const uint16_t *a, const uint16_t *b0, int C, bool accumulate)
{
	const uint16_t *a1 = a + (size_t) TILE_ROWS * C,
			   *b1 = b0 + (size_t) C * TILE_COLS;

	if (accumulate)
	{
		_tile_loadd(0, out, ld * 4);
		_tile_loadd(1, out + TILE_COLS, ld * 4);
		_tile_loadd(2, out + (size_t) TILE_ROWS * ld, ld * 4);
		_tile_loadd(3, out + (size_t) TILE_ROWS * ld + TILE_COLS, ld * 4);
	}
	else
	{
		_tile_zero(0);
		_tile_zero(1);
		_tile_zero(2);
		_tile_zero(3);
	}
	for (int kb = 0; kb < C / TILE_K; kb++)
	{
		/* a B tile is 16 k pairs x 16 columns = 512 bfloat16, 64 bytes a row */
		_tile_loadd(4, a + kb * TILE_K, C * 2);
		_tile_loadd(5, a1 + kb * TILE_K, C * 2);
		_tile_loadd(6, b0 + (size_t) kb * 512, 64);
		_tile_loadd(7, b1 + (size_t) kb * 512, 64);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
		_tile_dpbf16ps(2, 5, 6);
		_tile_dpbf16ps(3, 5, 7);
	}
	_tile_stored(0, out, ld * 4);
	_tile_stored(1, out + TILE_COLS, ld * 4);
	_tile_stored(2, out + (size_t) TILE_ROWS * ld, ld * 4);
	_tile_stored(3, out + (size_t) TILE_ROWS * ld + TILE_COLS, ld * 4);
}

/* The same for a block of at most 16 rows: the upper tiles only. */
__attribute__((target("amx-tile,amx-bf16")))
static void
block_16x32(float *out, int ld, const uint16_t *a, const uint16_t *b0, int C, bool accumulate)
{
	const uint16_t *b1 = b0 + (size_t) C * TILE_COLS;

	if (accumulate)
	{
		_tile_loadd(0, out, ld * 4);
		_tile_loadd(1, out + TILE_COLS, ld * 4);
	}
	else
	{
		_tile_zero(0);
		_tile_zero(1);
	}
	for (int kb = 0; kb < C / TILE_K; kb++)
	{
		_tile_loadd(4, a + kb * TILE_K, C * 2);
		_tile_loadd(6, b0 + (size_t) kb * 512, 64);
		_tile_loadd(7, b1 + (size_t) kb * 512, 64);
		_tile_dpbf16ps(0, 4, 6);
		_tile_dpbf16ps(1, 4, 7);
	}
	_tile_stored(0, out, ld * 4);
	_tile_stored(1, out + TILE_COLS, ld * 4);
}

__attribute__((target("amx-tile")))
static void
release_tiles(void)
{
	_tile_release();
}

/* One call's operands. */
typedef struct Bf16Job
{
	float	   *out;
	int			ldo;			/* floats between rows of out */
	const uint16_t *a;			/* the input rows in bfloat16 (padded to 32-row blocks for AMX) */
	const Bf16Weight *W;
	int			N,
				padded;
	bool		accumulate;
} Bf16Job;

/* The 32-column blocks [begin, end) of the product on AMX, every row block of each. */
static void
column_pairs(void *ctx, int begin, int end)
{
	const Bf16Job *j = ctx;
	const int	C = j->W->C;
	float		tail[2 * TILE_ROWS * 2 * TILE_COLS];

	configure_tiles();
	for (int jb = 2 * begin; jb < 2 * end; jb += 2)
	{
		const uint16_t *b0 = (const uint16_t *) j->W->data + (size_t) jb * C * TILE_COLS;

		for (int n0 = 0; n0 < j->padded; n0 += 2 * TILE_ROWS)
		{
			float	   *o = j->out + (size_t) n0 * j->ldo + jb * TILE_COLS;
			const uint16_t *a = j->a + (size_t) n0 * C;
			int			rows = j->N - n0;

			if (rows >= 2 * TILE_ROWS)
			{
				block_32x32(o, j->ldo, a, b0, C, j->accumulate);
				continue;
			}
			/* the last, partial block goes through a scratch block */
			if (j->accumulate)
				for (int r = 0; r < rows; r++)
					memcpy(tail + r * 2 * TILE_COLS, o + (size_t) r * j->ldo,
						   sizeof(float) * 2 * TILE_COLS);
			if (rows <= TILE_ROWS)
				block_16x32(tail, 2 * TILE_COLS, a, b0, C, j->accumulate);
			else
				block_32x32(tail, 2 * TILE_COLS, a, b0, C, j->accumulate);
			for (int r = 0; r < rows; r++)
				memcpy(o + (size_t) r * j->ldo, tail + r * 2 * TILE_COLS,
					   sizeof(float) * 2 * TILE_COLS);
		}
	}
	release_tiles();
}

/* Rows and 16-column blocks of one AVX512-BF16 register block: 6 x 4 sums + 4 weights + 1 input. */
#define DOT_ROWS 6
#define DOT_BLOCKS 4

/*
 * out[0..R) x [0..16 J) (+)= a (R rows, C bfloat16 each) @ the J packed
 * 16-column blocks at b: per k pair, J weight vectors are loaded once and
 * each row's pair (a[r][2kp], a[r][2kp+1]) is broadcast against them.
 * Inlined with constant R and J, the sums stay in registers.
 */
__attribute__((target("avx512f,avx512bf16"), always_inline))
static inline void
dot_block(float *out, int ldo, const uint16_t *a, const uint16_t *b, int C, bool accumulate,
		  const int R, const int J)
{
	__m512		acc[DOT_ROWS][DOT_BLOCKS];
	const size_t block = (size_t) C * TILE_COLS;	/* bfloat16 values per packed block */

	for (int r = 0; r < R; r++)
		for (int jb = 0; jb < J; jb++)
			acc[r][jb] = accumulate ? _mm512_loadu_ps(out + (size_t) r * ldo + jb * TILE_COLS)
				: _mm512_setzero_ps();
	for (int kp = 0; kp < C / 2; kp++)
	{
		__m512bh	w[DOT_BLOCKS];

		for (int jb = 0; jb < J; jb++)
			w[jb] = (__m512bh) _mm512_loadu_si512((const void *) (b + jb * block + kp * 32));
		for (int r = 0; r < R; r++)
		{
			int32_t		pair;
			__m512bh	x;

			memcpy(&pair, a + (size_t) r * C + 2 * kp, sizeof(pair));
			x = (__m512bh) _mm512_set1_epi32(pair);
			for (int jb = 0; jb < J; jb++)
				acc[r][jb] = _mm512_dpbf16_ps(acc[r][jb], x, w[jb]);
		}
	}
	for (int r = 0; r < R; r++)
		for (int jb = 0; jb < J; jb++)
			_mm512_storeu_ps(out + (size_t) r * ldo + jb * TILE_COLS, acc[r][jb]);
}

/* dot_block for R rows (1..DOT_ROWS) and J blocks (2 or 4), each made with constants. */
__attribute__((target("avx512f,avx512bf16")))
static void
dot_rows(float *out, int ldo, const uint16_t *a, const uint16_t *b, int C, bool accumulate,
		 int R, int J)
{
#define DOT_CASE(r) \
	case r: \
		if (J == DOT_BLOCKS) \
			dot_block(out, ldo, a, b, C, accumulate, r, DOT_BLOCKS); \
		else \
			dot_block(out, ldo, a, b, C, accumulate, r, 2); \
		break
	switch (R)
	{
			DOT_CASE(1);
			DOT_CASE(2);
			DOT_CASE(3);
			DOT_CASE(4);
			DOT_CASE(5);
			DOT_CASE(6);
	}
#undef DOT_CASE
}

/*
 * The 64-column groups [begin, end) on AVX512-BF16 (the last may have 32
 * columns), every block of up to 6 rows of each: a group's packed weight (C x 64
 * bfloat16, 96 kB at C = 768) stays in L2 while the rows pass.
 */
static void
column_groups(void *ctx, int begin, int end)
{
	const Bf16Job *j = ctx;
	const int	C = j->W->C,
				OC = j->W->OC;

	for (int g = begin; g < end; g++)
	{
		const int	col = g * DOT_BLOCKS * TILE_COLS,
					blocks = OC - col >= DOT_BLOCKS * TILE_COLS ? DOT_BLOCKS : 2;
		const uint16_t *b = (const uint16_t *) j->W->data + (size_t) col * C;

		/* rows in blocks of equal height (20 rows: 5 5 5 5, not 6 6 6 2) */
		const int	row_blocks = (j->N + DOT_ROWS - 1) / DOT_ROWS;

		for (int rb = 0, n0 = 0; rb < row_blocks; rb++)
		{
			int			rows = (j->N - n0 + (row_blocks - rb) - 1) / (row_blocks - rb);

			dot_rows(j->out + (size_t) n0 * j->ldo + col, j->ldo, j->a + (size_t) n0 * C, b, C,
					 j->accumulate, rows, blocks);
			n0 += rows;
		}
	}
}

/* The input rows in bfloat16 in the process-wide scratch (padded with zero rows); NULL when out of memory. */
static uint16_t *
input_rows_bf16(const float *inp, int ldi, int N, int padded, int C)
{
	size_t		need = (size_t) padded * C;

	if (need > scratch.cap)
	{
		free(scratch.rows);
		scratch.cap = 0;
		if ((scratch.rows = aligned_alloc(64, need * sizeof(uint16_t))) == NULL)
			return NULL;
		scratch.cap = need;
	}
	rows_to_bf16(scratch.rows, inp, N, C, ldi);
	memset(scratch.rows + (size_t) N * C, 0, (size_t) (padded - N) * C * sizeof(uint16_t));
	return scratch.rows;
}

bool
gemm_bf16_strided(float *out, int ldo, const float *inp, int ldi, const Bf16Weight *W,
				  const float *bias, int N, bool accumulate)
{
	const int	C = W->C,
				OC = W->OC,
				padded = engine == ENGINE_AMX ?
		(N + 2 * TILE_ROWS - 1) / (2 * TILE_ROWS) * (2 * TILE_ROWS) : N;
	const uint16_t *a;
	Bf16Job		job;

	if (N <= 0)
		return true;
	if ((a = input_rows_bf16(inp, ldi, N, padded, C)) == NULL)
		return false;
	job = (Bf16Job) {out, ldo, a, W, N, padded, accumulate};
	if (engine == ENGINE_AMX)
	{
		/*
		 * One thread: splitting the column blocks over dept.threads = 2
		 * (parallel.h) gave no gain on a 2-vCPU Emerald Rapids (DePT batch
		 * 1: 440/361/409 texts/s on 1 thread, 441/364/387 on 2).
		 */
		column_pairs(&job, 0, OC / (2 * TILE_COLS));
	}
	else
	{
		int			groups = (OC + DOT_BLOCKS * TILE_COLS - 1) / (DOT_BLOCKS * TILE_COLS);

		nn_parallel_for(column_groups, &job, groups, nn_parallel_threads());
	}
	if (bias != NULL)
		for (int i = 0; i < N; i++)
			for (int j = 0; j < OC; j++)
				out[(size_t) i * ldo + j] += bias[j];
	return true;
}

bool
gemm_bf16(float *out, const float *inp, const Bf16Weight *W, const float *bias, int N,
		  bool accumulate)
{
	return gemm_bf16_strided(out, W->OC, inp, W->C, W, bias, N, accumulate);
}

#else							/* no bfloat16 engine outside x86-64 */

bool
gemm_bf16_usable(int C, int OC)
{
	return false;
}

const Bf16Weight *
gemm_bf16_weight(const float *W, int C, int OC)
{
	return NULL;
}

const Bf16Weight *
gemm_bf16_weight_transposed(const float *W, int C, int OC)
{
	return NULL;
}

bool
gemm_bf16(float *out, const float *inp, const Bf16Weight *W, const float *bias, int N,
		  bool accumulate)
{
	return false;
}

bool
gemm_bf16_strided(float *out, int ldo, const float *inp, int ldi, const Bf16Weight *W,
				  const float *bias, int N, bool accumulate)
{
	return false;
}

const char *
gemm_bf16_engine(void)
{
	return "none";
}

bool
gemm_bf16_map_shared(const char *path, const void *base, size_t len)
{
	return false;
}

int
gemm_bf16_private_count(const void *base, size_t len)
{
	return 0;
}

bool
gemm_bf16_write_shared(const char *path, const void *base, size_t len)
{
	return false;
}

void
gemm_bf16_forget_weights(void)
{
}

void
gemm_bf16_forget_region(const void *base, size_t len)
{
}

#endif
