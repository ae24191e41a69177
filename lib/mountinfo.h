/*
 * lib/mountinfo.h: finding a mount in /proc/self/mountinfo: the daemon
 * looks up its own mount's device number and options there (stat() of the
 * mount point would send a request to a session not yet serving); snapfs
 * checks whether a store is mounted already and what a remount targets;
 * snapfs-admin looks up where a store in use is mounted.
 */
#ifndef SNAPFS_MOUNTINFO_H
#define SNAPFS_MOUNTINFO_H

#include <limits.h>
#include <stdbool.h>

/* One line of /proc/self/mountinfo, octal escapes (\040) undone. */
struct mountinfo_ent {
	unsigned maj, min;		/* st_dev of the mount */
	char mnt[PATH_MAX];		/* mount point */
	char opts[512];			/* the mount's own options: "rw,nosuid,noatime" */
	char fstype[256];		/* "fuse.snapfs", ... */
	char source[PATH_MAX];		/* what was mounted (fsname for FUSE) */
};

/*
 * The topmost mount (the last one listed) for which match(ent, arg) is
 * true, in *out.  Returns 1, 0 if none matches, or -errno if mountinfo
 * cannot be read (-ENOENT: there is none, as without /proc).
 */
int mountinfo_find(bool (*match)(const struct mountinfo_ent *ent, const void *arg),
		   const void *arg, struct mountinfo_ent *out);

/* A match for mountinfo_find: any mount whose mount point is the
 * absolute path arg (a const char *). */
bool mountinfo_at(const struct mountinfo_ent *ent, const void *arg);

/* A match for mountinfo_find: a FUSE mount whose mount point is the
 * absolute path arg (a const char *). */
bool mountinfo_fuse_at(const struct mountinfo_ent *ent, const void *arg);

/* A match for mountinfo_find: a FUSE mount of the store whose absolute
 * path is arg (a const char *), which snapfs mounts with fsname=STORE. */
bool mountinfo_fuse_of(const struct mountinfo_ent *ent, const void *arg);

/* Whether ent, a FUSE mount, is one snapfs serves: its type is
 * fuse.snapfs, or (a daemon mounted with another subtype) the folder it
 * mounts holds a store's index.db. */
bool mountinfo_is_snapfs(const struct mountinfo_ent *ent);

#endif
