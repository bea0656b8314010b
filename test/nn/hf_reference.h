/*
 * hf_reference.h: reading a Hugging Face fixture directory
 * (UNIT_HF_DIR()/<name>, test/fixtures/hf/README.md) and the reference
 * tensors transformers wrote into its reference.safetensors: what
 * encoder_fixture.h, test_bert.c and test_t5.c share.  The test sets
 * ef_fixture (the directory), ef_ref (its reference.safetensors, opened),
 * and for ef_inputs ef_model and ef_H (the model and its embedding width).
 * A reference tensor that is missing or of another shape fails a CHECK.
 */
#ifndef DEPT_TEST_HF_REFERENCE_H
#define DEPT_TEST_HF_REFERENCE_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "adapters/adapter.h"
#include "formats/safetensors.h"
#include "models/backbone.h"
#include "unit.h"

#define EF_MAX_IDS 4096

static char ef_fixture[4096];
static Backbone *ef_model;
static Safetensors *ef_ref;
static int	ef_H;

static inline const char *
ef_path(const char *name)
{
	static char path[4096 + 256];

	snprintf(path, sizeof(path), "%s/%.200s", ef_fixture, name);
	return path;
}

static inline const float *
ef_f32(const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2)
{
	int64_t		shape[3] = {d0, d1, d2};
	const float *p = NULL;
	NnError		err;

	if (ef_ref == NULL || safetensors_get_f32(ef_ref, name, ndim, shape, &p, &err) != NN_OK)
	{
		CHECK(0, "reference tensor %s: %s", name, ef_ref ? err.msg : "no reference file");
		return NULL;
	}
	return p;
}

static inline const int32_t *
ef_i32(const char *name, int64_t d0, int64_t d1)
{
	int64_t		shape[2] = {d0, d1};
	const void *p = NULL;
	NnError		err;

	if (ef_ref == NULL || safetensors_get(ef_ref, name, ST_I32, 2, shape, &p, &err) != NN_OK)
	{
		CHECK(0, "reference tensor %s: %s", name, ef_ref ? err.msg : "no reference file");
		return NULL;
	}
	return p;
}

/* max |a - b| / max |b| over n values, where use (may be NULL) is nonzero. */
static inline double
ef_rel_diff(const float *a, const float *b, size_t n, const uint8_t *use, size_t per)
{
	double		num = 0.0,
				den = 0.0;

	for (size_t i = 0; i < n; i++)
	{
		if (use != NULL && !use[i / per])
			continue;
		num = fmax(num, fabs((double) a[i] - b[i]));
		den = fmax(den, fabs((double) b[i]));
	}
	return den > 0 ? num / den : num;
}

/* Word embeddings and mask of B x T reference ids (ids_name, mask_name). */
static inline bool
ef_inputs(const char *ids_name, const char *mask_name, int B, int T, float *x, uint8_t *mask)
{
	const int32_t *ids = ef_i32(ids_name, B, T);
	const int32_t *am = ef_i32(mask_name, B, T);
	uint8_t		m2[EF_MAX_IDS];

	if (ids == NULL || am == NULL || ef_model == NULL)
		return false;
	for (int b = 0; b < B; b++)
	{
		ef_model->ops->embed_tokens(ef_model, ids + b * T, T, x + (size_t) b * T * ef_H, m2);
		for (int t = 0; t < T; t++)
			mask[b * T + t] = (uint8_t) am[b * T + t];
	}
	return true;
}

/* sum over the valid rows of hidden . wh (B x T x ef_H) + pooled . wp (B x ef_H; pooled may be NULL). */
static inline double
ef_loss(const float *hidden, const float *wh, const uint8_t *mask, const float *pooled,
		const float *wp, int B, int T)
{
	double		L = 0.0;

	for (int i = 0; i < B * T * ef_H; i++)
		L += mask[i / ef_H] ? (double) hidden[i] * wh[i] : 0.0;
	for (int i = 0; pooled != NULL && i < B * ef_H; i++)
		L += (double) pooled[i] * wp[i];
	return L;
}

/*
 * Backpropagate dX (B x T rows of the adapter's output) through the DePT
 * adapter a, from zero gradients, and compare them with the reference's
 * (gP, gA, gB: dept_grad_P, dept_grad_A, dept_grad_B) within 1e-3
 * relative.
 */
static inline void
ef_check_dept_grads(Adapter *a, const float *dX, int B, int T, const float *gP, const float *gA,
					const float *gB)
{
	double		eP,
				eA,
				eB;

	memset(a->prompt.g, 0, sizeof(float) * a->prompt.n);
	memset(a->lora_a.g, 0, sizeof(float) * a->lora_a.n);
	memset(a->lora_b.g, 0, sizeof(float) * a->lora_b.n);
	adapter_backward(a, dX, B, T);
	eP = ef_rel_diff(a->prompt.g, gP, a->prompt.n, NULL, 1);
	eA = ef_rel_diff(a->lora_a.g, gA, a->lora_a.n, NULL, 1);
	eB = ef_rel_diff(a->lora_b.g, gB, a->lora_b.n, NULL, 1);
	printf("# DePT backward: dept_grad_P rel %.2e, dept_grad_A rel %.2e, dept_grad_B rel %.2e\n",
		   eP, eA, eB);
	CHECK(eP <= 1e-3 && eA <= 1e-3 && eB <= 1e-3, "DePT grads rel %.3e %.3e %.3e", eP, eA, eB);
}

/*
 * The next case of a jsonl text: from *cursor, the next line that parses
 * as JSON, with *cursor moved past it; NULL at the end.  The line is cut
 * at its newline in place; line (may be NULL) gets its text.  The caller
 * frees the case with cJSON_Delete.
 */
static inline cJSON *
ef_next_case(char **cursor, char **line)
{
	while (*cursor != NULL && **cursor)
	{
		char	   *start = *cursor,
				   *nl = strchr(start, '\n');
		cJSON	   *c;

		if (nl)
			*nl = '\0';
		*cursor = nl ? nl + 1 : NULL;
		if ((c = cJSON_Parse(start)) != NULL)
		{
			if (line != NULL)
				*line = start;
			return c;
		}
	}
	return NULL;
}

#endif
