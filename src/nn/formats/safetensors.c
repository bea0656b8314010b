/*
 * safetensors.c: the .safetensors reader (format and memory in
 * safetensors.h).
 *
 * Opening is three steps, each validating before the next trusts it: the
 * 8-byte length against the file size, the header JSON into a table of
 * tensors whose byte ranges are checked (arithmetic overflow-checked) against
 * the data length and each other, then one pass that gives every float
 * tensor its F32 view -- a pointer into the mapping, into the file's valid
 * float32 sidecar (f32_sidecar.h), or converted memory.  Tensor bytes are
 * read at open only to convert F16/BF16 (and misaligned F32) without a
 * sidecar.
 */
#include "formats/safetensors.h"

#include "base/file_map.h"
#include "formats/f32_sidecar.h"
#include "formats/hf_config.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads little-endian data in place: a little-endian host is required"
#endif

/* Largest integer a JSON number (a double in cJSON) holds exactly. */
#define ST_MAX_JSON_INT 9007199254740992.0	/* 2^53 */

struct Safetensors
{
	const uint8_t *base;		/* the whole file */
	size_t		size;
	bool		mapped;			/* base is an mmap of size bytes, else malloc'ed */
	const char *header;			/* base + 8 */
	size_t		header_len;
	const uint8_t *data;		/* base + 8 + header_len */
	size_t		data_len;
	StTensor   *tensors;		/* in header order */
	int			n_tensors;
	const StTensor **by_name;	/* (n_tensors) sorted by name */
	char	   *names;			/* every name, NUL-terminated, back to back */
	float	   *converted;		/* F32 copies of F16/BF16/misaligned tensors */
	size_t		converted_bytes;
	/* a file opened by path: its float32 sidecar (f32_sidecar.h), if used */
	const char *path;			/* during safetensors_open only */
	struct stat source_stat;
	bool		leave_pending;	/* open for writing the sidecar: convert nothing */
	void	   *sidecar;		/* the sidecar's mapping, when the views point into it */
	size_t		sidecar_len;
	/* a sharded checkpoint (safetensors_open_index): header is the index */
	Safetensors **shards;		/* (n_shards) in the index's order of first mention */
	char	  **shard_names;	/* (n_shards) their file names */
	int			n_shards;
	const uint8_t **tensor_data;	/* (n_tensors) the data of each tensor's shard */
	char	   *index_json;
};

static const struct
{
	const char *name;
	size_t		size;
}			dtype_info[] = {
	[ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1}, [ST_I8] = {"I8", 1},
	[ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1},
	[ST_I16] = {"I16", 2}, [ST_U16] = {"U16", 2}, [ST_F16] = {"F16", 2},
	[ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4}, [ST_U32] = {"U32", 4},
	[ST_F32] = {"F32", 4}, [ST_I64] = {"I64", 8}, [ST_U64] = {"U64", 8},
	[ST_F64] = {"F64", 8},
};
#define N_DTYPES ((int) (sizeof(dtype_info) / sizeof(dtype_info[0])))

size_t
safetensors_dtype_size(StDtype dtype)
{
	return (int) dtype >= 0 && (int) dtype < N_DTYPES ? dtype_info[dtype].size : 0;
}

const char *
safetensors_dtype_name(StDtype dtype)
{
	return (int) dtype >= 0 && (int) dtype < N_DTYPES ? dtype_info[dtype].name : "?";
}

static bool
is_float_dtype(StDtype d)
{
	return d == ST_F32 || d == ST_F16 || d == ST_BF16;
}

/* ---- conversion ----------------------------------------------------------- */

/* IEEE half (binary16) bits to float, exactly. */
static float
half_to_float(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000) << 16;
	uint32_t	exp = (h >> 10) & 0x1F;
	uint32_t	man = h & 0x3FF;
	uint32_t	bits;
	float		f;

	if (exp == 0x1F)			/* inf / NaN: keep the payload */
		bits = sign | 0x7F800000u | (man << 13);
	else if (exp != 0)			/* normal: rebias 15 -> 127 */
		bits = sign | ((exp + 112) << 23) | (man << 13);
	else if (man == 0)			/* signed zero */
		bits = sign;
	else
	{
		/* subnormal: man * 2^-24, exact in float */
		f = (float) man * 0x1p-24f;
		memcpy(&bits, &f, 4);
		bits |= sign;
	}
	memcpy(&f, &bits, 4);
	return f;
}

