/*
 * page_touch.c: the floor under a new backend's first forward
 * (docs/design.md 6, "First call in a new backend"): what it costs a fresh
 * process to touch every 4 KiB page of files mapped read-only and shared
 * (the model's weights) and of fresh anonymous memory, with 4 KiB pages and
 * with 2 MiB ones.  Nothing of the extension: mmap, one read per page,
 * clock_gettime and the minor-fault count.
 *   cc -O2 -o build/page_touch bench/page_touch.c
 *   build/page_touch FILE...      (run it several times: the first run of a file can read it)
 * Prints, for the files mapped 2 MiB aligned: the time to touch each page
 * once, the faults taken, and how much of the mapping the kernel mapped with
 * 2 MiB entries (FilePmdMapped: nonzero only when the page cache holds the
 * files in 2 MiB folios); then the same for 4 MiB of anonymous memory written
 * page by page with 4 KiB pages and with a transparent huge page.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ALIGN ((size_t) 2 << 20)

static double
now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static long
minor_faults(void)
{
	struct rusage r;

	getrusage(RUSAGE_SELF, &r);
	return r.ru_minflt;
}

static long
smaps_kb(const char *field)
{
	FILE	   *f = fopen("/proc/self/smaps_rollup", "r");
	char		line[256];
	long		kb = -1;

	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, strlen(field)) == 0)
			kb = atol(line + strlen(field) + 1);
	if (f != NULL)
		fclose(f);
	return kb;
}

static char *
reserve_aligned(size_t len)
{
	char	   *raw = mmap(NULL, len + ALIGN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
						   -1, 0);

	if (raw == MAP_FAILED)
		exit(1);
	return (char *) (((uintptr_t) raw + ALIGN - 1) & ~(uintptr_t) (ALIGN - 1));
}

static void
touch_files(int n, char **names)
{
	size_t		total = 0,
				off = 0;
	char	   *base;
	volatile unsigned sum = 0;
	double		t0;
	long		f0;

	for (int i = 0; i < n; i++)
	{
		struct stat st;

		if (stat(names[i], &st) != 0)
		{
			perror(names[i]);
			exit(1);
		}
		total += ((size_t) st.st_size + 4095) / 4096 * 4096;
	}
	base = reserve_aligned(total);
	for (int i = 0; i < n; i++)
	{
		int			fd = open(names[i], O_RDONLY);
		struct stat st;

		fstat(fd, &st);
		if (mmap(base + off, (size_t) st.st_size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) ==
			MAP_FAILED)
			exit(1);
		close(fd);
		off += ((size_t) st.st_size + 4095) / 4096 * 4096;
	}
	madvise(base, total, MADV_HUGEPAGE);
	t0 = now_ms();
	f0 = minor_faults();
	for (size_t o = 0; o < total; o += 4096)
		sum += (unsigned char) base[o];
	printf("files: %zu pages touched in %.3f ms, %ld faults, FilePmdMapped %ld kB\n",
		   total / 4096, now_ms() - t0, minor_faults() - f0, smaps_kb("FilePmdMapped:"));
}

static void
touch_anonymous(int huge)
{
	size_t		len = (size_t) 4 << 20;
	char	   *p = reserve_aligned(len);
	double		t0;
	long		f0;

	if (mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		MAP_FAILED)
		exit(1);
	madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	t0 = now_ms();
	f0 = minor_faults();
	for (size_t o = 0; o < len; o += 4096)
		p[o] = 1;
	printf("anonymous, %s pages: %zu pages written in %.3f ms, %ld faults\n",
		   huge ? "2 MiB" : "4 KiB", len / 4096, now_ms() - t0, minor_faults() - f0);
}

int
main(int argc, char **argv)
{
	if (argc > 1)
		touch_files(argc - 1, argv + 1);
	touch_anonymous(0);
	touch_anonymous(1);
	return 0;
}
