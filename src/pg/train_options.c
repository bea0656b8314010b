/*
 * train_options.c: dept_train's options jsonb -> TrainOptions, with every
 * key known and every value type- and range-checked before any work starts;
 * and the memory a run will need, checked against dept.max_training_memory.
 *
 * The memory estimate mirrors what train.c allocates for a run (its peak is
 * reached after the first step and held to the end): the backbone's
 * activation buffers for batch_size rows of prompt + max_length positions
 * (each family's run_bytes, unit-tested against the real allocation, with
 * T5's decoder for the longest label), train.c's batch buffers, the
 * adapter's parameters with their gradients, AdamW moments and best
 * checkpoint, every row read (texts and labels as copied, token ids,
 * split, probe features) and the model's weight files.  dept_train checks
 * it before starting the worker, with the row count the planner has for
 * the relation and no texts; the worker checks it again while reading
 * (texts included) and once more with the exact rows before training.
 */
#include "postgres.h"

#include <math.h>
#include <sys/stat.h>

#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "dept.h"
#include "dept_train.h"

#include "formats/f32_sidecar.h"
#include "train/auto.h"

typedef enum OptionKind
{
	OPT_INT,
	OPT_REAL,
	OPT_TEXT,
	OPT_COLUMNS					/* an array of column names */
} OptionKind;

typedef struct OptionSpec
{
	const char *key;
	OptionKind	kind;
	double		min;
	double		max;
} OptionSpec;

static const OptionSpec option_specs[] = {
	{"prompt_length", OPT_INT, 0, 200},
	{"rank", OPT_INT, 0, 4096},
	{"budget", OPT_INT, 1, 1000},
	{"lr", OPT_REAL, 1e-8, 10},
	{"lowrank_lr", OPT_REAL, 1e-8, 10},
	{"head_lr", OPT_REAL, 1e-8, 10},
	{"ept_lr", OPT_REAL, 1e-8, 10},
	{"weight_decay", OPT_REAL, 0, 1},
	{"epochs", OPT_INT, 1, 1000},
	{"max_steps", OPT_INT, 0, 10000000},
	{"batch_size", OPT_INT, 1, 256},
	{"max_length", OPT_INT, 1, 128},
	{"valid_fraction", OPT_REAL, 0, 0.5},
	{"test_fraction", OPT_REAL, 0, 0.5},
	{"seed", OPT_INT, 0, 9007199254740991.0},
	{"subspaces", OPT_INT, 1, 64},
	{"subspace_rank", OPT_INT, 1, 256},
	{"eval_every", OPT_INT, 0, 10000000},
	{"patience", OPT_INT, 0, 1000},
	{"warmup_ratio", OPT_REAL, 0, 0.5},
	{"max_grad_norm", OPT_REAL, 0, 1e6},
	{"init_text", OPT_TEXT, 0, 1000},
	{"model", OPT_TEXT, 1, 64},
	{"head", OPT_TEXT, 1, 16},
	{"precision", OPT_TEXT, 1, 16},
	{"max_rows", OPT_INT, 0, 1000000000},
	{"max_rows_per_class", OPT_INT, 0, 1000000000},
	{"init_from", OPT_TEXT, 1, 255},
	{"text_columns", OPT_COLUMNS, 2, 2},
	{"init_from_version", OPT_INT, 1, 2147483647},
	{"sample", OPT_TEXT, 1, 16},
	{"budget_rows", OPT_INT, 1, 1e15},
	{"task", OPT_TEXT, 1, 16},
	{"pair_encoding", OPT_TEXT, 1, 16},
};

static const OptionSpec *
find_spec(const char *key)
{
	for (size_t i = 0; i < lengthof(option_specs); i++)
		if (strcmp(option_specs[i].key, key) == 0)
			return &option_specs[i];
	return NULL;
}

static void
bad_option(const char *key, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for option \"%s\"", key),
			 errdetail("%s", detail)));
}

