/*
 * tfjs_weights.c: the TF.js weights-manifest reader (format and mapping
 * strategy in tfjs_weights.h).
 *
 * Loading is three steps, each validating before the next one trusts it:
 * parse the manifest into a table of tensors with their byte offsets (all
 * arithmetic overflow-checked), check that the shard files exist and hold
 * exactly the bytes the table needs, then map (or read) them.  Nothing reads
 * tensor bytes at load time, so opening costs a JSON parse plus a few mmap
 * calls regardless of the model's size.
 */
#include "formats/tfjs_weights.h"

#include "base/file_map.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* model.json holds the whole TF graph; anything bigger is not a model file. */
#define TFJS_MAX_JSON_BYTES ((size_t) 256 << 20)
#define TFJS_MAX_PATH 4096

typedef struct TfjsGroup
{
	int			first_path;		/* index of its first shard in paths */
	int			n_paths;
	size_t		nbytes;			/* bytes its tensors need */
	uint8_t    *data;			/* start of its contiguous bytes */
	size_t		map_len;		/* reserved length if mapped, else 0 */
} TfjsGroup;

struct TfjsWeights
{
	char	   *json;			/* model.json bytes */
	size_t		json_len;
	TfjsTensor *tensors;
	int			n_tensors;
	char	   *strings;		/* one block holding every name and path */
	const char **paths;			/* shard file names, all groups in order */
	int			n_paths;
	TfjsGroup  *groups;
	int			n_groups;
	bool		mapped;
};

static const char *
dtype_name(TfjsDtype d)
{
	return d == TFJS_FLOAT32 ? "float32" : "int32";
}

/* A shard path must name a file in the model directory, nothing else. */
static bool
path_is_plain_name(const char *p)
{
	return p[0] != '\0' && strchr(p, '/') == NULL && strcmp(p, ".") != 0 &&
		strcmp(p, "..") != 0 && strlen(p) < 256;
}

/* Parse one "shape" array into t, checking every dimension and the product. */
static NnStatus
parse_shape(TfjsTensor *t, const cJSON *shape, NnError *err)
{
	int			n;
	size_t		numel = 1;

	if (!cJSON_IsArray(shape))
		return nn_fail(err, NN_ERR_FORMAT, "weight \"%s\": \"shape\" is not an array", t->name);
	n = cJSON_GetArraySize(shape);
	if (n > TFJS_MAX_DIMS)
		return nn_fail(err, NN_ERR_FORMAT, "weight \"%s\": %d dimensions (at most %d)",
					   t->name, n, TFJS_MAX_DIMS);
	t->ndim = n;
	for (int i = 0; i < n; i++)
	{
		const cJSON *d = cJSON_GetArrayItem(shape, i);
		double		v;

		if (!cJSON_IsNumber(d))
			return nn_fail(err, NN_ERR_FORMAT, "weight \"%s\": dimension %d is not a number",
						   t->name, i);
		v = d->valuedouble;
		if (!(v >= 0 && v <= INT32_MAX) || v != floor(v))
			return nn_fail(err, NN_ERR_FORMAT,
						   "weight \"%s\": dimension %d (%g) is not an integer in 0..%d",
						   t->name, i, v, INT32_MAX);
		t->shape[i] = (int64_t) v;
		if (__builtin_mul_overflow(numel, (size_t) t->shape[i], &numel))
			return nn_fail(err, NN_ERR_FORMAT, "weight \"%s\": shape product overflows",
						   t->name);
	}
	t->numel = numel;
	if (__builtin_mul_overflow(numel, (size_t) 4, &t->nbytes))
		return nn_fail(err, NN_ERR_FORMAT, "weight \"%s\": byte size overflows", t->name);
	return NN_OK;
}

