/*
 * packed_registry.c: packed copies looked up by their source weight
 * (design in packed_registry.h).
 */
#include "ops/packed_registry.h"

#include <stdint.h>
#include <stdlib.h>

/* W's copy from a mapped file whose region holds W, or NULL. */
static PackedCopy *
from_file(const PackedRegistry *r, const float *W, int C, int OC, bool transposed)
{
	const char *w = (const char *) W;

	for (int f = 0; f < r->n_files; f++)
	{
		const PackedFile *pf = &r->files[f].file;

		if (w < r->files[f].base || w >= r->files[f].base + r->files[f].len)
			continue;
		for (int i = 0; i < pf->n; i++)
		{
			const PackedEntry *e = &pf->entries[i];
			PackedCopy *p;

			if (e->source_offset != (uint64_t) (w - r->files[f].base) || e->C != C ||
				e->OC != OC || e->transposed != transposed || (p = malloc(sizeof(*p))) == NULL)
				continue;
			*p = (PackedCopy) {C, OC, transposed, true, (void *) e->data};
			return p;
		}
	}
	return NULL;
}

const PackedCopy *
packed_registry_get(PackedRegistry *r, const float *W, int C, int OC, bool transposed,
					PackedPackFn pack)
{
	PackedCopy *p;

	for (int i = 0; i < r->n; i++)
		if (r->source[i] == W && r->copies[i]->C == C && r->copies[i]->OC == OC &&
			r->copies[i]->transposed == transposed)
			return r->copies[i];
	if (r->n == r->cap)
	{
		int			cap = r->cap ? 2 * r->cap : 64;
		const float **s = realloc(r->source, sizeof(*s) * cap);
		PackedCopy **q;

		if (s == NULL)
			return NULL;
		r->source = s;
		if ((q = realloc(r->copies, sizeof(*q) * cap)) == NULL)
			return NULL;
		r->copies = q;
		r->cap = cap;
	}
	if ((p = from_file(r, W, C, OC, transposed)) == NULL)
	{
		if ((p = pack(W, C, OC, transposed)) == NULL)
			return NULL;
		r->private_bytes += (size_t) C * OC * packed_value_bytes(r->kind);
	}
	r->source[r->n] = W;
	r->copies[r->n++] = p;
	return p;
}

bool
packed_registry_map(PackedRegistry *r, const char *path, const void *base, size_t len)
{
	if (r->n_files == PACKED_MAX_FILES ||
		!packed_file_map(&r->files[r->n_files].file, path, r->kind, len))
		return false;
	r->files[r->n_files].base = base;
	r->files[r->n_files].len = len;
	r->n_files++;
	return true;
}

/* Whether copy i was made from a weight inside [base, base + len). */
static bool
in_region(const PackedRegistry *r, int i, const void *base, size_t len)
{
	const char *w = (const char *) r->source[i];

	return w >= (const char *) base && w < (const char *) base + len;
}

int
packed_registry_private_count(const PackedRegistry *r, const void *base, size_t len)
{
	int			n = 0;

	for (int i = 0; i < r->n; i++)
		n += in_region(r, i, base, len) && !r->copies[i]->shared;
	return n;
}

bool
packed_registry_write(const PackedRegistry *r, const char *path, const void *base, size_t len)
{
	PackedEntry *entries = malloc(sizeof(PackedEntry) * (r->n > 0 ? r->n : 1));
	int			n = 0;
	bool		ok;

	if (entries == NULL)
		return false;
	for (int i = 0; i < r->n; i++)
		if (in_region(r, i, base, len))
			entries[n++] = (PackedEntry) {
				(uint64_t) ((const char *) r->source[i] - (const char *) base),
					r->copies[i]->C, r->copies[i]->OC, r->copies[i]->transposed,
					r->copies[i]->data
			};
	ok = n > 0 && packed_file_write(path, r->kind, len, entries, n);
	free(entries);
	return ok;
}

void
packed_registry_forget(PackedRegistry *r)
{
	for (int i = 0; i < r->n; i++)
	{
		if (!r->copies[i]->shared)
			free(r->copies[i]->data);
		free(r->copies[i]);
	}
	r->n = 0;
	r->private_bytes = 0;
	for (int f = 0; f < r->n_files; f++)
		packed_file_close(&r->files[f].file);
	r->n_files = 0;
}

void
packed_registry_forget_region(PackedRegistry *r, const void *base, size_t len)
{
	int			kept = 0,
				kept_files = 0;

	for (int i = 0; i < r->n; i++)
	{
		if (!in_region(r, i, base, len))
		{
			r->source[kept] = r->source[i];
			r->copies[kept++] = r->copies[i];
			continue;
		}
		if (!r->copies[i]->shared)
		{
			free(r->copies[i]->data);
			r->private_bytes -= (size_t) r->copies[i]->C * r->copies[i]->OC * packed_value_bytes(r->kind);
		}
		free(r->copies[i]);
	}
	r->n = kept;
	for (int f = 0; f < r->n_files; f++)
	{
		if (r->files[f].base == (const char *) base)
			packed_file_close(&r->files[f].file);
		else
			r->files[kept_files++] = r->files[f];
	}
	r->n_files = kept_files;
}