/* The numeric value of option key, range-checked (integral for OPT_INT). */
static double
option_number(const OptionSpec *spec, const JsonbValue *v)
{
	double		x;

	if (v->type != jbvNumeric)
		bad_option(spec->key, "The value must be a number.");
	/* no overflow error: an absurd magnitude is just out of range (22023) */
	x = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
										   NumericGetDatum(v->val.numeric)));
	if (isnan(x) || x < spec->min || x > spec->max)
		bad_option(spec->key, psprintf("The value must be between %g and %g.", spec->min, spec->max));
	if (spec->kind == OPT_INT && x != floor(x))
		bad_option(spec->key, "The value must be an integer.");
	return x;
}

/* Whether the JSON string v (not NUL-terminated) is exactly s. */
static bool
string_is(const JsonbValue *v, const char *s)
{
	return v->val.string.len == (int) strlen(s) &&
		memcmp(v->val.string.val, s, v->val.string.len) == 0;
}

/*
 * "text_columns": ["a", "b"], a sentence pair read from two columns
 * (dept_train checks them); the first becomes req->text_column.
 */
static void
apply_text_columns(DeptTrainRequest *req, const OptionSpec *spec, const JsonbValue *v)
{
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;
	int			n = 0;
	const char *hint = "The value must be an array of two column names.";

	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		bad_option(spec->key, hint);
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		char	   *dst;

		if (tok != WJB_ELEM)
			continue;
		if (e.type != jbvString || e.val.string.len == 0 || e.val.string.len >= NAMEDATALEN ||
			n >= spec->max)
			bad_option(spec->key, hint);
		dst = n == 0 ? req->text_column : req->text_column2;
		memcpy(dst, e.val.string.val, e.val.string.len);
		dst[e.val.string.len] = '\0';
		n++;
	}
	if (n != spec->min)
		bad_option(spec->key, hint);
}