/* Parse one entry of a group's "weights" into t (name stays owned by json). */
static NnStatus
parse_weight(TfjsTensor *t, const cJSON *wj, int index, NnError *err)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(wj, "name");
	const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(wj, "dtype");

	if (!cJSON_IsObject(wj))
		return nn_fail(err, NN_ERR_FORMAT, "weights entry %d is not an object", index);
	if (!cJSON_IsString(name) || name->valuestring[0] == '\0')
		return nn_fail(err, NN_ERR_FORMAT, "weights entry %d has no \"name\"", index);
	t->name = name->valuestring;
	if (!cJSON_IsString(dtype))
		return nn_fail(err, NN_ERR_FORMAT, "weight \"%s\" has no \"dtype\"", t->name);
	if (strcmp(dtype->valuestring, "float32") == 0)
		t->dtype = TFJS_FLOAT32;
	else if (strcmp(dtype->valuestring, "int32") == 0)
		t->dtype = TFJS_INT32;
	else
		return nn_fail(err, NN_ERR_FORMAT, "weight \"%s\": unsupported dtype \"%.32s\"",
					   t->name, dtype->valuestring);
	if (cJSON_GetObjectItemCaseSensitive(wj, "quantization") != NULL)
		return nn_fail(err, NN_ERR_FORMAT, "weight \"%s\" is quantized (not supported)",
					   t->name);
	return parse_shape(t, cJSON_GetObjectItemCaseSensitive(wj, "shape"), err);
}

