/*
 * atomic_file.c: files written whole or not at all (atomic_file.h).
 */
#include "base/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int
nn_atomic_open(const char *path, char *tmp, size_t tmp_size)
{
	int			n = snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long) getpid());

	if (n < 0 || (size_t) n >= tmp_size)
	{
		errno = ENAMETOOLONG;
		return -1;
	}
	unlink(tmp);				/* a previous process of this pid died writing it */
	return open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

bool
nn_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0)
	{
		ssize_t		w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
		{
			if (w == 0)
				errno = ENOSPC;
			return false;
		}
		p += w;
		n -= (size_t) w;
	}
	return true;
}

bool
nn_atomic_commit(int fd, const char *tmp, const char *path, bool ok)
{
	int			saved = errno;

	if (ok && fsync(fd) != 0)
	{
		ok = false;
		saved = errno;
	}
	if (close(fd) != 0 && ok)
	{
		ok = false;
		saved = errno;
	}
	if (ok && rename(tmp, path) != 0)
	{
		ok = false;
		saved = errno;
	}
	if (!ok)
	{
		unlink(tmp);
		errno = saved;
	}
	return ok;
}
