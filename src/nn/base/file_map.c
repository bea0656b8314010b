/*
 * file_map.c: 2 MiB aligned read-only mappings (see file_map.h).
 */
#include "base/file_map.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t
page_round(size_t len)
{
	size_t		page = (size_t) sysconf(_SC_PAGESIZE);

	return (len + page - 1) / page * page;
}

void *
nn_map_reserve(size_t len)
{
	size_t		want = page_round(len);
	uint8_t    *raw,
			   *at;
	size_t		head;

	if (want == 0 || want > SIZE_MAX - NN_MAP_ALIGN)
		return NULL;
	raw = mmap(NULL, want + NN_MAP_ALIGN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			   -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	at = (uint8_t *) (((uintptr_t) raw + NN_MAP_ALIGN - 1) & ~(uintptr_t) (NN_MAP_ALIGN - 1));
	head = (size_t) (at - raw);
	/* give back the slack on both sides */
	if (head > 0)
		munmap(raw, head);
	if (NN_MAP_ALIGN - head > 0)
		munmap(at + want, NN_MAP_ALIGN - head);
	return at;
}

bool
nn_map_file_at(void *at, int fd, size_t len)
{
	if (len == 0)
		return true;
	if (mmap(at, len, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		return false;
	/* only a hint: a kernel without it maps 4 KiB pages as before */
	(void) madvise(at, page_round(len), MADV_HUGEPAGE);
	return true;
}

void *
nn_map_file(int fd, size_t len)
{
	void	   *at = nn_map_reserve(len);

	if (at != NULL && !nn_map_file_at(at, fd, len))
	{
		nn_map_release(at, len);
		return NULL;
	}
	return at;
}

void
nn_map_release(void *p, size_t len)
{
	if (p != NULL && len > 0)
		munmap(p, page_round(len));
}
