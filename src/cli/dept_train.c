/*
 * dept-train: train and evaluate an adapter on a delimited file, without a
 * server.  It is how the benchmarks run: a progress bar on stderr, a JSON
 * report (metrics, parameter count, time per epoch, tokens/s, peak memory,
 * inference time) on stdout or in --report.
 *
 *   dept-train --train train.tsv [--test test.tsv] [--method dept] [options]
 *
 * Files have a header row; --text-column and --label-column name the
 * fields (default "text" and "label"); .csv files are read as CSV.
 * --model takes the default use-lite directory or a Hugging Face directory
 * (BERT, T5); a T5 model trains text-to-text by default (the label strings
 * as decoder targets, predictions by ranking them, train.h), --head linear
 * gives it the mean-pool + linear head instead.
 *
 * For benchmarks that keep their own splits (bench/accuracy):
 * --valid-rows N takes the last N rows of --train as the validation set
 * (checkpoint selection and the reported "valid"), --save FILE writes the
 * trained adapter (adapter_io.h), --load FILE evaluates a saved adapter on
 * --test without training, and --embed-out FILE writes the frozen sentence
 * vectors of the --train rows (what dept_embed returns; float32 little
 * endian, rows x d_out, file order) without training.
 *
 * --explain with --load FILE prints token attributions of the saved
 * adapter's prediction (src/nn/train/explain.h) for the texts given as
 * arguments, or for each line of stdin: one JSON object per text, or TSV.
 */
#include "ops/blas.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "adapters/adapter_io.h"
#include "models/backbone.h"
#include "train/auto.h"
#include "ops/blas.h"
#include "ops/gemm_packed.h"
#include "train/dataset.h"
#include "train/explain.h"
#include "train/train.h"

typedef struct CliArgs
{
	const char *train_path;
	const char *test_path;
	const char *model_dir;
	const char *report_path;
	const char *text_column;
	const char *text_column2;	/* --text-column2: sentence pairs, or NULL */
	int			pair;			/* --pair-encoding: AdapterPair, or -1 (auto) */
	const char *label_column;
	const char *save_path;
	const char *load_path;
	const char *init_from_path;
	const char *embed_path;
	bool		explain;
	ExplainOptions explain_opt;
	const char *explain_class;	/* a class name, or NULL for the predicted class */
	bool		explain_tsv;
	char	  **texts;			/* --explain: the texts given as arguments */
	int			n_texts;
	int			threads;
	bool		quiet;
	bool		regression;		/* --task regression: numeric labels */
	bool		auto_method;	/* --method auto (src/nn/train/auto.h) */
	long		budget_rows;	/* --budget-rows */
	bool		cold_head;		/* --cold-head: auto's DePT head starts from zero */
	bool		epochs_given;
	AutoReport	auto_report;
	bool		bin_argmax;		/* --bin-value argmax: a text-to-text regression's likeliest bin */
	TrainOptions opt;
} CliArgs;

static void
usage(FILE *f)
{
	fprintf(f,
			"usage: dept-train --train FILE [--test FILE] [options]\n"
			"  --model DIR            backbone directory: use-lite or a Hugging Face BERT / T5\n"
			"                         directory (default build/model/use-lite)\n"
			"  --method M             probe | pt | dept | ept | auto (default dept): auto trains\n"
			"                         the probe, then DePT m = 20 from the probe's head, and\n"
			"                         keeps the better on validation (src/nn/train/auto.h)\n"
			"  --budget-rows N        auto: rows DePT may see (steps x batch; default 16000,\n"
			"                         0 = its epochs)\n"
			"  --cold-head            auto: DePT's head starts from zero, not from the probe's\n"
			"  --no-probe-search      probe: no L2 search (the default tries 4 strengths)\n"
			"  --task T               classification (default) or regression: numeric labels,\n"
			"                         MSE on the standardised target; reports Pearson, Spearman, MSE;\n"
			"                         on T5's text-to-text head the targets become 0.2-step bins\n"
			"  --bin-value V          mean (default) or argmax: a text-to-text regression predicts\n"
			"                         the probability-weighted mean of its bins, or the likeliest\n"
			"                         bin's value\n"
			"  --head H               text | linear: text-to-text is the default on T5\n"
			"                         (not for probe), linear everywhere else\n"
			"  --prompt-length N      l for pt, m for dept/ept (default 60)\n"
			"  --budget L             rank from the budget of PT with L vectors (default 100)\n"
			"  --rank R               explicit rank r (overrides --budget)\n"
			"  --max-length S         tokens per row (default 128)\n"
			"  --subspaces K --subspace-rank Q   EPT (default 4, 4)\n"
			"  --epochs E --max-steps N --batch-size B --seed S  (a probe's epochs default to 100)\n"
			"  --lr X --lowrank-lr X --ept-lr X --head-lr X --weight-decay X\n"
			"  --valid-fraction F --eval-every N --patience N --warmup-ratio F --max-grad-norm X\n"
			"  --init-text TEXT       prompt init text ('' = sampled vocabulary)\n"
			"  --precision P          float32 (default) or bfloat16: the encoder's products\n"
			"                         on AMX or AVX512-BF16 (src/nn/ops/gemm_bf16.h)\n"
			"  --pool P               text (default) or all: the linear head of pt/dept/ept\n"
			"                         pools the text rows only, or every row, prompt included\n"
			"  --valid-rows N         the last N rows of --train are the validation set\n"
			"                         (instead of a random --valid-fraction split)\n"
			"  --save FILE            write the trained adapter (src/nn/adapters/adapter_io.h)\n"
			"  --load FILE            no training: evaluate the saved adapter on --test\n"
			"  --init-from FILE       start from a saved adapter of the same method and shapes\n"
			"                         (its head too when its classes are the training set's)\n"
			"  --embed-out FILE       no training: write the frozen sentence vectors of the\n"
			"                         --train rows (float32 LE, rows x d_out) and exit\n"
			"  --explain              with --load: token attributions of the adapter's\n"
			"                         prediction for each TEXT argument, or each stdin line\n"
			"                         (dept-train --load A --explain [options] [TEXT ...]);\n"
			"                         the log-probability of the class is explained\n"
			"  --explain-method M     ig (integrated gradients, default) or gxi (gradient x input)\n"
			"  --steps N              ig: first number of path intervals (default 32), doubled\n"
			"                         up to 512 until the attributions sum to within 1%% of\n"
			"                         F(E) - F(baseline)\n"
			"  --class NAME           explain this class instead of the predicted one\n"
			"  --baseline B           zero (default) or a token id whose embedding replaces\n"
			"                         each token (for T5 use 0, the padding id)\n"
			"  --format F             json (default: one object per text) or tsv\n"
			"                         (text, position, token, attribution)\n"
			"  --text-column NAME --label-column NAME\n"
			"  --text-column2 NAME    sentence pairs: the second text of each row\n"
			"  --pair-encoding E      joined (\"<col>: a <col2>: b\" as one text, as SQL joins it),\n"
			"                         native (the family's [CLS] a [SEP] b [SEP] with token types)\n"
			"                         or siamese (each text on its own, head on [u; v; |u-v|; u*v]);\n"
			"                         default: native where the family has a pair template,\n"
			"                         joined on T5, siamese on use-lite\n"
			"  --threads N            OpenBLAS threads (default 1)\n"
			"  --report FILE          write the JSON report there (default stdout)\n"
			"  --quiet                no progress bar\n");
}