void
safetensors_convert_f32(const StTensor *t, const void *raw, size_t first, size_t count,
						float *dst)
{
	const uint8_t *src = raw;

	for (size_t i = first; i < first + count; i++, dst++)
	{
		uint16_t	h;
		uint32_t	bits;

		switch (t->dtype)
		{
			case ST_F16:
				memcpy(&h, src + 2 * i, 2);
				*dst = half_to_float(h);
				break;
			case ST_BF16:
				memcpy(&h, src + 2 * i, 2);
				bits = (uint32_t) h << 16;
				memcpy(dst, &bits, 4);
				break;
			default:			/* misaligned F32 */
				memcpy(dst, src + 4 * i, 4);
				break;
		}
	}
}

/* ---- header parsing ---------------------------------------------------------- */

/* A JSON number that is an integer in 0..2^53; false otherwise. */
static bool
json_uint(const cJSON *v, uint64_t *out)
{
	double		d;

	if (!cJSON_IsNumber(v))
		return false;
	d = v->valuedouble;
	if (!(d >= 0.0 && d <= ST_MAX_JSON_INT) || d != (double) (uint64_t) d)
		return false;
	*out = (uint64_t) d;
	return true;
}

static bool
parse_dtype(const char *s, StDtype *out)
{
	for (int i = 0; i < N_DTYPES; i++)
		if (strcmp(s, dtype_info[i].name) == 0)
		{
			*out = (StDtype) i;
			return true;
		}
	return false;
}

/* Fill t from the header entry e (t->name already set); checks everything local. */
static NnStatus
parse_entry(StTensor *t, const cJSON *e, size_t data_len, NnError *err)
{
	const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
	const cJSON *dim;
	uint64_t	begin,
				end;
	size_t		numel = 1,
				nbytes;
	int			n = 0;

	if (!cJSON_IsObject(e))
		return nn_fail(err, NN_ERR_FORMAT, "safetensors: entry \"%s\" is not an object", t->name);
	if (!cJSON_IsString(dtype) || !parse_dtype(dtype->valuestring, &t->dtype))
		return nn_fail(err, NN_ERR_FORMAT, "safetensors: tensor \"%s\" has %s dtype%s%s%s",
					   t->name, cJSON_IsString(dtype) ? "unknown" : "no",
					   cJSON_IsString(dtype) ? " \"" : "",
					   cJSON_IsString(dtype) ? dtype->valuestring : "",
					   cJSON_IsString(dtype) ? "\"" : "");
	if (!cJSON_IsArray(shape))
		return nn_fail(err, NN_ERR_FORMAT, "safetensors: tensor \"%s\" has no shape array",
					   t->name);
	cJSON_ArrayForEach(dim, shape)
	{
		uint64_t	v;

		if (n >= ST_MAX_DIMS)
			return nn_fail(err, NN_ERR_FORMAT, "safetensors: tensor \"%s\" has more than %d dimensions",
						   t->name, ST_MAX_DIMS);
		if (!json_uint(dim, &v))
			return nn_fail(err, NN_ERR_FORMAT,
						   "safetensors: tensor \"%s\" has a dimension that is not a non-negative integer",
						   t->name);
		if (v > SIZE_MAX || __builtin_mul_overflow(numel, (size_t) v, &numel))
			return nn_fail(err, NN_ERR_FORMAT, "safetensors: tensor \"%s\" has too many elements",
						   t->name);
		t->shape[n++] = (int64_t) v;
	}
	t->ndim = n;
	if (__builtin_mul_overflow(numel, dtype_info[t->dtype].size, &nbytes))
		return nn_fail(err, NN_ERR_FORMAT, "safetensors: tensor \"%s\" has too many elements",
					   t->name);
	if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
		!json_uint(cJSON_GetArrayItem(offs, 0), &begin) ||
		!json_uint(cJSON_GetArrayItem(offs, 1), &end))
		return nn_fail(err, NN_ERR_FORMAT,
					   "safetensors: tensor \"%s\" needs \"data_offsets\": [begin, end] of non-negative integers",
					   t->name);
	if (begin > end || end > data_len)
		return nn_fail(err, NN_ERR_FORMAT,
					   "safetensors: tensor \"%s\" bytes [%llu, %llu) are outside the %zu data bytes",
					   t->name, (unsigned long long) begin, (unsigned long long) end, data_len);
	if (end - begin != nbytes)
		return nn_fail(err, NN_ERR_FORMAT,
					   "safetensors: tensor \"%s\" has %llu bytes, its %s shape needs %zu",
					   t->name, (unsigned long long) (end - begin), dtype_info[t->dtype].name,
					   nbytes);
	t->numel = numel;
	t->offset = (size_t) begin;
	t->nbytes = nbytes;
	return NN_OK;
}

