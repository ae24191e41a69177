/*
 * fsd/fs_mount.h: the parts of mounting that are not request handling:
 * checking or creating the store folder, the mount options snapfs always
 * wants, and, once the mount exists, tuning its read-ahead and reading
 * the atime rule off its flags.
 */
#ifndef SNAPFS_FS_MOUNT_H
#define SNAPFS_FS_MOUNT_H

#include <limits.h>

#include <stdbool.h>

#include "fs.h"

struct err;

/*
 * Resolve the store folder PATH to an absolute path in abs[PATH_MAX],
 * creating it (mode 0700) if it is missing and its parent exists, and
 * making an existing empty folder mode 0700 as well.  Whether
 * the folder is a store, or empty and may become one, is for store_open()
 * to decide.  A store that is MOUNTPOINT, below it or above it is refused
 * (-EINVAL) before anything is created: the mount would hide the store
 * from the daemon.  Returns 0 or -errno with a message in e naming PATH.
 */
int fs_mount_prepare_store(const char *path, const char *mountpoint, char abs[PATH_MAX],
			   struct err *e);

/*
 * Put in front of the user's -o options the ones snapfs mounts with:
 * fsname=STORE (escaped), subtype=snapfs, default_permissions (the kernel
 * checks modes; the handlers do not), max_read=READ_KB KiB.  Options the
 * user gives later on the command line override these.
 * Returns 0 or -ENOMEM.
 */
int fs_mount_add_options(struct fuse_args *args, const char *store, unsigned read_kb);

/*
 * Set /sys/class/bdi/MAJ:MIN/read_ahead_kb of the FUSE mount at
 * MOUNTPOINT.  The device number is read from /proc/self/mountinfo rather
 * than by stat()ing the mount point, which would send a request to a
 * session that is not serving yet.  Returns 0 or -errno.
 */
int fs_mount_set_readahead(const char *mountpoint, unsigned kb);

/*
 * `snapfs STORE MOUNTPOINT -o remount,...`, as mount(8) runs it through
 * mount.fuse3 for `mount -o remount,ro MOUNTPOINT`: change the flags of
 * the snapfs mount of store (an absolute path) at MOUNTPOINT with
 * mount(2), no second daemon.  opts is the comma-separated option list;
 * ro/rw, nosuid/suid, nodev/dev, noexec/exec, sync/async, dirsync,
 * noatime/relatime/strictatime and nodiratime/diratime are applied, the
 * rest (the mount's FUSE and snapfs options, which cannot change while it
 * is mounted) are ignored.  Returns 0 or -errno with a message in e.
 */
int fs_mount_remount(const char *store, const char *mountpoint, const char *opts,
		     struct err *e);

/*
 * Keep fs's atime rule in step with the flags of the mount at MOUNTPOINT:
 * sets it from the flags now, then a thread waits for changes to the
 * mount table and reads the rule again (a remount to ro or noatime stops
 * atime updates at once).  The table is watched from before the first
 * read, so no remount falls between them.  Returns 0 or -errno (the rule
 * is then left alone); fs_mount_watch_stop() ends the thread.
 */
struct fs_mount_watch;
int fs_mount_watch_start(struct fs *fs, const char *mountpoint, struct fs_mount_watch **out);
void fs_mount_watch_stop(struct fs_mount_watch *w);

#endif
