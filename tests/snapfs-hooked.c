/*
 * tests/snapfs-hooked.c: the snapfs daemon built on the store library with
 * its test hook compiled in (STORE_TEST_HOOKS), for tests that must make
 * the daemon stop in a known gap.  SNAPFS_TEST_PAUSE=WHERE:MS makes every
 * call of the hook at WHERE (see STORE_TEST_HOOK in store_i.h) sleep MS
 * milliseconds; WHERE:MS:wait says first that the call is about to wait
 * (store_may_block), as the store does before it waits for a lock.
 *
 * Its own allocations (the daemon's, the store library's: not libfuse's
 * or SQLite's) go through tests/failalloc.c, and SNAPFS_TEST_FAILALLOC
 * makes them fail:
 *   start:N    the Nth allocation from the start fails (start:N+: and every
 *              one after it), until the daemon is about to serve requests;
 *              then it says on stderr "snapfs-hooked: C allocations before
 *              serving, F failed" (start:0 only counts them)
 *   signal     after SIGUSR1, every allocation fails on each thread but
 *              the store's helpers (its pack writer, hashing, commit and
 *              index loading threads, whose failures test-store-oom
 *              covers); SIGUSR2 ends that.  A SIGUSR1 sent by sigqueue
 *              with a value N > 0 makes only the Nth of those allocations
 *              fail, and the daemon says on stderr "snapfs-hooked: armed"
 *              once it counts, and at the SIGUSR2 "snapfs-hooked: C
 *              allocations, F failed"
 * The daemon's own main is compiled as snapfs_main.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define STORE_TEST_HOOKS	/* as the store library this links with */
#include "store_i.h"
#include "failalloc.h"
#include "fs.h"

int snapfs_main(int argc, char *argv[]);
int __real_fs_loop_run(struct fuse_session *se, unsigned max_threads, unsigned busy_poll_us);
int __wrap_fs_loop_run(struct fuse_session *se, unsigned max_threads, unsigned busy_poll_us);

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

static bool fail_at_start;

/* Called instead of fs_loop_run, when the daemon is ready to serve. */
int __wrap_fs_loop_run(struct fuse_session *se, unsigned max_threads, unsigned busy_poll_us)
{
	if (fail_at_start) {
		uint64_t failed = failalloc_failed();
		uint64_t counted = failalloc_disarm();
		fprintf(stderr, "snapfs-hooked: %" PRIu64 " allocations before serving, %" PRIu64
			" failed\n", counted, failed);
	}
	return __real_fs_loop_run(se, max_threads, busy_poll_us);
}

/* Not one of the store's helper threads, which name themselves. */
static bool not_store_helper(void)
{
	char name[16] = "";
	prctl(PR_GET_NAME, name);
	return strcmp(name, "snapfs-pack") && strcmp(name, "snapfs-hash") &&
	       strcmp(name, "snapfs-commit") && strcmp(name, "snapfs-index");
}

static volatile sig_atomic_t fail_one;	/* the last SIGUSR1 armed one */

/* Write s to stderr (async-signal-safe). */
static void say(const char *s)
{
	if (write(STDERR_FILENO, s, strlen(s)) < 0)
		return;	/* nowhere to tell */
}

/* v in decimal at p (async-signal-safe); returns the end. */
static char *put_u64(char *p, uint64_t v)
{
	char d[20];
	int n = 0;
	do
		d[n++] = (char)('0' + v % 10);
	while (v /= 10);
	while (n)
		*p++ = d[--n];
	return p;
}

static void fail_signal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig == SIGUSR1) {
		int at = si->si_code == SI_QUEUE ? si->si_value.sival_int : 0;
		fail_one = at > 0;
		failalloc_arm(at > 0 ? (uint64_t)at : 1, at <= 0);
		if (at > 0)
			say("snapfs-hooked: armed\n");
		return;
	}
	uint64_t failed = failalloc_failed();
	uint64_t counted = failalloc_disarm();
	if (!fail_one)
		return;
	char line[96], *p = stpcpy(line, "snapfs-hooked: ");
	p = stpcpy(put_u64(p, counted), " allocations, ");
	p = stpcpy(put_u64(p, failed), " failed\n");
	say(line);
}

/* Set up what SNAPFS_TEST_FAILALLOC says: 0, or -1 if it makes no sense. */
static int failalloc_setup(const char *spec)
{
	uint64_t at;
	char plus[2] = "";
	if (!strcmp(spec, "signal")) {
		failalloc_filter(not_store_helper);
		struct sigaction sa = { .sa_sigaction = fail_signal, .sa_flags = SA_SIGINFO };
		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, NULL);
		sigaction(SIGUSR2, &sa, NULL);
		return 0;
	}
	if (sscanf(spec, "start:%" SCNu64 "%1[+]", &at, plus) >= 1) {
		fail_at_start = true;
		failalloc_arm(at, plus[0] == '+');
		return 0;
	}
	return -1;
}

int main(int argc, char *argv[])
{
	const char *fail = getenv("SNAPFS_TEST_FAILALLOC");
	if (fail && failalloc_setup(fail) < 0) {
		fprintf(stderr, "snapfs-hooked: SNAPFS_TEST_FAILALLOC=%s: not start:N[+] or signal\n",
			fail);
		return 2;
	}
	const char *spec = getenv("SNAPFS_TEST_PAUSE");
	if (spec && sscanf(spec, "%63[^:]:%ld:%15s", pause_where, &pause_ms, pause_how) >= 2 &&
	    pause_ms > 0)
		__atomic_store_n(&store_test_hook, pause_hook, __ATOMIC_RELEASE);
	return snapfs_main(argc, argv);
}
