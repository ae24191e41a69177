/*
 * host/snapvm_snap.c: the snapshot subcommands of snapvm.
 *
 *   snapvm snapshot [OPTIONS] SOURCE DIR [--init FUNC [ARG]] [--call FUNC [ARG]]...
 *       SOURCE is a guest ELF (cold boot) or a snapshot directory (a
 *       derived snapshot: region files cloned from it); the calls run in
 *       order, then the sandbox is written to DIR and DIR is sealed.
 *   snapvm call [OPTIONS] DIR FUNC [ARG]
 *       start sandboxes from snapshot DIR (-N of them, sharing its
 *       mappings) and call FUNC in each.
 *   snapvm verify DIR
 *       check manifest, cpu and every region file's size and digest.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "snapshot.h"
#include "snapvm_snap.h"

#define EXIT_CALL 1
#define EXIT_USAGE 2
#define EXIT_LOAD 3
#define SANDBOXES_MAX 1024

static void log_stderr(void *ctx, const char *msg, size_t len)
{
	(void)ctx;
	fprintf(stderr, "guest: %.*s", (int)len, msg);
	if (len == 0 || msg[len - 1] != '\n')
		fputc('\n', stderr);
}

static int parse_u64(const char *s, const char *opt, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v > max || s[0] == '-') {
		fprintf(stderr, "snapvm: %s: \"%s\" is not a number up to %llu\n", opt, s,
			(unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

struct common {
	struct sandbox_options sopt;
	struct guest_options gopt;
	uint64_t sandboxes;
	int raw;
};

/* Options shared by the subcommands; returns the index of the first operand or -1. */
static int parse_common(int argc, char **argv, struct common *c, int allow_n)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "heap", required_argument, NULL, 'H' },
		{ "scratch", required_argument, NULL, 'S' },
		{ "sandboxes", required_argument, NULL, 'N' },
		{ "raw", no_argument, NULL, 'n' },
		{ "quiet", no_argument, NULL, 'q' },
		{ 0 },
	};
	uint64_t v;
	int ch;
	c->sopt = (struct sandbox_options){ .timeout_ms = 10000, .log = log_stderr };
	c->sandboxes = 1;
	optind = 1;
	opterr = 1;
	while ((ch = getopt_long(argc, argv, "+t:N:nq", opts, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (parse_u64(optarg, "--timeout", UINT64_MAX / 1000000, &c->sopt.timeout_ms) < 0)
				return -1;
			break;
		case 'H':
			if (parse_u64(optarg, "--heap", 2048, &v) < 0)
				return -1;
			c->gopt.heap_size = v << 20;
			break;
		case 'S':
			if (parse_u64(optarg, "--scratch", 512, &v) < 0)
				return -1;
			c->sopt.scratch_size = v << 20;
			break;
		case 'N':
			if (!allow_n) {
				fprintf(stderr, "snapvm: -N is an option of call\n");
				return -1;
			}
			if (parse_u64(optarg, "--sandboxes", SANDBOXES_MAX, &c->sandboxes) < 0 ||
			    c->sandboxes == 0)
				return -1;
			break;
		case 'n': c->raw = 1; break;
		case 'q': c->sopt.log = NULL; break;
		default:
			return -1;
		}
	}
	return optind;
}

static int is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int snap_cmd_is_snapshot_call(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0)
			return i + 1 < argc && is_dir(argv[i + 1]);
		if (a[0] != '-')
			return is_dir(a);
		/* options of either form of call that take a separate value */
		if (!strchr(a, '=') && (!strcmp(a, "-t") || !strcmp(a, "--timeout") ||
					!strcmp(a, "--heap") || !strcmp(a, "--scratch") ||
					!strcmp(a, "-N") || !strcmp(a, "--sandboxes")))
			i++;
	}
	return 0;
}

/* Call fn in sb and print the result; returns 0 or the exit status. */
static int call_print(struct sandbox *sb, const char *prefix, const char *fn, const char *arg,
		      int raw)
{
	size_t cap = SANDBOX_CALLBUF_DEFAULT, len;
	char *out = malloc(cap);
	struct err e = { 0 };
	if (!out) {
		fprintf(stderr, "snapvm: out of memory\n");
		return EXIT_CALL;
	}
	int r = sandbox_call(sb, fn, arg, arg ? strlen(arg) : 0, out, cap, &len, &e);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s%s\n", prefix, err_str(&e, r));
		free(out);
		return EXIT_CALL;
	}
	printf("%s%.*s%s", prefix, (int)len, out, raw ? "" : "\n");
	free(out);
	return fflush(stdout) == 0 ? 0 : EXIT_CALL;
}