static int
cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* Reject duplicate tensor names (a lookup would silently pick one). */
static NnStatus
check_unique_names(const TfjsWeights *w, NnError *err)
{
	const char **names;
	NnStatus	status = NN_OK;

	if (w->n_tensors < 2)
		return NN_OK;
	names = malloc(sizeof(char *) * (size_t) w->n_tensors);
	if (names == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory checking weight names");
	for (int i = 0; i < w->n_tensors; i++)
		names[i] = w->tensors[i].name;
	qsort(names, (size_t) w->n_tensors, sizeof(char *), cmp_name);
	for (int i = 1; i < w->n_tensors; i++)
		if (strcmp(names[i - 1], names[i]) == 0)
		{
			status = nn_fail(err, NN_ERR_FORMAT, "weight \"%s\" is listed twice", names[i]);
			break;
		}
	free(names);
	return status;
}

/*
 * Build w->tensors, w->paths and w->groups from w->json.  Names and paths
 * are copied into one block so the cJSON tree can be freed afterwards.
 */
/*
 * One weightsManifest group (validated by the first pass): its shard names
 * (pointing into the JSON tree until copied out) and its tensors with their
 * offsets; adds the bytes of the names to *strbytes.
 */
static NnStatus
parse_group(TfjsWeights *w, int g, const cJSON *group, size_t *strbytes, NnError *err)
{
	const cJSON *paths = cJSON_GetObjectItemCaseSensitive(group, "paths");
	const cJSON *weights = cJSON_GetObjectItemCaseSensitive(group, "weights");
	const cJSON *it;
	size_t		offset = 0;
	NnStatus	status;

	w->groups[g].first_path = w->n_paths;
	cJSON_ArrayForEach(it, paths)
		w->paths[w->n_paths++] = it->valuestring;	/* re-pointed by the caller */
	w->groups[g].n_paths = w->n_paths - w->groups[g].first_path;
	cJSON_ArrayForEach(it, weights)
	{
		TfjsTensor *t = &w->tensors[w->n_tensors];

		if ((status = parse_weight(t, it, w->n_tensors, err)) != NN_OK)
			return status;
		t->group = g;
		t->offset = offset;
		if (__builtin_add_overflow(offset, t->nbytes, &offset))
			return nn_fail(err, NN_ERR_FORMAT, "weights manifest size overflows");
		*strbytes += strlen(t->name) + 1;
		w->n_tensors++;
	}
	if (offset > 0 && w->groups[g].n_paths == 0)
		return nn_fail(err, NN_ERR_FORMAT, "weightsManifest group %d has weights but no paths", g);
	w->groups[g].nbytes = offset;
	return NN_OK;
}

static NnStatus
parse_manifest(TfjsWeights *w, NnError *err)
{
	cJSON	   *root;
	const cJSON *manifest;
	NnStatus	status = NN_OK;
	size_t		strbytes = 0;
	char	   *sp;
	int			nt = 0,
				np = 0;

	root = cJSON_ParseWithLength(w->json, w->json_len);
	if (root == NULL)
		return nn_fail(err, NN_ERR_FORMAT, "model.json is not valid JSON");
	manifest = cJSON_GetObjectItemCaseSensitive(root, "weightsManifest");
	if (!cJSON_IsArray(manifest) || cJSON_GetArraySize(manifest) == 0)
	{
		status = nn_fail(err, NN_ERR_FORMAT, "model.json has no \"weightsManifest\" array");
		goto done;
	}

	/* First pass: validate the structure and count. */
	w->n_groups = cJSON_GetArraySize(manifest);
	for (int g = 0; g < w->n_groups; g++)
	{
		const cJSON *group = cJSON_GetArrayItem(manifest, g);
		const cJSON *paths = cJSON_GetObjectItemCaseSensitive(group, "paths");
		const cJSON *weights = cJSON_GetObjectItemCaseSensitive(group, "weights");
		const cJSON *it;

		if (!cJSON_IsArray(paths) || !cJSON_IsArray(weights))
		{
			status = nn_fail(err, NN_ERR_FORMAT,
							 "weightsManifest group %d lacks \"paths\" or \"weights\"", g);
			goto done;
		}
		cJSON_ArrayForEach(it, paths)
		{
			if (!cJSON_IsString(it) || !path_is_plain_name(it->valuestring))
			{
				status = nn_fail(err, NN_ERR_FORMAT,
								 "weightsManifest group %d: a shard path is not a plain file name", g);
				goto done;
			}
			strbytes += strlen(it->valuestring) + 1;
			np++;
		}
		nt += cJSON_GetArraySize(weights);
	}

	w->groups = calloc((size_t) w->n_groups, sizeof(TfjsGroup));
	w->tensors = calloc((size_t) (nt > 0 ? nt : 1), sizeof(TfjsTensor));
	w->paths = calloc((size_t) (np > 0 ? np : 1), sizeof(char *));
	if (w->groups == NULL || w->tensors == NULL || w->paths == NULL)
	{
		status = nn_fail(err, NN_ERR_NOMEM, "out of memory reading the weights manifest");
		goto done;
	}

	/* Second pass: tensors, offsets, shard names. */
	for (int g = 0; g < w->n_groups; g++)
		if ((status = parse_group(w, g, cJSON_GetArrayItem(manifest, g), &strbytes, err)) != NN_OK)
			goto done;

	/* Copy the strings out of the cJSON tree. */
	w->strings = malloc(strbytes > 0 ? strbytes : 1);
	if (w->strings == NULL)
	{
		status = nn_fail(err, NN_ERR_NOMEM, "out of memory reading the weights manifest");
		goto done;
	}
	sp = w->strings;
	for (int i = 0; i < w->n_paths; i++)
	{
		size_t		n = strlen(w->paths[i]) + 1;

		memcpy(sp, w->paths[i], n);
		w->paths[i] = sp;
		sp += n;
	}
	for (int i = 0; i < w->n_tensors; i++)
	{
		size_t		n = strlen(w->tensors[i].name) + 1;

		memcpy(sp, w->tensors[i].name, n);
		w->tensors[i].name = sp;
		sp += n;
	}
	status = check_unique_names(w, err);

done:
	/* On failure, names may still point into the tree: callers only free. */
	cJSON_Delete(root);
	return status;
}

void
tfjs_weights_close(TfjsWeights *w)
{
	if (w == NULL)
		return;
	for (int g = 0; g < w->n_groups && w->groups != NULL; g++)
	{
		if (w->groups[g].map_len > 0)
			nn_map_release(w->groups[g].data, w->groups[g].map_len);
		else
			free(w->groups[g].data);
	}
	free(w->strings);
	free(w->paths);
	free(w->tensors);
	free(w->groups);
	free(w->json);
	free(w);
}

/* Read exactly n bytes at offset from fd. */
static bool
read_fully(int fd, uint8_t *buf, size_t n)
{
	size_t		done = 0;

	while (done < n)
	{
		ssize_t		r = pread(fd, buf + done, n - done, (off_t) done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		done += (size_t) r;
	}
	return true;
}

/*
 * Open the shards of group g, check their sizes, then map them into one
 * reserved region (or read them into one buffer).
 */
static NnStatus
load_group(TfjsWeights *w, int g, const char *dir, NnError *err)
{
	TfjsGroup  *grp = &w->groups[g];
	int			fds[64];
	int		   *fd = fds;
	size_t	   *size = NULL;
	size_t		total = 0;
	size_t		page = (size_t) sysconf(_SC_PAGESIZE);
	bool		mappable = true;
	NnStatus	status = NN_OK;

	if (grp->n_paths > 64)
		fd = malloc(sizeof(int) * (size_t) grp->n_paths);
	size = malloc(sizeof(size_t) * (size_t) (grp->n_paths > 0 ? grp->n_paths : 1));
	if (fd == NULL || size == NULL)
	{
		free(size);
		if (fd != fds)
			free(fd);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening weight shards");
	}
	for (int i = 0; i < grp->n_paths; i++)
		fd[i] = -1;
	for (int i = 0; i < grp->n_paths; i++)
	{
		const char *name = w->paths[grp->first_path + i];
		char		path[TFJS_MAX_PATH];
		struct stat st;

		if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int) sizeof(path))
		{
			status = nn_fail(err, NN_ERR_ARG, "model directory path is too long");
			goto done;
		}
		fd[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fd[i] < 0)
		{
			status = nn_fail(err, NN_ERR_IO, "cannot open weight shard \"%s\": %s",
							 path, strerror(errno));
			goto done;
		}
		if (fstat(fd[i], &st) != 0 || !S_ISREG(st.st_mode))
		{
			status = nn_fail(err, NN_ERR_IO, "weight shard \"%s\" is not a regular file", path);
			goto done;
		}
		size[i] = (size_t) st.st_size;
		if (__builtin_add_overflow(total, size[i], &total))
		{
			status = nn_fail(err, NN_ERR_FORMAT, "weight shards are too large");
			goto done;
		}
		if (i < grp->n_paths - 1 && size[i] % page != 0)
			mappable = false;
	}
	if (total != grp->nbytes)
	{
		status = nn_fail(err, NN_ERR_FORMAT,
						 "weight shards of group %d hold %zu bytes but the manifest needs %zu",
						 g, total, grp->nbytes);
		goto done;
	}
	if (total == 0)
		goto done;

	if (mappable)
	{
		size_t		len = (total + page - 1) / page * page;
		uint8_t    *base = nn_map_reserve(len);
		size_t		off = 0;

		if (base == NULL)
			mappable = false;
		for (int i = 0; mappable && i < grp->n_paths; off += size[i], i++)
		{
			if (!nn_map_file_at(base + off, fd[i], size[i]))
			{
				nn_map_release(base, len);
				mappable = false;
			}
		}
		if (mappable)
		{
			grp->data = base;
			grp->map_len = len;
		}
	}
	if (!mappable)
	{
		size_t		off = 0;

		grp->data = malloc(total);
		if (grp->data == NULL)
		{
			status = nn_fail(err, NN_ERR_NOMEM, "out of memory reading %zu bytes of weights",
							 total);
			goto done;
		}
		for (int i = 0; i < grp->n_paths; off += size[i], i++)
			if (!read_fully(fd[i], grp->data + off, size[i]))
			{
				status = nn_fail(err, NN_ERR_IO, "cannot read weight shard \"%s\"",
								 w->paths[grp->first_path + i]);
				goto done;
			}
	}

done:
	/* Mappings stay valid after their descriptors are closed. */
	for (int i = 0; i < grp->n_paths; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	if (fd != fds)
		free(fd);
	free(size);
	return status;
}

/* Read a whole (small) file into malloc'ed memory. */
static NnStatus
read_file(const char *path, size_t limit, char **out, size_t *len, NnError *err)
{
	int			fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char	   *buf;

	*out = NULL;
	if (fd < 0)
		return nn_fail(err, NN_ERR_IO, "cannot open \"%s\": %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		return nn_fail(err, NN_ERR_IO, "\"%s\" is not a regular file", path);
	}
	if ((size_t) st.st_size > limit)
	{
		close(fd);
		return nn_fail(err, NN_ERR_FORMAT, "\"%s\" is too large (%lld bytes)", path,
					   (long long) st.st_size);
	}
	buf = malloc((size_t) st.st_size + 1);
	if (buf == NULL)
	{
		close(fd);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading \"%s\"", path);
	}
	if (!read_fully(fd, (uint8_t *) buf, (size_t) st.st_size))
	{
		close(fd);
		free(buf);
		return nn_fail(err, NN_ERR_IO, "cannot read \"%s\"", path);
	}
	close(fd);
	buf[st.st_size] = '\0';
	*out = buf;
	*len = (size_t) st.st_size;
	return NN_OK;
}

