/*
 * packed_registry.h: a process's packed copies of frozen weights, looked up
 * by the float weight they were made from, and the shared files they can
 * come from instead (packed_file.h).  One registry per kind: the bfloat16
 * tiles of gemm_bf16.h and the float32 panels of gemm_packed.h.
 *
 * A lookup returns the copy made earlier, else one from a mapped file
 * whose weight region holds the weight, else packs one with the caller's
 * function.  Weights are frozen, so a copy never goes stale while its
 * source stays mapped; forget drops every copy and file before the
 * weights are unmapped.  One thread at a time uses a registry (kernels.h).
 */
#ifndef DEPT_NN_PACKED_REGISTRY_H
#define DEPT_NN_PACKED_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "ops/packed_file.h"

#define PACKED_MAX_FILES 8

/* One packed copy: the packed operand's shape, and its values in the registry's kind. */
typedef struct PackedCopy
{
	int			C,				/* the product's inner dimension */
				OC;				/* its columns */
	bool		transposed;		/* packed from W^T: the source is (OC, C) */
	bool		shared;			/* data lies in a mapped file (not ours to free) */
	void	   *data;			/* C x OC values, 64-aligned */
} PackedCopy;

/* Makes W's copy (data from aligned_alloc, shared false); NULL when out of memory. */
typedef PackedCopy *(*PackedPackFn) (const float *W, int C, int OC, bool transposed);

typedef struct PackedRegistry
{
	PackedKind	kind;
	const float **source;
	PackedCopy **copies;
	int			n,
				cap;
	size_t		private_bytes;	/* of the copies packed here */
	struct
	{
		const char *base;
		size_t		len;
		PackedFile	file;
	}			files[PACKED_MAX_FILES];
	int			n_files;
} PackedRegistry;

/* Methods */

/* W's copy: made before, from a mapped file, or packed now; NULL when out of memory. */
const PackedCopy *packed_registry_get(PackedRegistry *r, const float *W, int C, int OC,
									  bool transposed, PackedPackFn pack);

/* Map path's copies for the weight region [base, base + len); false when absent or not valid. */
bool		packed_registry_map(PackedRegistry *r, const char *path, const void *base, size_t len);

/* Copies of weights in the region that this process packed itself. */
int			packed_registry_private_count(const PackedRegistry *r, const void *base, size_t len);

/* Write the region's copies to path (packed_file_write); false when none or on failure. */
bool		packed_registry_write(const PackedRegistry *r, const char *path, const void *base,
								  size_t len);

/* Free every copy and unmap every file. */
void		packed_registry_forget(PackedRegistry *r);

/*
 * The same for one weight region only: its copies, and the files mapped
 * for it; other models' copies and files stay.
 */
void		packed_registry_forget_region(PackedRegistry *r, const void *base, size_t len);

#endif							/* DEPT_NN_PACKED_REGISTRY_H */
