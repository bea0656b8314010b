/*
 * file_map.h: read-only shared mappings of model files that a new process
 * can touch cheaply (docs/design.md 6, "First call in a new backend").
 *
 * On the virtual machines this runs on, the first touch of each 4 KiB page
 * of a mapping costs a process 1.5-4 us even when the page is in the page
 * cache: every new process pays it again for every page of weights its
 * first forward reads.  A page-cache folio of 2 MiB mapped at a 2 MiB
 * aligned address is mapped by one page-table entry instead, for the cost
 * of one page.  So model files are mapped at 2 MiB aligned addresses, each
 * file at an aligned offset when it follows a file whose size is a multiple
 * of 2 MiB, and advised MADV_HUGEPAGE, which makes a page-cache miss read
 * the file back in 2 MiB folios.  The folios exist when the file was
 * written in 2 MiB writes (the private copy, src/pg/model_cache.c, and
 * compiled.c are) or read through such a mapping; otherwise this is an
 * ordinary mapping.
 */
#ifndef DEPT_NN_BASE_FILE_MAP_H
#define DEPT_NN_BASE_FILE_MAP_H

#include <stdbool.h>
#include <stddef.h>

#define NN_MAP_ALIGN ((size_t) 2 << 20)

/*
 * Reserve len bytes of address space (rounded up to whole pages),
 * inaccessible until files are mapped into it, at an NN_MAP_ALIGN aligned
 * address; NULL when that fails.  Release with nn_map_release(p, len).
 */
void	   *nn_map_reserve(size_t len);

/* Map the first len bytes of fd read-only and shared at at (inside a reservation). */
bool		nn_map_file_at(void *at, int fd, size_t len);

/* A reservation with the whole of fd (len bytes) mapped into it, or NULL. */
void	   *nn_map_file(int fd, size_t len);

void		nn_map_release(void *p, size_t len);

#endif							/* DEPT_NN_BASE_FILE_MAP_H */
