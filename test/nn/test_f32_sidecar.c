/*
 * test_f32_sidecar.c: the float32 sidecar of F16/BF16 weights
 * (formats/f32_sidecar.h).
 *
 * The fixture UNIT_HF_DIR()/bert-tiny-random (F32) is rewritten here in
 * BF16 and in F16 (rounded to nearest) in a temp directory beside links to
 * its config and tokenizer files.  Opened before backbone_write_converted,
 * the weights are converted into private memory; after it, they come from
 * the sidecar's mapping, and the float views and the model's outputs must
 * be the same bits.  A stale sidecar (the source's time or size changed),
 * a truncated one, a damaged header and entries with wrong offsets are
 * each ignored: the open converts again, with the same views.  Opening
 * writes nothing; an F32 model gets no sidecar; a sharded BF16 checkpoint
 * gets one per shard.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/f32_sidecar.h"
#include "formats/safetensors.h"
#include "models/backbone.h"
#include "unit.h"
#include "variant_fixture.h"

#define SIDECAR "model.safetensors" F32_SIDECAR_SUFFIX
#define N_OUT 64

static const char *const linked[] = {"config.json", "tokenizer.json", "vocab.txt",
"tokenizer_config.json", "special_tokens_map.json"};

static uint16_t
to_bf16(float f)
{
	uint32_t	bits;

	memcpy(&bits, &f, 4);
	return (uint16_t) ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

static uint16_t
to_f16(float f)
{
	_Float16	h = (_Float16) f;
	uint16_t	bits;

	memcpy(&bits, &h, 2);
	return bits;
}

/*
 * The fixture's tensors in dtype ("BF16", "F16") as vf_tmp_dir/name; only
 * the tensors i with i % 2 == part when part >= 0.
 */
static void
write_half(const Safetensors *src, const char *dtype, int part, const char *name)
{
	VfSt		st = {0};
	uint16_t   *bufs[VF_ST_MAX] = {0};
	int			nb = 0;

	for (int i = 0; i < safetensors_count(src) && nb < VF_ST_MAX; i++)
	{
		const StTensor *t = safetensors_tensor(src, i);
		uint16_t   *h;

		if (part >= 0 && i % 2 != part)
			continue;
		if (t->dtype != ST_F32)
		{
			vf_st_add(&st, t->name, safetensors_dtype_name(t->dtype), t->ndim, t->shape,
					  safetensors_raw(src, t), t->nbytes);
			continue;
		}
		h = bufs[nb++] = malloc(2 * (t->numel > 0 ? t->numel : 1));
		for (size_t k = 0; k < t->numel; k++)
			h[k] = strcmp(dtype, "BF16") == 0 ? to_bf16(t->f32[k]) : to_f16(t->f32[k]);
		vf_st_add(&st, t->name, dtype, t->ndim, t->shape, h, 2 * t->numel);
	}
	vf_st_write(&st, name);
	for (int i = 0; i < nb; i++)
		free(bufs[i]);
}

static const char *
tmp_path(const char *name)
{
	static char p[512];

	snprintf(p, sizeof(p), "%s/%s", vf_tmp_dir, name);
	return p;
}

static bool
exists(const char *name)
{
	struct stat st;

	return stat(tmp_path(name), &st) == 0;
}

/* Pooled outputs of two texts through the model in vf_tmp_dir (N_OUT floats). */
static bool
embed_dir(float *out)
{
	const char *texts[2] = {"hide new secretions from the parental units", "a joy !"};
	size_t		lens[2] = {strlen(texts[0]), strlen(texts[1])};
	Backbone   *bb = NULL;
	BackboneRun *run;
	NnError		err;
	bool		ok;

	memset(out, 0, sizeof(float) * N_OUT);
	if (backbone_open(&bb, vf_tmp_dir, &err) != NN_OK)
	{
		printf("# open: %s\n", err.msg);
		return false;
	}
	run = bb->ops->run_new(bb, 2, bb->max_tokens);
	ok = run != NULL && 2 * bb->d_out <= N_OUT &&
		backbone_embed_texts(bb, run, texts, lens, 2, out, &err) == NN_OK;
	bb->ops->run_free(run);
	backbone_close(bb);
	return ok;
}

