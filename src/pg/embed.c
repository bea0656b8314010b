/*
 * embed.c: SQL functions over the backbone alone (no adapter):
 * dept_embed, dept_tokenize, dept_model_info.
 *
 * All of them read the model and never write, so they are PARALLEL SAFE
 * and run on hot standbys.
 */
#include "postgres.h"

#include "ops/blas.h"
#include "ops/gemm_bf16.h"
#include "ops/gemm_packed.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "lib/stringinfo.h"

#include "dept.h"

PG_FUNCTION_INFO_V1(dept_embed);
PG_FUNCTION_INFO_V1(dept_tokenize);
PG_FUNCTION_INFO_V1(dept_model_info);

/* Build a one-dimensional float4[] from n floats. */
static ArrayType *
DeptFloatArray(const float *values, int n)
{
	Datum	   *datums = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
		datums[i] = Float4GetDatum(values[i]);
	return construct_array(datums, n, FLOAT4OID, sizeof(float4), true, TYPALIGN_INT);
}

/*
 * dept_embed(text) RETURNS real[]: the backbone's sentence vector
 * (L2-normalised for use-lite).  Text beyond max_tokens tokens is truncated.
 */
Datum
dept_embed(PG_FUNCTION_ARGS)
{
	text	   *input = PG_GETARG_TEXT_PP(0);
	const char *bytes = VARDATA_ANY(input);
	size_t		len = VARSIZE_ANY_EXHDR(input);
	const Backbone *bb = DeptGetBackbone();
	BackboneRun *run = DeptGetRun(1, bb->max_tokens);
	float	   *out = palloc(sizeof(float) * bb->d_out);
	NnError		err;
	DeptFirstCallPart caller = DeptFirstCallEnter(DEPT_FC_FORWARD);

	nn_error_clear(&err);
	if (backbone_embed_texts(bb, run, &bytes, &len, 1, out, &err) != NN_OK)
		DeptReportNnError(&err, "could not embed text");
	DeptFirstCallEnter(caller);
	PG_RETURN_ARRAYTYPE_P(DeptFloatArray(out, bb->d_out));
}

/* dept_tokenize(text) RETURNS integer[]: the token ids the backbone sees. */
Datum
dept_tokenize(PG_FUNCTION_ARGS)
{
	text	   *input = PG_GETARG_TEXT_PP(0);
	const Backbone *bb = DeptGetBackbone();
	int32	   *ids = palloc(sizeof(int32) * bb->max_tokens);
	Datum	   *datums;
	int			n;

	n = bb->ops->tokenize(bb, VARDATA_ANY(input), VARSIZE_ANY_EXHDR(input),
						  ids, bb->max_tokens);
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory tokenizing text")));
	datums = palloc(sizeof(Datum) * (n > 0 ? n : 1));
	for (int i = 0; i < n; i++)
		datums[i] = Int32GetDatum(ids[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(datums, n, INT4OID, sizeof(int32), true,
										  TYPALIGN_INT));
}

/* dept_model_info() RETURNS jsonb: what the backend has loaded, how fast, which BLAS kernels. */
Datum
dept_model_info(PG_FUNCTION_ARGS)
{
	const Backbone *bb = DeptGetBackbone();
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"family\": ");
	escape_json(&buf, bb->ops->family);
	appendStringInfo(&buf, ", \"path\": ");
	escape_json(&buf, DeptModelDirectory());
	appendStringInfo(&buf, ", \"fingerprint\": ");
	escape_json(&buf, bb->fingerprint);
	appendStringInfo(&buf,
					 ", \"vocab_size\": %d, \"d_embed\": %d, \"d_out\": %d"
					 ", \"max_tokens\": %d, \"max_positions\": %d"
					 ", \"load_ms\": %.3f, \"threads\": %d, \"blas_core\": ",
					 bb->vocab_size, bb->d_embed, bb->d_out, bb->max_tokens,
					 bb->max_positions, DeptModelLoadMillis(), dept_threads);
	escape_json(&buf, nn_blas_core());
	appendStringInfo(&buf, ", \"matmul_precision\": \"%s\", \"bfloat16_engine\": \"%s\""
					 ", \"float32_panels\": %s, \"float32_panels_private_bytes\": %zu"
					 ", \"first_call\": ",
					 DeptRunsInBf16(bb) ? "bfloat16" : "float32", gemm_bf16_engine(),
					 dept_packed_weights && gemm_packed_available() ? "true" : "false",
					 gemm_packed_bytes());
	DeptFirstCallJson(&buf);
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