static int
cmp_name(const void *a, const void *b)
{
	return strcmp((*(const StTensor *const *) a)->name, (*(const StTensor *const *) b)->name);
}

static int
cmp_offset(const void *a, const void *b)
{
	const StTensor *x = *(const StTensor *const *) a;
	const StTensor *y = *(const StTensor *const *) b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Unique names (builds by_name) and pairwise disjoint byte ranges. */
static NnStatus
check_table(Safetensors *st, NnError *err)
{
	size_t		n = (size_t) st->n_tensors;
	const StTensor **order;
	const StTensor *last = NULL;	/* non-empty tensor ending furthest so far */
	NnStatus	s = NN_OK;

	st->by_name = malloc(sizeof(*st->by_name) * (n > 0 ? n : 1));
	order = malloc(sizeof(*order) * (n > 0 ? n : 1));
	if (st->by_name == NULL || order == NULL)
	{
		free(order);
		return nn_fail(err, NN_ERR_NOMEM, "safetensors: out of memory");
	}
	for (size_t i = 0; i < n; i++)
		st->by_name[i] = order[i] = &st->tensors[i];
	qsort(st->by_name, n, sizeof(*order), cmp_name);
	qsort(order, n, sizeof(*order), cmp_offset);
	for (size_t i = 1; i < n; i++)
		if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0)
		{
			s = nn_fail(err, NN_ERR_FORMAT, "safetensors: tensor \"%s\" appears twice",
						st->by_name[i]->name);
			break;
		}
	/* by increasing start, each non-empty range must begin after every earlier one ends */
	for (size_t i = 0; i < n && s == NN_OK; i++)
	{
		const StTensor *t = order[i];

		if (t->nbytes == 0)
			continue;
		if (last != NULL && t->offset < last->offset + last->nbytes)
			s = nn_fail(err, NN_ERR_FORMAT, "safetensors: tensors \"%s\" and \"%s\" overlap",
						last->name, t->name);
		if (last == NULL || t->offset + t->nbytes > last->offset + last->nbytes)
			last = t;
	}
	free(order);
	return s;
}

/* The sidecar path of the file at path (F32_SIDECAR_SUFFIX appended); false if too long. */
static bool
sidecar_path(char *out, size_t size, const char *path)
{
	return snprintf(out, size, "%s%s", path, F32_SIDECAR_SUFFIX) < (int) size;
}

/* Point the pending views into the file's sidecar when it has a valid one. */
static bool
bind_sidecar(Safetensors *st)
{
	F32SidecarSource src;
	char		path[4096];

	if (!sidecar_path(path, sizeof(path), st->path))
		return false;
	f32_sidecar_source(&src, &st->source_stat, st->header, st->header_len);
	return f32_sidecar_map(path, &src, st->tensors, st->n_tensors, &st->sidecar, &st->sidecar_len);
}

/*
 * Give every float tensor its F32 view: into the mapping, into a valid
 * sidecar, or converted here (left pending in leave_pending mode).
 */
static NnStatus
bind_floats(Safetensors *st, NnError *err)
{
	size_t		need = 0,
				used = 0;

	for (int i = 0; i < st->n_tensors; i++)
	{
		StTensor   *t = &st->tensors[i];
		const uint8_t *src = st->data + t->offset;

		if (t->dtype == ST_F32 && ((uintptr_t) src % sizeof(float)) == 0)
			t->f32 = (const float *) src;
		else if (is_float_dtype(t->dtype) &&
				 __builtin_add_overflow(need, t->numel * sizeof(float), &need))
			return nn_fail(err, NN_ERR_FORMAT, "safetensors: float tensors too large to convert");
	}
	if (need == 0 || (st->path != NULL && bind_sidecar(st)) || st->leave_pending)
		return NN_OK;
	st->converted = malloc(need);
	if (st->converted == NULL)
		return nn_fail(err, NN_ERR_NOMEM,
					   "safetensors: out of memory converting %zu bytes of F16/BF16 tensors to F32",
					   need);
	for (int i = 0; i < st->n_tensors; i++)
	{
		StTensor   *t = &st->tensors[i];

		if (!is_float_dtype(t->dtype) || t->f32 != NULL)
			continue;
		safetensors_convert_f32(t, st->data + t->offset, 0, t->numel, st->converted + used);
		t->f32 = st->converted + used;
		used += t->numel;
	}
	st->converted_bytes = need;
	return NN_OK;
}

