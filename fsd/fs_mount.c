/*
 * fsd/fs_mount.c: store folder checks, default mount options and
 * read-ahead tuning for the snapfs command (see fs_mount.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_mount.h"
#include "lib/err.h"
#include "lib/mountinfo.h"
#include "store.h"

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
	/* Nor may a symlink among the store's own files lead under it. */
	for (const char *const *name = store_entries; *name; name++) {
		char p[PATH_MAX + 16], real[PATH_MAX];
		snprintf(p, sizeof(p), "%s/%s", abs, *name);
		if (realpath(p, real) && fs_mount_on_path(&mst, real))
			return err_set(e, -EINVAL, "store %s: its %s leads to %s, inside the mount "
				       "point %s: the mount would hide it; keep the store's files "
				       "outside", path, *name, real, mountpoint);
	}
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

/* The mountinfo line of the FUSE mount at mountpoint, malloc'ed in *out:
 * as mountinfo_find, 1 if there is one. */
static int fs_mount_find(const char *mountpoint, struct mountinfo_ent **out)
{
	*out = malloc(sizeof(**out));
	if (!*out)
		return -ENOMEM;
	int r = mountinfo_find(mountinfo_fuse_at, mountpoint, *out);
	if (r <= 0) {
		free(*out);
		*out = NULL;
	}
	return r;
}

