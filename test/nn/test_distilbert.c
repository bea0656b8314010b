/*
 * test_distilbert.c: the distilbert backbone (bert.c's distilbert family) against the golden
 * fixture UNIT_HF_DIR()/distilbert-tiny-random; what is checked and the
 * tolerances are in encoder_fixture.h.
 */
#include "encoder_fixture.h"

int
main(void)
{
	return encoder_fixture_main("distilbert", "distilbert");
}