/* Parse the header of st->base (st->size bytes) and build the table. */
static NnStatus
parse_file(Safetensors *st, NnError *err)
{
	uint64_t	n;
	cJSON	   *root;
	const cJSON *e;
	size_t		names_len = 0;
	char	   *names;
	int			count = 0;
	NnStatus	s = NN_OK;

	if (st->size < 8)
		return nn_fail(err, NN_ERR_FORMAT, "safetensors: file of %zu bytes has no header length",
					   st->size);
	memcpy(&n, st->base, 8);
	if (n == 0 || n > ST_MAX_HEADER || n > st->size - 8)
		return nn_fail(err, NN_ERR_FORMAT,
					   "safetensors: header length %llu does not fit the %zu-byte file (limit %llu)",
					   (unsigned long long) n, st->size, (unsigned long long) ST_MAX_HEADER);
	st->header = (const char *) st->base + 8;
	st->header_len = (size_t) n;
	st->data = st->base + 8 + n;
	st->data_len = st->size - 8 - (size_t) n;

	root = cJSON_ParseWithLength(st->header, st->header_len);
	if (!cJSON_IsObject(root))
	{
		cJSON_Delete(root);
		return nn_fail(err, NN_ERR_FORMAT, "safetensors: header is not a JSON object");
	}
	cJSON_ArrayForEach(e, root)
	{
		if (e->string == NULL)
			continue;
		if (strcmp(e->string, "__metadata__") != 0)
		{
			count++;
			names_len += strlen(e->string) + 1;
		}
	}
	st->tensors = calloc((size_t) (count > 0 ? count : 1), sizeof(StTensor));
	st->names = names = malloc(names_len > 0 ? names_len : 1);
	if (st->tensors == NULL || names == NULL)
	{
		cJSON_Delete(root);
		return nn_fail(err, NN_ERR_NOMEM, "safetensors: out of memory reading the header");
	}
	cJSON_ArrayForEach(e, root)
	{
		StTensor   *t;
		size_t		len;

		if (e->string == NULL || strcmp(e->string, "__metadata__") == 0)
			continue;
		t = &st->tensors[st->n_tensors++];
		len = strlen(e->string) + 1;
		memcpy(names, e->string, len);
		t->name = names;
		names += len;
		if ((s = parse_entry(t, e, st->data_len, err)) != NN_OK)
			break;
	}
	cJSON_Delete(root);
	if (s == NN_OK)
		s = check_table(st, err);
	if (s == NN_OK)
		s = bind_floats(st, err);
	return s;
}

/* ---- public ----------------------------------------------------------------- */

void
safetensors_close(Safetensors *st)
{
	if (st == NULL)
		return;
	if (st->mapped)
		nn_map_release((void *) st->base, st->size);
	else
		free((void *) st->base);
	free(st->tensors);
	free(st->by_name);
	free(st->names);
	free(st->converted);
	if (st->sidecar != NULL)
		nn_map_release(st->sidecar, st->sidecar_len);
	for (int i = 0; i < st->n_shards; i++)
	{
		safetensors_close(st->shards[i]);
		free(st->shard_names[i]);
	}
	free(st->shards);
	free(st->shard_names);
	free(st->tensor_data);
	free(st->index_json);
	free(st);
}

/* Map and parse the file at path; leave_pending: for the sidecar writer, convert nothing. */
static NnStatus
open_file(Safetensors **out, const char *path, bool leave_pending, NnError *err)
{
	Safetensors *st;
	struct stat sb;
	int			fd;
	void	   *p;
	NnStatus	s;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return nn_fail(err, NN_ERR_IO, "cannot open \"%s\"", path);
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
	{
		close(fd);
		return nn_fail(err, NN_ERR_IO, "\"%s\" is not a regular file", path);
	}
	if (sb.st_size < 8)
	{
		close(fd);
		return nn_fail(err, NN_ERR_FORMAT, "safetensors: \"%s\" has %lld bytes, too short",
					   path, (long long) sb.st_size);
	}
	p = nn_map_file(fd, (size_t) sb.st_size);
	close(fd);					/* the mapping keeps the file */
	if (p == NULL)
		return nn_fail(err, NN_ERR_IO, "cannot map \"%s\"", path);
	st = calloc(1, sizeof(Safetensors));
	if (st == NULL)
	{
		nn_map_release(p, (size_t) sb.st_size);
		return nn_fail(err, NN_ERR_NOMEM, "safetensors: out of memory");
	}
	st->base = p;
	st->size = (size_t) sb.st_size;
	st->mapped = true;
	st->path = path;
	st->source_stat = sb;
	st->leave_pending = leave_pending;
	s = parse_file(st, err);
	st->path = NULL;
	if (s != NN_OK)
	{
		safetensors_close(st);
		return s;
	}
	*out = st;
	return NN_OK;
}