NnStatus
tfjs_weights_open(TfjsWeights **out, const char *dir, NnError *err)
{
	TfjsWeights *w;
	char		path[TFJS_MAX_PATH];
	NnStatus	status;

	*out = NULL;
	if (snprintf(path, sizeof(path), "%s/model.json", dir) >= (int) sizeof(path))
		return nn_fail(err, NN_ERR_ARG, "model directory path is too long");
	w = calloc(1, sizeof(TfjsWeights));
	if (w == NULL)
		return nn_fail(err, NN_ERR_NOMEM, "out of memory opening \"%s\"", path);
	status = read_file(path, TFJS_MAX_JSON_BYTES, &w->json, &w->json_len, err);
	if (status == NN_OK)
		status = parse_manifest(w, err);
	w->mapped = true;
	for (int g = 0; status == NN_OK && g < w->n_groups; g++)
	{
		status = load_group(w, g, dir, err);
		if (w->groups[g].nbytes > 0 && w->groups[g].map_len == 0)
			w->mapped = false;
	}
	if (status != NN_OK)
	{
		tfjs_weights_close(w);
		return status;
	}
	*out = w;
	return NN_OK;
}

NnStatus
tfjs_weights_from_buffers(TfjsWeights **out, const char *json, size_t json_len,
						  const void *const *shards, const size_t *shard_sizes,
						  int n_shards, NnError *err)
{
	TfjsWeights *w;
	NnStatus	status;

	*out = NULL;
	if (json_len > TFJS_MAX_JSON_BYTES)
		return nn_fail(err, NN_ERR_FORMAT, "model.json is too large");
	w = calloc(1, sizeof(TfjsWeights));
	if (w == NULL || (w->json = malloc(json_len + 1)) == NULL)
	{
		free(w);
		return nn_fail(err, NN_ERR_NOMEM, "out of memory reading a weights manifest");
	}
	memcpy(w->json, json, json_len);
	w->json[json_len] = '\0';
	w->json_len = json_len;
	status = parse_manifest(w, err);
	if (status == NN_OK && n_shards != w->n_paths)
		status = nn_fail(err, NN_ERR_FORMAT, "manifest names %d shards, %d given",
						 w->n_paths, n_shards);
	for (int g = 0; status == NN_OK && g < w->n_groups; g++)
	{
		TfjsGroup  *grp = &w->groups[g];
		size_t		total = 0,
					off = 0;

		for (int i = 0; i < grp->n_paths; i++)
			if (__builtin_add_overflow(total, shard_sizes[grp->first_path + i], &total))
				total = SIZE_MAX;
		if (total != grp->nbytes)
		{
			status = nn_fail(err, NN_ERR_FORMAT,
							 "weight shards of group %d hold %zu bytes but the manifest needs %zu",
							 g, total, grp->nbytes);
			break;
		}
		if (total == 0)
			continue;
		grp->data = malloc(total);
		if (grp->data == NULL)
		{
			status = nn_fail(err, NN_ERR_NOMEM, "out of memory copying weights");
			break;
		}
		for (int i = 0; i < grp->n_paths; i++)
		{
			size_t		n = shard_sizes[grp->first_path + i];

			if (n > 0)
				memcpy(grp->data + off, shards[grp->first_path + i], n);
			off += n;
		}
	}
	if (status != NN_OK)
	{
		tfjs_weights_close(w);
		return status;
	}
	*out = w;
	return NN_OK;
}

