/*
 * parallel.c: the helper-thread pool of split kernel calls (design in
 * parallel.h).
 */
#include "base/parallel.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void) 0)
#endif

typedef struct Part
{
	NnParallelTask task;
	void	   *ctx;
	int			begin,
				end;
} Part;

static struct
{
	int			wanted;			/* threads asked for, calling thread included */
	int			helpers;		/* helper threads running */
	Part		part[NN_PARALLEL_MAX_THREADS];
	unsigned	born[NN_PARALLEL_MAX_THREADS];	/* generation when helper i started */
	atomic_uint generation;		/* bumped once per split call */
	atomic_int	pending;		/* helpers still working on it */
	pthread_mutex_t lock;
	pthread_cond_t wake;
}			pool = {1, 0, {{0}}, {0}, 0, 0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

#define SPIN_ROUNDS 2000		/* pause rounds, roughly 0.1 ms */

static void *
helper_main(void *arg)
{
	int			id = (int) (intptr_t) arg;
	/* the generation at creation: only calls issued later are this helper's */
	unsigned	seen = pool.born[id];

	for (;;)
	{
		unsigned	g = atomic_load(&pool.generation);

		for (int spin = 0; g == seen && spin < SPIN_ROUNDS; spin++)
		{
			cpu_relax();
			g = atomic_load(&pool.generation);
		}
		if (g == seen)
		{
			pthread_mutex_lock(&pool.lock);
			while ((g = atomic_load(&pool.generation)) == seen)
				pthread_cond_wait(&pool.wake, &pool.lock);
			pthread_mutex_unlock(&pool.lock);
		}
		seen = g;
		{
			const Part *p = &pool.part[id];

			if (p->begin < p->end)
				p->task(p->ctx, p->begin, p->end);
		}
		atomic_fetch_sub(&pool.pending, 1);
	}
	return NULL;
}

/* Start helpers up to wanted - 1; returns how many run. */
static int
start_helpers(void)
{
	sigset_t	all,
				old;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (pool.helpers < pool.wanted - 1)
	{
		pthread_t	t;

		pool.born[pool.helpers + 1] = atomic_load(&pool.generation);
		if (pthread_create(&t, NULL, helper_main, (void *) (intptr_t) (pool.helpers + 1)) != 0)
			break;
		pthread_detach(t);
		pool.helpers++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pool.helpers;
}

void
nn_parallel_set_threads(int threads)
{
	pool.wanted = threads < 1 ? 1 : threads > NN_PARALLEL_MAX_THREADS ? NN_PARALLEL_MAX_THREADS
		: threads;
}

int
nn_parallel_threads(void)
{
	return pool.wanted;
}

void
nn_parallel_for(NnParallelTask task, void *ctx, int units, int parts)
{
	if (parts > pool.wanted)
		parts = pool.wanted;
	if (parts > units)
		parts = units;
	if (parts > 1 && pool.helpers < parts - 1 && start_helpers() < parts - 1)
		parts = pool.helpers + 1;	/* pthread_create failed: fewer threads */
	if (parts <= 1)
	{
		if (units > 0)
			task(ctx, 0, units);
		return;
	}
	for (int p = 0; p <= pool.helpers; p++)
	{
		/* helpers beyond parts - 1 get empty ranges */
		int			q = p < parts ? p : parts;

		pool.part[p] = (Part) {task, ctx, units * q / parts,
		p < parts ? units * (q + 1) / parts : units * q / parts};
	}
	atomic_store(&pool.pending, pool.helpers);
	atomic_fetch_add(&pool.generation, 1);
	pthread_mutex_lock(&pool.lock);
	pthread_cond_broadcast(&pool.wake);
	pthread_mutex_unlock(&pool.lock);
	task(ctx, pool.part[0].begin, pool.part[0].end);
	while (atomic_load(&pool.pending) > 0)
		cpu_relax();
}
