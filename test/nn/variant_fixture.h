/*
 * variant_fixture.h: what the tests of a family's configuration variants
 * (test_deberta_variants.c, test_modernbert_variants.c) share, and the
 * model directory test_sharded.c writes too.
 *
 *   a model directory  vf_setup makes a temporary directory vf_tmp_dir
 *                      beside the fixture vf_src_dir (UNIT_HF_DIR()/<name>);
 *                      a test writes a config.json there (vf_write_file),
 *                      weights (vf_write_safetensors: F32 tensors, 1 or 2
 *                      dimensions; vf_st_add and vf_st_write for any) and
 *                      links the fixture's other files
 *                      (vf_link_file); vf_remove_tmp removes it all
 *   a gradient check   vf_loss is L = sum(wp . pooled) + sum over the valid
 *                      rows of wh . hidden for a V_B x V_T batch of V_H
 *                      wide inputs; vf_fd_gap compares an input gradient
 *                      with central differences of L (float32 inputs, step
 *                      1e-3, double sums)
 */
#ifndef DEPT_TEST_VARIANT_FIXTURE_H
#define DEPT_TEST_VARIANT_FIXTURE_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "models/backbone.h"
#include "unit.h"

#define V_B 2					/* texts */
#define V_T 9					/* their padded length */
#define V_H 32					/* the fixtures' hidden size */

static char vf_src_dir[4096];
static char vf_tmp_dir[64];

/*
 * vf_src_dir: the absolute path of the fixture name; vf_tmp_dir: a new
 * directory from tmp_template (mkdtemp).  False when either is missing.
 */
static inline bool
vf_setup(const char *name, const char *tmp_template)
{
	char		dir[4096 + 256];

	snprintf(dir, sizeof(dir), "%s/%s", UNIT_HF_DIR(), name);
	snprintf(vf_tmp_dir, sizeof(vf_tmp_dir), "%s", tmp_template);
	return realpath(dir, vf_src_dir) != NULL && mkdtemp(vf_tmp_dir) != NULL;
}

static inline void
vf_write_file(const char *name, const void *data, size_t len)
{
	char		p[256];
	FILE	   *f;

	snprintf(p, sizeof(p), "%s/%s", vf_tmp_dir, name);
	unlink(p);
	if ((f = fopen(p, "wb")) != NULL)
	{
		fwrite(data, 1, len, f);
		fclose(f);
	}
}

/* vf_tmp_dir/name: a link to the fixture's file name. */
static inline bool
vf_link_file(const char *name)
{
	char		from[4200],
				to[256];

	snprintf(from, sizeof(from), "%s/%s", vf_src_dir, name);
	snprintf(to, sizeof(to), "%s/%s", vf_tmp_dir, name);
	unlink(to);
	return symlink(from, to) == 0;
}

static inline void
vf_unlink(const char *name)
{
	char		p[256];

	snprintf(p, sizeof(p), "%s/%s", vf_tmp_dir, name);
	unlink(p);
}

/*
 * Remove vf_tmp_dir with config.json, tokenizer.json, model.safetensors
 * and the files named in more (NULL-terminated; more may be NULL).
 */
static inline void
vf_remove_tmp(const char *const *more)
{
	vf_unlink("config.json");
	vf_unlink("tokenizer.json");
	vf_unlink("model.safetensors");
	for (; more != NULL && *more != NULL; more++)
		vf_unlink(*more);
	rmdir(vf_tmp_dir);
}

/* An F32 tensor to write: n values at data (the fixture's or the test's own). */
typedef struct VfTensor
{
	char		name[128];
	int			ndim;
	int64_t		shape[2];
	const float *data;
	size_t		n;
} VfTensor;

#define VF_ST_MAX 256

/* A .safetensors file being assembled: vf_st_add each tensor, then vf_st_write. */
typedef struct VfSt
{
	cJSON	   *hdr;
	size_t		off;
	int			count;
	const void *data[VF_ST_MAX];
	size_t		nbytes[VF_ST_MAX];
} VfSt;

