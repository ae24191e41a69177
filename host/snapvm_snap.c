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
 *   snapvm list DIR
 *       the functions the snapshot's guest exports, read from its files.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "snapshot.h"
#include "snapvm_snap.h"

/* Call fn in sb and print the result after prefix; returns 0 or the exit status. */
static int call_print(struct sandbox *sb, const char *prefix, const char *fn, const char *arg,
		      size_t arg_len, int raw)
{
	size_t cap = SANDBOX_CALLBUF_DEFAULT, len;
	char *out = malloc(cap);
	struct err e = { 0 };
	if (!out) {
		fprintf(stderr, "snapvm: out of memory\n");
		return SNAPVM_EXIT_CALL;
	}
	int r = sandbox_call(sb, fn, arg, arg_len, out, cap, &len, &e);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s%s\n", prefix, err_str(&e, r));
		free(out);
		return SNAPVM_EXIT_CALL;
	}
	fputs(prefix, stdout);
	fwrite(out, 1, len, stdout);
	if (!raw)
		fputc('\n', stdout);
	free(out);
	return fflush(stdout) == 0 ? 0 : SNAPVM_EXIT_CALL;
}

int snap_cmd_call(const struct snapvm_opts *o, const char *dir, const char *fn, const char *arg,
		  size_t arg_len)
{
	struct err e = { 0 };
	struct snapshot *s = NULL;
	int r = snapshot_open(dir, &s, &e);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		return SNAPVM_EXIT_LOAD;
	}
	struct sandbox **sb = calloc(o->sandboxes, sizeof(*sb));
	int status = sb ? 0 : SNAPVM_EXIT_LOAD;
	/* all sandboxes exist at once: they share the snapshot's mappings */
	for (uint64_t k = 0; status == 0 && k < o->sandboxes; k++) {
		r = sandbox_new(snapshot_guest(s), &o->sopt, &sb[k], &e);
		if (r < 0) {
			fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
			status = SNAPVM_EXIT_LOAD;
		}
	}
	for (uint64_t k = 0; status == 0 && k < o->sandboxes; k++) {
		char prefix[32] = "";
		if (o->sandboxes > 1)
			snprintf(prefix, sizeof(prefix), "sandbox %llu: ", (unsigned long long)k);
		status = call_print(sb[k], prefix, fn, arg, arg_len, o->raw);
	}
	for (uint64_t k = 0; sb && k < o->sandboxes; k++)
		sandbox_free(sb[k]);
	free(sb);
	snapshot_close(s);
	return status;
}

int snap_cmd_list(const char *dir)
{
	struct err e = { 0 };
	struct snapshot *s = NULL;
	char (*names)[SNAPVM_NAME_MAX] = NULL;
	size_t n = 0;
	int r = snapshot_open(dir, &s, &e);
	if (r == 0)
		r = snapshot_exports(s, &names, &n, &e);
	snapshot_close(s);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		return SNAPVM_EXIT_LOAD;
	}
	for (size_t i = 0; i < n; i++)
		printf("%s\n", names[i]);
	free(names);
	return fflush(stdout) == 0 ? 0 : SNAPVM_EXIT_CALL;
}

struct call_step {
	const char *fn, *arg;
};

int snap_cmd_snapshot(int argc, char **argv)
{
	struct snapvm_opts o;
	int i = snapvm_opts_parse(argc, argv, "snapshot", OPT_TIMEOUT | OPT_HEAP | OPT_SCRATCH |
				  OPT_QUIET, &o);
	if (i < 0)
		return SNAPVM_EXIT_USAGE;
	if (argc - i < 2) {
		fprintf(stderr, "snapvm: snapshot takes GUEST.elf or SNAPSHOT, then DIR (try --help)\n");
		return SNAPVM_EXIT_USAGE;
	}
	const char *src = argv[i], *dir = argv[i + 1];
	int from_snapshot = file_is_dir(src);
	if (from_snapshot && snapvm_opts_only(&o, OPT_TIMEOUT | OPT_QUIET,
					      "a snapshot (its sizes are fixed)"))
		return SNAPVM_EXIT_USAGE;
	struct call_step *steps = calloc((size_t)argc, sizeof(*steps));
	size_t nsteps = 0;
	if (!steps)
		return SNAPVM_EXIT_LOAD;
	for (int k = i + 2; k < argc; k++) {
		if ((strcmp(argv[k], "--init") && strcmp(argv[k], "--call")) || k + 1 >= argc) {
			if (!snapvm_opts_misplaced(argc, argv, i, "snapshot"))
				fprintf(stderr, "snapvm: snapshot: expected --init FUNC [ARG] or "
					"--call FUNC [ARG], not \"%s\"\n", argv[k]);
			free(steps);
			return SNAPVM_EXIT_USAGE;
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
	int status = SNAPVM_EXIT_LOAD, r;
	if (from_snapshot)
		r = snapshot_open(src, &parent, &e);
	else
		r = guest_open_elf(src, &o.gopt, &g, &e);
	/* The target is checked before any call runs: its work would be
	 * lost if the snapshot then could not be written. */
	if (r == 0 && (r = snapshot_check_target(dir, parent, &e)) < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		status = SNAPVM_EXIT_CALL;
		goto out;
	}
	if (r == 0)
		r = sandbox_new(parent ? snapshot_guest(parent) : g, &o.sopt, &sb, &e);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		goto out;
	}
	for (size_t k = 0; k < nsteps; k++) {
		char prefix[80];
		snprintf(prefix, sizeof(prefix), "%s: ", steps[k].fn);
		const char *arg = steps[k].arg;
		if ((status = call_print(sb, prefix, steps[k].fn, arg, arg ? strlen(arg) : 0, 0)) != 0)
			goto out;
	}
	struct snapshot_origin origin = { .elf_path = parent ? NULL : src, .parent = parent };
	struct snapshot_stats st;
	r = snapshot_take(sb, &origin, dir, &st, &e);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		status = SNAPVM_EXIT_CALL;
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
		fprintf(stderr, "snapvm: verify takes one snapshot directory (try --help)\n");
		return SNAPVM_EXIT_USAGE;
	}
	/* A snapshot that is not there is one that cannot be loaded, as
	 * for list and call, not one that failed to verify. */
	if (access(argv[1], F_OK) != 0) {
		fprintf(stderr, "snapvm: %s: %s\n", argv[1], strerror(errno));
		return SNAPVM_EXIT_LOAD;
	}
	if (!file_is_dir(argv[1])) {
		fprintf(stderr, "snapvm: %s: not a snapshot directory\n", argv[1]);
		return SNAPVM_EXIT_LOAD;
	}
	struct err e = { 0 };
	int r = snapshot_verify(argv[1], report_file, argv[1], &e);
	fflush(stdout);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		return SNAPVM_EXIT_CALL;
	}
	return 0;
}
