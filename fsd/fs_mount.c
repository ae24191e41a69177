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

int fs_mount_prepare_store(const char *path, char abs[PATH_MAX], struct err *e)
{
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

/* Undo the octal escapes (\040 etc.) of a /proc/self/mountinfo field. */
static void fs_mount_unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

int fs_mount_set_readahead(const char *mountpoint, unsigned kb)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char line[4096];
	unsigned maj = 0, min = 0;
	int found = 0;
	while (fgets(line, sizeof(line), f)) {
		char mnt[4096], fstype[256];
		unsigned a, b;
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &a, &b, mnt) != 3)
			continue;
		char *dash = strstr(line, " - ");
		if (!dash || sscanf(dash + 3, "%255s", fstype) != 1)
			continue;
		fs_mount_unescape(mnt);
		/* The last match is the topmost mount: ours. */
		if (!strcmp(mnt, mountpoint) && !strncmp(fstype, "fuse", 4)) {
			maj = a;
			min = b;
			found = 1;
		}
	}
	fclose(f);
	if (!found)
		return -ENOENT;

	char path[128];
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char val[32];
	int n = snprintf(val, sizeof(val), "%u\n", kb);
	int r = write(fd, val, n) == n ? 0 : -errno;
	close(fd);
	return r;
}