/* vf_tmp_dir/model.safetensors opened; NULL (a failed check) if it does not open. */
static Safetensors *
open_model(void)
{
	Safetensors *st = NULL;
	NnError		err;

	CHECK(safetensors_open(&st, tmp_path("model.safetensors"), &err) == NN_OK, "%s", err.msg);
	return st;
}

/* Whether every float view of a and b holds the same bits. */
static bool
same_views(const Safetensors *a, const Safetensors *b)
{
	if (safetensors_count(a) != safetensors_count(b))
		return false;
	for (int i = 0; i < safetensors_count(a); i++)
	{
		const StTensor *x = safetensors_tensor(a, i),
				   *y = safetensors_tensor(b, i);

		if (x->numel != y->numel || (x->f32 == NULL) != (y->f32 == NULL) ||
			(x->f32 != NULL && memcmp(x->f32, y->f32, sizeof(float) * x->numel) != 0))
			return false;
	}
	return true;
}

static bool
write_converted(void)
{
	NnError		err;
	bool		ok = backbone_write_converted(vf_tmp_dir, &err) == NN_OK;

	if (!ok)
		printf("# write: %s\n", err.msg);
	return ok;
}

static ino_t
sidecar_inode(void)
{
	struct stat st;

	return stat(tmp_path(SIDECAR), &st) == 0 ? st.st_ino : 0;
}

/* The model in dtype: converted without a sidecar, mapped with one, the same bits. */
static void
check_dtype(const Safetensors *fixture, const char *dtype)
{
	Safetensors *conv,
			   *mapped;
	float		out_conv[N_OUT],
				out_mapped[N_OUT];
	ino_t		ino;

	unlink(tmp_path(SIDECAR));
	write_half(fixture, dtype, -1, "model.safetensors");
	CHECK(embed_dir(out_conv), "%s: embed, converting", dtype);
	CHECK(!exists(SIDECAR), "%s: opening writes no sidecar", dtype);
	conv = open_model();
	CHECK(conv && safetensors_converted_bytes(conv) > 0 && safetensors_sidecar_bytes(conv) == 0,
		  "%s: without a sidecar the views are converted", dtype);
	CHECK(write_converted() && exists(SIDECAR), "%s: backbone_write_converted writes it", dtype);
	ino = sidecar_inode();
	CHECK(write_converted() && sidecar_inode() == ino, "%s: a valid sidecar is not written again",
		  dtype);
	mapped = open_model();
	CHECK(mapped && safetensors_converted_bytes(mapped) == 0 &&
		  safetensors_sidecar_bytes(mapped) > safetensors_converted_bytes(conv),
		  "%s: with the sidecar nothing is converted (%zu bytes mapped)", dtype,
		  mapped ? safetensors_sidecar_bytes(mapped) : 0);
	CHECK(conv && mapped && same_views(conv, mapped), "%s: the same float views, bit for bit",
		  dtype);
	CHECK(embed_dir(out_mapped), "%s: embed from the sidecar", dtype);
	CHECK(memcmp(out_conv, out_mapped, sizeof(out_conv)) == 0, "%s: the same outputs", dtype);
	safetensors_close(conv);
	safetensors_close(mapped);
}

static Safetensors *
open_fixture(void)
{
	Safetensors *st = NULL;
	char		path[4200];
	NnError		err;

	snprintf(path, sizeof(path), "%s/model.safetensors", vf_src_dir);
	CHECK(safetensors_open(&st, path, &err) == NN_OK, "%s", err.msg);
	return st;
}

static void
test_sidecar_same_bits(void)
{
	Safetensors *fixture = open_fixture();

	if (fixture == NULL)
		return;
	check_dtype(fixture, "BF16");
	check_dtype(fixture, "F16");
	safetensors_close(fixture);
}

/* Overwrite len bytes at off of the sidecar. */
static bool
poke(off_t off, const void *bytes, size_t len)
{
	int			fd = open(tmp_path(SIDECAR), O_WRONLY);
	bool		ok = fd >= 0 && pwrite(fd, bytes, len, off) == (ssize_t) len;

	if (fd >= 0)
		close(fd);
	return ok;
}

