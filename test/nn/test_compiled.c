/*
 * test_compiled.c: the compiled file beside a model (formats/compiled.h):
 * use-lite opened from it gives the same fingerprint and the same sentence
 * vectors as opened from vocab.json; a stale, truncated or damaged file is
 * not used and the model still opens.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/compiled.h"
#include "models/backbone.h"
#include "unit.h"

static char dir[256];
static const char *const sources[] = {"model.json", "vocab.json"};
static const char *const text = "a compiled tokenizer reads the same pieces";

/* A copy of the model: the two JSON files copied (their times change), the shards linked. */
static bool
make_model_copy(void)
{
	char		cmd[32768],
				model[4096];

	if (realpath(UNIT_MODEL_DIR(), model) == NULL)
		return false;
	snprintf(dir, sizeof(dir), "/tmp/dept-test-compiled.%ld", (long) getpid());
	snprintf(cmd, sizeof(cmd),
			 "rm -rf '%s' && mkdir '%s' && cp '%s'/model.json '%s'/vocab.json '%s'/ && "
			 "ln -s '%s'/group1-shard* '%s'/", dir, dir, model, model, dir, model, dir);
	return system(cmd) == 0;
}

/* Open the copy and embed the text into vec (512); the fingerprint into fp. */
static bool
open_and_embed(float *vec, char *fp)
{
	Backbone   *bb = NULL;
	BackboneRun *run;
	NnError		err;
	size_t		len = strlen(text);
	bool		ok;

	nn_error_clear(&err);
	if (backbone_open(&bb, dir, &err) != NN_OK)
	{
		printf("# open: %s\n", err.msg);
		return false;
	}
	run = bb->ops->run_new(bb, 1, bb->max_tokens);
	ok = run != NULL && backbone_embed_texts(bb, run, &text, &len, 1, vec, &err) == NN_OK;
	memcpy(fp, bb->fingerprint, 65);
	if (ok && backbone_write_compiled(bb, dir, &err) != NN_OK)
	{
		printf("# write: %s\n", err.msg);
		ok = false;
	}
	bb->ops->run_free(run);
	backbone_close(bb);
	return ok;
}

static ino_t
compiled_inode(void)
{
	char		path[8192];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, COMPILED_FILE_NAME);
	return stat(path, &st) == 0 ? st.st_ino : 0;
}

static bool
compiled_usable(void)
{
	CompiledFile cf;
	NnError		err;
	bool		ok = compiled_open(&cf, dir, "use-lite/1", sources, 2, &err) == NN_OK;

	compiled_close(&cf);
	return ok;
}

static void
test_same_model_from_the_compiled_file(void)
{
	float		derived[512],
				mapped[512],
				again[512];
	char		fp_derived[65],
				fp_mapped[65],
				fp_again[65];
	ino_t		ino;

	CHECK(make_model_copy(), "copy the model to %s", dir);
	CHECK(open_and_embed(derived, fp_derived), "open without a compiled file");
	CHECK(compiled_usable(), "the first open left a usable compiled file");
	ino = compiled_inode();
	CHECK(open_and_embed(mapped, fp_mapped), "open from the compiled file");
	CHECK(compiled_inode() == ino, "an open from the compiled file does not write it again");
	CHECK(strcmp(fp_derived, fp_mapped) == 0, "fingerprint %s vs %s", fp_derived, fp_mapped);
	CHECK(memcmp(derived, mapped, sizeof(derived)) == 0, "the same sentence vector, bit for bit");

	/* a source that changed makes the file stale: not used, written again */
	{
		char		path[8192];
		struct timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 0}};

		snprintf(path, sizeof(path), "%s/vocab.json", dir);
		CHECK(utimensat(AT_FDCWD, path, times, 0) == 0, "set the time of vocab.json");
	}
	CHECK(!compiled_usable(), "a changed vocab.json makes the compiled file stale");
	CHECK(open_and_embed(again, fp_again), "open with a stale compiled file");
	CHECK(strcmp(fp_derived, fp_again) == 0 && memcmp(derived, again, sizeof(again)) == 0,
		  "the same model from the sources");
	CHECK(compiled_usable() && compiled_inode() != ino, "the stale file was replaced");
}

/* A truncated file and a damaged blob are not used; the model opens from its sources. */
static void
test_damaged_compiled_file(void)
{
	float		want[512],
				got[512];
	char		fp_want[65],
				fp_got[65],
				path[8192];
	struct stat st;
	int			fd;

	CHECK(open_and_embed(want, fp_want), "open");
	snprintf(path, sizeof(path), "%s/%s", dir, COMPILED_FILE_NAME);
	CHECK(stat(path, &st) == 0, "compiled file exists");
	CHECK(truncate(path, st.st_size - 4096) == 0, "truncate it");
	CHECK(!compiled_usable(), "a truncated file is not used");
	CHECK(open_and_embed(got, fp_got) && memcmp(want, got, sizeof(got)) == 0,
		  "open past a truncated file");

	/* same size and header, a blob whose first piece offset is wrong */
	CHECK(compiled_usable(), "the truncated file was replaced");
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, "\xff\xff\xff\xff", 4, 4096 + 512) == 4, "damage the blob");
	close(fd);
	CHECK(open_and_embed(got, fp_got) && strcmp(fp_want, fp_got) == 0 &&
		  memcmp(want, got, sizeof(got)) == 0, "open past a damaged blob");
}

int
main(void)
{
	char		cmd[32768];

	RUN_TEST(test_same_model_from_the_compiled_file);
	RUN_TEST(test_damaged_compiled_file);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", dir);
	return unit_finish();
}
