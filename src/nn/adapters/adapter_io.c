/*
 * adapter_io.c: the adapter binary format (layout and rules in
 * adapter_io.h).
 *
 * The writer and the reader share one description of the format: the
 * configuration rules (check_config) and the tensor table
 * (expected_tensors).  The writer refuses what the reader would reject, so
 * every byte string it produces loads again.  The reader works in two
 * passes over the buffer: the first validates every field and length
 * without allocating anything, the second (which can no longer fail on the
 * input) copies the names and values into freshly allocated memory.
 */
#include "adapters/adapter_io.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"

_Static_assert(sizeof(float) == sizeof(uint32_t), "float must be IEEE-754 binary32");

/* Header field offsets (the table in adapter_io.h). */
enum
{
	OFF_MAGIC = 0,
	OFF_VERSION = 4,
	OFF_HEADER_SIZE = 8,
	OFF_CONFIG = 12,			/* nine u32 fields, method to subspace_rank */
	OFF_ALPHA = 48,
	OFF_N_TENSORS = 52,
	OFF_TOTAL_SIZE = 56,
	OFF_FINGERPRINT = 64,
	OFF_HEAD = 96,				/* versions 2 and 3; reserved (0) in version 1 */
	OFF_POOLING = 100,			/* version 3; reserved (0) in versions 1 and 2 */
	OFF_PAIR = 104,				/* version 6 only: its header is 4 bytes longer */
	FINGERPRINT_LEN = 32,
	N_TENSOR_KINDS = 10,
	MAX_NDIM = 3
};

/* ---- little-endian encoding, byte by byte -------------------------------- */

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t) v);
	put_u32(p + 4, (uint32_t) (v >> 32));
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t
get_u64(const uint8_t *p)
{
	return (uint64_t) get_u32(p) | (uint64_t) get_u32(p + 4) << 32;
}

