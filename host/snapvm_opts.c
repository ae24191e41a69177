/*
 * host/snapvm_opts.c: parsing snapvm's options (see snapvm_opts.h).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapvm_opts.h"

#define SANDBOXES_MAX 1024

static const struct {
	enum snapvm_opt bit;
	const char *name;
} opt_names[] = {
	{ OPT_TIMEOUT, "--timeout" }, { OPT_HEAP, "--heap" }, { OPT_SCRATCH, "--scratch" },
	{ OPT_SHARED, "--shared" }, { OPT_SANDBOXES, "--sandboxes" }, { OPT_STDIN, "--stdin" },
	{ OPT_RAW, "--raw" }, { OPT_QUIET, "--quiet" },
};

static const char *opt_name(unsigned bit)
{
	for (size_t i = 0; i < sizeof(opt_names) / sizeof(opt_names[0]); i++)
		if (opt_names[i].bit == bit)
			return opt_names[i].name;
	return "?";
}

/* Guest log lines to stderr, marked as the guest's. */
static void log_stderr(void *ctx, const char *msg, size_t len)
{
	(void)ctx;
	fprintf(stderr, "guest: %.*s", (int)len, msg);
	if (len == 0 || msg[len - 1] != '\n')
		fputc('\n', stderr);
}

/* A decimal number up to max. */
static int parse_u64(const char *s, const char *opt, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v > max || s[0] == '-' || s[0] == '+' || s[0] == ' ') {
		fprintf(stderr, "snapvm: %s: \"%s\" is not a number from 0 to %llu\n", opt, s,
			(unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

static const struct option opts[] = {
	{ "timeout", required_argument, NULL, 't' },
	{ "heap", required_argument, NULL, 'H' },
	{ "scratch", required_argument, NULL, 'S' },
	{ "shared", no_argument, NULL, 's' },
	{ "sandboxes", required_argument, NULL, 'N' },
	{ "stdin", no_argument, NULL, 'i' },
	{ "raw", no_argument, NULL, 'n' },
	{ "quiet", no_argument, NULL, 'q' },
	{ 0 },
};
#define SHORT_OPTS "t:N:nq"

int snapvm_opts_parse(int argc, char **argv, const char *cmd, unsigned allowed,
		      struct snapvm_opts *o)
{
	*o = (struct snapvm_opts){
		.sopt = { .timeout_ms = SNAPVM_TIMEOUT_DEFAULT_MS, .log = log_stderr },
		.sandboxes = 1,
	};
	uint64_t v;
	int ch;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:" SHORT_OPTS, opts, NULL)) != -1) {
		unsigned bit = 0;
		switch (ch) {
		case 't':
			bit = OPT_TIMEOUT;
			if (parse_u64(optarg, "--timeout", UINT64_MAX / 1000000, &o->sopt.timeout_ms) < 0)
				return -1;
			break;
		case 'H':
			bit = OPT_HEAP;
			if (parse_u64(optarg, "--heap", SNAPVM_HEAP_MAX >> 20, &v) < 0)
				return -1;
			o->gopt.heap_size = v << 20;
			break;
		case 'S':
			bit = OPT_SCRATCH;
			if (parse_u64(optarg, "--scratch", SNAPVM_SCRATCH_MAX >> 20, &v) < 0)
				return -1;
			o->sopt.scratch_size = v << 20;
			break;
		case 's': bit = OPT_SHARED; o->gopt.flags |= GUEST_SHARED; break;
		case 'N':
			bit = OPT_SANDBOXES;
			if (parse_u64(optarg, "--sandboxes", SANDBOXES_MAX, &o->sandboxes) < 0)
				return -1;
			if (o->sandboxes == 0) {
				fprintf(stderr, "snapvm: --sandboxes: at least 1\n");
				return -1;
			}
			break;
		case 'i': bit = OPT_STDIN; o->from_stdin = 1; break;
		case 'n': bit = OPT_RAW; o->raw = 1; break;
		case 'q': bit = OPT_QUIET; o->sopt.log = NULL; break;
		case ':':
			fprintf(stderr, "snapvm: %s: option %s needs a value (try --help)\n", cmd,
				argv[optind - 1]);
			return -1;
		default:
			if (optopt)
				fprintf(stderr, "snapvm: %s: unknown option -%c (try --help)\n", cmd, optopt);
			else
				fprintf(stderr, "snapvm: %s: unknown option %s (try --help)\n", cmd,
					argv[optind - 1]);
			return -1;
		}
		if (!(bit & allowed)) {
			fprintf(stderr, "snapvm: %s is not an option of %s (try --help)\n", opt_name(bit),
				cmd);
			return -1;
		}
		o->given |= bit;
	}
	return optind;
}

int snapvm_opts_only(const struct snapvm_opts *o, unsigned allowed, const char *form)
{
	unsigned extra = o->given & ~allowed;
	if (!extra)
		return 0;
	fprintf(stderr, "snapvm: %s does not apply to %s (try --help)\n",
		opt_name(extra & -extra), form);
	return -1;
}

/* Is arg one of the options, in any of its forms (-q, -t5, --heap=64)? */
static bool is_option(const char *arg)
{
	if (arg[0] != '-' || !arg[1])
		return false;
	if (arg[1] != '-')
		return strchr(SHORT_OPTS, arg[1]) && arg[1] != ':';
	size_t len = strcspn(arg + 2, "=");
	for (const struct option *op = opts; op->name; op++)
		if (strlen(op->name) == len && !strncmp(op->name, arg + 2, len))
			return true;
	return false;
}

bool snapvm_opts_misplaced(int argc, char **argv, int from, const char *cmd)
{
	for (int i = from; i < argc; i++)
		if (is_option(argv[i])) {
			fprintf(stderr, "snapvm: %s: option %s must come before %s (try --help)\n",
				cmd, argv[i], argv[from]);
			return true;
		}
	return false;
}
