/*
 * variant_fixture.h: what the tests of a family's configuration variants
 * (test_deberta_variants.c, test_modernbert_variants.c) share.
 *
 *   a model directory  vf_setup makes a temporary directory vf_tmp_dir
 *                      beside the fixture vf_src_dir (UNIT_HF_DIR()/<name>);
 *                      a test writes a config.json there (vf_write_file),
 *                      weights (vf_write_safetensors: F32 tensors, 1 or 2
 *                      dimensions) and links the fixture's tokenizer
 *                      (vf_link_tokenizer); vf_remove_tmp removes it all
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

/* vf_tmp_dir/tokenizer.json: a link to the fixture's. */
static inline bool
vf_link_tokenizer(void)
{
	char		from[4200],
				to[256];

	snprintf(from, sizeof(from), "%s/tokenizer.json", vf_src_dir);
	snprintf(to, sizeof(to), "%s/tokenizer.json", vf_tmp_dir);
	unlink(to);
	return symlink(from, to) == 0;
}

static inline void
vf_remove_tmp(void)
{
	static const char *const files[] = {"config.json", "tokenizer.json", "model.safetensors"};
	char		p[256];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
	{
		snprintf(p, sizeof(p), "%s/%s", vf_tmp_dir, files[i]);
		unlink(p);
	}
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

/* vf_tmp_dir/model.safetensors holding tensors t[0..count-1]. */
static inline void
vf_write_safetensors(const VfTensor *t, int count)
{
	cJSON	   *hdr = cJSON_CreateObject();
	size_t		off = 0,
				hlen,
				pad;
	char	   *text;
	uint8_t    *buf;
	uint64_t	n;

	for (int i = 0; i < count; i++)
	{
		cJSON	   *e = cJSON_AddObjectToObject(hdr, t[i].name);
		double		shape[2] = {(double) t[i].shape[0], (double) t[i].shape[1]},
					offs[2] = {(double) off, (double) (off + 4 * t[i].n)};

		cJSON_AddStringToObject(e, "dtype", "F32");
		cJSON_AddItemToObject(e, "shape", cJSON_CreateDoubleArray(shape, t[i].ndim));
		cJSON_AddItemToObject(e, "data_offsets", cJSON_CreateDoubleArray(offs, 2));
		off += 4 * t[i].n;
	}
	text = cJSON_PrintUnformatted(hdr);
	hlen = strlen(text);
	pad = (8 - hlen % 8) % 8;
	n = hlen + pad;
	buf = malloc(8 + n + off);
	memcpy(buf, &n, 8);
	memcpy(buf + 8, text, hlen);
	memset(buf + 8 + hlen, ' ', pad);
	off = 0;
	for (int i = 0; i < count; i++)
	{
		memcpy(buf + 8 + n + off, t[i].data, 4 * t[i].n);
		off += 4 * t[i].n;
	}
	vf_write_file("model.safetensors", buf, 8 + n + off);
	free(buf);
	free(text);
	cJSON_Delete(hdr);
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
