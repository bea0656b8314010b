/*
 * arena.h: the activation buffers of a backbone run live in one 64-byte
 * aligned block, laid out by a family's layout function that carves each
 * buffer in turn: called once with base NULL to measure the block, once
 * with the block to set the pointers (docs/architecture.md, "base").
 */
#ifndef DEPT_NN_BASE_ARENA_H
#define DEPT_NN_BASE_ARENA_H

#include <stdlib.h>

/* Carve n 4-byte elements (float or int32), 64-byte aligned, at *off; NULL when base is NULL. */
static inline void *
arena_carve(char *base, size_t *off, size_t n)
{
	void	   *p = base ? (void *) (base + *off) : NULL;

	*off += (n * 4 + 63) / 64 * 64;
	return p;
}

/* A 64-byte aligned block of bytes (free with free), or NULL. */
static inline void *
arena_alloc(size_t bytes)
{
	void	   *p;

	return posix_memalign(&p, 64, bytes) == 0 ? p : NULL;
}

#endif							/* DEPT_NN_BASE_ARENA_H */