static const char *
pair_name(int pair)
{
	const char *names[] = {"joined", "native", "siamese"};

	return names[pair];
}

/* The --explain options (option codes 25 and up); -1 with a message when a value is bad. */
static int
parse_explain_arg(int c, const char *arg, CliArgs *a)
{
	ExplainOptions *o = &a->explain_opt;

	switch (c)
	{
		case 25: a->explain = true; return 0;
		case 26:
			if (strcmp(arg, "ig") != 0 && strcmp(arg, "gxi") != 0)
				break;
			o->method = strcmp(arg, "ig") == 0 ? EXPLAIN_INTEGRATED_GRADIENTS : EXPLAIN_GRADIENT_X_INPUT;
			return 0;
		case 27: o->steps = atoi(arg); return 0;
		case 28: a->explain_class = arg; return 0;
		case 29:
			o->baseline_id = strcmp(arg, "zero") == 0 ? -1 : atoi(arg);
			return 0;
		case 30:
			if (strcmp(arg, "json") != 0 && strcmp(arg, "tsv") != 0)
				break;
			a->explain_tsv = strcmp(arg, "tsv") == 0;
			return 0;
	}
	fprintf(stderr, "dept-train: bad value \"%s\" for an --explain option\n", arg ? arg : "");
	return -1;
}

/* Options 25 and up: --explain's (parse_explain_arg), --task, --bin-value and the pair's; -1 with a message when bad. */
static int
parse_late_arg(int c, const char *arg, CliArgs *a)
{
	const char *pairs[] = {"joined", "native", "siamese"};

	if (c == 32 && (strcmp(arg, "mean") == 0 || strcmp(arg, "argmax") == 0))
	{
		a->bin_argmax = strcmp(arg, "argmax") == 0;
		return 0;
	}
	if (c == 32)
	{
		fprintf(stderr, "dept-train: --bin-value must be mean or argmax, not \"%s\"\n", arg);
		return -1;
	}
	if (c == 38)
	{
		a->text_column2 = arg;
		return 0;
	}
	for (int i = 0; c == 39 && i < 3; i++)
		if (strcmp(arg, pairs[i]) == 0)
		{
			a->pair = i;
			return 0;
		}
	if (c == 39)
	{
		fprintf(stderr, "dept-train: --pair-encoding must be joined, native or siamese, not \"%s\"\n", arg);
		return -1;
	}
	if (c != 31)
		return parse_explain_arg(c, arg, a);
	if (strcmp(arg, "regression") != 0 && strcmp(arg, "classification") != 0)
	{
		fprintf(stderr, "dept-train: --task must be classification or regression, not \"%s\"\n", arg);
		return -1;
	}
	a->regression = strcmp(arg, "regression") == 0;
	return 0;
}

