/*
 * host/snapvm.c: the snapvm command — list and call the functions of a
 * guest ELF, each call in a fresh KVM sandbox; the snapshot subcommands
 * (snapshot, verify, call and list of a snapshot directory) are in
 * snapvm_snap.c, the option parser in snapvm_opts.c.
 *
 * Exit status: 0 success; 1 the call failed (the function returned an
 * error, or the guest misbehaved and its sandbox was ended), or a snapshot
 * could not be written or verified; 2 usage error; 3 the guest or snapshot
 * could not be loaded or started (bad file, no usable KVM).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "sandbox.h"
#include "snapvm_opts.h"
#include "snapvm_snap.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: snapvm list GUEST.elf | SNAPSHOT\n"
		"       snapvm call [OPTIONS] GUEST.elf | SNAPSHOT FUNC [ARG]\n"
		"       snapvm snapshot [OPTIONS] GUEST.elf | SNAPSHOT DIR [--init FUNC [ARG]]\n"
		"                       [--call FUNC [ARG]]...\n"
		"       snapvm verify SNAPSHOT\n"
		"       snapvm --help | --version\n"
		"\n"
		"Run a freestanding guest in a KVM sandbox and call its exported functions;\n"
		"save a sandbox as a snapshot directory and start sandboxes from it.\n"
		"SNAPSHOT is a snapshot directory (written by snapvm snapshot).\n"
		"\n"
		"commands:\n"
		"  list      print the functions the guest or snapshot exports, one per line\n"
		"  call      start a sandbox (a cold boot of GUEST.elf, or resumed from\n"
		"            SNAPSHOT), call FUNC with ARG (or stdin with --stdin) as its\n"
		"            argument bytes, print the result on stdout\n"
		"  snapshot  start a sandbox from GUEST.elf or SNAPSHOT, run the --init and\n"
		"            --call functions in order (their results on stdout as\n"
		"            \"FUNC: RESULT\"), write the sandbox as the new snapshot\n"
		"            directory DIR and seal it in a snapfs mount; from SNAPSHOT the\n"
		"            region files are clones of its own and its name is the parent\n"
		"  verify    check SNAPSHOT's manifest, cpu file and every region file's size\n"
		"            and digest, one line per file\n"
		"\n"
		"options (before the operands; where each applies in brackets):\n"
		"  -t, --timeout MS   [call, snapshot] stop the guest after MS milliseconds,\n"
		"                     for boot and for each call (default %d; 0: none)\n"
		"      --heap MIB     [call, snapshot of GUEST.elf] heap size (default %llu)\n"
		"      --scratch MIB  [call, snapshot of GUEST.elf] scratch size: stack, page\n"
		"                     tables, copies on write (default %llu)\n"
		"      --shared       [call of GUEST.elf] map its image and heap read-only,\n"
		"                     copy on write, as a snapshot does\n"
		"  -N, --sandboxes N  [call of SNAPSHOT] start N sandboxes from it at once,\n"
		"                     call FUNC in each, print \"sandbox K: RESULT\"\n"
		"      --stdin        [call] read ARG from standard input\n"
		"  -n, --raw          [call] print the result without a newline\n"
		"  -q, --quiet        [call, snapshot] do not show the guest's log output\n"
		"                     (else on stderr as \"guest: ...\")\n"
		"--heap, --scratch and --shared apply to GUEST.elf only: a snapshot keeps\n"
		"the sizes it was taken with.\n"
		"\n"
		"exit status: 0 ok; 1 the call failed, or a snapshot could not be written or\n"
		"did not verify; 2 usage error; 3 the guest or snapshot could not be loaded\n"
		"or started.  See snapvm(1).\n",
		SNAPVM_TIMEOUT_DEFAULT_MS, GUEST_HEAP_DEFAULT >> 20, SANDBOX_SCRATCH_DEFAULT >> 20);
}

static int cmd_list(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "snapvm: list takes one guest file or snapshot (try --help)\n");
		return SNAPVM_EXIT_USAGE;
	}
	if (file_is_dir(argv[1]))
		return snap_cmd_list(argv[1]);
	struct err e = { 0 };
	struct guest *g;
	int r = guest_open_elf(argv[1], NULL, &g, &e);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		return SNAPVM_EXIT_LOAD;
	}
	for (size_t i = 0; i < g->nexports; i++)
		printf("%s\n", g->exports[i]);
	guest_close(g);
	return fflush(stdout) == 0 ? 0 : SNAPVM_EXIT_CALL;
}

static int read_stdin(char **buf, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *b = malloc(cap);
	if (!b)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			char *nb = realloc(b, cap *= 2);
			if (!nb) {
				free(b);
				return -ENOMEM;
			}
			b = nb;
		}
		size_t k = fread(b + n, 1, cap - n, stdin);
		n += k;
		if (k == 0)
			break;
	}
	if (ferror(stdin)) {
		free(b);
		return -EIO;
	}
	*buf = b;
	*len = n;
	return 0;
}

/* call GUEST.elf FUNC: one cold-booted sandbox. */
static int call_elf(const struct snapvm_opts *o, const char *path, const char *fn,
		    const char *arg, size_t arg_len)
{
	struct err e = { 0 };
	struct guest *g = NULL;
	struct sandbox *sb = NULL;
	char *out = NULL;
	int status = SNAPVM_EXIT_LOAD;
	int r = guest_open_elf(path, &o->gopt, &g, &e);
	if (r < 0)
		goto fail;
	if (guest_find_export(g, fn) < 0) {
		fprintf(stderr, "snapvm: %s has no function \"%s\" (see: snapvm list %s)\n", path, fn,
			path);
		status = SNAPVM_EXIT_CALL;
		goto out;
	}
	r = sandbox_new(g, &o->sopt, &sb, &e);
	if (r < 0)
		goto fail;
	status = SNAPVM_EXIT_CALL;
	size_t cap = SANDBOX_CALLBUF_DEFAULT, len;
	out = malloc(cap);
	if (!out) {
		r = err_set(&e, -ENOMEM, "out of memory");
		goto fail;
	}
	r = sandbox_call(sb, fn, arg, arg_len, out, cap, &len, &e);
	if (r < 0)
		goto fail;
	fwrite(out, 1, len, stdout);
	if (!o->raw)
		fputc('\n', stdout);
	status = fflush(stdout) == 0 ? 0 : SNAPVM_EXIT_CALL;
	goto out;
fail:
	fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
out:
	free(out);
	sandbox_free(sb);
	guest_close(g);
	return status;
}