int fs_mount_set_readahead(const char *mountpoint, unsigned kb)
{
	struct mountinfo_ent *ent;
	int r = fs_mount_find(mountpoint, &ent);
	if (r <= 0)
		return r ? r : -ENOENT;
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", ent->maj, ent->min);
	free(ent);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char val[32];
	int n = snprintf(val, sizeof(val), "%u\n", kb);
	ssize_t w = write(fd, val, n);
	r = w == n ? 0 : w < 0 ? -errno : -EIO;	/* a short write sets no errno */
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

/* The atime rule of the FUSE mount at mountpoint, from its flags in
 * /proc/self/mountinfo: noatime or a read-only mount none, relatime
 * relatime, neither strict; *diratime false under nodiratime. */
static int fs_mount_atime(const char *mountpoint, enum fs_atime *atime, bool *diratime)
{
	struct mountinfo_ent *ent;
	int r = fs_mount_find(mountpoint, &ent);
	if (r <= 0)
		return r ? r : -ENOENT;
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

/* A mount flag as mount(8) spells it: the MS_ bits it sets and clears. */
struct fs_mount_flag {
	const char *name;
	unsigned long set, clear;
};

#define FS_MOUNT_ATIME_BITS (MS_NOATIME | MS_RELATIME | MS_STRICTATIME)
static const struct fs_mount_flag fs_mount_flags[] = {
	{ "ro", MS_RDONLY, 0 },			{ "rw", 0, MS_RDONLY },
	{ "nosuid", MS_NOSUID, 0 },		{ "suid", 0, MS_NOSUID },
	{ "nodev", MS_NODEV, 0 },		{ "dev", 0, MS_NODEV },
	{ "noexec", MS_NOEXEC, 0 },		{ "exec", 0, MS_NOEXEC },
	{ "sync", MS_SYNCHRONOUS, 0 },		{ "async", 0, MS_SYNCHRONOUS },
	{ "dirsync", MS_DIRSYNC, 0 },
	{ "noatime", MS_NOATIME, FS_MOUNT_ATIME_BITS },
	{ "relatime", MS_RELATIME, FS_MOUNT_ATIME_BITS },
	{ "strictatime", MS_STRICTATIME, FS_MOUNT_ATIME_BITS },
	{ "nodiratime", MS_NODIRATIME, 0 },	{ "diratime", 0, MS_NODIRATIME },
};

/* Apply the flags named in the comma-separated list opts to *flags. */
static void fs_mount_apply_flags(const char *opts, unsigned long *flags)
{
	for (const char *p = opts; p && *p;) {
		size_t n = strcspn(p, ",");
		for (size_t i = 0; i < sizeof(fs_mount_flags) / sizeof(fs_mount_flags[0]); i++) {
			const struct fs_mount_flag *f = &fs_mount_flags[i];
			if (strlen(f->name) == n && !strncmp(p, f->name, n))
				*flags = (*flags & ~f->clear) | f->set;
		}
		p += n;
		if (*p == ',')
			p++;
	}
}

int fs_mount_remount(const char *store, const char *mountpoint, const char *opts,
		     struct err *e)
{
	char mnt[PATH_MAX];
	if (!realpath(mountpoint, mnt))
		return err_set(e, -errno, "remount: mount point %s: %s", mountpoint, strerror(errno));
	struct mountinfo_ent *ent;
	int r = fs_mount_find(mnt, &ent);
	if (r == 0 || (r > 0 && !mountinfo_is_snapfs(ent)))
		r = err_set(e, -EINVAL, "remount: %s is not a snapfs mount point", mountpoint);
	else if (r < 0)
		err_set(e, r, "remount %s: cannot read the mount table (/proc/self/mountinfo): %s",
			mountpoint, strerror(-r));
	else if (strcmp(ent->source, store))
		r = err_set(e, -EINVAL, "remount: %s mounts the store %s, not %s", mountpoint,
			    ent->source, store);
	if (r < 0) {
		free(ent);
		return r;
	}
	/* The mount's flags now (the kernel lists strictatime as neither
	 * relatime nor noatime), then the ones asked for. */
	unsigned long flags = MS_STRICTATIME;
	fs_mount_apply_flags(ent->opts, &flags);
	free(ent);
	fs_mount_apply_flags(opts, &flags);
	if (mount(NULL, mnt, NULL, MS_REMOUNT | flags, NULL) < 0)
		return err_set(e, -errno, "remount %s: %s%s", mountpoint, strerror(errno),
			       errno == EPERM ? " (remounting needs root)" : "");
	return 0;
}

struct fs_mount_watch {
	struct fs *fs;
	char mnt[PATH_MAX];
	int table;		/* /proc/self/mountinfo, polled for changes */
	int stop[2];		/* a pipe: written to end the thread */
	pthread_t thread;
};

/* Set fs's atime rule from the mount's flags as they are now. */
static int fs_mount_watch_read(struct fs_mount_watch *w)
{
	enum fs_atime atime;
	bool diratime;
	int r = fs_mount_atime(w->mnt, &atime, &diratime);
	if (r == 0)
		fs_set_atime(w->fs, atime, diratime);
	return r;
}

static void *fs_mount_watch_run(void *arg)
{
	struct fs_mount_watch *w = arg;
	for (;;) {
		/* The table signals POLLPRI once per change since the last poll. */
		struct pollfd p[2] = { { .fd = w->table, .events = POLLPRI },
				       { .fd = w->stop[0], .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		fs_mount_watch_read(w);
	}
	return NULL;
}

int fs_mount_watch_start(struct fs *fs, const char *mountpoint, struct fs_mount_watch **out)
{
	struct fs_mount_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fs = fs;
	snprintf(w->mnt, sizeof(w->mnt), "%s", mountpoint);
	/* Opened first: POLLPRI then reports every change after this. */
	w->table = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
	if (w->table < 0 || pipe2(w->stop, O_CLOEXEC) < 0) {
		int r = -errno;
		if (w->table >= 0)
			close(w->table);
		free(w);
		return r;
	}
	int r = fs_mount_watch_read(w);
	if (r == 0)
		r = -pthread_create(&w->thread, NULL, fs_mount_watch_run, w);
	if (r < 0) {
		close(w->table);
		close(w->stop[0]);
		close(w->stop[1]);
		free(w);
		return r;
	}
	*out = w;
	return 0;
}

void fs_mount_watch_stop(struct fs_mount_watch *w)
{
	if (!w)
		return;
	if (write(w->stop[1], "", 1) != 1) {
		/* A pipe with room cannot refuse one byte. */
	}
	pthread_join(w->thread, NULL);
	close(w->table);
	close(w->stop[0]);
	close(w->stop[1]);
	free(w);
}