static int
parse_args(int argc, char **argv, CliArgs *a)
{
	static struct option longopts[] = {
		{"train", required_argument, 0, 't'}, {"test", required_argument, 0, 'T'},
		{"model", required_argument, 0, 'M'}, {"method", required_argument, 0, 'm'},
		{"prompt-length", required_argument, 0, 'p'}, {"budget", required_argument, 0, 'b'},
		{"rank", required_argument, 0, 'r'}, {"max-length", required_argument, 0, 's'},
		{"subspaces", required_argument, 0, 'K'}, {"subspace-rank", required_argument, 0, 'q'},
		{"epochs", required_argument, 0, 'e'}, {"max-steps", required_argument, 0, 'n'},
		{"batch-size", required_argument, 0, 'B'}, {"seed", required_argument, 0, 'S'},
		{"lr", required_argument, 0, 1}, {"lowrank-lr", required_argument, 0, 2},
		{"ept-lr", required_argument, 0, 3}, {"head-lr", required_argument, 0, 4},
		{"weight-decay", required_argument, 0, 5}, {"valid-fraction", required_argument, 0, 6},
		{"eval-every", required_argument, 0, 7}, {"patience", required_argument, 0, 8},
		{"warmup-ratio", required_argument, 0, 9}, {"max-grad-norm", required_argument, 0, 10},
		{"init-text", required_argument, 0, 11}, {"text-column", required_argument, 0, 12},
		{"label-column", required_argument, 0, 13}, {"threads", required_argument, 0, 14},
		{"report", required_argument, 0, 15}, {"quiet", no_argument, 0, 16},
		{"head", required_argument, 0, 17}, {"precision", required_argument, 0, 18},
		{"pool", required_argument, 0, 19}, {"valid-rows", required_argument, 0, 20},
		{"save", required_argument, 0, 21}, {"load", required_argument, 0, 22},
		{"embed-out", required_argument, 0, 23}, {"init-from", required_argument, 0, 24},
		{"explain", no_argument, 0, 25}, {"explain-method", required_argument, 0, 26},
		{"steps", required_argument, 0, 27}, {"class", required_argument, 0, 28},
		{"baseline", required_argument, 0, 29}, {"format", required_argument, 0, 30},
		{"task", required_argument, 0, 31}, {"bin-value", required_argument, 0, 32},
		{"budget-rows", required_argument, 0, 35}, {"cold-head", no_argument, 0, 36},
		{"no-probe-search", no_argument, 0, 37}, {"text-column2", required_argument, 0, 38},
		{"pair-encoding", required_argument, 0, 39},
		{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}
	};
	TrainOptions *o = &a->opt;
	int			c;

	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 't': a->train_path = optarg; break;
			case 'T': a->test_path = optarg; break;
			case 'M': a->model_dir = optarg; break;
			case 'm':
				a->auto_method = strcmp(optarg, "auto") == 0;
				if (!a->auto_method && adapter_method_parse(optarg, &o->method) != 0)
				{
					fprintf(stderr, "dept-train: unknown method \"%s\"\n", optarg);
					return -1;
				}
				break;
			case 'p': o->prompt_len = atoi(optarg); break;
			case 'b': o->budget = atoi(optarg); break;
			case 'r': o->rank = atoi(optarg); break;
			case 's': o->max_len = atoi(optarg); break;
			case 'K': o->subspaces = atoi(optarg); break;
			case 'q': o->subspace_rank = atoi(optarg); break;
			case 'e': o->epochs = atoi(optarg); a->epochs_given = true; break;
			case 35: a->budget_rows = atol(optarg); break;
			case 36: a->cold_head = true; break;
			case 37: o->probe_search = false; break;
			case 'n': o->max_steps = atol(optarg); break;
			case 'B': o->batch_size = atoi(optarg); break;
			case 'S': o->seed = strtoull(optarg, NULL, 10); break;
			case 1: o->lr_prompt = strtof(optarg, NULL); break;
			case 2: o->lr_lowrank = strtof(optarg, NULL); break;
			case 3: o->lr_ept = strtof(optarg, NULL); break;
			case 4: o->lr_head = strtof(optarg, NULL); break;
			case 5: o->weight_decay = strtof(optarg, NULL); break;
			case 6: o->valid_fraction = strtod(optarg, NULL); break;
			case 7: o->eval_every = atoi(optarg); break;
			case 8: o->patience = atoi(optarg); break;
			case 9: o->warmup_ratio = strtof(optarg, NULL); break;
			case 10: o->max_grad_norm = strtod(optarg, NULL); break;
			case 11: o->init_text = optarg; break;
			case 12: a->text_column = optarg; break;
			case 13: a->label_column = optarg; break;
			case 14: a->threads = atoi(optarg); break;
			case 15: a->report_path = optarg; break;
			case 16: a->quiet = true; break;
			case 17:
				if (strcmp(optarg, "text") == 0)
					o->head = TRAIN_HEAD_TEXT;
				else if (strcmp(optarg, "linear") == 0)
					o->head = TRAIN_HEAD_LINEAR;
				else
				{
					fprintf(stderr, "dept-train: --head must be text or linear, not \"%s\"\n", optarg);
					return -1;
				}
				break;
			case 18:
				if (strcmp(optarg, "float32") != 0 && strcmp(optarg, "bfloat16") != 0)
				{
					fprintf(stderr, "dept-train: --precision must be float32 or bfloat16, not \"%s\"\n",
							optarg);
					return -1;
				}
				o->bf16 = strcmp(optarg, "bfloat16") == 0;
				break;
			case 19:
				if (strcmp(optarg, "text") != 0 && strcmp(optarg, "all") != 0)
				{
					fprintf(stderr, "dept-train: --pool must be text or all, not \"%s\"\n", optarg);
					return -1;
				}
				o->pool_text = strcmp(optarg, "text") == 0;
				break;
			case 20: o->valid_tail = atoi(optarg); break;
			case 21: a->save_path = optarg; break;
			case 22: a->load_path = optarg; break;
			case 24: a->init_from_path = optarg; break;
			case 23: a->embed_path = optarg; break;
			case 'h': usage(stdout); exit(0);
			default:
				if (c < 25 || c > 39 || (c > 32 && c < 38) || parse_late_arg(c, optarg, a) != 0)
				{
					usage(stderr);
					return -1;
				}
		}
	}
	if (a->epochs_given && !a->auto_method && o->method == ADAPTER_PROBE)
	{
		o->probe_epochs = o->epochs;	/* --method probe: an explicit epochs asks for passes */
		o->probe_solver = false;
	}
	a->texts = argv + optind;
	a->n_texts = argc - optind;
	if (a->explain ? !a->load_path : a->load_path ? !a->test_path : !a->train_path)
	{
		usage(stderr);
		return -1;
	}
	return 0;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool
