/*
 * encoder_kept_layers.h: the check, for an encoder family whose runs keep
 * one layer's activations until their first backward (deberta.c,
 * modernbert.c; bert.c's own is in test_bert.c), that keeping one layer
 * changes no number.  Include after encoder_fixture.h; a test file runs it
 * as (or from) its ef_extra_test, with the fixture's model open.
 */
#ifndef DEPT_TEST_ENCODER_KEPT_LAYERS_H
#define DEPT_TEST_ENCODER_KEPT_LAYERS_H

#include "encoder_fixture.h"

/*
 * A fresh run's forwards keep one layer's activations; its first backward
 * recomputes the layers keeping all of them, and the forwards after it
 * keep all.  Every way there gives the same numbers bit for bit: the
 * outputs of a one-layer forward and of a kept one, the backward that
 * recomputed and the backward after a kept forward, and the backward of a
 * run whose recompute follows a forward of other inputs before this one.
 */
static void
ef_test_kept_layers(void)
{
	size_t		n = (size_t) ef_NB * ef_NT * ef_H;
	float	   *x = malloc(sizeof(float) * n),
			   *x2 = malloc(sizeof(float) * n),
			   *dhid = malloc(sizeof(float) * n),
			   *hid[2] = {malloc(sizeof(float) * n), malloc(sizeof(float) * n)},
			   *dx[4] = {malloc(sizeof(float) * n), malloc(sizeof(float) * n),
	malloc(sizeof(float) * n), malloc(sizeof(float) * n)},
			   *pooled[2] = {malloc(sizeof(float) * ef_NB * ef_H), malloc(sizeof(float) * ef_NB * ef_H)};
	uint8_t    *mask = malloc((size_t) ef_NB * ef_NT);
	/* the hidden states' loss weights; their first rows weight the pooled output */
	const float *wh = ef_f32("loss_weights_hidden", 3, ef_NB, ef_NT, ef_H);
	BackboneRun *run = ef_model->ops->run_new(ef_model, ef_NB, ef_NT),
			   *other = ef_model->ops->run_new(ef_model, ef_NB, ef_NT);
	NnError		err;

	if (!ef_inputs("input_ids", "attention_mask", ef_NB, ef_NT, x, mask) || !wh || !run || !other)
		CHECK(0, "inputs, weights or runs missing");
	else
	{
		for (size_t i = 0; i < n; i++)
		{
			dhid[i] = mask[i / ef_H] ? wh[i] : 0.0f;
			x2[i] = 0.5f * x[i];
		}
		/* one layer kept, then the recomputing backward, twice */
		CHECK(ef_model->ops->forward(ef_model, run, x, mask, ef_NB, ef_NT, pooled[0], &err) == NN_OK,
			  "%s", err.msg);
		ef_ops->last_hidden(ef_model, run, hid[0]);
		CHECK(ef_ops->backward_full(ef_model, run, wh, dhid, dx[0], &err) == NN_OK &&
			  ef_ops->backward_full(ef_model, run, wh, dhid, dx[1], &err) == NN_OK,
			  "%s", err.msg);
		/* every layer kept */
		CHECK(ef_model->ops->forward(ef_model, run, x, mask, ef_NB, ef_NT, pooled[1], &err) == NN_OK,
			  "%s", err.msg);
		ef_ops->last_hidden(ef_model, run, hid[1]);
		CHECK(ef_ops->backward_full(ef_model, run, wh, dhid, dx[2], &err) == NN_OK,
			  "%s", err.msg);
		CHECK(memcmp(pooled[0], pooled[1], sizeof(float) * ef_NB * ef_H) == 0 &&
			  memcmp(hid[0], hid[1], sizeof(float) * n) == 0,
			  "the forward keeping one layer differs from the one keeping all");
		/* a fresh run: a forward of other inputs, then of these, then the backward */
		CHECK(ef_model->ops->forward(ef_model, other, x2, mask, ef_NB, ef_NT, pooled[1], &err) ==
			  NN_OK && ef_model->ops->forward(ef_model, other, x, mask, ef_NB, ef_NT, pooled[1],
											  &err) == NN_OK &&
			  ef_ops->backward_full(ef_model, other, wh, dhid, dx[3], &err) == NN_OK,
			  "%s", err.msg);
		CHECK(memcmp(dx[0], dx[1], sizeof(float) * n) == 0, "second backward differs");
		CHECK(memcmp(dx[0], dx[2], sizeof(float) * n) == 0,
			  "backward after a kept forward differs from the recomputed one");
		CHECK(memcmp(dx[0], dx[3], sizeof(float) * n) == 0,
			  "recomputed backward after a forward of other inputs differs");
	}
	ef_model->ops->run_free(run);
	ef_model->ops->run_free(other);
	free(x);
	free(x2);
	free(dhid);
	free(mask);
	for (int i = 0; i < 4; i++)
		free(dx[i]);
	for (int i = 0; i < 2; i++)
		free(hid[i]), free(pooled[i]);
}

#endif							/* DEPT_TEST_ENCODER_KEPT_LAYERS_H */
