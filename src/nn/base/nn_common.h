/*
 * nn_common.h: error reporting shared by every file in src/nn.
 *
 * src/nn never calls into PostgreSQL and never exits: a function that can
 * fail returns an NnStatus and, where it takes an NnError *, fills in a
 * human-readable message.  The PostgreSQL layer maps the status to an
 * SQLSTATE (NN_ERR_IO -> undefined_file, NN_ERR_FORMAT -> data_corrupted,
 * NN_ERR_NOMEM -> out_of_memory, NN_ERR_ARG -> invalid_parameter_value).
 */
#ifndef DEPT_NN_COMMON_H
#define DEPT_NN_COMMON_H

#include <stddef.h>

typedef enum NnStatus
{
	NN_OK = 0,
	NN_ERR_IO = 1,				/* a file is missing or unreadable */
	NN_ERR_FORMAT = 2,			/* bytes that do not follow their format */
	NN_ERR_NOMEM = 3,			/* an allocation failed */
	NN_ERR_ARG = 4				/* a caller passed an out-of-range value */
} NnStatus;

#define NN_ERRMSG_LEN 512

typedef struct NnError
{
	NnStatus	status;
	char		msg[NN_ERRMSG_LEN];
} NnError;

/* Record a failure in err (may be NULL) and return its status. */
NnStatus	nn_fail(NnError *err, NnStatus status, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* Reset err to "no error". */
void		nn_error_clear(NnError *err);

#endif							/* DEPT_NN_COMMON_H */