static inline void
vf_st_add(VfSt *st, const char *name, const char *dtype, int ndim, const int64_t *shape,
		  const void *data, size_t nbytes)
{
	double		dims[ST_MAX_DIMS],
				offs[2] = {(double) st->off, (double) (st->off + nbytes)};
	cJSON	   *e;

	if (st->hdr == NULL)
		st->hdr = cJSON_CreateObject();
	if (st->count == VF_ST_MAX)
	{
		CHECK(0, "more than %d tensors", VF_ST_MAX);
		return;
	}
	for (int d = 0; d < ndim; d++)
		dims[d] = (double) shape[d];
	e = cJSON_AddObjectToObject(st->hdr, name);
	cJSON_AddStringToObject(e, "dtype", dtype);
	cJSON_AddItemToObject(e, "shape", cJSON_CreateDoubleArray(dims, ndim));
	cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateDoubleArray(offs, 2));
	st->data[st->count] = data;
	st->nbytes[st->count++] = nbytes;
	st->off += nbytes;
}

/* vf_tmp_dir/name: the 8-byte header length, the JSON header padded with spaces to 8 bytes, the data. */
static inline void
vf_st_write(VfSt *st, const char *name)
{
	char	   *text;
	size_t		hlen,
				pad,
				off = 0;
	uint8_t    *buf;
	uint64_t	n;

	if (st->hdr == NULL)
		st->hdr = cJSON_CreateObject();
	text = cJSON_PrintUnformatted(st->hdr);
	hlen = strlen(text);
	pad = (8 - hlen % 8) % 8;
	n = hlen + pad;
	buf = malloc(8 + n + st->off);
	memcpy(buf, &n, 8);
	memcpy(buf + 8, text, hlen);
	memset(buf + 8 + hlen, ' ', pad);
	for (int i = 0; i < st->count; i++)
	{
		memcpy(buf + 8 + n + off, st->data[i], st->nbytes[i]);
		off += st->nbytes[i];
	}
	vf_write_file(name, buf, 8 + n + off);
	free(buf);
	free(text);
	cJSON_Delete(st->hdr);
	st->hdr = NULL;
}

/* vf_tmp_dir/model.safetensors holding the F32 tensors t[0..count-1]. */
static inline void
vf_write_safetensors(const VfTensor *t, int count)
{
	VfSt		st = {0};

	for (int i = 0; i < count; i++)
		vf_st_add(&st, t[i].name, "F32", t[i].ndim, t[i].shape, t[i].data, 4 * t[i].n);
	vf_st_write(&st, "model.safetensors");
}

/* A loss on the outputs of a forward through bb on run. */
typedef struct VfLoss
{
	const Backbone *bb;
	BackboneRun *run;
	void		(*last_hidden) (const Backbone *bb, const BackboneRun *run, float *hidden);
	const uint8_t *mask;		/* V_B x V_T */
	const uint8_t *types;		/* token type ids set before each forward, or NULL */
	const float *wp,			/* V_B x V_H */
			   *wh;				/* V_B x V_T x V_H */
} VfLoss;

/* L at input x (V_B x V_T x V_H); NAN when the forward fails. */
static inline double
vf_loss(const VfLoss *l, const float *x)
{
	float		pooled[V_B * V_H],
				hidden[V_B * V_T * V_H];
	double		L = 0.0;
	NnError		err;

	if (l->types != NULL)
		backbone_run_token_types(l->bb, l->run, l->types);
	if (l->bb->ops->forward(l->bb, l->run, x, l->mask, V_B, V_T, pooled, &err) != NN_OK)
		return NAN;
	l->last_hidden(l->bb, l->run, hidden);
	for (int i = 0; i < V_B * V_H; i++)
		L += (double) l->wp[i] * pooled[i];
	for (int i = 0; i < V_B * V_T * V_H; i++)
		L += l->mask[i / V_H] ? (double) l->wh[i] * hidden[i] : 0.0;
	return L;
}

/*
 * Central differences (step 1e-3) of vf_loss at the inputs idx[0..n-1]
 * against the gradient dx: the largest |fd - dx| into *worst and the
 * largest |fd| into *top.  At a padded position fd is 0 (no forward: the
 * gradient must be 0 there).  x is left as it was.
 */
static inline void
vf_fd_gap(const VfLoss *l, float *x, const float *dx, const int *idx, int n, double *worst,
		  double *top)
{
	const double h = 1e-3;

	*worst = 0.0;
	*top = 0.0;
	for (int k = 0; k < n; k++)
	{
		int			i = idx[k];
		float		keep = x[i];
		double		up,
					down,
					fd = 0.0;

		if (l->mask[i / V_H])
		{
			x[i] = keep + (float) h;
			up = vf_loss(l, x);
			x[i] = keep - (float) h;
			down = vf_loss(l, x);
			x[i] = keep;
			fd = (up - down) / (2 * h);
		}
		*worst = fmax(*worst, fabs(fd - dx[i]));
		*top = fmax(*top, fabs(fd));
	}
}

#endif