static void
apply_option(DeptTrainRequest *req, const OptionSpec *spec, const JsonbValue *v)
{
	TrainOptions *o = &req->opt;
	const char *k = spec->key;
	double		x = 0;

	if (spec->kind == OPT_COLUMNS)
	{
		apply_text_columns(req, spec, v);
		return;
	}

	if (spec->kind == OPT_TEXT)
	{
		if (v->type != jbvString)
			bad_option(k, "The value must be a string.");
		if (v->val.string.len > spec->max || v->val.string.len < spec->min)
			bad_option(k, psprintf("The value must be %g to %g bytes long.", spec->min, spec->max));
		if (strcmp(k, "head") == 0)
		{
			/* "text": T5 text-to-text (its default); "linear": mean-pool + linear head */
			if (string_is(v, "text"))
				o->head = TRAIN_HEAD_TEXT;
			else if (string_is(v, "linear"))
				o->head = TRAIN_HEAD_LINEAR;
			else
				bad_option(k, "The value must be \"text\" or \"linear\".");
		}
		else if (strcmp(k, "precision") == 0)
		{
			/* the encoder's products in training: bfloat16 on AMX or AVX512-BF16 where one runs (gemm_bf16.h) */
			if (string_is(v, "float32"))
				o->bf16 = false;
			else if (string_is(v, "bfloat16"))
				o->bf16 = true;
			else
				bad_option(k, "The value must be \"float32\" or \"bfloat16\".");
		}
		else if (strcmp(k, "sample") == 0)
		{
			/* how max_rows rows are drawn (train_sample.c) */
			if (string_is(v, "stratified"))
				req->sample_stratified = true;
			else if (string_is(v, "uniform"))
				req->sample_stratified = false;
			else
				bad_option(k, "The value must be \"stratified\" or \"uniform\".");
		}
		else if (strcmp(k, "pair_encoding") == 0)
		{
			/* how a sentence pair reaches the head (adapter.h AdapterPair) */
			if (string_is(v, "joined"))
				req->pair_encoding = ADAPTER_PAIR_JOINED;
			else if (string_is(v, "native"))
				req->pair_encoding = ADAPTER_PAIR_NATIVE;
			else if (string_is(v, "siamese"))
				req->pair_encoding = ADAPTER_PAIR_SIAMESE;
			else
				bad_option(k, "The value must be \"joined\", \"native\" or \"siamese\".");
		}
		else if (strcmp(k, "task") == 0)
		{
			/* regression: a number per row (MSE on a one-output linear head) */
			if (string_is(v, "classification"))
				req->task = DEPT_TASK_CLASSIFICATION;
			else if (string_is(v, "regression"))
				req->task = DEPT_TASK_REGRESSION;
			else
				bad_option(k, "The value must be \"classification\" or \"regression\".");
		}
		else if (strcmp(k, "init_from") == 0)
		{
			/* transfer: start from this stored adapter (train_worker.c) */
			memcpy(req->init_from, v->val.string.val, v->val.string.len);
			req->init_from[v->val.string.len] = '\0';
		}
		else if (strcmp(k, "init_text") == 0)
		{
			memcpy(req->init_text, v->val.string.val, v->val.string.len);
			req->init_text[v->val.string.len] = '\0';
		}
		else
		{
			memcpy(req->model_name, v->val.string.val, v->val.string.len);
			req->model_name[v->val.string.len] = '\0';
		}
		return;
	}
	x = option_number(spec, v);
	if (strcmp(k, "prompt_length") == 0) { o->prompt_len = (int) x; req->prompt_len_set = true; }
	else if (strcmp(k, "rank") == 0) o->rank = (int) x;
	else if (strcmp(k, "budget") == 0) o->budget = (int) x;
	else if (strcmp(k, "lr") == 0) o->lr_prompt = (float) x;
	else if (strcmp(k, "lowrank_lr") == 0) o->lr_lowrank = (float) x;
	else if (strcmp(k, "head_lr") == 0) o->lr_head = (float) x;
	else if (strcmp(k, "ept_lr") == 0) o->lr_ept = (float) x;
	else if (strcmp(k, "weight_decay") == 0) o->weight_decay = (float) x;
	else if (strcmp(k, "epochs") == 0)
	{
		/*
		 * method probe: its passes of gradient descent instead of the exact
		 * solver; auto's probe keeps the solver (method is known before the options)
		 */
		o->epochs = (int) x;
		if (o->method == ADAPTER_PROBE)
		{
			o->probe_epochs = (int) x;
			o->probe_solver = false;
		}
	}
	else if (strcmp(k, "max_steps") == 0) o->max_steps = (long) x;
	else if (strcmp(k, "batch_size") == 0) o->batch_size = (int) x;
	else if (strcmp(k, "max_length") == 0) o->max_len = (int) x;
	else if (strcmp(k, "valid_fraction") == 0) o->valid_fraction = x;
	else if (strcmp(k, "test_fraction") == 0)
	{
		/* at least half of the rows stay for training and validation */
		if (x >= 0.5)
			bad_option(k, "The value must be at least 0 and less than 0.5.");
		req->test_fraction = x;
		req->test_fraction_set = true;
	}
	else if (strcmp(k, "seed") == 0) o->seed = (uint64_t) x;
	else if (strcmp(k, "subspaces") == 0) o->subspaces = (int) x;
	else if (strcmp(k, "subspace_rank") == 0) o->subspace_rank = (int) x;
	else if (strcmp(k, "eval_every") == 0) o->eval_every = (int) x;
	else if (strcmp(k, "patience") == 0) o->patience = (int) x;
	else if (strcmp(k, "warmup_ratio") == 0) o->warmup_ratio = (float) x;
	else if (strcmp(k, "max_grad_norm") == 0) o->max_grad_norm = x;
	else if (strcmp(k, "max_rows") == 0) req->max_rows = (int64) x;
	else if (strcmp(k, "max_rows_per_class") == 0) req->max_rows_per_class = (int64) x;
	else if (strcmp(k, "init_from_version") == 0) req->init_from_version = (int) x;
	else if (strcmp(k, "budget_rows") == 0) req->budget_rows = (int64) x;
}

