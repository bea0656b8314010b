/*
 * atomic_file.h: a file written whole or not at all, for the files a
 * process leaves beside a model for the next ones (the compiled file, the
 * float32 sidecar of converted weights, the packed bfloat16 weights): a
 * temporary file beside it, fsync'ed and renamed into place, so a reader
 * sees the old file, the new one or none, never a part.
 */
#ifndef DEPT_NN_BASE_ATOMIC_FILE_H
#define DEPT_NN_BASE_ATOMIC_FILE_H

#include <stdbool.h>
#include <stddef.h>

/* Methods */

/*
 * Create the temporary file "<path>.tmp.<pid>" (its name in tmp, of
 * tmp_size bytes; a leftover of a dead process with this pid is removed
 * first) for writing; the descriptor, or -1 with errno set.
 */
int			nn_atomic_open(const char *path, char *tmp, size_t tmp_size);

/* Write the n bytes at buf to fd, through short writes and EINTR; false with errno set. */
bool		nn_write_all(int fd, const void *buf, size_t n);

/*
 * Finish the temporary file: when ok, fsync it, close it and rename it to
 * path; otherwise, or when a step fails, close and remove it.  True when
 * path is the new file; false with the first failure's errno.
 */
bool		nn_atomic_commit(int fd, const char *tmp, const char *path, bool ok);

#endif							/* DEPT_NN_BASE_ATOMIC_FILE_H */
