/*
 * fuzz_f32_sidecar.c: libFuzzer harness for the float32 sidecar reader
 * (f32_sidecar_check, src/nn/formats/f32_sidecar.h); build and run with
 * test/fuzz/run.sh.
 *
 * The source is fixed: a small .safetensors file built here with a BF16, an
 * F16, an empty BF16, an aligned F32 and an I64 tensor; its valid sidecar
 * is written once by f32_sidecar_write (the "image").  Each input is
 * checked three ways against the source's pending tensors: as a whole
 * sidecar; "patched" (the image with the input's bytes from the third on
 * written over it at the offset its first two bytes give), which is what
 * lets mutations reach the table and the offsets behind the header; and
 * as the image cut to the input's length.
 *
 * Properties checked beyond the sanitizers' own, abort() on a violation:
 *   - a rejection leaves every pending view unset;
 *   - an accepted sidecar has the image's length (which the header
 *     records), and gives every pending tensor a 4-aligned view of its
 *     numel floats inside the buffer, past the table, in header order
 *     without overlap (every float is read);
 *   - the image itself, and a patch that changes no byte, is accepted
 *     with the stored values (BF16 as a shift, F16 as safetensors
 *     converts it); a cut image is rejected.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/f32_sidecar.h"
#include "formats/safetensors.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TENSORS 8

static Safetensors *source;
static F32SidecarSource source_id;
static StTensor pending_table[MAX_TENSORS];	/* the source's tensors, pending views unset */
static int	n_tensors;
static uint8_t *image;
static size_t image_len;

static void
fail(const char *what, size_t size)
{
	fprintf(stderr, "fuzz_f32_sidecar: %s (input of %zu bytes)\n", what, size);
	abort();
}

/* The fixed source file: header JSON padded to 8, then the tensors' bytes. */
static uint8_t *
build_source(size_t *len)
{
	static const char header[] =
		"{\"w\":{\"dtype\":\"BF16\",\"shape\":[3,5],\"data_offsets\":[0,30]},"
		"\"h\":{\"dtype\":\"F16\",\"shape\":[7],\"data_offsets\":[30,44]},"
		"\"e\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[44,44]},"
		"\"f\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[48,64]},"
		"\"i\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[64,80]}}";
	size_t		hlen = strlen(header),
				n = (hlen + 7) / 8 * 8;
	uint8_t    *buf = calloc(1, 8 + n + 80);
	uint64_t	n64 = n;

	memcpy(buf, &n64, 8);
	memset(buf + 8, ' ', n);
	memcpy(buf + 8, header, hlen);
	for (int i = 0; i < 80; i++)
		buf[8 + n + i] = (uint8_t) (i * 37 + 11);
	*len = 8 + n + 80;
	return buf;
}

/* The source, its pending table and the valid sidecar image, once. */
static void
setup(void)
{
	size_t		len;
	uint8_t    *file = build_source(&len);
	NnError		err;
	char		path[64];
	struct stat sb = {0};
	FILE	   *f;
	size_t		hlen;
	const char *header;
	const uint8_t *data;

	if (safetensors_from_buffer(&source, file, len, &err) != NN_OK)
		fail(err.msg, 0);
	free(file);
	n_tensors = safetensors_count(source);
	for (int i = 0; i < n_tensors; i++)
	{
		pending_table[i] = *safetensors_tensor(source, i);
		if (pending_table[i].dtype != ST_F32)
			pending_table[i].f32 = NULL;
	}
	header = safetensors_header(source, &hlen);
	sb.st_size = (off_t) len;
	f32_sidecar_source(&source_id, &sb, header, hlen);
	data = (const uint8_t *) header + hlen;
	snprintf(path, sizeof(path), "/tmp/fuzz_f32_sidecar.%ld", (long) getpid());
	if (f32_sidecar_write(path, &source_id, pending_table, n_tensors, data, &err) != NN_OK)
		fail(err.msg, 0);
	if ((f = fopen(path, "rb")) == NULL || fseek(f, 0, SEEK_END) != 0)
		fail("cannot read the image back", 0);
	image_len = (size_t) ftell(f);
	image = malloc(image_len);
	rewind(f);
	if (fread(image, 1, image_len, f) != image_len)
		fail("short read of the image", 0);
	fclose(f);
	unlink(path);
}

/* Check len bytes (copied to aligned memory); verify every property; whether accepted. */
static bool
check(const uint8_t *bytes, size_t len, size_t size, bool want_values)
{
	StTensor	t[MAX_TENSORS];
	uint8_t    *buf = NULL;
	bool		accepted;
	uint64_t	end = 0;
	int			pending = 0;

	if (posix_memalign((void **) &buf, 64, len > 0 ? len : 1) != 0)
		return false;
	memcpy(buf, bytes, len);
	memcpy(t, pending_table, sizeof(t));
	accepted = f32_sidecar_check(buf, len, &source_id, t, n_tensors);
	for (int i = 0; i < n_tensors; i++)
		pending += f32_sidecar_pending(&pending_table[i]);
	end = 96 + 24 * (uint64_t) pending;
	for (int i = 0; i < n_tensors; i++)
	{
		const StTensor *want = safetensors_tensor(source, i);
		volatile float sum = 0;

		if (!f32_sidecar_pending(&pending_table[i]))
		{
			if (t[i].f32 != pending_table[i].f32)
				fail("a view that was not pending changed", size);
			continue;
		}
		if (!accepted)
		{
			if (t[i].f32 != NULL)
				fail("a rejected sidecar set a view", size);
			continue;
		}
		if (t[i].f32 == NULL || (uintptr_t) t[i].f32 % 4 != 0 ||
			(const uint8_t *) t[i].f32 < buf + end ||
			(const uint8_t *) (t[i].f32 + t[i].numel) > buf + len)
			fail("a view outside the file, inside the table, misaligned or overlapping", size);
		end = (uint64_t) ((const uint8_t *) (t[i].f32 + t[i].numel) - buf);
		for (size_t k = 0; k < t[i].numel; k++)
			sum += t[i].f32[k];
		if (want_values && want->numel > 0 &&
			memcmp(t[i].f32, want->f32, sizeof(float) * want->numel) != 0)
			fail("the image's values are not the converted ones", size);
	}
	if (accepted && len != image_len)
		fail("a sidecar of another length was accepted", size);
	free(buf);
	return accepted;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *patched;

	if (image == NULL)
	{
		setup();
		if (!check(image, image_len, 0, true))
			fail("the valid image is rejected", 0);
	}
	check(data, size, size, false);
	if (size >= 2 && (patched = malloc(image_len)) != NULL)
	{
		size_t		at = (size_t) (data[0] | data[1] << 8) % image_len;
		size_t		n = size - 2 < image_len - at ? size - 2 : image_len - at;

		memcpy(patched, image, image_len);
		memcpy(patched + at, data + 2, n);
		if (check(patched, image_len, size, memcmp(patched, image, image_len) == 0) == false &&
			memcmp(patched, image, image_len) == 0)
			fail("an unchanged image is rejected", size);
		free(patched);
	}
	if (size < image_len && check(image, size, size, false))
		fail("a cut image is accepted", size);
	return 0;
}