static uint64_t
read_u64(off_t off)
{
	uint64_t	v = 0;
	int			fd = open(tmp_path(SIDECAR), O_RDONLY);

	if (fd >= 0)
	{
		if (pread(fd, &v, 8, off) != 8)
			v = 0;
		close(fd);
	}
	return v;
}

/*
 * A fresh sidecar damaged by damage(): the open ignores it and converts,
 * with the views of want; writing again replaces it with a valid one.
 */
static void
expect_ignored(const Safetensors *want, bool (*damage) (void), const char *what)
{
	Safetensors *st;
	float		out[N_OUT];

	unlink(tmp_path(SIDECAR));
	CHECK(write_converted(), "%s: write", what);
	CHECK(damage(), "%s: damage the sidecar", what);
	st = open_model();
	CHECK(st && safetensors_sidecar_bytes(st) == 0 && safetensors_converted_bytes(st) > 0,
		  "%s: the sidecar is ignored", what);
	CHECK(st && same_views(want, st), "%s: the converted views are right", what);
	CHECK(embed_dir(out), "%s: the model opens past it", what);
	safetensors_close(st);
	CHECK(write_converted(), "%s: write again", what);
	st = open_model();
	CHECK(st && safetensors_sidecar_bytes(st) > 0 && same_views(want, st),
		  "%s: the sidecar was replaced by a valid one", what);
	safetensors_close(st);
}

static bool
touch_source(void)
{
	struct timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 0}};

	return utimensat(AT_FDCWD, tmp_path("model.safetensors"), times, 0) == 0;
}

static bool
grow_source(void)
{
	/* bytes after the last tensor: the same tensors, another size */
	FILE	   *f = fopen(tmp_path("model.safetensors"), "ab");
	bool		ok = f != NULL && fwrite("\0\0\0\0\0\0\0\0", 1, 8, f) == 8;

	return f != NULL && fclose(f) == 0 && ok;
}

static bool
truncate_tail(void)
{
	struct stat st;

	return stat(tmp_path(SIDECAR), &st) == 0 && truncate(tmp_path(SIDECAR), st.st_size - 4096) == 0;
}

static bool
truncate_header(void)
{
	return truncate(tmp_path(SIDECAR), 50) == 0;
}

static bool
bad_magic(void)
{
	return poke(3, "X", 1);
}

static bool
bad_version(void)
{
	uint32_t	v = F32_SIDECAR_VERSION + 1;

	return poke(8, &v, 4);
}

static bool
fewer_entries(void)
{
	uint32_t	n = (uint32_t) (read_u64(8) >> 32) - 1;

	return poke(12, &n, 4);
}

static bool
bad_header_hash(void)
{
	/* the last byte of the source's header SHA-256 (offset 64 + 31) */
	uint8_t		b = (uint8_t) (read_u64(88) >> 56) ^ 1;

	return poke(95, &b, 1);
}

/* entry i is 24 bytes at 96 + 24 i; its offset is its last 8 */
static bool
offset_past_end(void)
{
	uint64_t	len = read_u64(16);

	return poke(96 + 16, &len, 8);
}

static bool
offset_misaligned(void)
{
	uint64_t	off = read_u64(96 + 16) + 2;

	return poke(96 + 16, &off, 8);
}

static bool
offset_overlapping(void)
{
	uint64_t	off = read_u64(96 + 16);

	return poke(96 + 24 + 16, &off, 8);
}

static bool
offset_in_table(void)
{
	uint64_t	off = 96;

	return poke(96 + 16, &off, 8);
}

static void
test_damaged_sidecars(void)
{
	Safetensors *fixture = open_fixture(),
			   *want;

	if (fixture == NULL)
		return;
	unlink(tmp_path(SIDECAR));
	write_half(fixture, "BF16", -1, "model.safetensors");
	want = open_model();
	if (want == NULL)
	{
		safetensors_close(fixture);
		return;
	}
	expect_ignored(want, touch_source, "stale: the source's mtime changed");
	expect_ignored(want, grow_source, "stale: the source's size changed");
	expect_ignored(want, truncate_tail, "truncated by 4 KiB");
	expect_ignored(want, truncate_header, "truncated inside its header");
	expect_ignored(want, bad_magic, "a damaged magic");
	expect_ignored(want, bad_version, "another version");
	expect_ignored(want, fewer_entries, "one entry fewer");
	expect_ignored(want, bad_header_hash, "another source header hash");
	expect_ignored(want, offset_past_end, "an offset at the end of the file");
	expect_ignored(want, offset_misaligned, "a misaligned offset");
	expect_ignored(want, offset_overlapping, "two tensors at one offset");
	expect_ignored(want, offset_in_table, "an offset inside the table");
	safetensors_close(want);
	safetensors_close(fixture);
}

