/*
 * compiled.h: a model's derived state, kept in a file beside the model so
 * that the next process maps it instead of deriving it again
 * (docs/design.md 6, "First call in a new backend").
 *
 * A family derives things from its files on every open: the tokenizer's
 * trie from the vocabulary, the fingerprint (a SHA-256 of the manifest).
 * In a new database backend that work is most of the first call.  A
 * compiled file holds them: a header, the fingerprint and one opaque blob
 * the family lays out (8-aligned, mapped read-only and shared).  The header
 * records the size and modification time of each source file it was made
 * from; a file that changed since makes the compiled file stale, and a
 * stale, damaged or absent one is simply not used (the family derives the
 * state as before).  The family checks the blob itself before reading it.
 */
#ifndef DEPT_NN_COMPILED_H
#define DEPT_NN_COMPILED_H

#include <stddef.h>

#include "base/nn_common.h"

#define COMPILED_FILE_NAME "dept-compiled.bin"
#define COMPILED_MAX_SOURCES 4

typedef struct CompiledFile
{
	void	   *map;			/* the whole file, mapped; NULL when closed */
	size_t		map_len;
	const void *blob;			/* the family's part, 8-aligned inside map */
	size_t		blob_len;
	char		fingerprint[65];
} CompiledFile;

/*
 * Map dir/COMPILED_FILE_NAME if it was made by format (the family's name
 * and version, at most 15 bytes) from the n_sources files named in dir as
 * they are now.  NN_ERR_IO when it is absent or stale, NN_ERR_FORMAT when
 * its header is damaged; cf is left closed then.
 */
NnStatus	compiled_open(CompiledFile *cf, const char *dir, const char *format,
						  const char *const *sources, int n_sources, NnError *err);
void		compiled_close(CompiledFile *cf);

/*
 * Write dir/COMPILED_FILE_NAME for the sources as they are now: a
 * temporary file, fsync'ed, renamed into place, so a reader sees the old
 * file, the new one or none, never a part.
 */
NnStatus	compiled_write(const char *dir, const char *format, const char *const *sources,
						   int n_sources, const char *fingerprint, const void *blob,
						   size_t blob_len, NnError *err);

#endif							/* DEPT_NN_COMPILED_H */
