/*
 * test_roberta.c: the roberta backbone (bert.c's roberta family) against the golden
 * fixture UNIT_HF_DIR()/roberta-tiny-random; what is checked and the
 * tolerances are in encoder_fixture.h.
 */
#include "encoder_fixture.h"

int
main(void)
{
	return encoder_fixture_main("roberta", "roberta");
}