/*
 * method 'auto' (train_auto.c): its candidates fix the method and
 * prompt_length and are compared on validation rows; budget_rows is its
 * option only (AUTO_DEFAULT_BUDGET_ROWS when not given).
 */
static void
DeptCheckAutoOptions(DeptTrainRequest *req)
{
	if (!req->auto_method)
	{
		if (req->budget_rows > 0)
			bad_option("budget_rows", "budget_rows applies to method 'auto' only.");
		return;
	}
	if (req->prompt_len_set)
		bad_option("prompt_length", "Method 'auto' chooses among fixed candidates; train one method to set prompt_length.");
	if (req->init_from[0] != '\0')
		bad_option("init_from", "Method 'auto' cannot start from a stored adapter; train one method to transfer.");
	if (req->opt.valid_fraction <= 0)
		bad_option("valid_fraction", "Method 'auto' compares its candidates on validation rows.");
	if (req->budget_rows == 0)
		req->budget_rows = AUTO_DEFAULT_BUDGET_ROWS;
	/* the memory checks estimate the largest candidate: DePT with the default m = 60, more than its 20 */
	req->opt.method = ADAPTER_DEPT;
}

/*
 * Options that shape a prompt method's adapter: with no method given they
 * make it DePT, as dept_train 1.0 trained by default; without them the
 * default is 'auto' (docs/user-guide.md, "Which method").
 */
static bool
DeptIsPromptOption(const char *key)
{
	static const char *const keys[] = {"prompt_length", "rank", "budget", "lr", "lowrank_lr",
		"ept_lr", "subspaces", "subspace_rank", "init_text", "init_from", "init_from_version"};

	for (int i = 0; i < (int) lengthof(keys); i++)
		if (strcmp(key, keys[i]) == 0)
			return true;
	return false;
}

/* The method a NULL method argument means: 'dept' when a prompt option is given, else 'auto'. */
static const char *
DeptDefaultMethod(Jsonb *options)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(options) || JB_ROOT_IS_SCALAR(options))
		return "auto";			/* refused below */
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_KEY && DeptIsPromptOption(pnstrdup(v.val.string.val, v.val.string.len)))
			return "dept";
	return "auto";
}

/*
 * Fill req->opt from the method name (NULL: DeptDefaultMethod) and the
 * options object.  Unknown keys, wrong types and out-of-range values are
 * errors (22023).
 */
void
DeptParseTrainOptions(DeptTrainRequest *req, const char *method, Jsonb *options)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	AdapterMethod m = ADAPTER_DEPT;	/* what auto's options are checked as */

	req->method_defaulted = method == NULL;
	if (method == NULL)
		method = DeptDefaultMethod(options);

	train_options_default(&req->opt);
	strlcpy(req->init_text, "Classify the text:", sizeof(req->init_text));
	strlcpy(req->model_name, "use-lite", sizeof(req->model_name));
	req->sample_stratified = true;
	req->pair_encoding = -1;
	strlcpy(req->sample_method, "all", sizeof(req->sample_method));
	req->auto_method = strcmp(method, "auto") == 0;
	if (!req->auto_method && adapter_method_parse(method, &m) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown training method \"%s\"", method),
				 errhint("Use one of probe, pt, dept, ept, auto.")));
	req->opt.method = m;
	strlcpy(req->method, method, sizeof(req->method));

	if (!JB_ROOT_IS_OBJECT(options) || JB_ROOT_IS_SCALAR(options))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must be a jsonb object")));
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;
		const OptionSpec *spec;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		spec = find_spec(key);
		if (spec == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown option \"%s\"", key),
					 errhint("Known options: prompt_length, rank, budget, lr, lowrank_lr, head_lr, ept_lr, weight_decay, epochs, max_steps, batch_size, max_length, valid_fraction, test_fraction, seed, subspaces, subspace_rank, eval_every, patience, warmup_ratio, max_grad_norm, init_text, model, head, precision, max_rows, sample, max_rows_per_class, init_from, init_from_version, text_columns, pair_encoding, budget_rows, task.")));
		tok = JsonbIteratorNext(&it, &v, true);
		if (tok != WJB_VALUE)
			bad_option(key, "The value must be a number or a string.");
		apply_option(req, spec, &v);
	}
	DeptCheckAutoOptions(req);
	/* plain prompt tuning spends the whole budget on the prompt */
	if (req->opt.method == ADAPTER_PT && !req->prompt_len_set)
		req->opt.prompt_len = req->opt.budget;
	if (req->opt.method == ADAPTER_PT && req->opt.prompt_len == 0)
		bad_option("prompt_length", "Prompt tuning needs at least one prompt vector.");
	if (req->opt.method == ADAPTER_EPT && req->opt.prompt_len == 0)
		bad_option("prompt_length", "EPT needs at least one prompt vector.");
}