progress_bar(void *arg, const TrainProgress *p)
{
	int			width = 30,
				filled = (int) (width * p->step / (p->total_steps ? p->total_steps : 1));

	fprintf(stderr, "\r[%.*s%*s] step %ld/%ld epoch %d loss %.4f valid acc %s%.4f %.1f rows/s ETA %.0fs ",
			filled, "##############################", width - filled, "", p->step,
			p->total_steps, p->epoch, p->loss, p->valid_accuracy < 0 ? "-" : "",
			p->valid_accuracy < 0 ? 0.0 : p->valid_accuracy, p->rows_per_second, p->eta_seconds);
	if (p->step == p->total_steps)
		fputc('\n', stderr);
	return true;
}

static char
delimiter_for(const char *path)
{
	size_t		n = strlen(path);

	return (n > 4 && strcmp(path + n - 4, ".csv") == 0) ? ',' : '\t';
}

static void
json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void
json_metrics(FILE *f, const ClassMetrics *m, char **class_names)
{
	int			C = m->n_classes;

	if (m->regression)
	{
		fprintf(f, "{\"rows\": %ld, \"pearson\": %.6f, \"spearman\": %.6f, \"mse\": %.6f}",
				(long) m->total, m->pearson, m->spearman, m->mse);
		return;
	}
	fprintf(f, "{\"rows\": %ld, \"accuracy\": %.6f, \"macro_f1\": %.6f, \"per_class\": {",
			(long) m->total, m->accuracy, m->macro_f1);
	for (int c = 0; c < C; c++)
	{
		fprintf(f, "%s", c ? ", " : "");
		json_string(f, class_names[c]);
		fprintf(f, ": {\"precision\": %.6f, \"recall\": %.6f, \"f1\": %.6f}",
				m->precision[c], m->recall[c], m->f1[c]);
	}
	fprintf(f, "}, \"confusion\": [");
	for (int t = 0; t < C; t++)
	{
		fprintf(f, "%s[", t ? ", " : "");
		for (int p = 0; p < C; p++)
			fprintf(f, "%s%ld", p ? ", " : "", (long) m->confusion[t * C + p]);
		fprintf(f, "]");
	}
	fprintf(f, "]}");
}

/*
 * Sentence pairs read joined: each pair as one text "<col>: a <col2>: b",
 * the bytes SQL's dept_train and dept_predict build (src/pg/train_launch.c
 * DeptPairText), replacing *ds.
 */
static NnStatus
join_pairs(const CliArgs *a, Dataset **ds, NnError *err)
{
	Dataset    *in = *ds,
			   *out = dataset_new();
	NnStatus	st = out ? NN_OK : nn_fail(err, NN_ERR_NOMEM, "out of memory");

	for (int i = 0; st == NN_OK && i < in->n_rows; i++)
	{
		size_t		len = strlen(a->text_column) + strlen(a->text_column2) + in->text_lens[i] +
			in->text_b_lens[i] + 5;
		char	   *text = malloc(len + 1);

		if (text == NULL)
			return nn_fail(err, NN_ERR_NOMEM, "out of memory");
		snprintf(text, len + 1, "%s: %s %s: %s", a->text_column, in->texts[i], a->text_column2,
				 in->texts_b[i]);
		st = dataset_add(out, text, strlen(text), in->row_labels[i], strlen(in->row_labels[i]), err);
		free(text);
	}
	if (st == NN_OK)
		st = in->regression ? dataset_finish_regression(out, a->label_column, err)
			: dataset_finish(out, err);
	if (st == NN_OK)
		out->skipped = in->skipped;
	dataset_free(st == NN_OK ? in : out);
	if (st == NN_OK)
		*ds = out;
	return st;
}

/*
 * A delimited file as a classification or (--task regression) a regression
 * dataset: one text column, or sentence pairs (--text-column2), joined into
 * one text when pair is JOINED.
 */
static NnStatus
load_data(const CliArgs *a, const char *path, int pair, Dataset **ds, NnError *err)
{
	NnStatus	st;

	if (a->text_column2 == NULL)
		return (a->regression ? dataset_load_regression : dataset_load)
			(ds, path, delimiter_for(path), a->text_column, a->label_column, err);
	st = dataset_load_pairs(ds, path, delimiter_for(path), a->text_column, a->text_column2,
							a->label_column, a->regression, err);
	if (st == NN_OK && pair == ADAPTER_PAIR_JOINED)
		st = join_pairs(a, ds, err);
	return st;
}

/* Test rows whose labels the training set knows; others are reported unknown. */
static int
remap_test_labels(char **class_names, int n_classes, Dataset *test)
{
	int			unknown = 0;

	if (test->regression)
		return 0;				/* numbers, not classes */

	for (int i = 0; i < test->n_rows; i++)
	{
		int			found = -1;

		for (int c = 0; c < n_classes; c++)
			if (strcmp(class_names[c], test->row_labels[i]) == 0)
				found = c;
		test->labels[i] = found;
		unknown += found < 0;
	}
	test->n_classes = n_classes;
	return unknown;
}

