/*
 * tests/failalloc-sqlite.c: SQLite's allocations counted and failed by
 * failalloc too, as hooked ones (failalloc.h).
 */
#include <sqlite3.h>
#include <stdlib.h>

#include "failalloc.h"

static sqlite3_mem_methods sql_real;

static void *sql_malloc(int n)
{
	return failalloc_fails(true) ? NULL : sql_real.xMalloc(n);
}

static void *sql_realloc(void *p, int n)
{
	return failalloc_fails(true) ? NULL : sql_real.xRealloc(p, n);
}

void failalloc_sqlite(void)
{
	static sqlite3_mem_methods m;
	if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sql_real) != SQLITE_OK)
		abort();
	m = sql_real;
	m.xMalloc = sql_malloc;
	m.xRealloc = sql_realloc;
	if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK)
		abort();
}
