/*
 * first_call.c: where the first statement that loads dept in a backend
 * spends its time (docs/design.md 6, "First call in a new backend").
 *
 * The statement is cut into parts: what ran before dept.so was loaded
 * (parse, plan, the dynamic loader), _PG_init, then whatever the callers of
 * DeptFirstCallEnter name (the catalog query, the model load, ...).  Time
 * and minor page faults are charged to the part current when they pass.
 * Only the statement during which dept.so was loaded is recorded; later
 * statements cost one timestamp comparison per switch.  dept_model_info
 * reports the record (bench/model_load.sh reads it).
 */
#include "postgres.h"

#include <sys/resource.h>
#include <time.h>

#include "lib/stringinfo.h"
#include "utils/timestamp.h"
#include "access/xact.h"

#include "dept.h"

static const char *const part_names[DEPT_FC_N] = {
	[DEPT_FC_BEFORE] = "before_load",
	[DEPT_FC_INIT] = "init",
	[DEPT_FC_OTHER] = "other",
	[DEPT_FC_CATALOG] = "catalog",
	[DEPT_FC_MODEL] = "model",
	[DEPT_FC_ADAPTER] = "adapter",
	[DEPT_FC_BUFFERS] = "buffers",
	[DEPT_FC_FORWARD] = "forward",
};

typedef struct FirstCall
{
	TimestampTz statement;		/* start of the recorded statement; 0: none */
	DeptFirstCallPart current;
	double		since_ms;		/* clock when current became current */
	long		since_faults;
	double		ms[DEPT_FC_N];
	long		faults[DEPT_FC_N];
	bool		used[DEPT_FC_N];
} FirstCall;

static FirstCall first_call;

static double
DeptClockMillis(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static long
DeptMinorFaults(void)
{
	struct rusage ru;

	return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt : 0;
}

/*
 * Called first thing in _PG_init: start the record, charging the time from
 * the statement's start to now to DEPT_FC_BEFORE.  In a process that is
 * not running a statement (the postmaster, a worker) nothing is recorded.
 */
void
DeptFirstCallStart(void)
{
	TimestampTz stmt = GetCurrentStatementStartTimestamp();

	memset(&first_call, 0, sizeof(first_call));
	if (stmt == 0 || !IsTransactionState())
		return;
	first_call.ms[DEPT_FC_BEFORE] = (GetCurrentTimestamp() - stmt) / 1000.0;
	first_call.used[DEPT_FC_BEFORE] = true;
	first_call.statement = stmt;
	first_call.current = DEPT_FC_INIT;
	first_call.since_ms = DeptClockMillis();
	first_call.since_faults = DeptMinorFaults();
}

/* Charge what passed since the last switch to the current part, make part current; the old one. */
DeptFirstCallPart
DeptFirstCallEnter(DeptFirstCallPart part)
{
	DeptFirstCallPart previous = first_call.current;
	double		now_ms;
	long		now_faults;

	if (first_call.statement == 0 || GetCurrentStatementStartTimestamp() != first_call.statement)
		return previous;
	now_ms = DeptClockMillis();
	now_faults = DeptMinorFaults();
	first_call.ms[previous] += now_ms - first_call.since_ms;
	first_call.faults[previous] += now_faults - first_call.since_faults;
	first_call.used[previous] = true;
	first_call.current = part;
	first_call.since_ms = now_ms;
	first_call.since_faults = now_faults;
	return previous;
}

/* The record as a JSON object ({} when this backend has none). */
void
DeptFirstCallJson(StringInfo buf)
{
	bool		first = true;

	appendStringInfoChar(buf, '{');
	for (int p = 0; p < DEPT_FC_N; p++)
	{
		if (!first_call.used[p])
			continue;
		appendStringInfo(buf, "%s\"%s_ms\": %.3f", first ? "" : ", ", part_names[p],
						 first_call.ms[p]);
		if (p != DEPT_FC_BEFORE)
			appendStringInfo(buf, ", \"%s_faults\": %ld", part_names[p], first_call.faults[p]);
		first = false;
	}
	appendStringInfoChar(buf, '}');
}