static int
write_file(const char *path, const void *buf, size_t len)
{
	FILE	   *f = fopen(path, "wb");

	if (f == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
	{
		fprintf(stderr, "dept-train: could not write %s\n", path);
		return -1;
	}
	return 0;
}

/* --embed-out: the frozen sentence vectors of ds's rows, in batches of 64. */
static int
embed_rows(const Backbone *bb, const Dataset *ds, const char *path)
{
	enum
	{
	EMBED_BATCH = 64};
	BackboneRun *run = bb->ops->run_new(bb, EMBED_BATCH, bb->max_tokens);
	float	   *out = malloc(sizeof(float) * (size_t) ds->n_rows * bb->d_out + 1);
	NnError		err = {0};
	int			rc = 0;

	if (run == NULL || out == NULL)
	{
		fprintf(stderr, "dept-train: out of memory embedding\n");
		rc = -1;
	}
	for (int start = 0; rc == 0 && start < ds->n_rows; start += EMBED_BATCH)
	{
		int			n = ds->n_rows - start < EMBED_BATCH ? ds->n_rows - start : EMBED_BATCH;

		if (backbone_embed_texts(bb, run, (const char *const *) ds->texts + start,
								 ds->text_lens + start, n, out + (size_t) start * bb->d_out,
								 &err) != NN_OK)
		{
			fprintf(stderr, "dept-train: %s\n", err.msg);
			rc = -1;
		}
	}
	if (rc == 0)
		rc = write_file(path, out, sizeof(float) * (size_t) ds->n_rows * bb->d_out);
	if (rc == 0)
		printf("{\"rows\": %d, \"dim\": %d, \"skipped_rows\": %ld}\n", ds->n_rows, bb->d_out,
			   ds->skipped);
	if (run)
		bb->ops->run_free(run);
	free(out);
	return rc;
}

/*
 * A saved adapter (adapter_io.h) of this backbone and its class names, or
 * -1 with a message on stderr.
 */
static int
read_adapter_file(const Backbone *bb, const char *path, int batch, Adapter **ad, char ***names,
				  unsigned *format_version)
{
	uint8_t    *buf = NULL;
	long		len;
	FILE	   *f = fopen(path, "rb");
	char		fp[65];
	NnError		err = {0};
	int			rc = -1;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
		fseek(f, 0, SEEK_SET) != 0 || (buf = malloc(len + 1)) == NULL ||
		fread(buf, 1, len, f) != (size_t) len)
		fprintf(stderr, "dept-train: could not read %s\n", path);
	else if (adapter_deserialize(buf, (size_t) len, batch, ad, fp, names, &err) != NN_OK)
		fprintf(stderr, "dept-train: %s: %s\n", path, err.msg);
	else if (strcmp(fp, bb->fingerprint) != 0)
		fprintf(stderr, "dept-train: %s was trained on another backbone\n", path);
	else
	{
		/* the format's version follows the magic "DEPT" (adapter_io.h) */
		*format_version = (unsigned) buf[4] | (unsigned) buf[5] << 8;
		rc = 0;
	}
	if (f)
		fclose(f);
	free(buf);
	return rc;
}

/*
 * --init-from: start from a saved adapter (adapter_init_from), its head
 * too when its classes are the training set's.
 */
static int
set_init_from(const Backbone *bb, CliArgs *a, const Dataset *train)
{
	Adapter    *ad = NULL;
	char	  **names = NULL;
	bool		same;

	unsigned	version;

	if (read_adapter_file(bb, a->init_from_path, a->opt.batch_size, &ad, &names, &version) != 0)
		return -1;
	same = ad->cfg.n_classes == train->n_classes;
	for (int c = 0; same && c < train->n_classes; c++)
		same = strcmp(names[c], train->class_names[c]) == 0;
	adapter_free_class_names(names, ad->cfg.n_classes);
	a->opt.init_from = ad;		/* lives until the process ends */
	a->opt.init_head = same;
	return 0;
}