static uint32_t
float_bits(float f)
{
	uint32_t	u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float
bits_float(uint32_t u)
{
	float		f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* An all-ones exponent is Inf or NaN. */
static bool
bits_finite(uint32_t u)
{
	return (u & 0x7f800000u) != 0x7f800000u;
}

/* ---- CRC-32 (IEEE), four bits at a time --------------------------------- */

uint32_t
adapter_io_crc32(const uint8_t *buf, size_t len)
{
	/* remainders of the reflected polynomial 0xEDB88320 for each nibble */
	static const uint32_t table[16] = {
		0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4,
		0x4DB26158, 0x5005713C, 0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C,
		0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C
	};
	uint32_t	crc = 0xFFFFFFFFu;

	for (size_t i = 0; i < len; i++)
	{
		crc ^= buf[i];
		crc = (crc >> 4) ^ table[crc & 15];
		crc = (crc >> 4) ^ table[crc & 15];
	}
	return crc ^ 0xFFFFFFFFu;
}

/* ---- strings ------------------------------------------------------------- */

/*
 * Strict UTF-8 (utf8.h: no overlong forms, no surrogates, nothing past
 * U+10FFFF) and no NUL (names become C strings).  Returns the offset of the
 * first byte of the first bad sequence, or n when s is valid.
 */
static size_t
utf8_invalid_at(const uint8_t *s, size_t n)
{
	size_t		pos = 0,
				start;
	bool		valid = true;

	while (pos < n)
	{
		start = pos;
		if (utf8_decode_next(s, n, &pos, &valid) == 0 || !valid)
			return start;
	}
	return n;
}

/* Copy up to ADAPTER_IO_MAX_TENSOR_NAME bytes of an untrusted name, printable. */
static void
printable(char *dst, const uint8_t *src, size_t n)
{
	if (n > ADAPTER_IO_MAX_TENSOR_NAME)
		n = ADAPTER_IO_MAX_TENSOR_NAME;
	for (size_t i = 0; i < n; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7F) ? (char) src[i] : '?';
	dst[n] = '\0';
}

typedef struct NameRef
{
	const char *s;
	int			index;
} NameRef;

static int
name_ref_cmp(const void *x, const void *y)
{
	const NameRef *a = x,
			   *b = y;
	int			c = strcmp(a->s, b->s);

	return c ? c : (a->index > b->index) - (a->index < b->index);
}

/*
 * Find two equal names by sorting references to them.  Returns NN_OK with
 * *first = -1 when all n names differ, else their indexes; NN_ERR_NOMEM.
 */
static NnStatus
find_duplicate(const char *const *names, int n, int *first, int *second)
{
	NameRef    *refs = malloc(sizeof(NameRef) * (size_t) n);

	*first = *second = -1;
	if (refs == NULL)
		return NN_ERR_NOMEM;
	for (int i = 0; i < n; i++)
		refs[i] = (NameRef) {names[i], i};
	qsort(refs, (size_t) n, sizeof(NameRef), name_ref_cmp);
	for (int i = 1; i < n && *first < 0; i++)
		if (strcmp(refs[i - 1].s, refs[i].s) == 0)
		{
			*first = refs[i - 1].index;
			*second = refs[i].index;
		}
	free(refs);
	return NN_OK;
}

/* ---- the configuration and its tensors ----------------------------------- */

typedef struct TensorSpec
{
	const char *name;
	size_t		field;			/* offsetof(Adapter, <param>) */
	int			ndim;
	uint32_t	shape[MAX_NDIM];
	size_t		n;				/* product of shape */
} TensorSpec;

static const struct
{
	const char *name;
	size_t		field;
}			tensor_kinds[N_TENSOR_KINDS] = {
	{"prompt", offsetof(Adapter, prompt)},
	{"lora_a", offsetof(Adapter, lora_a)},
	{"lora_b", offsetof(Adapter, lora_b)},
	{"ept_u", offsetof(Adapter, ept_u)},
	{"ept_v", offsetof(Adapter, ept_v)},
	{"gate_w", offsetof(Adapter, gate_w)},
	{"gate_b", offsetof(Adapter, gate_b)},
	{"head_w", offsetof(Adapter, head_w)},
	{"head_b", offsetof(Adapter, head_b)},
	{"target", offsetof(Adapter, target)},
};

static const AdapterParam *
param_of(const Adapter *a, size_t field)
{
	return (const AdapterParam *) ((const char *) a + field);
}

/*
 * The tensors a canonical cfg stores, in file order (spec has room for
 * N_TENSOR_KINDS); those with a zero dimension are left out.
 */
static int
expected_tensors(const AdapterConfig *cfg, TensorSpec *spec)
{
	uint32_t	P = (uint32_t) cfg->prompt_len,
				d = (uint32_t) cfg->d,
				s = cfg->rank ? (uint32_t) cfg->max_len : 0,
				r = (uint32_t) cfg->rank,
				K = (uint32_t) cfg->subspaces,
				q = (uint32_t) cfg->subspace_rank,
				C = cfg->head == ADAPTER_HEAD_TEXT ? 0 : (uint32_t) cfg->n_classes,
				target = cfg->regression && cfg->head == ADAPTER_HEAD_LINEAR ? 2 : 0;
	const uint32_t shapes[N_TENSOR_KINDS][MAX_NDIM + 1] = {
		{2, P, d}, {2, s, r}, {2, r, d},
		{3, K, d, q}, {3, K, q, d}, {2, K, d}, {1, K},
		{2, C, (uint32_t) cfg->h_dim}, {1, C}, {1, target},
	};
	int			n_spec = 0;

	for (int k = 0; k < N_TENSOR_KINDS; k++)
	{
		TensorSpec *t = &spec[n_spec];

		t->name = tensor_kinds[k].name;
		t->field = tensor_kinds[k].field;
		t->ndim = (int) shapes[k][0];
		t->n = 1;
		for (int i = 0; i < t->ndim; i++)
		{
			t->shape[i] = shapes[k][i + 1];
			t->n *= t->shape[i];
		}
		if (t->n > 0)
			n_spec++;
	}
	return n_spec;
}

/*
 * Floats adapter_new allocates for cfg, apart from the caches that grow
 * with max_batch: four buffers per parameter, then the forward caches.
 * Mirrors adapter_new; every factor is bounded by check_config first.
 */
static uint64_t
alloc_floats(const AdapterConfig *cfg, uint64_t stored)
{
	uint64_t	P = (uint64_t) cfg->prompt_len,
				d = (uint64_t) cfg->d,
				s = cfg->rank ? (uint64_t) cfg->max_len : 0,
				K = (uint64_t) cfg->subspaces,
				q = (uint64_t) cfg->subspace_rank;
	uint64_t	n = 4 * stored + 2 * s * d;

	if (K)
		n += P * s + 2 * P * d + K * P * q + P * (s > d ? s : d) + P * q;
	return n;
}

static NnStatus
check_range(const char *what, int v, int lo, int hi, NnStatus st, NnError *err)
{
	if (v < lo || v > hi)
		return nn_fail(err, st, "adapter %s %d is outside %d..%d", what, v, lo, hi);
	return NN_OK;
}

/* A field the method does not use must be zero in the canonical form. */
static NnStatus
check_unused(const AdapterConfig *cfg, const char *what, int v, NnStatus st, NnError *err)
{
	if (v != 0)
		return nn_fail(err, st, "a %s adapter has no %s, but it is %d",
					   adapter_method_name(cfg->method), what, v);
	return NN_OK;
}

/*
 * The rules of adapter_io.h for a canonical configuration, failing with
 * status st (NN_ERR_FORMAT when reading, NN_ERR_ARG when writing).
 */
static NnStatus
check_config(const AdapterConfig *c, NnStatus st, NnError *err)
{
	TensorSpec	spec[N_TENSOR_KINDS];
	int			n_spec;
	uint64_t	stored = 0,
				alloc;
	bool		pt = c->method == ADAPTER_PT,
				dept = c->method == ADAPTER_DEPT,
				ept = c->method == ADAPTER_EPT,
				one_output = c->regression && c->head == ADAPTER_HEAD_LINEAR;

	if ((unsigned) c->method > ADAPTER_EPT)
		return nn_fail(err, st, "adapter method %u is not one of 0..3 (probe, pt, dept, ept)",
					   (unsigned) c->method);
	if (check_range("d", c->d, 1, ADAPTER_IO_MAX_D, st, err) ||
		check_range("h_dim", c->h_dim, 1, ADAPTER_IO_MAX_D, st, err) ||
		check_range("n_classes", c->n_classes, one_output ? 1 : 2,
					one_output ? 1 : ADAPTER_IO_MAX_CLASSES, st, err) ||
		check_range("prompt_len", c->prompt_len, pt || ept, ADAPTER_IO_MAX_PROMPT, st, err) ||
		check_range("max_len", c->max_len, ept || (dept && c->rank > 0), ADAPTER_IO_MAX_LEN, st, err) ||
		check_range("rank", c->rank, ept, c->d, st, err) ||
		check_range("subspaces", c->subspaces, ept, ADAPTER_MAX_SUBSPACES, st, err) ||
		check_range("subspace_rank", c->subspace_rank, ept, c->d, st, err))
		return st;
	if (c->head != ADAPTER_HEAD_LINEAR && c->head != ADAPTER_HEAD_TEXT)
		return nn_fail(err, st, "adapter head %u is not 0 (linear) or 1 (text-to-text)",
					   (unsigned) c->head);
	if (c->method == ADAPTER_PROBE && c->head == ADAPTER_HEAD_TEXT)
		return nn_fail(err, st, "a probe adapter cannot have a text-to-text head");
	if (c->method == ADAPTER_PROBE && check_unused(c, "prompt", c->prompt_len, st, err))
		return st;
	if (!(dept || ept) && check_unused(c, "low-rank pair", c->rank, st, err))
		return st;
	if (!ept && (check_unused(c, "subspaces", c->subspaces, st, err) ||
				 check_unused(c, "subspace rank", c->subspace_rank, st, err)))
		return st;
	if (!isfinite(c->alpha))
		return nn_fail(err, st, "adapter alpha is not a finite number");
	if (c->pool_text && (c->head != ADAPTER_HEAD_LINEAR || adapter_prompt_rows(c) == 0))
		return nn_fail(err, st, "text-row pooling needs a linear head and prompt rows");
	if ((unsigned) c->pair > ADAPTER_PAIR_SIAMESE)
		return nn_fail(err, st, "adapter pair encoding %u is not one of 0..2 (joined, native, siamese)",
					   (unsigned) c->pair);
	if (c->pair != ADAPTER_PAIR_JOINED && c->head != ADAPTER_HEAD_LINEAR)
		return nn_fail(err, st, "a pair encoding other than joined needs a linear head");
	if (c->pair == ADAPTER_PAIR_SIAMESE && c->h_dim % 4 != 0)
		return nn_fail(err, st, "a siamese adapter's h_dim %d is not a multiple of 4", c->h_dim);

	n_spec = expected_tensors(c, spec);
	for (int i = 0; i < n_spec; i++)
		stored += spec[i].n;
	alloc = alloc_floats(c, stored);
	if (stored > ADAPTER_IO_MAX_FLOATS || alloc > ADAPTER_IO_MAX_ALLOC_FLOATS)
		return nn_fail(err, st, "adapter too large: %llu values (limit %zu) needing %llu floats "
					   "in memory (limit %zu)", (unsigned long long) stored,
					   ADAPTER_IO_MAX_FLOATS, (unsigned long long) alloc,
					   ADAPTER_IO_MAX_ALLOC_FLOATS);
	return NN_OK;
}

/*
 * The canonical form of a configuration adapter_new accepted: zero for
 * every field the method ignores (the same tests as adapter.c).
 */
static AdapterConfig
canonical_config(const AdapterConfig *cfg)
{
	AdapterConfig c = *cfg;
	bool		low_rank = (c.method == ADAPTER_DEPT || c.method == ADAPTER_EPT) && c.rank > 0;

	c.prompt_len = adapter_prompt_rows(cfg);
	c.pool_text = cfg->pool_text && c.prompt_len > 0 && c.head == ADAPTER_HEAD_LINEAR;
	if (!low_rank)
		c.rank = 0;
	if (!(c.method == ADAPTER_EPT && c.subspaces > 0))
		c.subspaces = c.subspace_rank = 0;
	if (c.max_len < 0)
		c.max_len = 0;
	return c;
}

/* ---- writing ------------------------------------------------------------- */

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* 64 hex digits to 32 bytes. */
static NnStatus
parse_fingerprint(const char *hex, uint8_t raw[FINGERPRINT_LEN], NnError *err)
{
	if (hex == NULL || strnlen(hex, 2 * FINGERPRINT_LEN + 1) != 2 * FINGERPRINT_LEN)
		return nn_fail(err, NN_ERR_ARG, "backbone fingerprint must be %d hex digits",
					   2 * FINGERPRINT_LEN);
	for (int i = 0; i < FINGERPRINT_LEN; i++)
	{
		int			hi = hex_value(hex[2 * i]),
					lo = hex_value(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return nn_fail(err, NN_ERR_ARG, "backbone fingerprint is not hexadecimal");
		raw[i] = (uint8_t) (hi << 4 | lo);
	}
	return NN_OK;
}

/* Class names the format can hold; adds their encoded size to *size. */
static NnStatus
check_class_names(const char *const *names, int n, uint64_t *size, NnError *err)
{
	int			first,
				second;

	if (names == NULL)
		return nn_fail(err, NN_ERR_ARG, "class names are missing");
	for (int i = 0; i < n; i++)
	{
		size_t		len = names[i] ? strnlen(names[i], ADAPTER_IO_MAX_CLASS_NAME + 1) : 0;

		if (len == 0 || len > ADAPTER_IO_MAX_CLASS_NAME)
			return nn_fail(err, NN_ERR_ARG, "class name %d must be 1..%d bytes", i,
						   ADAPTER_IO_MAX_CLASS_NAME);
		if (utf8_invalid_at((const uint8_t *) names[i], len) != len)
			return nn_fail(err, NN_ERR_ARG, "class name %d is not valid UTF-8", i);
		*size += 4 + len;
	}
	if (find_duplicate(names, n, &first, &second) != NN_OK)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory checking class names");
	if (first >= 0)
		return nn_fail(err, NN_ERR_ARG, "class names %d and %d are both \"%.64s\"",
					   first, second, names[first]);
	return NN_OK;
}

/* A text-to-text regression's class names are its bins' values (adapter_bin_name_value). */
static NnStatus
check_bin_names(const AdapterConfig *cfg, const char *const *names, NnStatus st, NnError *err)
{
	double		v;

	if (!cfg->regression || cfg->head != ADAPTER_HEAD_TEXT)
		return NN_OK;
	for (int i = 0; i < cfg->n_classes; i++)
		if (!adapter_bin_name_value(names[i], &v))
			return nn_fail(err, st, "class name %d (\"%.64s\") of a text-to-text regression is not "
						   "a number", i, names[i]);
	return NN_OK;
}

/* The adapter's tensors match the canonical configuration and are finite. */
static NnStatus
check_tensors(const Adapter *a, const TensorSpec *spec, int n_spec, uint64_t *size, NnError *err)
{
	int			s = 0;

	for (int k = 0; k < N_TENSOR_KINDS; k++)
	{
		const AdapterParam *p = param_of(a, tensor_kinds[k].field);
		bool		stored = s < n_spec && spec[s].field == tensor_kinds[k].field;

		if (p->n != (stored ? spec[s].n : 0) || (p->n > 0 && p->w == NULL))
			return nn_fail(err, NN_ERR_ARG, "adapter tensor %s holds %zu values, its configuration %zu",
						   tensor_kinds[k].name, p->n, stored ? spec[s].n : 0);
		for (size_t i = 0; i < p->n; i++)
			if (!isfinite(p->w[i]))
				return nn_fail(err, NN_ERR_ARG, "adapter tensor %s holds a non-finite value at index %zu",
							   tensor_kinds[k].name, i);
		if (stored)
		{
			*size += 4 + strlen(spec[s].name) + 4 + 4 * (uint64_t) spec[s].ndim + 8 + 4 * (uint64_t) p->n;
			s++;
		}
	}
	return NN_OK;
}

/* Bytes of the header: version 6 (a pair encoding) adds the pair field. */
static size_t
header_size(const AdapterConfig *c)
{
	return c->pair ? ADAPTER_IO_HEADER_SIZE_PAIR : ADAPTER_IO_HEADER_SIZE;
}

static uint8_t *
write_header(uint8_t *p, const AdapterConfig *c, int n_tensors, uint64_t total,
			 const uint8_t fingerprint[FINGERPRINT_LEN])
{
	const int	dims[] = {(int) c->method, c->d, c->h_dim, c->n_classes, c->prompt_len,
	c->max_len, c->rank, c->subspaces, c->subspace_rank};

	bool		text = c->head == ADAPTER_HEAD_TEXT;

	size_t		header = header_size(c);

	memset(p, 0, header);		/* reserved fields are zero */
	memcpy(p + OFF_MAGIC, ADAPTER_IO_MAGIC, 4);
	/*
	 * the oldest version that holds the adapter: 5 for a pair encoding, 3
	 * for text-row pooling (canonical: only with a linear head and prompt
	 * rows), else 1 unless its head is text-to-text
	 */
	put_u32(p + OFF_VERSION, c->pair ? ADAPTER_IO_VERSION_PAIR
			: c->regression && text ? ADAPTER_IO_VERSION_TEXT_REGRESSION
			: c->regression ? ADAPTER_IO_VERSION_REGRESSION
			: c->pool_text ? ADAPTER_IO_VERSION_POOL_TEXT
			: text ? ADAPTER_IO_VERSION_TEXT_HEAD : 1);
	put_u32(p + OFF_HEAD, text ? (uint32_t) ADAPTER_HEAD_TEXT
			: c->regression ? ADAPTER_IO_HEAD_REGRESSION : 0);
	put_u32(p + OFF_POOLING, c->pool_text ? 1 : 0);
	put_u32(p + OFF_HEADER_SIZE, (uint32_t) header);
	if (c->pair)
		put_u32(p + OFF_PAIR, (uint32_t) c->pair);
	for (int i = 0; i < 9; i++)
		put_u32(p + OFF_CONFIG + 4 * i, (uint32_t) dims[i]);
	put_u32(p + OFF_ALPHA, float_bits(c->alpha));
	put_u32(p + OFF_N_TENSORS, (uint32_t) n_tensors);
	put_u64(p + OFF_TOTAL_SIZE, total);
	memcpy(p + OFF_FINGERPRINT, fingerprint, FINGERPRINT_LEN);
	return p + header;
}

static uint8_t *
write_tensor(uint8_t *p, const TensorSpec *t, const float *w)
{
	size_t		name_len = strlen(t->name);

	put_u32(p, (uint32_t) name_len);
	memcpy(p + 4, t->name, name_len);
	p += 4 + name_len;
	put_u32(p, (uint32_t) t->ndim);
	p += 4;
	for (int i = 0; i < t->ndim; i++, p += 4)
		put_u32(p, t->shape[i]);
	put_u64(p, 4 * (uint64_t) t->n);
	p += 8;
	for (size_t i = 0; i < t->n; i++, p += 4)
		put_u32(p, float_bits(w[i]));
	return p;
}

NnStatus
adapter_serialize(const Adapter *a, const char *backbone_fingerprint,
				  const char *const *class_names, uint8_t **out, size_t *out_len,
				  NnError *err)
{
	uint8_t		fingerprint[FINGERPRINT_LEN];
	AdapterConfig cfg;
	TensorSpec	spec[N_TENSOR_KINDS];
	int			n_spec;
	uint64_t	size;
	uint8_t    *buf,
			   *p;
	NnStatus	st;

	*out = NULL;
	*out_len = 0;
	if (a == NULL)
		return nn_fail(err, NN_ERR_ARG, "no adapter to serialize");
	cfg = canonical_config(&a->cfg);
	size = header_size(&cfg) + 4 + 4;	/* + class count + CRC */
	if ((st = check_config(&cfg, NN_ERR_ARG, err)) != NN_OK ||
		(st = parse_fingerprint(backbone_fingerprint, fingerprint, err)) != NN_OK ||
		(st = check_class_names(class_names, cfg.n_classes, &size, err)) != NN_OK ||
		(st = check_bin_names(&cfg, (const char *const *) class_names, NN_ERR_ARG, err)) != NN_OK)
		return st;
	n_spec = expected_tensors(&cfg, spec);
	if ((st = check_tensors(a, spec, n_spec, &size, err)) != NN_OK)
		return st;
	if (size > SIZE_MAX || (buf = malloc((size_t) size)) == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory serializing an adapter of %llu bytes",
					   (unsigned long long) size);

	p = write_header(buf, &cfg, n_spec, size, fingerprint);
	put_u32(p, (uint32_t) cfg.n_classes);
	p += 4;
	for (int i = 0; i < cfg.n_classes; i++)
	{
		size_t		len = strlen(class_names[i]);

		put_u32(p, (uint32_t) len);
		memcpy(p + 4, class_names[i], len);
		p += 4 + len;
	}
	for (int i = 0; i < n_spec; i++)
		p = write_tensor(p, &spec[i], param_of(a, spec[i].field)->w);
	put_u32(p, adapter_io_crc32(buf, (size_t) size - 4));
	*out = buf;
	*out_len = (size_t) size;
	return NN_OK;
}

/* ---- reading: pass 1, validation ----------------------------------------- */

/* A cursor over the bytes between the header and the CRC. */
typedef struct Reader
{
	const uint8_t *buf;
	size_t		pos;
	size_t		end;			/* offset of the CRC */
	NnError    *err;
} Reader;

/* Fail unless n more bytes can be read; what names them. */
static NnStatus
need(Reader *r, uint64_t n, const char *what)
{
	if (n > r->end - r->pos)
		return nn_fail(r->err, NN_ERR_FORMAT,
					   "adapter truncated: %s needs %llu bytes at offset %zu, %zu remain",
					   what, (unsigned long long) n, r->pos, r->end - r->pos);
	return NN_OK;
}

static NnStatus
read_u32(Reader *r, uint32_t *v, const char *what)
{
	if (need(r, 4, what) != NN_OK)
		return NN_ERR_FORMAT;
	*v = get_u32(r->buf + r->pos);
	r->pos += 4;
	return NN_OK;
}

static NnStatus
format_error(NnError *err, const char *msg)
{
	return nn_fail(err, NN_ERR_FORMAT, "%s", msg);
}

/* Magic, version, sizes, CRC, reserved fields and the configuration. */
static NnStatus
parse_header(const uint8_t *buf, size_t len, AdapterConfig *cfg, NnError *err)
{
	static const char *const dim_names[] = {"method", "d", "h_dim", "n_classes", "prompt_len",
	"max_len", "rank", "subspaces", "subspace_rank"};
	int		   *const dims[] = {NULL, &cfg->d, &cfg->h_dim, &cfg->n_classes, &cfg->prompt_len,
	&cfg->max_len, &cfg->rank, &cfg->subspaces, &cfg->subspace_rank};
	uint32_t	v,
				version,
				head,
				pooling,
				header,
				pair = 0;
	uint64_t	total;

	if (len < 4 || memcmp(buf, ADAPTER_IO_MAGIC, 4) != 0)
		return format_error(err, len < 4 ? "adapter truncated: fewer than 4 bytes"
							: "not a dept adapter: the magic number is not \"DEPT\"");
	if (len < 8)
		return format_error(err, "adapter truncated: no format version");
	if ((version = get_u32(buf + OFF_VERSION)) < 1 || version > ADAPTER_IO_VERSION)
		return nn_fail(err, NN_ERR_FORMAT, "adapter format version %u is not supported (this build reads 1 to %d)",
					   version, ADAPTER_IO_VERSION);
	if (len < ADAPTER_IO_MIN_SIZE)
		return nn_fail(err, NN_ERR_FORMAT, "adapter truncated: %zu bytes, the smallest is %d",
					   len, ADAPTER_IO_MIN_SIZE);
	header = version == ADAPTER_IO_VERSION_PAIR ? ADAPTER_IO_HEADER_SIZE_PAIR : ADAPTER_IO_HEADER_SIZE;
	if ((v = get_u32(buf + OFF_HEADER_SIZE)) != header)
		return nn_fail(err, NN_ERR_FORMAT, "adapter header size %u is not %u", v, header);
	if (len < header + 4 + 4)
		return nn_fail(err, NN_ERR_FORMAT, "adapter truncated: %zu bytes, the smallest of version %u is %u",
					   len, version, header + 8);
	if ((total = get_u64(buf + OFF_TOTAL_SIZE)) != len)
		return nn_fail(err, NN_ERR_FORMAT, "adapter %s: the header says %llu bytes, there are %zu",
					   total > len ? "truncated" : "has trailing bytes",
					   (unsigned long long) total, len);
	if ((v = adapter_io_crc32(buf, len - 4)) != get_u32(buf + len - 4))
		return nn_fail(err, NN_ERR_FORMAT, "adapter checksum mismatch: stored %08x, computed %08x",
					   get_u32(buf + len - 4), v);
	pooling = get_u32(buf + OFF_POOLING);
	head = get_u32(buf + OFF_HEAD);
	if (version == ADAPTER_IO_VERSION_PAIR &&
		((pair = get_u32(buf + OFF_PAIR)) < ADAPTER_PAIR_NATIVE || pair > ADAPTER_PAIR_SIAMESE ||
		 (head != 0 && head != ADAPTER_IO_HEAD_REGRESSION) || pooling > 1))
		return nn_fail(err, NN_ERR_FORMAT, "adapter format version %u stores a pair encoding 1 or 2, "
					   "a linear (0) or regression (%d) head and pooling 0 or 1, but the pair at "
					   "offset %d is %u, the head %u and the pooling %u", version,
					   ADAPTER_IO_HEAD_REGRESSION, OFF_PAIR, pair, head, pooling);
	if (version == ADAPTER_IO_VERSION_REGRESSION && (head != ADAPTER_IO_HEAD_REGRESSION || pooling > 1))
		return nn_fail(err, NN_ERR_FORMAT, "adapter format version %u stores a regression head (%d) "
					   "and pooling 0 or 1, but the head at offset %d is %u and the pooling %u",
					   version, ADAPTER_IO_HEAD_REGRESSION, OFF_HEAD, head, pooling);
	if (version == ADAPTER_IO_VERSION_TEXT_REGRESSION && (head != ADAPTER_HEAD_TEXT || pooling != 0))
		return nn_fail(err, NN_ERR_FORMAT, "adapter format version %u stores a text-to-text head (1) "
					   "and pooling 0, but the head at offset %d is %u and the pooling %u",
					   version, OFF_HEAD, head, pooling);
	if (version < ADAPTER_IO_VERSION_POOL_TEXT && pooling != 0)
		return nn_fail(err, NN_ERR_FORMAT, "adapter reserved field 1 at offset %d is %u, not 0",
					   OFF_POOLING, pooling);
	if (version == ADAPTER_IO_VERSION_POOL_TEXT && pooling != 1)
		return nn_fail(err, NN_ERR_FORMAT, "adapter format version %u stores text-row pooling (1), "
					   "but the pooling at offset %d is %u", version, OFF_POOLING, pooling);
	if (version == 1 && head != 0)
		return nn_fail(err, NN_ERR_FORMAT, "adapter reserved field 0 at offset %d is %u, not 0 "
					   "(format version 1 has no head field)", OFF_HEAD, head);
	if (version == ADAPTER_IO_VERSION_TEXT_HEAD && head != ADAPTER_HEAD_TEXT)
		return nn_fail(err, NN_ERR_FORMAT, "adapter format version %u stores a text-to-text head (1), "
					   "but the head at offset %d is %u", version, OFF_HEAD, head);
	if (version == ADAPTER_IO_VERSION_POOL_TEXT && head != ADAPTER_HEAD_LINEAR)
		return nn_fail(err, NN_ERR_FORMAT, "adapter format version %u stores a linear head (0), "
					   "but the head at offset %d is %u", version, OFF_HEAD, head);

	memset(cfg, 0, sizeof(*cfg));
	for (int i = 0; i < 9; i++)
	{
		v = get_u32(buf + OFF_CONFIG + 4 * i);
		if (v > INT32_MAX)		/* so that the int conversion is exact */
			return nn_fail(err, NN_ERR_FORMAT, "adapter %s %u at offset %d is out of range",
						   dim_names[i], v, OFF_CONFIG + 4 * i);
		if (i == 0)
			cfg->method = (AdapterMethod) v;
		else
			*dims[i] = (int) v;
	}
	cfg->alpha = bits_float(get_u32(buf + OFF_ALPHA));
	cfg->regression = head == ADAPTER_IO_HEAD_REGRESSION ||
		version == ADAPTER_IO_VERSION_TEXT_REGRESSION;
	cfg->pair = (int) pair;
	cfg->head = head == ADAPTER_HEAD_TEXT ? ADAPTER_HEAD_TEXT : ADAPTER_HEAD_LINEAR;
	cfg->pool_text = pooling == 1;
	return check_config(cfg, NN_ERR_FORMAT, err);
}

/* count, then each name's length and bytes. */
static NnStatus
parse_class_names(Reader *r, int n_classes)
{
	uint32_t	count,
				len;
	char		what[64];
	size_t		bad;

	if (read_u32(r, &count, "the class count") != NN_OK)
		return NN_ERR_FORMAT;
	if (count != (uint32_t) n_classes)
		return nn_fail(r->err, NN_ERR_FORMAT, "adapter lists %u class names for %d classes",
					   count, n_classes);
	for (int i = 0; i < n_classes; i++)
	{
		snprintf(what, sizeof(what), "class name %d", i);
		if (read_u32(r, &len, what) != NN_OK)
			return NN_ERR_FORMAT;
		if (len == 0 || len > ADAPTER_IO_MAX_CLASS_NAME)
			return nn_fail(r->err, NN_ERR_FORMAT, "adapter class name %d at offset %zu is %u bytes, not 1..%d",
						   i, r->pos - 4, len, ADAPTER_IO_MAX_CLASS_NAME);
		if (need(r, len, what) != NN_OK)
			return NN_ERR_FORMAT;
		if ((bad = utf8_invalid_at(r->buf + r->pos, len)) != len)
			return nn_fail(r->err, NN_ERR_FORMAT, "adapter class name %d is not valid UTF-8 (byte 0x%02x at offset %zu)",
						   i, r->buf[r->pos + bad], r->pos + bad);
		r->pos += len;
	}
	return NN_OK;
}

/* The name of tensor record i, which must be spec[i]'s. */
static NnStatus
parse_tensor_name(Reader *r, const TensorSpec *spec, int i)
{
	uint32_t	len;
	char		name[ADAPTER_IO_MAX_TENSOR_NAME + 1];

	if (read_u32(r, &len, "a tensor name") != NN_OK)
		return NN_ERR_FORMAT;
	if (len == 0 || len > ADAPTER_IO_MAX_TENSOR_NAME)
		return nn_fail(r->err, NN_ERR_FORMAT, "adapter tensor %d name at offset %zu is %u bytes, not 1..%d",
					   i, r->pos - 4, len, ADAPTER_IO_MAX_TENSOR_NAME);
	if (need(r, len, "a tensor name") != NN_OK)
		return NN_ERR_FORMAT;
	if (len == strlen(spec[i].name) && memcmp(r->buf + r->pos, spec[i].name, len) == 0)
	{
		r->pos += len;
		return NN_OK;
	}
	printable(name, r->buf + r->pos, len);
	for (int j = 0; j < i; j++)
		if (strcmp(name, spec[j].name) == 0)
			return nn_fail(r->err, NN_ERR_FORMAT, "adapter tensor \"%s\" appears twice", name);
	for (int k = 0; k < N_TENSOR_KINDS; k++)
		if (strcmp(name, tensor_kinds[k].name) == 0)
			return nn_fail(r->err, NN_ERR_FORMAT, "adapter tensor %d is \"%s\" where \"%s\" is expected "
						   "(the configuration fixes which tensors are stored, and their order)",
						   i, name, spec[i].name);
	return nn_fail(r->err, NN_ERR_FORMAT, "adapter tensor %d has the unknown name \"%s\"", i, name);
}

/* Tensor record i: name, shape and byte length as spec[i], finite values. */
static NnStatus
parse_tensor(Reader *r, const TensorSpec *spec, int i, const uint8_t **data)
{
	const TensorSpec *t = &spec[i];
	uint32_t	ndim,
				dim;
	uint64_t	bytes;

	if (parse_tensor_name(r, spec, i) != NN_OK || read_u32(r, &ndim, t->name) != NN_OK)
		return NN_ERR_FORMAT;
	if (ndim != (uint32_t) t->ndim)
		return nn_fail(r->err, NN_ERR_FORMAT, "adapter tensor %s has %u dimensions, not %d",
					   t->name, ndim, t->ndim);
	for (int k = 0; k < t->ndim; k++)
	{
		if (read_u32(r, &dim, t->name) != NN_OK)
			return NN_ERR_FORMAT;
		if (dim != t->shape[k])
			return nn_fail(r->err, NN_ERR_FORMAT, "adapter tensor %s dimension %d is %u, the configuration says %u",
						   t->name, k, dim, t->shape[k]);
	}
	if (need(r, 8, t->name) != NN_OK)
		return NN_ERR_FORMAT;
	bytes = get_u64(r->buf + r->pos);
	r->pos += 8;
	if (bytes != 4 * (uint64_t) t->n)
		return nn_fail(r->err, NN_ERR_FORMAT, "adapter tensor %s is %llu bytes, its shape needs %llu",
					   t->name, (unsigned long long) bytes, 4 * (unsigned long long) t->n);
	if (need(r, bytes, t->name) != NN_OK)
		return NN_ERR_FORMAT;
	*data = r->buf + r->pos;
	for (size_t k = 0; k < t->n; k++)
		if (!bits_finite(get_u32(*data + 4 * k)))
			return nn_fail(r->err, NN_ERR_FORMAT, "adapter tensor %s value %zu at offset %zu is not finite",
						   t->name, k, r->pos + 4 * k);
	r->pos += (size_t) bytes;
	return NN_OK;
}

/* ---- reading: pass 2, building ------------------------------------------- */

void
adapter_free_class_names(char **names, int n)
{
	if (names == NULL)
		return;
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Copy the validated names starting at offset pos; they must be distinct. */
static NnStatus
build_class_names(const uint8_t *buf, size_t pos, int n, char ***out, NnError *err)
{
	char	  **names = calloc((size_t) n, sizeof(char *));
	int			first,
				second;

	*out = NULL;
	if (names == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading class names");
	for (int i = 0; i < n; i++)
	{
		uint32_t	len = get_u32(buf + pos);

		if ((names[i] = malloc((size_t) len + 1)) == NULL)
		{
			adapter_free_class_names(names, i);
			return nn_fail(err, NN_ERR_NOMEM, "out of memory reading class names");
		}
		memcpy(names[i], buf + pos + 4, len);
		names[i][len] = '\0';
		pos += 4 + (size_t) len;
	}
	if (find_duplicate((const char *const *) names, n, &first, &second) != NN_OK || first >= 0)
	{
		NnStatus	st = first >= 0 ?
			nn_fail(err, NN_ERR_FORMAT, "adapter class names %d and %d are both \"%.64s\"",
					first, second, names[first]) :
			nn_fail(err, NN_ERR_NOMEM, "out of memory checking class names");

		adapter_free_class_names(names, n);
		return st;
	}
	*out = names;
	return NN_OK;
}

/* A new adapter for cfg holding the validated values at data[i]. */
static NnStatus
build_adapter(const AdapterConfig *cfg, const TensorSpec *spec, int n_spec,
			  const uint8_t *const *data, int max_batch, Adapter **out, NnError *err)
{
	NnStatus	st = adapter_new(out, cfg, max_batch, 0, err);

	if (st != NN_OK)
		/* check_config is at least as strict as adapter_new, so this is memory */
		return st == NN_ERR_NOMEM ? st : nn_fail(err, NN_ERR_FORMAT, "adapter configuration refused: %s",
												 err ? err->msg : "");
	for (int i = 0; i < n_spec; i++)
	{
		float	   *w = ((AdapterParam *) ((char *) *out + spec[i].field))->w;

		for (size_t k = 0; k < spec[i].n; k++)
			w[k] = bits_float(get_u32(data[i] + 4 * k));
	}
	return NN_OK;
}

NnStatus
adapter_deserialize(const uint8_t *buf, size_t len, int max_batch, Adapter **out,
					char fingerprint[65], char ***class_names, NnError *err)
{
	static const char digits[] = "0123456789abcdef";
	AdapterConfig cfg;
	TensorSpec	spec[N_TENSOR_KINDS];
	const uint8_t *data[N_TENSOR_KINDS];
	int			n_spec;
	uint32_t	n_tensors;
	size_t		names_at;
	Reader		r;
	NnStatus	st;

	*out = NULL;
	*class_names = NULL;
	if (max_batch <= 0)
		return nn_fail(err, NN_ERR_ARG, "max_batch must be positive");
	if (buf == NULL && len > 0)
		return nn_fail(err, NN_ERR_ARG, "no adapter bytes");
	if (parse_header(buf, len, &cfg, err) != NN_OK)
		return NN_ERR_FORMAT;
	n_spec = expected_tensors(&cfg, spec);
	if ((n_tensors = get_u32(buf + OFF_N_TENSORS)) != (uint32_t) n_spec)
		return nn_fail(err, NN_ERR_FORMAT, "adapter lists %u tensors, a %s adapter with this configuration has %d",
					   n_tensors, adapter_method_name(cfg.method), n_spec);

	r = (Reader) {buf, header_size(&cfg), len - 4, err};
	names_at = r.pos + 4;
	if (parse_class_names(&r, cfg.n_classes) != NN_OK)
		return NN_ERR_FORMAT;
	for (int i = 0; i < n_spec; i++)
		if (parse_tensor(&r, spec, i, &data[i]) != NN_OK)
			return NN_ERR_FORMAT;
	if (r.pos != r.end)
		return nn_fail(err, NN_ERR_FORMAT, "adapter has %zu unexpected bytes after its last tensor at offset %zu",
					   r.end - r.pos, r.pos);

	if ((st = build_class_names(buf, names_at, cfg.n_classes, class_names, err)) != NN_OK)
		return st;
	if ((st = check_bin_names(&cfg, (const char *const *) *class_names, NN_ERR_FORMAT, err)) != NN_OK)
	{
		adapter_free_class_names(*class_names, cfg.n_classes);
		*class_names = NULL;
		return st;
	}
	if ((st = build_adapter(&cfg, spec, n_spec, data, max_batch, out, err)) != NN_OK)
	{
		adapter_free_class_names(*class_names, cfg.n_classes);
		*class_names = NULL;
		return st;
	}
	for (int i = 0; i < FINGERPRINT_LEN; i++)
	{
		fingerprint[2 * i] = digits[buf[OFF_FINGERPRINT + i] >> 4];
		fingerprint[2 * i + 1] = digits[buf[OFF_FINGERPRINT + i] & 15];
	}
	fingerprint[2 * FINGERPRINT_LEN] = '\0';
	return NN_OK;
}
