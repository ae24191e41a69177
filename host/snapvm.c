/*
 * host/snapvm.c: the snapvm command — list and call the functions of a
 * guest ELF, each call in a fresh KVM sandbox.
 *
 * Exit status: 0 success; 1 the call failed (the function returned an
 * error, or the guest misbehaved and its sandbox was ended); 2 usage error;
 * 3 the guest could not be loaded or started (bad file, no usable KVM).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandbox.h"
#include "snapvm_snap.h"

#define EXIT_CALL 1
#define EXIT_USAGE 2
#define EXIT_LOAD 3

static void usage(FILE *f)
{
	fprintf(f,
		"usage: snapvm list GUEST.elf\n"
		"       snapvm call [OPTIONS] GUEST.elf FUNC [ARG]\n"
		"       snapvm --help | --version\n"
		"\n"
		"Run a freestanding guest in a KVM sandbox and call its exported functions.\n"
		"\n"
		"  list   print the functions GUEST.elf exports, one per line\n"
		"  call   start a sandbox, call FUNC with ARG (or stdin with --stdin) as its\n"
		"         argument bytes, print the result on stdout\n"
		"\n"
		"options for call:\n"
		"  -t, --timeout MS   stop the guest after MS milliseconds (default 10000, 0 = none)\n"
		"      --heap MIB     guest heap size (default %llu)\n"
		"      --scratch MIB  scratch size for stack, page tables and copies (default %llu)\n"
		"      --shared       map the guest image and heap read-only, copy on write\n"
		"      --stdin        read the argument from standard input\n"
		"  -n, --raw          print the result without a trailing newline\n"
		"  -q, --quiet        do not show the guest's log output (stderr)\n"
		"\n"
		"See snapvm(1).\n",
		GUEST_HEAP_DEFAULT >> 20, SANDBOX_SCRATCH_DEFAULT >> 20);
}

static void log_stderr(void *ctx, const char *msg, size_t len)
{
	(void)ctx;
	fprintf(stderr, "guest: %.*s", (int)len, msg);
	if (len == 0 || msg[len - 1] != '\n')
		fputc('\n', stderr);
}

static int parse_mib(const char *s, const char *opt, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v > (1ull << 20)) {
		fprintf(stderr, "snapvm: %s: \"%s\" is not a size in MiB\n", opt, s);
		return -1;
	}
	*out = v << 20;
	return 0;
}

static int cmd_list(int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "snapvm: list takes one guest file (try --help)\n");
		return EXIT_USAGE;
	}
	struct err e = { 0 };
	struct guest *g;
	int r = guest_open_elf(argv[0], NULL, &g, &e);
	if (r < 0) {
		fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
		return EXIT_LOAD;
	}
	for (size_t i = 0; i < g->nexports; i++)
		printf("%s\n", g->exports[i]);
	guest_close(g);
	return 0;
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

static int cmd_call(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "heap", required_argument, NULL, 'H' },
		{ "scratch", required_argument, NULL, 'S' },
		{ "shared", no_argument, NULL, 's' },
		{ "stdin", no_argument, NULL, 'i' },
		{ "raw", no_argument, NULL, 'n' },
		{ "quiet", no_argument, NULL, 'q' },
		{ 0 },
	};
	struct guest_options gopt = { 0 };
	struct sandbox_options sopt = { .timeout_ms = 10000, .log = log_stderr };
	int from_stdin = 0, raw = 0, c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+t:nq", opts, NULL)) != -1) {
		switch (c) {
		case 't': {
			char *end;
			errno = 0;
			sopt.timeout_ms = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end) {
				fprintf(stderr, "snapvm: --timeout: \"%s\" is not milliseconds\n", optarg);
				return EXIT_USAGE;
			}
			break;
		}
		case 'H':
			if (parse_mib(optarg, "--heap", &gopt.heap_size) < 0)
				return EXIT_USAGE;
			break;
		case 'S':
			if (parse_mib(optarg, "--scratch", &sopt.scratch_size) < 0)
				return EXIT_USAGE;
			break;
		case 's': gopt.flags |= GUEST_SHARED; break;
		case 'i': from_stdin = 1; break;
		case 'n': raw = 1; break;
		case 'q': sopt.log = NULL; break;
		default:
			fprintf(stderr, "snapvm: try --help\n");
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 2 || argc > 3 || (from_stdin && argc == 3)) {
		fprintf(stderr, "snapvm: call takes GUEST.elf FUNC [ARG] (try --help)\n");
		return EXIT_USAGE;
	}

	char *arg = argc == 3 ? argv[2] : NULL, *in = NULL;
	size_t in_len = arg ? strlen(arg) : 0;
	if (from_stdin) {
		int r = read_stdin(&in, &in_len);
		if (r < 0) {
			fprintf(stderr, "snapvm: reading standard input: %s\n", strerror(-r));
			return EXIT_CALL;
		}
		arg = in;
	}

	struct err e = { 0 };
	struct guest *g = NULL;
	struct sandbox *sb = NULL;
	char *out = NULL;
	int status = EXIT_LOAD;
	int r = guest_open_elf(argv[0], &gopt, &g, &e);
	if (r < 0)
		goto fail;
	if (guest_find_export(g, argv[1]) < 0) {
		fprintf(stderr, "snapvm: %s has no function \"%s\" (see: snapvm list %s)\n",
			argv[0], argv[1], argv[0]);
		status = EXIT_CALL;
		goto out;
	}
	r = sandbox_new(g, &sopt, &sb, &e);
	if (r < 0)
		goto fail;
	status = EXIT_CALL;
	size_t cap = SANDBOX_CALLBUF_DEFAULT, len;
	out = malloc(cap);
	if (!out) {
		r = err_set(&e, -ENOMEM, "out of memory");
		goto fail;
	}
	r = sandbox_call(sb, argv[1], arg, in_len, out, cap, &len, &e);
	if (r < 0)
		goto fail;
	fwrite(out, 1, len, stdout);
	if (!raw)
		fputc('\n', stdout);
	status = fflush(stdout) == 0 ? 0 : EXIT_CALL;
	goto out;
fail:
	fprintf(stderr, "snapvm: %s\n", err_str(&e, r));
out:
	free(out);
	free(in);
	sandbox_free(sb);
	guest_close(g);
	return status;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("snapvm %s\n", SNAPFS_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "list") == 0)
		return cmd_list(argc - 2, argv + 2);
	if (strcmp(argv[1], "call") == 0 && snap_cmd_is_snapshot_call(argc - 1, argv + 1))
		return snap_cmd_call(argc - 1, argv + 1);
	if (strcmp(argv[1], "snapshot") == 0)
		return snap_cmd_snapshot(argc - 1, argv + 1);
	if (strcmp(argv[1], "verify") == 0)
		return snap_cmd_verify(argc - 1, argv + 1);
	if (strcmp(argv[1], "call") == 0)
		return cmd_call(argc - 1, argv + 1);
	fprintf(stderr, "snapvm: unknown command \"%s\" (try --help)\n", argv[1]);
	return EXIT_USAGE;
}
