/*
 * rng.h: a small deterministic random generator (splitmix64 seeding a
 * xoshiro256** state), so that training is bit-identical for a given seed
 * on every platform, independent of libc's rand().
 */
#ifndef DEPT_NN_RNG_H
#define DEPT_NN_RNG_H

#include <stdint.h>

typedef struct Rng
{
	uint64_t	s[4];
} Rng;

static inline uint64_t
rng_splitmix64(uint64_t *x)
{
	uint64_t	z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline void
rng_seed(Rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = rng_splitmix64(&seed);
}

static inline uint64_t
rng_next(Rng *r)
{
	uint64_t   *s = r->s;
	uint64_t	x = s[1] * 5;
	uint64_t	result = ((x << 7) | (x >> 57)) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = (s[3] << 45) | (s[3] >> 19);
	return result;
}

/* Uniform in [0, 1). */
static inline double
rng_uniform(Rng *r)
{
	return (rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform integer in [0, n). */
static inline uint64_t
rng_below(Rng *r, uint64_t n)
{
	return n ? (uint64_t) (rng_uniform(r) * (double) n) : 0;
}

#endif							/* DEPT_NN_RNG_H */
