/*
 * test_xlm_roberta.c: the xlm-roberta backbone (bert.c's xlm-roberta family) against the golden
 * fixture UNIT_HF_DIR()/xlm-roberta-tiny-random; what is checked and the
 * tolerances are in encoder_fixture.h.
 */
#include "encoder_fixture.h"

int
main(void)
{
	return encoder_fixture_main("xlm-roberta", "xlm-roberta");
}