NnStatus
safetensors_open(Safetensors **out, const char *path, NnError *err)
{
	return open_file(out, path, false, err);
}

/* Whether a tensor with values still lacks its float view. */
static bool
has_pending_values(const Safetensors *st)
{
	for (int i = 0; i < st->n_tensors; i++)
		if (f32_sidecar_pending(&st->tensors[i]) && st->tensors[i].numel > 0)
			return true;
	return false;
}

NnStatus
safetensors_write_f32_sidecar(const char *path, NnError *err)
{
	Safetensors *st;
	char		sidecar[4096];
	F32SidecarSource src;
	NnStatus	s;

	if (!sidecar_path(sidecar, sizeof(sidecar), path))
		return nn_fail(err, NN_ERR_ARG, "safetensors: path too long");
	if ((s = open_file(&st, path, true, err)) != NN_OK)
		return s;
	/* nothing pending: no F16/BF16 value, or a valid sidecar is there already */
	if (has_pending_values(st))
	{
		f32_sidecar_source(&src, &st->source_stat, st->header, st->header_len);
		s = f32_sidecar_write(sidecar, &src, st->tensors, st->n_tensors, st->data, err);
	}
	safetensors_close(st);
	return s;
}

NnStatus
safetensors_from_buffer(Safetensors **out, const void *buf, size_t len, NnError *err)
{
	Safetensors *st;
	void	   *copy = NULL;
	NnStatus	s;

	*out = NULL;
	st = calloc(1, sizeof(Safetensors));
	/* 64-byte aligned like a mapping, so F32 alignment depends on the header alone */
	if (st == NULL || posix_memalign(&copy, 64, len > 0 ? len : 1) != 0)
	{
		free(st);
		return nn_fail(err, NN_ERR_NOMEM, "safetensors: out of memory");
	}
	if (len > 0)
		memcpy(copy, buf, len);
	st->base = copy;
	st->size = len;
	if ((s = parse_file(st, err)) != NN_OK)
	{
		safetensors_close(st);
		return s;
	}
	*out = st;
	return NN_OK;
}

const char *
safetensors_header(const Safetensors *st, size_t *len)
{
	*len = st->header_len;
	return st->header;
}

bool
safetensors_mapped(const Safetensors *st)
{
	return st->n_shards > 0 ? st->shards[0]->mapped : st->mapped;
}

bool
safetensors_region(const Safetensors *st, const void **base, size_t *len)
{
	if (st->n_shards > 0 || !st->mapped)
		return false;
	*base = st->base;
	*len = st->size;
	return true;
}

size_t
safetensors_converted_bytes(const Safetensors *st)
{
	size_t		n = st->converted_bytes;

	for (int i = 0; i < st->n_shards; i++)
		n += safetensors_converted_bytes(st->shards[i]);
	return n;
}

size_t
safetensors_sidecar_bytes(const Safetensors *st)
{
	size_t		n = st->sidecar != NULL ? st->sidecar_len : 0;

	for (int i = 0; i < st->n_shards; i++)
		n += safetensors_sidecar_bytes(st->shards[i]);
	return n;
}

int
safetensors_count(const Safetensors *st)
{
	return st->n_tensors;
}

const StTensor *
safetensors_tensor(const Safetensors *st, int i)
{
	return i >= 0 && i < st->n_tensors ? &st->tensors[i] : NULL;
}

