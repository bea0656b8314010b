/*
 * vector_ops.c: dept_cosine(real[], real[]), enough vector arithmetic for
 * nearest-neighbour queries over dept_embed without another extension.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"

PG_FUNCTION_INFO_V1(dept_cosine);

/* The elements of a one-dimensional real[] without NULLs; errors otherwise. */
static float4 *
DeptArrayFloats(ArrayType *array, int *n)
{
	if (ARR_ELEMTYPE(array) != FLOAT4OID)
		elog(ERROR, "expected a real[] argument");
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("vector must have one dimension")));
	if (ARR_HASNULL(array) && array_contains_nulls(array))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("vector must not contain nulls")));
	*n = ARR_NDIM(array) == 0 ? 0 : ARR_DIMS(array)[0];
	return (float4 *) ARR_DATA_PTR(array);
}

/* Cosine similarity; NULL when either vector has zero length. */
Datum
dept_cosine(PG_FUNCTION_ARGS)
{
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *b = PG_GETARG_ARRAYTYPE_P(1);
	int			na,
				nb;
	float4	   *x = DeptArrayFloats(a, &na);
	float4	   *y = DeptArrayFloats(b, &nb);
	double		dot = 0.0,
				xx = 0.0,
				yy = 0.0;

	if (na != nb)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different vector dimensions %d and %d", na, nb)));
	for (int i = 0; i < na; i++)
	{
		dot += (double) x[i] * y[i];
		xx += (double) x[i] * x[i];
		yy += (double) y[i] * y[i];
	}
	if (xx == 0.0 || yy == 0.0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(dot / sqrt(xx * yy));
}