/*
 * The model's bytes a training process maps into *mapped: the files of dir
 * that backbone_open reads (weights, vocabulary, config), and the float32
 * sidecar of each in the private copy bb was loaded from (the float32 view
 * of a F16/BF16 checkpoint's weights, twice their bytes, mapped instead of
 * converting: docs/design.md 6, "Converted weights").  The float32 weights
 * among them into *floats: a file's sidecar where it has one, else the
 * file itself.
 */
static void
DeptModelMappedBytes(const Backbone *bb, const char *dir, double *mapped, double *floats)
{
	const char *copy = DeptModelCopyDir(bb);
	DIR		   *d = AllocateDir(dir);
	struct dirent *de;

	*mapped = *floats = 0;
	while ((de = ReadDirExtended(d, dir, LOG)) != NULL)
	{
		char		path[MAXPGPATH];
		struct stat st,
					sidecar;

		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || !backbone_uses_file(dir, de->d_name))
			continue;
		*mapped += st.st_size;
		snprintf(path, sizeof(path), "%s/%s%s", copy != NULL ? copy : dir, de->d_name,
				 F32_SIDECAR_SUFFIX);
		if (stat(path, &sidecar) == 0 && S_ISREG(sidecar.st_mode))
		{
			*mapped += sidecar.st_size;
			*floats += sidecar.st_size;
		}
		else
			*floats += st.st_size;
	}
	if (d)
		FreeDir(d);
}

/*
 * The peak memory of training on n_rows rows holding text_bytes of text and
 * labels with n_classes classes (at least 2); max_label is the longest label
 * in tokens, for T5's text-to-text head (0: not known or not used).  That
 * head's decoder holds one sequence per row for the training loss, and
 * validation ranks the C labels of max(batch / C, 1) rows at a time: at
 * most max(batch, C) sequences, and for a moment both arenas when C is the
 * larger.
 */