const StTensor *
safetensors_find(const Safetensors *st, const char *name)
{
	int			lo = 0,
				hi = st->n_tensors - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		const StTensor *t = st->by_name[mid];
		int			c = strcmp(name, t->name);

		if (c == 0)
			return t;
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Where t's offsets count from: the file's data, or its shard's. */
static const uint8_t *
tensor_data(const Safetensors *st, const StTensor *t)
{
	return st->tensor_data != NULL ? st->tensor_data[t - st->tensors] : st->data;
}

const void *
safetensors_raw(const Safetensors *st, const StTensor *t)
{
	return tensor_data(st, t) + t->offset;
}

/* Format shape as "[a, b]" into buf. */
static const char *
shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
	size_t		off = 0;

	off += (size_t) snprintf(buf, cap, "[");
	for (int i = 0; i < ndim && off < cap; i++)
		off += (size_t) snprintf(buf + off, cap - off, "%s%lld", i ? ", " : "",
								 (long long) shape[i]);
	if (off < cap)
		snprintf(buf + off, cap - off, "]");
	return buf;
}

/* Find name and check its shape; t is set on success. */
static NnStatus
lookup(const Safetensors *st, const char *name, int ndim, const int64_t *shape,
	   const StTensor **t, NnError *err)
{
	char		want[160],
				have[160];

	*t = safetensors_find(st, name);
	if (*t == NULL)
		return nn_fail(err, NN_ERR_FORMAT, "safetensors: tensor \"%s\" is missing", name);
	if ((*t)->ndim != ndim || (ndim > 0 && memcmp((*t)->shape, shape, sizeof(int64_t) * ndim) != 0))
		return nn_fail(err, NN_ERR_FORMAT, "safetensors: tensor \"%s\" has shape %s, expected %s",
					   name, shape_str(have, sizeof(have), (*t)->ndim, (*t)->shape),
					   shape_str(want, sizeof(want), ndim, shape));
	return NN_OK;
}

NnStatus
safetensors_get_f32(const Safetensors *st, const char *name, int ndim, const int64_t *shape,
					const float **data, NnError *err)
{
	const StTensor *t;
	NnStatus	s = lookup(st, name, ndim, shape, &t, err);

	*data = NULL;
	if (s != NN_OK)
		return s;
	if (!is_float_dtype(t->dtype))
		return nn_fail(err, NN_ERR_FORMAT, "safetensors: tensor \"%s\" is %s, expected a float dtype",
					   name, dtype_info[t->dtype].name);
	{
		/* an empty tensor gets no converted view; hand out a valid empty one */
		static const float no_values[1];

		*data = t->f32 ? t->f32 : no_values;
	}
	return NN_OK;
}

NnStatus
safetensors_get(const Safetensors *st, const char *name, StDtype dtype, int ndim,
				const int64_t *shape, const void **data, NnError *err)
{
	const StTensor *t;
	NnStatus	s = lookup(st, name, ndim, shape, &t, err);

	*data = NULL;
	if (s != NN_OK)
		return s;
	if (t->dtype != dtype)
		return nn_fail(err, NN_ERR_FORMAT, "safetensors: tensor \"%s\" is %s, expected %s",
					   name, dtype_info[t->dtype].name, safetensors_dtype_name(dtype));
	*data = tensor_data(st, t) + t->offset;
	return NN_OK;
}

void
safetensors_hash_sample(const Safetensors *st, Sha256 *ctx, size_t sample_bytes)
{
	size_t		hlen;
	const char *header = safetensors_header(st, &hlen);

	sha256_update(ctx, header, hlen);
	for (int i = 0; i < safetensors_count(st); i++)
	{
		const StTensor *t = safetensors_tensor(st, i);
		const uint8_t *raw = safetensors_raw(st, t);
		size_t		head = t->nbytes < sample_bytes ? t->nbytes : sample_bytes;

		sha256_update(ctx, raw, head);
		if (t->nbytes > head)
			sha256_update(ctx, raw + t->nbytes - head, head);
	}
}

/* ---- sharded checkpoints ----------------------------------------------------- */

/* A shard's name: a plain file name ending in .safetensors (never a path). */
static bool
plain_shard_name(const char *name)
{
	size_t		len = strlen(name);

	return len > strlen(".safetensors") && len <= 255 && name[0] != '.' &&
		strchr(name, '/') == NULL && strchr(name, '\\') == NULL &&
		strcmp(name + len - strlen(".safetensors"), ".safetensors") == 0;
}