int snap_cmd_call(int argc, char **argv)
{
	struct common c = { 0 };
	int i = parse_common(argc, argv, &c, 1);
	if (i < 0 || argc - i < 2 || argc - i > 3) {
		fprintf(stderr, "snapvm: usage: call [-t MS] [-N SANDBOXES] [-n] [-q] DIR FUNC [ARG]\n");
		return EXIT_USAGE;
	}
	const char *dir = argv[i], *fn = argv[i + 1], *arg = argc - i == 3 ? argv[i + 2] : NULL;
	struct err e = { 0 };
	struct snapshot *s = NULL;
	int r = snapshot_open(dir, &s, &e);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		return EXIT_LOAD;
	}
	struct sandbox **sb = calloc(c.sandboxes, sizeof(*sb));
	int status = sb ? 0 : EXIT_LOAD;
	/* all sandboxes exist at once: they share the snapshot's mappings */
	for (uint64_t k = 0; status == 0 && k < c.sandboxes; k++) {
		r = sandbox_new(snapshot_guest(s), &c.sopt, &sb[k], &e);
		if (r < 0) {
			fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
			status = EXIT_LOAD;
		}
	}
	for (uint64_t k = 0; status == 0 && k < c.sandboxes; k++) {
		char prefix[32] = "";
		if (c.sandboxes > 1)
			snprintf(prefix, sizeof(prefix), "sandbox %llu: ", (unsigned long long)k);
		status = call_print(sb[k], prefix, fn, arg, c.raw);
	}
	for (uint64_t k = 0; sb && k < c.sandboxes; k++)
		sandbox_free(sb[k]);
	free(sb);
	snapshot_close(s);
	return status;
}

struct call_step {
	const char *fn, *arg;
};

int snap_cmd_snapshot(int argc, char **argv)
{
	struct common c = { 0 };
	int i = parse_common(argc, argv, &c, 0);
	if (i < 0 || argc - i < 2) {
		fprintf(stderr, "snapvm: usage: snapshot [-t MS] [--heap MIB] [--scratch MIB] [-q] "
			"SOURCE DIR [--init FUNC [ARG]] [--call FUNC [ARG]]...\n");
		return EXIT_USAGE;
	}
	const char *src = argv[i], *dir = argv[i + 1];
	struct call_step *steps = calloc((size_t)argc, sizeof(*steps));
	size_t nsteps = 0;
	if (!steps)
		return EXIT_LOAD;
	for (int k = i + 2; k < argc; k++) {
		if ((strcmp(argv[k], "--init") && strcmp(argv[k], "--call")) || k + 1 >= argc) {
			fprintf(stderr, "snapvm: snapshot: expected --init FUNC [ARG] or --call FUNC "
				"[ARG], not \"%s\"\n", argv[k]);
			free(steps);
			return EXIT_USAGE;
		}
		steps[nsteps].fn = argv[++k];
		if (k + 1 < argc && strncmp(argv[k + 1], "--", 2) != 0)
			steps[nsteps].arg = argv[++k];
		nsteps++;
	}

	struct err e = { 0 };
	struct snapshot *parent = NULL;
	struct guest *g = NULL;
	struct sandbox *sb = NULL;
	int status = EXIT_LOAD, r;
	if (is_dir(src)) {
		r = snapshot_open(src, &parent, &e);
		if (r == 0)
			r = sandbox_new(snapshot_guest(parent), &c.sopt, &sb, &e);
	} else {
		r = guest_open_elf(src, &c.gopt, &g, &e);
		if (r == 0)
			r = sandbox_new(g, &c.sopt, &sb, &e);
	}
	if (r < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		goto out;
	}
	for (size_t k = 0; k < nsteps; k++) {
		char prefix[80];
		snprintf(prefix, sizeof(prefix), "%s: ", steps[k].fn);
		if ((status = call_print(sb, prefix, steps[k].fn, steps[k].arg, 0)) != 0)
			goto out;
	}
	struct snapshot_origin o = { .elf_path = parent ? NULL : src, .parent = parent };
	struct snapshot_stats st;
	r = snapshot_take(sb, &o, dir, &st, &e);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		status = EXIT_CALL;
		goto out;
	}
	fprintf(stderr, "snapvm: %s: %llu bytes in files, %llu written, %llu cloned, %llu in "
		"zero pages left as holes; %s\n", dir, (unsigned long long)st.bytes_logical,
		(unsigned long long)st.bytes_written, (unsigned long long)st.bytes_cloned,
		(unsigned long long)st.bytes_zero,
		st.sealed ? "sealed" : st.seal_errno == ENOTSUP ? "not sealed (the filesystem has no "
		"snapfs sealing)" : strerror(st.seal_errno));
	status = 0;
out:
	free(steps);
	sandbox_free(sb);
	guest_close(g);
	snapshot_close(parent);
	return status;
}

static void report_file(void *ctx, const char *file, int code, const char *msg)
{
	const char *dir = ctx;
	if (code == 0)
		printf("%s/%s: ok (%s)\n", dir, file, msg);
	else
		printf("%s/%s: FAILED: %s\n", dir, file, msg);
}

int snap_cmd_verify(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "snapvm: usage: verify DIR\n");
		return EXIT_USAGE;
	}
	struct err e = { 0 };
	int r = snapshot_verify(argv[1], report_file, argv[1], &e);
	fflush(stdout);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		return EXIT_CALL;
	}
	return 0;
}