const char *
tfjs_weights_json(const TfjsWeights *w, size_t *len)
{
	*len = w->json_len;
	return w->json;
}

bool
tfjs_weights_mapped(const TfjsWeights *w)
{
	return w->mapped;
}

int
tfjs_weights_count(const TfjsWeights *w)
{
	return w->n_tensors;
}

const TfjsTensor *
tfjs_weights_tensor(const TfjsWeights *w, int i)
{
	return (i >= 0 && i < w->n_tensors) ? &w->tensors[i] : NULL;
}

const TfjsTensor *
tfjs_weights_find(const TfjsWeights *w, const char *name)
{
	for (int i = 0; i < w->n_tensors; i++)
		if (strcmp(w->tensors[i].name, name) == 0)
			return &w->tensors[i];
	return NULL;
}

const void *
tfjs_weights_data(const TfjsWeights *w, const TfjsTensor *t)
{
	return t->nbytes > 0 ? w->groups[t->group].data + t->offset : NULL;
}

/* Format a shape as "[a, b, c]" for error messages. */
static void
shape_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
	size_t		n = 0;

	n += (size_t) snprintf(buf + n, size - n, "[");
	for (int i = 0; i < ndim && n < size; i++)
		n += (size_t) snprintf(buf + n, size - n, i ? ", %lld" : "%lld", (long long) shape[i]);
	if (n < size)
		snprintf(buf + n, size - n, "]");
}