void
DeptEstimateTrainingMemory(const Backbone *bb, const char *model_dir, const TrainOptions *opt,
						   int n_classes, double n_rows, double text_bytes, int max_label,
						   DeptMemoryEstimate *est)
{
	AdapterConfig cfg = {0};
	AdapterHead head = ADAPTER_HEAD_LINEAR;
	NnError		err;
	bool		probe = opt->method == ADAPTER_PROBE;
	double		B = opt->batch_size,
				s = opt->max_len,
				d = bb->d_embed,
				out = bb->d_out,
				C = Max(n_classes, 2),
				P,
				S,
				params,
				K = 0,
				q = 0,
				float_weights;
	size_t		run;
	bool		text;
	int			seqs;

	/* a head the options cannot have is refused by the worker; estimate the linear one */
	if (train_choose_head(bb, opt, &head, &err) != NN_OK)
		head = ADAPTER_HEAD_LINEAR;
	text = head == ADAPTER_HEAD_TEXT && max_label > 0;
	cfg.head = head;
	cfg.method = opt->method;
	cfg.d = bb->d_embed;
	/* a siamese pair runs both texts: twice the sequences, a head on 4 pooled vectors */
	cfg.pair = opt->pair;
	cfg.h_dim = bb->d_out * (opt->pair == ADAPTER_PAIR_SIAMESE ? 4 : 1);
	seqs = opt->pair == ADAPTER_PAIR_SIAMESE ? 2 : 1;
	cfg.n_classes = (int) C;
	cfg.prompt_len = probe ? 0 : opt->prompt_len;
	cfg.max_len = opt->max_len;
	cfg.rank = opt->rank;
	if (opt->method == ADAPTER_EPT)
	{
		cfg.subspaces = opt->subspaces;
		cfg.subspace_rank = opt->subspace_rank;
		K = opt->subspaces;
		q = opt->subspace_rank;
	}
	if ((opt->method == ADAPTER_DEPT || opt->method == ADAPTER_EPT) && cfg.rank == 0)
		cfg.rank = adapter_rank_for_budget(opt->budget, cfg.d, cfg.max_len, cfg.prompt_len,
										   cfg.subspaces, cfg.subspace_rank);
	P = adapter_prompt_rows(&cfg);
	S = P + s;
	params = (double) adapter_param_count(&cfg);

	run = backbone_run_bytes(bb, opt->batch_size * seqs, (int) S,
							 text ? (int) Min(Max(B, C), 1 << 24) : 0, text ? max_label : 0);
	est->activations = run == SIZE_MAX ? INFINITY : (double) run;
	if (text && C > B)
	{
		size_t		loss = backbone_run_bytes(bb, opt->batch_size, (int) S, opt->batch_size, max_label);
		size_t		encoder = backbone_run_bytes(bb, opt->batch_size, (int) S, 0, 0);

		est->activations += (loss == SIZE_MAX || encoder == SIZE_MAX) ? INFINITY :
			(double) (loss - encoder);
	}
	/* E, X (and dX when training) of the batch, masks, pooled h and dh, logits, dlogits, labels */
	est->workspace = 4 * (seqs * (B * s * d + B * S * d * (probe ? 1 : 2)) + 2 * B * cfg.h_dim +
						  2 * B * C + B + (seqs - 1) * 4 * B * out) +
		seqs * B * (s + S) + (text ? 4 * (B + C) * max_label : 0);
	/* w, g and both AdamW moments of each parameter, the best checkpoint; A B and its gradient */
	est->adapter = 4 * (5 * params);
	if (opt->method == ADAPTER_DEPT || opt->method == ADAPTER_EPT)
		est->adapter += 4 * 2 * s * d;
	if (opt->method == ADAPTER_EPT)
		est->adapter += 4 * (P * s + 2 * P * d + K * P * q + B * d + B * K + P * Max(d, s) + P * q);
	/*
	 * Per row: the text and label copies (with malloc's header and
	 * rounding), the row arrays at twice their length (they double as
	 * they grow), class index, sort and split arrays, and the max_length
	 * token ids; the probe also keeps a pooled vector per row.
	 */
	est->rows = text_bytes + n_rows * (64 + 48 + 4 + 8 + 12 + 4 + 4 * s * seqs +
									   (probe ? 4 * cfg.h_dim : 0));
	DeptModelMappedBytes(bb, model_dir, &est->weights, &float_weights);
	/* bfloat16 training keeps each float weight packed twice (W and W^T) at 2 bytes: 1x again */
	if (opt->bf16 && bb->ops->run_use_bf16 != NULL)
		est->weights += float_weights;
	/* a worker training a 1-row batch of 8 tokens peaks at about 30 MB above its model files */
	est->process = 32.0 * 1024 * 1024;
	est->total = est->activations + est->workspace + est->adapter + est->rows + est->weights +
		est->process;
	est->prompt_rows = (int) P;
}