/* --load: evaluate a saved adapter on the test rows; the report has no training part. */
static int
evaluate_saved(const Backbone *bb, const CliArgs *a, Dataset **test_set)
{
	Dataset    *test = *test_set;
	Adapter    *ad = NULL;
	char	  **names = NULL;
	NnError		err = {0};
	ClassMetrics *m = NULL;
	int		   *rows = malloc(sizeof(int) * (test->n_rows + 1));
	FILE	   *out = stdout;
	int			rc = -1;
	unsigned	version = 0;

	if (read_adapter_file(bb, a->load_path, a->opt.batch_size, &ad, &names, &version) != 0)
		goto done;
	if (text_head_bind_labels(bb, ad, (const char *const *) names, &err) != NN_OK)
	{
		fprintf(stderr, "dept-train: %s\n", err.msg);
		goto done;
	}
	ad->bin_argmax = a->bin_argmax;
	if (ad->cfg.regression != test->regression)
	{
		fprintf(stderr, "dept-train: the adapter is a %s: %s\n", ad->cfg.regression ? "regression" :
				"classifier", ad->cfg.regression ? "pass --task regression" : "drop --task regression");
		goto done;
	}
	/* pairs were read apart: an adapter that reads them joined gets them joined */
	if (test->texts_b && ad->cfg.pair == ADAPTER_PAIR_JOINED)
	{
		if (join_pairs(a, test_set, &err) != NN_OK)
		{
			fprintf(stderr, "dept-train: %s\n", err.msg);
			goto done;
		}
		test = *test_set;
	}
	if (remap_test_labels(names, ad->cfg.n_classes, test) > 0)
		fprintf(stderr, "dept-train: test rows with labels the adapter does not know are left out\n");
	for (int i = 0; i < test->n_rows; i++)
		rows[i] = i;
	if (evaluate_rows(bb, ad, test, rows, test->n_rows, a->opt.batch_size, &m, &err) != NN_OK)
	{
		fprintf(stderr, "dept-train: %s\n", err.msg);
		goto done;
	}
	if (a->report_path && (out = fopen(a->report_path, "w")) == NULL)
	{
		fprintf(stderr, "dept-train: could not write %s\n", a->report_path);
		goto done;
	}
	fprintf(out, "{\"method\": \"%s\", \"backbone\": \"%s\", \"format_version\": %u, \"pooling\": \"%s\", "
			"\"pair_encoding\": \"%s\",\n \"task\": \"%s\", \"bin_value\": \"%s\",\n \"test\": ",
			adapter_method_name(ad->cfg.method), bb->ops->family,
			version, ad->cfg.pool_text ? "text" : "all",
			a->text_column2 == NULL ? "none" : pair_name(ad->cfg.pair),
			ad->cfg.regression ? "regression" : "classification", a->bin_argmax ? "argmax" : "mean");
	json_metrics(out, m, names);
	fprintf(out, "}\n");
	if (out != stdout)
		fclose(out);
	rc = 0;
done:
	free(rows);
	metrics_free(m);
	if (ad)
		adapter_free_class_names(names, ad->cfg.n_classes);
	adapter_free(ad);
	return rc;
}

/* One explanation: a JSON object on a line, or TSV rows (text, position, token, attribution). */
static void
print_explanation(const CliArgs *a, int index, const char *text, const Explanation *e,
				  char **names)
{
	if (a->explain_tsv)
	{
		for (int i = 0; i < e->n_tokens; i++)
			printf("%d\t%d\t%s\t%.6f\n", index, i, e->tokens[i], e->attributions[i]);
		return;
	}
	printf("{\"text\": ");
	json_string(stdout, text);
	printf(", \"predicted\": ");
	json_string(stdout, names[e->predicted_class]);
	printf(", \"probability\": %.6f, \"explained\": ", e->predicted_prob);
	json_string(stdout, names[e->target_class]);
	printf(", \"method\": \"%s\", \"steps\": %d, \"log_prob\": %.6f, \"baseline_log_prob\": %.6f, "
		   "\"attribution_sum\": %.6f, \"tokens\": [",
		   a->explain_opt.method == EXPLAIN_INTEGRATED_GRADIENTS ? "integrated_gradients" :
		   "gradient_x_input", e->steps, e->target_log_prob, e->baseline_log_prob,
		   e->attribution_sum);
	for (int i = 0; i < e->n_tokens; i++)
	{
		printf("%s{\"token\": ", i ? ", " : "");
		json_string(stdout, e->tokens[i]);
		printf(", \"id\": %d, \"attribution\": %.6f}", (int) e->ids[i], e->attributions[i]);
	}
	printf("]}\n");
}

/* Explain one text; -1 with a message on failure. */
static int
explain_one(const Backbone *bb, BackboneRun *run, Adapter *ad, const CliArgs *a, int index,
			const char *text, char **names)
{
	Explanation e;
	NnError		err = {0};
	int			rc = 0;

	if (explain_text(bb, run, ad, text, strlen(text), &a->explain_opt, &e, &err) != NN_OK)
	{
		fprintf(stderr, "dept-train: text %d: %s\n", index, err.msg);
		rc = -1;
	}
	else
		print_explanation(a, index, text, &e, names);
	explanation_free(&e);
	return rc;
}

/* --explain: attributions of a saved adapter's predictions, for the arguments or stdin's lines. */
static int
explain_saved(const Backbone *bb, CliArgs *a)
{
	Adapter    *ad = NULL;
	char	  **names = NULL;
	NnError		err = {0};
	BackboneRun *run = NULL;
	unsigned	version;
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		len;
	int			rc = -1;

	if (read_adapter_file(bb, a->load_path, 1, &ad, &names, &version) != 0)
		return -1;
	if (text_head_bind_labels(bb, ad, (const char *const *) names, &err) != NN_OK)
	{
		fprintf(stderr, "dept-train: %s\n", err.msg);
		goto done;
	}
	for (int c = 0; a->explain_class && c < ad->cfg.n_classes; c++)
		if (strcmp(names[c], a->explain_class) == 0)
			a->explain_opt.target_class = c;
	if (a->explain_class && a->explain_opt.target_class < 0)
	{
		fprintf(stderr, "dept-train: the adapter has no class \"%s\"\n", a->explain_class);
		goto done;
	}
	run = bb->ops->run_new(bb, 1, adapter_prompt_rows(&ad->cfg) +
						   (ad->cfg.max_len > 0 ? ad->cfg.max_len : bb->max_tokens));
	if (run == NULL)
	{
		fprintf(stderr, "dept-train: out of memory\n");
		goto done;
	}
	if (a->explain_tsv)
		printf("text\tposition\ttoken\tattribution\n");
	rc = 0;
	for (int t = 0; t < a->n_texts; t++)
		rc |= explain_one(bb, run, ad, a, t, a->texts[t], names);
	for (int t = 0; a->n_texts == 0 && (len = getline(&line, &cap, stdin)) >= 0; t++)
	{
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		rc |= explain_one(bb, run, ad, a, t, line, names);
	}
done:
	free(line);
	if (run)
		bb->ops->run_free(run);
	adapter_free_class_names(names, ad->cfg.n_classes);
	adapter_free(ad);
	return rc;
}

