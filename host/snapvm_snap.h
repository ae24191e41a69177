/*
 * host/snapvm_snap.h: the snapshot subcommands of the snapvm command
 * (snapshot, verify, and call with a snapshot directory).  Each takes
 * argv with argv[0] = the subcommand name and returns the exit status
 * (the codes of snapvm.c: 0, 1 call failed, 2 usage, 3 load failed).
 */
#ifndef SNAPVM_SNAP_CMD_H
#define SNAPVM_SNAP_CMD_H

int snap_cmd_snapshot(int argc, char **argv);
int snap_cmd_verify(int argc, char **argv);
int snap_cmd_call(int argc, char **argv);

/* 1 if "call" arguments name a snapshot directory rather than an ELF file. */
int snap_cmd_is_snapshot_call(int argc, char **argv);

#endif