/* The index's weight_map, checked: an object of plain shard names. */
static NnStatus
index_weight_map(const cJSON *root, const cJSON **map, NnError *err)
{
	const cJSON *e;

	*map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!cJSON_IsObject(*map) || cJSON_GetArraySize(*map) == 0)
		return nn_fail(err, NN_ERR_FORMAT, "safetensors index: no weight_map object");
	cJSON_ArrayForEach(e, *map)
		if (e->string == NULL || !cJSON_IsString(e) || !plain_shard_name(e->valuestring))
		return nn_fail(err, NN_ERR_FORMAT,
					   "safetensors index: tensor \"%.80s\" maps to no plain .safetensors file name",
					   e->string ? e->string : "");
	return NN_OK;
}

/* Open each shard the weight map names, once, in order of first mention. */
static NnStatus
open_shards(Safetensors *st, const char *dir, const cJSON *map, NnError *err)
{
	const cJSON *e;
	NnStatus	s = NN_OK;

	st->shards = calloc((size_t) cJSON_GetArraySize(map), sizeof(Safetensors *));
	st->shard_names = calloc((size_t) cJSON_GetArraySize(map), sizeof(char *));
	if (st->shard_names == NULL || st->shards == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "safetensors: out of memory");
	cJSON_ArrayForEach(e, map)
	{
		char		path[4096];
		bool		seen = false;

		for (int i = 0; i < st->n_shards && !seen; i++)
			seen = strcmp(st->shard_names[i], e->valuestring) == 0;
		if (seen)
			continue;
		if (st->n_shards >= ST_MAX_SHARDS)
		{
			s = nn_fail(err, NN_ERR_FORMAT, "safetensors index: more than %d shards", ST_MAX_SHARDS);
			break;
		}
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->valuestring) >= (int) sizeof(path))
		{
			s = nn_fail(err, NN_ERR_ARG, "safetensors index: shard path too long");
			break;
		}
		if ((st->shard_names[st->n_shards] = strdup(e->valuestring)) == NULL)
		{
			s = nn_fail(err, NN_ERR_NOMEM, "safetensors: out of memory");
			break;
		}
		/* counted before opening, so that close frees the name either way */
		if ((s = safetensors_open(&st->shards[st->n_shards++], path, err)) != NN_OK)
			break;
	}
	return s;
}

/* Every shard's tensors in one table, each knowing its shard's data. */
static NnStatus
merge_shards(Safetensors *st, NnError *err)
{
	size_t		n = 0;

	for (int i = 0; i < st->n_shards; i++)
		n += (size_t) st->shards[i]->n_tensors;
	st->tensors = calloc(n > 0 ? n : 1, sizeof(StTensor));
	st->tensor_data = calloc(n > 0 ? n : 1, sizeof(*st->tensor_data));
	st->by_name = malloc(sizeof(*st->by_name) * (n > 0 ? n : 1));
	if (st->tensors == NULL || st->tensor_data == NULL || st->by_name == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "safetensors: out of memory");
	for (int i = 0; i < st->n_shards; i++)
		for (int k = 0; k < st->shards[i]->n_tensors; k++)
		{
			st->tensor_data[st->n_tensors] = st->shards[i]->data;
			st->by_name[st->n_tensors] = &st->tensors[st->n_tensors];
			st->tensors[st->n_tensors++] = st->shards[i]->tensors[k];
		}
	qsort(st->by_name, n, sizeof(*st->by_name), cmp_name);
	for (size_t i = 1; i < n; i++)
		if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0)
			return nn_fail(err, NN_ERR_FORMAT, "safetensors index: tensor \"%s\" is in two shards",
						   st->by_name[i]->name);
	return NN_OK;
}

/* Each tensor the weight map names is in the shard it names. */
static NnStatus
check_weight_map(const Safetensors *st, const cJSON *map, NnError *err)
{
	const cJSON *e;

	cJSON_ArrayForEach(e, map)
	{
		const StTensor *t = safetensors_find(st, e->string);
		bool		ok = false;

		for (int i = 0; t != NULL && i < st->n_shards && !ok; i++)
			ok = strcmp(st->shard_names[i], e->valuestring) == 0 &&
				safetensors_find(st->shards[i], e->string) != NULL;
		if (!ok)
			return nn_fail(err, NN_ERR_FORMAT,
						   "safetensors index: tensor \"%.80s\" is not in its shard \"%.80s\"",
						   e->string, e->valuestring);
	}
	return NN_OK;
}