/* --explain's main: exit status 0 when every text was explained. */
static int
explain_main(CliArgs *a)
{
	Backbone   *bb = NULL;
	NnError		err = {0};
	int			rc;

	if (backbone_open(&bb, a->model_dir, &err) != NN_OK)
	{
		fprintf(stderr, "dept-train: %s\n", err.msg);
		return 1;
	}
	rc = explain_saved(bb, a);
	backbone_close(bb);
	return rc == 0 ? 0 : 1;
}

static void
print_trial(void *arg, const AutoTrial *t)
{
	const CliArgs *a = arg;

	if (!a->quiet)
		fprintf(stderr, "auto: %s m=%d%s: validation %.4f in %ld steps, %.1f s\n",
				adapter_method_name(t->method), t->prompt_len, t->head_from_probe ? " (head from the probe)" : "",
				t->valid_accuracy, t->steps, t->seconds);
}

/* --method auto: the candidates of auto.h; a->opt becomes the winner's options. */
static NnStatus
train_auto_cli(const Backbone *bb, const Dataset *train, CliArgs *a, TrainResult *res, NnError *err)
{
	TrainOptions won;
	NnStatus	st = train_auto(bb, train, &a->opt, a->budget_rows, !a->cold_head, res, &won,
								&a->auto_report, print_trial, a, err);

	if (st == NN_OK)
		a->opt = won;
	return st;
}

/* The candidates of --method auto, as JSON. */
static void
json_auto(FILE *out, const AutoReport *r)
{
	fprintf(out, " \"auto\": {\"budget_rows\": %ld, \"steps_each\": %ld, \"winner\": %d, \"candidates\": [",
			r->budget_rows, r->steps_each, r->winner);
	for (int i = 0; i < r->n_trials; i++)
	{
		const AutoTrial *t = &r->trials[i];

		fprintf(out, "%s{\"method\": \"%s\", \"prompt_length\": %d, \"head_from_probe\": %s, "
				"\"valid_accuracy\": %.6f, \"valid_macro_f1\": %.6f, \"valid_score\": %.6f, "
				"\"probe_l2\": %g, \"probe_c\": %g, \"steps\": %ld, \"rows_seen\": %ld, \"seconds\": %.3f}",
				i ? ", " : "", adapter_method_name(t->method), t->prompt_len, t->head_from_probe ? "true" : "false",
				t->valid_accuracy, t->valid_macro_f1, t->valid_score, t->probe_l2, t->probe_c, t->steps,
				t->rows_seen, t->seconds);
	}
	fprintf(out, "]},\n");
}

/* The JSON report of a training run (to --report, else stdout). */
static int
write_report(const CliArgs *a, const Backbone *bb, const Dataset *train, const TrainResult *res,
			 const ClassMetrics *test_metrics, double infer_ms_per_1000)
{
	FILE	   *out = stdout;
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	if (a->report_path && (out = fopen(a->report_path, "w")) == NULL)
	{
		fprintf(stderr, "dept-train: could not write %s\n", a->report_path);
		return 1;
	}
	fprintf(out, "{\"method\": \"%s\", \"backbone\": \"%s\", \"head\": \"%s\", \"blas_core\": \"%s\", \"threads\": %d,\n",
			adapter_method_name(a->opt.method), bb->ops->family,
			res->adapter->cfg.head == ADAPTER_HEAD_TEXT ? "text" :
			res->adapter->cfg.regression ? "regression" : "linear", nn_blas_core(),
			a->threads);
	fprintf(out, " \"precision\": \"%s\", \"pooling\": \"%s\", \"task\": \"%s\", \"classes\": %d, \"pair_encoding\": \"%s\",\n",
			a->opt.bf16 ? "bfloat16" : "float32", res->adapter->cfg.pool_text ? "text" : "all",
			res->adapter->cfg.regression ? "regression" : "classification", res->adapter->cfg.n_classes,
			a->text_column2 == NULL ? "none" : pair_name(res->adapter->cfg.pair));
	fprintf(out, " \"prompt_length\": %d, \"rank\": %d, \"max_length\": %d, \"subspaces\": %d, \"subspace_rank\": %d,\n",
			adapter_prompt_rows(&res->adapter->cfg), res->adapter->cfg.rank, res->adapter->cfg.max_len,
			res->adapter->cfg.subspaces, res->adapter->cfg.subspace_rank);
	fprintf(out, " \"trainable_params\": %zu, \"train_rows\": %d, \"valid_rows\": %d, \"skipped_rows\": %ld,\n",
			res->param_count, res->n_train, res->n_valid, train->skipped);
	fprintf(out, " \"steps\": %ld, \"epochs\": %d, \"best_step\": %ld, \"seconds\": %.3f, \"seconds_per_epoch\": %.3f,\n",
			res->steps, res->epochs_run, res->best_step, res->seconds, res->seconds_per_epoch);
	fprintf(out, " \"train_tokens\": %ld, \"tokens_per_second\": %.1f, \"peak_rss_mb\": %.1f,\n",
			res->train_tokens, res->tokens_per_second, ru.ru_maxrss / 1024.0);
	if (a->opt.method == ADAPTER_PROBE)
		fprintf(out, " \"probe_l2\": %g, \"probe_c\": %g,\n", res->probe_l2, res->probe_c);
	if (a->auto_method)
		json_auto(out, &a->auto_report);
	fprintf(out, " \"inference_ms_per_1000_rows\": %.1f,\n \"valid\": ", infer_ms_per_1000);
	if (res->valid_metrics)
		json_metrics(out, res->valid_metrics, train->class_names);
	else
		fprintf(out, "null");
	fprintf(out, ",\n \"test\": ");
	if (test_metrics)
		json_metrics(out, test_metrics, train->class_names);
	else
		fprintf(out, "null");
	fprintf(out, "}\n");
	if (out != stdout)
		fclose(out);

	return 0;
}

