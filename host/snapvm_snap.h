/*
 * host/snapvm_snap.h: the snapshot subcommands of the snapvm command
 * (snapshot, verify, and call with a snapshot directory).  Each returns
 * the exit status (SNAPVM_EXIT_* of snapvm_opts.h, 0 for success) after
 * printing results on stdout and errors on stderr.
 */
#ifndef SNAPVM_SNAP_CMD_H
#define SNAPVM_SNAP_CMD_H

#include <stddef.h>

#include "snapvm_opts.h"

/* snapshot [OPTIONS] SOURCE DIR [--init FUNC [ARG]] [--call FUNC [ARG]]...; argv[0] = "snapshot" */
int snap_cmd_snapshot(int argc, char **argv);

/* list DIR: the functions of the snapshot's guest */
int snap_cmd_list(const char *dir);

/* verify DIR; argv[0] = "verify" */
int snap_cmd_verify(int argc, char **argv);

/* call DIR FUNC with arg_len bytes at arg, in o->sandboxes sandboxes started from DIR */
int snap_cmd_call(const struct snapvm_opts *o, const char *dir, const char *fn, const char *arg,
		  size_t arg_len);

#endif