NnStatus
tfjs_weights_get(const TfjsWeights *w, const char *name, TfjsDtype dtype,
				 int ndim, const int64_t *shape, const void **data, NnError *err)
{
	const TfjsTensor *t = tfjs_weights_find(w, name);
	bool		same;

	*data = NULL;
	if (t == NULL)
		return nn_fail(err, NN_ERR_FORMAT, "weight \"%s\" is missing from model.json", name);
	same = t->ndim == ndim;
	for (int i = 0; same && i < ndim; i++)
		same = t->shape[i] == shape[i];
	if (t->dtype != dtype || !same)
	{
		char		want[128],
					got[128];

		shape_str(want, sizeof(want), ndim, shape);
		shape_str(got, sizeof(got), t->ndim, t->shape);
		return nn_fail(err, NN_ERR_FORMAT, "weight \"%s\" is %s %s, expected %s %s",
					   name, dtype_name(t->dtype), got, dtype_name(dtype), want);
	}
	*data = tfjs_weights_data(w, t);
	return NN_OK;
}

/* Shared body of the scalar getters: accept shape [] or [1]. */
static NnStatus
get_scalar(const TfjsWeights *w, const char *name, TfjsDtype dtype, void *out, NnError *err)
{
	static const int64_t one[1] = {1};
	const TfjsTensor *t = tfjs_weights_find(w, name);
	const void *p;
	NnStatus	status;

	status = tfjs_weights_get(w, name, dtype, (t != NULL && t->ndim == 1) ? 1 : 0, one, &p, err);
	if (status != NN_OK)
		return status;
	memcpy(out, p, 4);
	return NN_OK;
}

NnStatus
tfjs_weights_scalar_f32(const TfjsWeights *w, const char *name, float *out, NnError *err)
{
	return get_scalar(w, name, TFJS_FLOAT32, out, err);
}

NnStatus
tfjs_weights_scalar_i32(const TfjsWeights *w, const char *name, int32_t *out, NnError *err)
{
	return get_scalar(w, name, TFJS_INT32, out, err);
}
