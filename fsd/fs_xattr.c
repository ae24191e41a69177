/*
 * fsd/fs_xattr.c: extended attributes of the snapfs mount (see fs_i.h):
 * user.* kept in the store, user.snapfs.* computed from the store.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "fs_i.h"

#define FS_XATTR_OWN "user.snapfs."
#define FS_XATTR_OWN_LEN (sizeof(FS_XATTR_OWN) - 1)

static bool fs_xattr_is_user(const char *name)
{
	return !strncmp(name, "user.", 5);
}

/* Copy a computed value out with getxattr's size rules. */
static ssize_t fs_xattr_value(const char *val, size_t len, char *buf, size_t size)
{
	if (size == 0)
		return (ssize_t)len;
	if (size < len)
		return -ERANGE;
	memcpy(buf, val, len);
	return (ssize_t)len;
}

static ssize_t fs_xattr_get_own(struct fs *fs, uint64_t ino, const char *what, char *buf,
				size_t size)
{
	struct store_attr a;
	int r = store_getattr(fs->store, ino, &a);
	if (r < 0)
		return r;
	if (!strcmp(what, "sealed")) {
		if (!(a.flags & STORE_INODE_SEALED))
			return -ENODATA;
		return fs_xattr_value("1", 1, buf, size);
	}
	if (!S_ISREG(a.mode))
		return -ENODATA;

	char val[2 * STORE_HASH_SIZE + 1];
	uint64_t num;
	struct store_file_info fi;
	if (!strcmp(what, "digest") || !strcmp(what, "pages") || !strcmp(what, "shared_pages") ||
	    !strcmp(what, "zero_pages")) {
		r = store_file_info(fs->store, ino, &fi);
		if (r < 0)
			return r;
	} else {
		return -ENODATA;
	}
	if (!strcmp(what, "digest")) {
		for (unsigned i = 0; i < STORE_HASH_SIZE; i++)
			sprintf(val + 2 * i, "%02x", fi.digest[i]);
		return fs_xattr_value(val, 2 * STORE_HASH_SIZE, buf, size);
	}
	if (!strcmp(what, "pages"))
		num = fi.pages;
	else if (!strcmp(what, "shared_pages"))
		num = fi.shared_pages;
	else
		num = fi.zero_pages;
	int n = snprintf(val, sizeof(val), "%" PRIu64, num);
	return fs_xattr_value(val, (size_t)n, buf, size);
}

ssize_t fs_xattr_get(struct fs *fs, uint64_t ino, const char *name, char *buf, size_t size)
{
	if (!strncmp(name, FS_XATTR_OWN, FS_XATTR_OWN_LEN))
		return fs_xattr_get_own(fs, ino, name + FS_XATTR_OWN_LEN, buf, size);
	if (!fs_xattr_is_user(name))
		return -ENODATA;
	return store_xattr_get(fs->store, ino, name, buf, size);
}

ssize_t fs_xattr_list(struct fs *fs, uint64_t ino, char *buf, size_t size)
{
	return store_xattr_list(fs->store, ino, buf, size);
}

int fs_xattr_set(struct fs *fs, uint64_t ino, const char *name, const char *value, size_t size,
		 int flags)
{
	(void)value, (void)size, (void)flags;
	if (!strcmp(name, FS_XATTR_OWN "sealed"))
		return store_seal(fs->store, ino);
	if (!strncmp(name, FS_XATTR_OWN, FS_XATTR_OWN_LEN))
		return -EPERM;
	if (!fs_xattr_is_user(name))
		return -EOPNOTSUPP;
	return store_xattr_set(fs->store, ino, name, value, size, flags);
}

int fs_xattr_remove(struct fs *fs, uint64_t ino, const char *name, uint32_t uid)
{
	if (!strcmp(name, FS_XATTR_OWN "sealed")) {
		/* Like chattr -i: only root lifts immutability, and only
		 * for a whole sealed tree. */
		if (uid != 0)
			return -EPERM;
		int r = store_unseal(fs->store, ino);
		return r == -EINVAL ? -EPERM : r;
	}
	if (!strncmp(name, FS_XATTR_OWN, FS_XATTR_OWN_LEN))
		return -EPERM;
	if (!fs_xattr_is_user(name))
		return -EOPNOTSUPP;
	return store_xattr_remove(fs->store, ino, name);
}
