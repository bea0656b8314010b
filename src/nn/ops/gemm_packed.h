/*
 * gemm_packed.h: float32 products of a few rows against a frozen weight
 * packed once per process into column panels (docs/design.md 6, "float32
 * products of a few rows").
 *
 * Why: the broadcast form of gemm_rows_nt reads 8 rows of the (out, in)
 * weight at once, 8 streams from memory, and pads its rows to vectors; at
 * a sentence's 20 rows it ran 54-76 GFLOP/s with the weight read from
 * memory against 78-83 from the cache (bench/products.sh, 58df8d7).  Packed, each
 * 16 output columns lie together for every k (panel[k][0..16) =
 * W[o0..o0+16)[k]), so the product reads one sequential stream, fetched
 * ahead in software, and the rows ride on the broadcast side:
 *
 *   for each panel of 16 columns, for each block of R <= 24 rows (blocks
 *   of equal size):  acc[i] = 0 (i < R);
 *     for k < C: w = panel[k]; acc[i] += x[i][k] * w   (R accumulators)
 *
 * R multiply-adds per 1 + R loads, no lane wasted on padding rows, each
 * output one sum over k in order.  bench/products.sh measures it beside
 * the broadcast form and OpenBLAS.  The packed copy costs the weight's
 * size again (4 bytes a weight), so packing is off until a caller turns it
 * on (gemm_packed_enable) for inference.
 */
#ifndef DEPT_NN_GEMM_PACKED_H
#define DEPT_NN_GEMM_PACKED_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Rows up to which linear_product takes the packed product.  Measured by
 * bench/products.sh (Zen 4, the nine BERT/T5 shapes, weights read from
 * memory), packed / the better of the broadcast form and OpenBLAS, 1
 * thread: 4 rows 1.76-4.06x, 8 rows 1.44-2.47x, 20 rows 1.35-1.95x
 * (100-109 GFLOP/s; the core's multiply-add peak is 117), 32 to 128 rows
 * 1.05-1.29x, 640 rows 0.99-1.11x.  2 threads alike up to 128 rows, but at
 * 640 rows 0.85-0.97x on the tall shapes (C 1536-3072 into 384-768: every
 * panel reads all 640 input rows again).  Handing those to OpenBLAS did not
 * change MiniLM-L6's embedding at batch 32 (640 rows) on 1 or 2 threads
 * beyond noise, so one limit holds for every shape.  1 and 2 rows keep
 * gemm_rows_nt's dot products.
 */
#define GEMM_PACKED_MAX_N 640

typedef struct PackedCopy PackedWeight;	/* ops/packed_registry.h */

/* Methods */

/*
 * Turn packing on or off for this process (off at start; off forgets
 * nothing).  With a region, only weights inside [region, region + len)
 * are packed (those a shared file can hold); NULL packs any.
 */
void		gemm_packed_enable(bool on, const void *region, size_t len);

/* The product runs here: AVX-512, and the setting allows it (ops/blas.h). */
bool		gemm_packed_available(void);

/* On, AVX-512 allowed here, and the shape suits (N in 3..GEMM_PACKED_MAX_N, OC % 16 == 0). */
bool		gemm_packed_usable(int N, int C, int OC);

/* W (OC, C) in the Hugging Face layout, packed on first use; NULL when out of memory. */
const PackedWeight *gemm_packed_weight(const float *W, int OC, int C);

/*
 * out (N, OC; rows ldo apart) = inp (N, C) @ W^T + bias (OC, or NULL);
 * split over nn_parallel_threads() by panels, results independent of the
 * split.  False (out untouched) when out of memory.
 */
bool		gemm_packed(float *out, int ldo, const float *inp, const PackedWeight *W,
						const float *bias, int N);

/* Bytes of packed copies this process made itself (not those mapped from a file). */
size_t		gemm_packed_bytes(void);

/*
 * Packed weights shared between processes, as gemm_bf16's (gemm_bf16.h,
 * packed_file.h): a file written for a model's weight region [base, base +
 * len) by one process is mapped by the next, whose lookups of weights in
 * the region then take the panels from the file.  map: false when the
 * file is absent or not valid for the region.  private_count: weights of
 * the region this process packed itself.  write: those into path.
 */
bool		gemm_packed_map_shared(const char *path, const void *base, size_t len);
int			gemm_packed_private_count(const void *base, size_t len);
bool		gemm_packed_write_shared(const char *path, const void *base, size_t len);

/* Free every packed copy (before the weights they came from are unmapped). */
void		gemm_packed_forget_weights(void);

/* Free the copies of one weight region and unmap its files; other regions' stay. */
void		gemm_packed_forget_region(const void *base, size_t len);

#endif							/* DEPT_NN_GEMM_PACKED_H */