static int cmd_call(int argc, char **argv)
{
	struct snapvm_opts o;
	int i = snapvm_opts_parse(argc, argv, "call", OPT_TIMEOUT | OPT_HEAP | OPT_SCRATCH |
				  OPT_SHARED | OPT_SANDBOXES | OPT_STDIN | OPT_RAW | OPT_QUIET, &o);
	if (i < 0)
		return SNAPVM_EXIT_USAGE;
	int n = argc - i;
	if (n < 2 || n > 3 || (o.from_stdin && n == 3)) {
		if (snapvm_opts_misplaced(argc, argv, i, "call"))
			return SNAPVM_EXIT_USAGE;
		fprintf(stderr, "snapvm: call takes GUEST.elf or SNAPSHOT, FUNC and an ARG (or "
			"--stdin) (try --help)\n");
		return SNAPVM_EXIT_USAGE;
	}
	const char *src = argv[i], *fn = argv[i + 1];
	/* Which options apply depends on what src is: one that is missing
	 * is reported as such, not by the options of a guest ELF. */
	if (access(src, F_OK) != 0) {
		fprintf(stderr, "snapvm: %s: %s\n", src, strerror(errno));
		return SNAPVM_EXIT_LOAD;
	}
	int snapshot = file_is_dir(src);
	if (snapshot ? snapvm_opts_only(&o, OPT_TIMEOUT | OPT_SANDBOXES | OPT_STDIN | OPT_RAW |
					OPT_QUIET, "a snapshot (its sizes are fixed)")
		     : snapvm_opts_only(&o, ~(unsigned)OPT_SANDBOXES, "a guest ELF"))
		return SNAPVM_EXIT_USAGE;

	char *in = NULL;
	const char *arg = n == 3 ? argv[i + 2] : NULL;
	size_t arg_len = arg ? strlen(arg) : 0;
	if (o.from_stdin) {
		int r = read_stdin(&in, &arg_len);
		if (r < 0) {
			fprintf(stderr, "snapvm: reading standard input: %s\n", strerror(-r));
			return SNAPVM_EXIT_CALL;
		}
		arg = in;
	}
	int status = snapshot ? snap_cmd_call(&o, src, fn, arg, arg_len)
			      : call_elf(&o, src, fn, arg, arg_len);
	free(in);
	return status;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return SNAPVM_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0) {
		printf("snapvm %s\n", SNAPFS_VERSION);
		return 0;
	}
	if (strcmp(cmd, "list") == 0)
		return cmd_list(argc - 1, argv + 1);
	if (strcmp(cmd, "call") == 0) {
		file_raise_open_limit();	/* -N: two descriptors per sandbox */
		return cmd_call(argc - 1, argv + 1);
	}
	if (strcmp(cmd, "snapshot") == 0)
		return snap_cmd_snapshot(argc - 1, argv + 1);
	if (strcmp(cmd, "verify") == 0)
		return snap_cmd_verify(argc - 1, argv + 1);
	fprintf(stderr, "snapvm: unknown command \"%s\" (try --help)\n", cmd);
	return SNAPVM_EXIT_USAGE;
}
