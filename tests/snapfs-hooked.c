/*
 * tests/snapfs-hooked.c: the snapfs daemon built on the store library with
 * its test hook compiled in (STORE_TEST_HOOKS), for tests that must make
 * the daemon stop in a known gap.  SNAPFS_TEST_PAUSE=WHERE:MS makes every
 * call of the hook at WHERE (see STORE_TEST_HOOK in store_i.h) sleep MS
 * milliseconds; WHERE:MS:wait says first that the call is about to wait
 * (store_may_block), as the store does before it waits for a lock.  The
 * daemon's own main is compiled as snapfs_main.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORE_TEST_HOOKS	/* as the store library this links with */
#include "store_i.h"

int snapfs_main(int argc, char *argv[]);

static char pause_where[64], pause_how[16];
static long pause_ms;

static void pause_hook(const char *where, struct store *st, uint64_t ino)
{
	(void)ino;
	if (strcmp(where, pause_where))
		return;
	if (!strcmp(pause_how, "wait"))
		store_may_block(st);
	struct timespec ts = { pause_ms / 1000, pause_ms % 1000 * 1000000 };
	nanosleep(&ts, NULL);
}

int main(int argc, char *argv[])
{
	const char *spec = getenv("SNAPFS_TEST_PAUSE");
	if (spec && sscanf(spec, "%63[^:]:%ld:%15s", pause_where, &pause_ms, pause_how) >= 2 &&
	    pause_ms > 0)
		store_test_hook = pause_hook;
	return snapfs_main(argc, argv);
}