/* F32 weights: nothing to convert, no sidecar. */
static void
test_f32_model_gets_none(void)
{
	unlink(tmp_path(SIDECAR));
	unlink(tmp_path("model.safetensors"));
	CHECK(vf_link_file("model.safetensors"), "link the F32 fixture");
	CHECK(write_converted(), "write_converted on F32 weights");
	CHECK(!exists(SIDECAR), "no sidecar for F32 weights");
	unlink(tmp_path("model.safetensors"));
}

/* A BF16 checkpoint in two shards: a sidecar each, the same outputs as one file. */
static void
test_sharded(void)
{
	Safetensors *fixture = open_fixture();
	const char *shard[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
	char		index[1 << 14];
	size_t		len = 0;
	float		whole[N_OUT],
				sharded[N_OUT];

	if (fixture == NULL)
		return;
	unlink(tmp_path(SIDECAR));
	write_half(fixture, "BF16", -1, "model.safetensors");
	CHECK(embed_dir(whole), "embed the whole file");
	unlink(tmp_path("model.safetensors"));
	write_half(fixture, "BF16", 0, shard[0]);
	write_half(fixture, "BF16", 1, shard[1]);
	len += (size_t) snprintf(index, sizeof(index), "{\"weight_map\": {");
	for (int i = 0; i < safetensors_count(fixture) && len < sizeof(index); i++)
		len += (size_t) snprintf(index + len, sizeof(index) - len, "%s\"%s\": \"%s\"", i ? ", " : "",
								 safetensors_tensor(fixture, i)->name, shard[i % 2]);
	CHECK(len + 3 < sizeof(index), "index fits");
	len += (size_t) snprintf(index + len, sizeof(index) - len, "}}");
	vf_write_file("model.safetensors.index.json", index, len);
	CHECK(write_converted(), "write the shards' sidecars");
	for (int i = 0; i < 2; i++)
	{
		char		name[128];

		snprintf(name, sizeof(name), "%s%s", shard[i], F32_SIDECAR_SUFFIX);
		CHECK(exists(name), "%s exists", name);
	}
	{
		Safetensors *st = NULL;
		NnError		err;

		CHECK(safetensors_open_index(&st, tmp_path("model.safetensors.index.json"), &err) == NN_OK,
			  "%s", err.msg);
		CHECK(st && safetensors_converted_bytes(st) == 0 && safetensors_sidecar_bytes(st) > 0,
			  "both shards map their sidecars");
		safetensors_close(st);
	}
	CHECK(embed_dir(sharded) && memcmp(whole, sharded, sizeof(whole)) == 0,
		  "the sharded checkpoint gives the same outputs");
	for (int i = 0; i < 2; i++)
	{
		char		name[128];

		snprintf(name, sizeof(name), "%s%s", shard[i], F32_SIDECAR_SUFFIX);
		unlink(tmp_path(name));
		unlink(tmp_path(shard[i]));
	}
	unlink(tmp_path("model.safetensors.index.json"));
	safetensors_close(fixture);
}

int
main(void)
{
	if (!vf_setup("bert-tiny-random", "/tmp/dept-test-sidecar.XXXXXX"))
	{
		printf("Bail out! no fixture %s/bert-tiny-random\n", UNIT_HF_DIR());
		return 1;
	}
	for (size_t i = 0; i < sizeof(linked) / sizeof(linked[0]); i++)
		vf_link_file(linked[i]);
	RUN_TEST(test_sidecar_same_bits);
	RUN_TEST(test_damaged_sidecars);
	RUN_TEST(test_f32_model_gets_none);
	RUN_TEST(test_sharded);
	unlink(tmp_path(SIDECAR));
	{
		const char *more[] = {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json", NULL};

		vf_remove_tmp(more);
	}
	return unit_finish();
}
