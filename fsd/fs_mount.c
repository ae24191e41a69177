/*
 * fsd/fs_mount.c: store folder checks, default mount options and
 * read-ahead tuning for the snapfs command (see fs_mount.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_mount.h"
#include "lib/err.h"
#include "lib/mountinfo.h"

/* Is the folder empty?  1 yes, 0 no, -errno if it cannot be read. */
static int fs_mount_dir_empty(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	int empty = 1;
	for (struct dirent *de; (de = readdir(d));) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			empty = 0;
			break;
		}
	}
	closedir(d);
	return empty;
}

/* path made absolute without its last part having to exist: the real
 * path of the folder it names or, if it is missing, of its parent with
 * its name appended.  0 or -errno. */
static int fs_mount_abs(const char *path, char out[PATH_MAX])
{
	if (realpath(path, out))
		return 0;
	if (errno != ENOENT)
		return -errno;
	char dir[PATH_MAX];
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, path, n);
	dir[n] = 0;
	char *slash = strrchr(dir, '/');
	const char *parent = slash == dir ? "/" : slash ? dir : ".";
	const char *name = slash ? slash + 1 : dir;
	if (slash && slash != dir)
		*slash = 0;
	if (!realpath(parent, out))
		return -errno;
	size_t len = strlen(out);
	if (len + 1 + strlen(name) >= PATH_MAX)
		return -ENAMETOOLONG;
	sprintf(out + len, "%s%s", len > 1 ? "/" : "", name);
	return 0;
}

/*
 * Is the folder `dir` one of the existing folders on the absolute path
 * abs: 1 abs itself, 2 one above it, 0 neither.  Compared by device and
 * inode, so a folder reached by another path (a bind mount) counts.
 */
static int fs_mount_on_path(const struct stat *dir, const char *abs)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s", abs);
	for (int self = 1;; self = 0) {
		struct stat st;
		if (stat(p, &st) == 0 && st.st_dev == dir->st_dev && st.st_ino == dir->st_ino)
			return self ? 1 : 2;
		char *slash = strrchr(p, '/');
		if (!slash || (slash == p && !p[1]))
			return 0;
		slash[slash == p] = 0;	/* "/a" becomes "/" */
	}
}

int fs_mount_prepare_store(const char *path, const char *mountpoint, char abs[PATH_MAX],
			   struct err *e)
{
	/*
	 * The daemon reaches its store by path (SQLite opens its journal
	 * files by name), so a store the mount would cover deadlocks the
	 * first write: each access would be a request to the daemon itself.
	 */
	char mnt[PATH_MAX];
	struct stat mst, sst;
	if (!realpath(mountpoint, mnt) || stat(mnt, &mst) < 0)
		return err_set(e, -errno, "mount point %s: %s", mountpoint, strerror(errno));
	int r = fs_mount_abs(path, abs);
	if (r < 0)
		return err_set(e, r, "store %s: %s", path, strerror(-r));
	r = fs_mount_on_path(&mst, abs);
	if (r == 1)
		return err_set(e, -EINVAL, "store %s is the mount point itself: the mount would hide "
			       "it; keep the store in another folder", path);
	if (r == 2)
		return err_set(e, -EINVAL, "store %s is inside the mount point %s: the mount would "
			       "hide it; keep the store outside", path, mountpoint);
	if (stat(abs, &sst) == 0 && fs_mount_on_path(&sst, mnt))
		return err_set(e, -EINVAL, "mount point %s is inside the store %s: the mount would "
			       "hide part of the store; mount it elsewhere", mountpoint, path);
	struct stat st;
	if (stat(path, &st) < 0) {
		if (errno != ENOENT)
			return err_set(e, -errno, "store %s: %s", path, strerror(errno));
		if (mkdir(path, 0700) < 0)
			return err_set(e, -errno, "store %s: cannot create: %s", path, strerror(errno));
	} else if (!S_ISDIR(st.st_mode)) {
		return err_set(e, -ENOTDIR, "store %s: not a folder", path);
	}
	if (!realpath(path, abs))
		return err_set(e, -errno, "store %s: %s", path, strerror(errno));
	/* An empty folder becomes a store: make it private like a new one. */
	if (fs_mount_dir_empty(abs) == 1 && chmod(abs, 0700) < 0)
		return err_set(e, -errno, "store %s: chmod 0700: %s", abs, strerror(errno));
	return 0;
}

int fs_mount_add_options(struct fuse_args *args, const char *store, unsigned read_kb)
{
	/* fsname=STORE with ',' and '\\' escaped as fuse_opt expects. */
	size_t len = strlen(store);
	char *opts = malloc(2 * len + 128);
	if (!opts)
		return -ENOMEM;
	char *o = opts + sprintf(opts, "subtype=snapfs,default_permissions,max_read=%u,fsname=",
				 read_kb * 1024);
	for (const char *s = store; *s; s++) {
		if (*s == ',' || *s == '\\')
			*o++ = '\\';
		*o++ = *s;
	}
	*o = 0;
	/* Insert after argv[0] so that later user options override ours. */
	int r = fuse_opt_insert_arg(args, 1, "-o") || fuse_opt_insert_arg(args, 2, opts);
	free(opts);
	return r ? -ENOMEM : 0;
}

/* The mountinfo line of the FUSE mount at mountpoint, malloc'ed in *out. */
static int fs_mount_find(const char *mountpoint, struct mountinfo_ent **out)
{
	*out = malloc(sizeof(**out));
	if (!*out)
		return -ENOMEM;
	int r = mountinfo_find(mountinfo_fuse_at, mountpoint, *out);
	if (r) {
		free(*out);
		*out = NULL;
	}
	return r;
}

int fs_mount_set_readahead(const char *mountpoint, unsigned kb)
{
	struct mountinfo_ent *ent;
	int r = fs_mount_find(mountpoint, &ent);
	if (r)
		return r;
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", ent->maj, ent->min);
	free(ent);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char val[32];
	int n = snprintf(val, sizeof(val), "%u\n", kb);
	r = write(fd, val, n) == n ? 0 : -errno;
	close(fd);
	return r;
}

/* Is flag one of the comma-separated options opts? */
static bool fs_mount_has_opt(const char *opts, const char *flag)
{
	size_t n = strlen(flag);
	for (const char *p = opts;; p++) {
		if (!strncmp(p, flag, n) && (p[n] == ',' || p[n] == 0))
			return true;
		p = strchr(p, ',');
		if (!p)
			return false;
	}
}

int fs_mount_atime(const char *mountpoint, enum fs_atime *atime, bool *diratime)
{
	struct mountinfo_ent *ent;
	int r = fs_mount_find(mountpoint, &ent);
	if (r)
		return r;
	if (fs_mount_has_opt(ent->opts, "noatime") || fs_mount_has_opt(ent->opts, "ro"))
		*atime = FS_ATIME_NONE;
	else if (fs_mount_has_opt(ent->opts, "relatime"))
		*atime = FS_ATIME_RELATIME;
	else
		*atime = FS_ATIME_STRICT;
	*diratime = !fs_mount_has_opt(ent->opts, "nodiratime");
	free(ent);
	return 0;
}
