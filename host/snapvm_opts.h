/*
 * host/snapvm_opts.h: the command-line options of the snapvm command, one
 * parser for every subcommand.
 *
 * Options come before the operands (parsing stops at the first operand).
 * Which options apply depends on the subcommand and on whether its source
 * is a guest ELF or a snapshot directory, which is known only after
 * parsing: snapvm_opts_parse() accepts what the subcommand can take in any
 * form, and snapvm_opts_only() then refuses what does not apply to the
 * form given.  Both print their message (to stderr) and return -1; the
 * caller exits with status 2.
 */
#ifndef SNAPVM_OPTS_H
#define SNAPVM_OPTS_H

#include <stdbool.h>
#include <stdint.h>

#include "guest.h"
#include "sandbox.h"

#define SNAPVM_TIMEOUT_DEFAULT_MS 10000

/* exit status of the command */
#define SNAPVM_EXIT_CALL 1	/* a call, a snapshot or a verification failed */
#define SNAPVM_EXIT_USAGE 2	/* bad command line */
#define SNAPVM_EXIT_LOAD 3	/* the guest or snapshot could not be loaded or started */

enum snapvm_opt {
	OPT_TIMEOUT = 1 << 0,	/* -t, --timeout MS */
	OPT_HEAP = 1 << 1,	/* --heap MIB */
	OPT_SCRATCH = 1 << 2,	/* --scratch MIB */
	OPT_SHARED = 1 << 3,	/* --shared */
	OPT_SANDBOXES = 1 << 4,	/* -N, --sandboxes N */
	OPT_STDIN = 1 << 5,	/* --stdin */
	OPT_RAW = 1 << 6,	/* -n, --raw */
	OPT_QUIET = 1 << 7,	/* -q, --quiet */
};

struct snapvm_opts {
	struct sandbox_options sopt;	/* timeout (default 10 s), scratch, log to stderr */
	struct guest_options gopt;	/* heap, GUEST_SHARED */
	uint64_t sandboxes;		/* default 1 */
	int from_stdin, raw;
	unsigned given;			/* enum snapvm_opt bits seen */
};

/*
 * Parse the options of subcommand cmd ("call", "snapshot") in argv
 * (argv[0] is cmd), accepting those in allowed.  Returns the index of the
 * first operand, or -1.
 */
int snapvm_opts_parse(int argc, char **argv, const char *cmd, unsigned allowed,
		      struct snapvm_opts *o);

/* Refuse options given that are not in allowed; form names the case
 * ("call with a snapshot directory").  Returns 0 or -1. */
int snapvm_opts_only(const struct snapvm_opts *o, unsigned allowed, const char *form);

/* For an operand list that the subcommand refuses: if one of argv[from..]
 * is an option, say that options go before the operands (from being the
 * first) and return true. */
bool snapvm_opts_misplaced(int argc, char **argv, int from, const char *cmd);

#endif
