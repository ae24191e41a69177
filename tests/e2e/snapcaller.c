/*
 * tests/e2e/snapcaller.c: a long-lived process with sandboxes running from
 * one snapshot, driven line by line from standard input.
 *
 * snapshot-gone.sh needs a process that keeps its region
 * mappings while the mount under them dies or is detached, and then keeps
 * calling.  snapvm call is one-shot, so this small program holds them:
 *
 *	e2e-snapcaller SNAPSHOT N
 *
 * opens SNAPSHOT, starts N sandboxes from it and prints "ready".  Then each
 * input line "FUNC [ARG]" calls FUNC in every sandbox and prints, per
 * sandbox K, "sandbox K: RESULT" or "sandbox K: error: MESSAGE"; the line
 * "new FUNC [ARG]" first replaces every sandbox by a new one from the
 * already open snapshot (an error there is printed the same way).  Output
 * is flushed after each line.  At end of input everything is freed and
 * the exit status is 0: any crash (SIGBUS on a dead mapping) shows as a
 * signal status instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/snapshot.h"

#define CALLER_MAX 16

static void call_all(struct sandbox **sb, int n, const char *fn, const char *arg)
{
	for (int k = 0; k < n; k++) {
		struct err e = { 0 };
		char out[256];
		size_t len = 0;
		int r = sb[k] ? sandbox_call(sb[k], fn, arg, strlen(arg), out, sizeof(out), &len, &e)
			      : -1;
		if (!sb[k])
			printf("sandbox %d: error: no sandbox\n", k);
		else if (r < 0)
			printf("sandbox %d: error: %s\n", k, e.msg);
		else
			printf("sandbox %d: %.*s\n", k, (int)len, out);
	}
}

static void renew_all(const struct snapshot *s, struct sandbox **sb, int n)
{
	for (int k = 0; k < n; k++) {
		struct err e = { 0 };
		sandbox_free(sb[k]);
		sb[k] = NULL;
		if (sandbox_new(snapshot_guest(s), NULL, &sb[k], &e) < 0)
			printf("sandbox %d: error: %s\n", k, e.msg);
	}
}

int main(int argc, char **argv)
{
	if (argc != 3 || atoi(argv[2]) < 1 || atoi(argv[2]) > CALLER_MAX) {
		fprintf(stderr, "usage: e2e-snapcaller SNAPSHOT N (1..%d)\n", CALLER_MAX);
		return 2;
	}
	int n = atoi(argv[2]);
	struct err e = { 0 };
	struct snapshot *s;
	if (snapshot_open(argv[1], &s, &e) < 0) {
		fprintf(stderr, "e2e-snapcaller: %s\n", e.msg);
		return 3;
	}
	struct sandbox *sb[CALLER_MAX] = { 0 };
	for (int k = 0; k < n; k++) {
		if (sandbox_new(snapshot_guest(s), NULL, &sb[k], &e) < 0) {
			fprintf(stderr, "e2e-snapcaller: %s\n", e.msg);
			for (int j = 0; j < k; j++)
				sandbox_free(sb[j]);
			snapshot_close(s);
			return 3;
		}
	}
	printf("ready\n");
	fflush(stdout);
	char line[512];
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = 0;
		char *fn = line;
		if (strncmp(fn, "new ", 4) == 0) {
			renew_all(s, sb, n);
			fn += 4;
		}
		char *arg = strchr(fn, ' ');
		if (arg)
			*arg++ = 0;
		call_all(sb, n, fn, arg ? arg : "");
		fflush(stdout);
	}
	for (int k = 0; k < n; k++)
		sandbox_free(sb[k]);
	snapshot_close(s);
	return 0;
}