/* "1.5 GB", "300.2 MB", "12 kB" */
static char *
DeptFormatBytes(double bytes)
{
	if (isinf(bytes) || bytes >= 1e18)
		return pstrdup("more than can be addressed");
	if (bytes >= 1024.0 * 1024 * 1024)
		return psprintf("%.1f GB", bytes / (1024.0 * 1024 * 1024));
	if (bytes >= 1024.0 * 1024)
		return psprintf("%.1f MB", bytes / (1024.0 * 1024));
	return psprintf("%.0f kB", ceil(bytes / 1024.0));
}

/*
 * Refuse a run whose estimate exceeds limit bytes (-1: no limit) with
 * 54000, the estimate by part and what to lower.
 */
void
DeptCheckTrainingMemory(const DeptMemoryEstimate *est, const TrainOptions *opt, int64 limit)
{
	if (limit < 0 || est->total <= (double) limit)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("training would need about %s of memory, more than dept.max_training_memory (%s)",
					DeptFormatBytes(est->total), DeptFormatBytes((double) limit)),
			 errdetail("Estimated peak %s: %s of model activations for batch_size %d x (%d prompt rows + max_length %d) positions, "
					   "%s of batch buffers, %s of adapter and AdamW state, %s for the rows, %s of model files, %s for the worker process; "
					   "the limit is %s.",
					   DeptFormatBytes(est->total), DeptFormatBytes(est->activations),
					   opt->batch_size, est->prompt_rows, opt->max_len, DeptFormatBytes(est->workspace),
					   DeptFormatBytes(est->adapter), DeptFormatBytes(est->rows),
					   DeptFormatBytes(est->weights), DeptFormatBytes(est->process),
					   DeptFormatBytes((double) limit)),
			 errhint("Lower the options batch_size, max_length or prompt_length, train on fewer rows, "
					 "or ask a superuser to raise dept.max_training_memory.")));
}

/*
 * Sentence pairs: how this run's pairs reach the head (opt.pair).  The
 * option "pair_encoding" when given (22023 where it cannot be: native on a
 * family without a pair template, anything but joined on a text-to-text
 * head, or without text_columns); else the family's own template where it
 * has one (BERT, RoBERTa, XLM-R, DistilBERT), joined on an encoder-decoder
 * (T5), siamese on a single-sentence encoder (use-lite: it beat joined on
 * validation, bench/README.md "Sentence pairs").
 */
void
DeptResolvePairEncoding(DeptTrainRequest *req, const Backbone *bb)
{
	AdapterHead head = ADAPTER_HEAD_LINEAR;
	NnError		err;
	bool		text_head = train_choose_head(bb, &req->opt, &head, &err) == NN_OK &&
		head == ADAPTER_HEAD_TEXT;

	if (req->text_column2[0] == '\0')
	{
		if (req->pair_encoding >= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"pair_encoding\" reads a sentence pair"),
					 errhint("Name the pair's two columns with the option text_columns.")));
		req->opt.pair = ADAPTER_PAIR_JOINED;
		return;
	}
	if (req->pair_encoding >= 0)
		req->opt.pair = req->pair_encoding;
	else
		req->opt.pair = train_default_pair(bb, &req->opt);
	if (req->opt.pair == ADAPTER_PAIR_NATIVE && !backbone_has_pair_template(bb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model \"%s\" (%s) has no sentence-pair template", req->model_name,
						bb->ops->family),
				 errhint("Use pair_encoding \"joined\" or \"siamese\".")));
	if (req->opt.pair != ADAPTER_PAIR_JOINED && text_head)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a text-to-text head reads a sentence pair joined into one text"),
				 errhint("Use pair_encoding \"joined\", or the option head \"linear\".")));
}