NnStatus
safetensors_open_index_json(Safetensors **out, const char *dir, const char *json, size_t len,
							NnError *err)
{
	Safetensors *st;
	cJSON	   *root;
	const cJSON *map;
	NnStatus	s;

	*out = NULL;
	if ((st = calloc(1, sizeof(Safetensors))) == NULL ||
		(st->index_json = malloc(len > 0 ? len : 1)) == NULL)
	{
		free(st);
		return nn_fail(err, NN_ERR_NOMEM, "safetensors: out of memory");
	}
	memcpy(st->index_json, json, len);
	st->header = st->index_json;
	st->header_len = len;
	root = cJSON_ParseWithLength(json, len);
	if (!cJSON_IsObject(root))
		s = nn_fail(err, NN_ERR_FORMAT, "safetensors index is not a JSON object");
	else if ((s = index_weight_map(root, &map, err)) == NN_OK &&
			 (s = open_shards(st, dir, map, err)) == NN_OK &&
			 (s = merge_shards(st, err)) == NN_OK)
		s = check_weight_map(st, map, err);
	cJSON_Delete(root);
	if (s != NN_OK)
	{
		safetensors_close(st);
		return s;
	}
	*out = st;
	return NN_OK;
}

/* The directory of the index at path into dir ("." without a slash); false if too long. */
static bool
index_dir(char *dir, size_t size, const char *path)
{
	char	   *slash;

	if (snprintf(dir, size, "%s", path) >= (int) size)
		return false;
	if ((slash = strrchr(dir, '/')) != NULL)
		*slash = '\0';
	else
		snprintf(dir, size, ".");
	return true;
}

NnStatus
safetensors_open_index(Safetensors **out, const char *path, NnError *err)
{
	char		dir[4096];
	char	   *json;
	size_t		len;
	NnStatus	s;

	*out = NULL;
	if (!index_dir(dir, sizeof(dir), path))
		return nn_fail(err, NN_ERR_ARG, "safetensors index: path too long");
	if ((json = hf_read_file(path, ST_MAX_INDEX_BYTES, &len)) == NULL)
		return nn_fail(err, NN_ERR_IO, "cannot read \"%s\"", path);
	s = safetensors_open_index_json(out, dir, json, len, err);
	free(json);
	return s;
}

/* Write the sidecar of each shard the weight map names, once each. */
static NnStatus
write_shard_sidecars(const char *dir, const cJSON *map, NnError *err)
{
	const char **done = calloc((size_t) cJSON_GetArraySize(map), sizeof(char *));
	int			n_done = 0;
	const cJSON *e;
	NnStatus	s = NN_OK;

	if (done == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "safetensors: out of memory");
	cJSON_ArrayForEach(e, map)
	{
		char		path[4096];
		bool		seen = false;

		for (int i = 0; i < n_done && !seen; i++)
			seen = strcmp(done[i], e->valuestring) == 0;
		if (seen)
			continue;
		done[n_done++] = e->valuestring;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->valuestring) >= (int) sizeof(path))
			s = nn_fail(err, NN_ERR_ARG, "safetensors index: shard path too long");
		else
			s = safetensors_write_f32_sidecar(path, err);
		if (s != NN_OK)
			break;
	}
	free(done);
	return s;
}

NnStatus
safetensors_write_f32_sidecars_index(const char *path, NnError *err)
{
	char		dir[4096];
	char	   *json;
	size_t		len;
	cJSON	   *root;
	const cJSON *map;
	NnStatus	s;

	if (!index_dir(dir, sizeof(dir), path))
		return nn_fail(err, NN_ERR_ARG, "safetensors index: path too long");
	if ((json = hf_read_file(path, ST_MAX_INDEX_BYTES, &len)) == NULL)
		return nn_fail(err, NN_ERR_IO, "cannot read \"%s\"", path);
	root = cJSON_ParseWithLength(json, len);
	free(json);
	if (!cJSON_IsObject(root))
		s = nn_fail(err, NN_ERR_FORMAT, "safetensors index is not a JSON object");
	else if ((s = index_weight_map(root, &map, err)) == NN_OK)
		s = write_shard_sidecars(dir, map, err);
	cJSON_Delete(root);
	return s;
}

bool
safetensors_index_lists(const char *json, size_t len, const char *name)
{
	cJSON	   *root = cJSON_ParseWithLength(json, len);
	const cJSON *map;
	const cJSON *e;
	bool		found = false;
	NnError		err;

	if (cJSON_IsObject(root) && index_weight_map(root, &map, &err) == NN_OK)
		cJSON_ArrayForEach(e, map)
			found = found || strcmp(e->valuestring, name) == 0;
	cJSON_Delete(root);
	return found;
}