int
main(int argc, char **argv)
{
	CliArgs		a = {0};
	Backbone   *bb = NULL;
	Dataset    *train = NULL,
			   *test = NULL;
	TrainResult res;
	NnError		err = {0};
	ClassMetrics *test_metrics = NULL;
	double		infer_ms_per_1000 = -1;

	train_options_default(&a.opt);
	explain_options_default(&a.explain_opt);
	a.model_dir = "build/model/use-lite";
	a.text_column = "text";
	a.pair = -1;
	a.label_column = "label";
	a.threads = 1;
	a.budget_rows = AUTO_DEFAULT_BUDGET_ROWS;
	if (parse_args(argc, argv, &a) != 0)
		return 2;
	nn_blas_setup(a.threads);
	/* a run that only reads the model packs its frozen weights once (ops/gemm_packed.h) */
	gemm_packed_enable(a.embed_path != NULL || a.load_path != NULL || a.explain, NULL, 0);
	if (!a.quiet)
		a.opt.progress = progress_bar;

	if (a.explain)
		return explain_main(&a);
	if (backbone_open(&bb, a.model_dir, &err) != NN_OK)
	{
		fprintf(stderr, "dept-train: %s\n", err.msg);
		return 1;
	}
	/* pairs: as --pair-encoding says, else the family's default (train_default_pair) */
	a.opt.pair = a.text_column2 == NULL ? ADAPTER_PAIR_JOINED : a.pair >= 0 ? a.pair
		: train_default_pair(bb, &a.opt);
	if (a.load_path == NULL && load_data(&a, a.train_path, a.opt.pair, &train, &err) != NN_OK)
	{
		fprintf(stderr, "dept-train: %s\n", err.msg);
		return 1;
	}
	if (a.embed_path)
	{
		int			rc = embed_rows(bb, train, a.embed_path);

		dataset_free(train);
		backbone_close(bb);
		return rc == 0 ? 0 : 1;
	}
	if (a.test_path)
	{
		Dataset    *t = NULL;
		NnError		terr;

		/* classes are the training set's: map the test labels onto them */
		/* --load: pairs are kept apart until the adapter's encoding is known (evaluate_saved) */
		if (load_data(&a, a.test_path, a.load_path ? ADAPTER_PAIR_NATIVE : a.opt.pair, &t,
					  &terr) != NN_OK)
		{
			fprintf(stderr, "dept-train: %s\n", terr.msg);
			return 1;
		}
		test = t;
		if (a.load_path)
		{
			int			rc = evaluate_saved(bb, &a, &test);

			dataset_free(test);
			backbone_close(bb);
			return rc == 0 ? 0 : 1;
		}
		if (remap_test_labels(train->class_names, train->n_classes, test) > 0)
			fprintf(stderr, "dept-train: test rows with labels unseen in training are left out\n");
	}

	/* a regression on T5's text-to-text head trains on 0.2-step bins (train.h) */
	if (train_prepare_regression(bb, &a.opt, train, &err) != NN_OK)
	{
		fprintf(stderr, "dept-train: %s\n", err.msg);
		return 1;
	}
	if (a.init_from_path && set_init_from(bb, &a, train) != 0)
		return 1;
	if ((a.auto_method ? train_auto_cli(bb, train, &a, &res, &err)
		 : train_adapter(bb, train, &a.opt, &res, &err)) != NN_OK)
	{
		fprintf(stderr, "dept-train: %s\n", err.msg);
		return 1;
	}
	res.adapter->bin_argmax = a.bin_argmax;	/* after training: validation chose by the mean */
	if (test)
	{
		int		   *rows = malloc(sizeof(int) * test->n_rows);
		double		t0;

		for (int i = 0; i < test->n_rows; i++)
			rows[i] = i;
		t0 = now_seconds();
		if (evaluate_rows(bb, res.adapter, test, rows, test->n_rows, a.opt.batch_size,
						  &test_metrics, &err) != NN_OK)
		{
			fprintf(stderr, "dept-train: %s\n", err.msg);
			return 1;
		}
		infer_ms_per_1000 = (now_seconds() - t0) * 1000.0 * 1000.0 / test->n_rows;
		free(rows);
	}

	if (a.save_path)
	{
		uint8_t    *bytes = NULL;
		size_t		n_bytes = 0;

		if (adapter_serialize(res.adapter, bb->fingerprint, (const char *const *) train->class_names,
							  &bytes, &n_bytes, &err) != NN_OK)
		{
			fprintf(stderr, "dept-train: %s\n", err.msg);
			return 1;
		}
		if (write_file(a.save_path, bytes, n_bytes) != 0)
			return 1;
		free(bytes);
	}
	if (write_report(&a, bb, train, &res, test_metrics, infer_ms_per_1000) != 0)
		return 1;
	metrics_free(test_metrics);
	train_result_free(&res);
	dataset_free(train);
	dataset_free(test);
	backbone_close(bb);
	return 0;
}
