/*
 * nn_common.c: the error record used by src/nn (see nn_common.h).
 */
#include "base/nn_common.h"

#include <stdarg.h>
#include <stdio.h>

NnStatus
nn_fail(NnError *err, NnStatus status, const char *fmt,...)
{
	if (err != NULL)
	{
		va_list		ap;

		err->status = status;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return status;
}

void
nn_error_clear(NnError *err)
{
	if (err != NULL)
	{
		err->status = NN_OK;
		err->msg[0] = '\0';
	}
}
