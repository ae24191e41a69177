/*
 * fsd/fs_xattr.c: extended attributes of the snapfs mount (see fs_i.h):
 * user.* kept in the store, user.snapfs.* computed from the store, and the
 * POSIX ACLs (system.posix_acl_*) kept in the store beside the
 * permission bits they go with (fs_acl.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>

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

/* user.snapfs.gc set on the root: gc the live store now. */
static int fs_xattr_gc(struct fs *fs, uint64_t ino)
{
	if (ino != FUSE_ROOT_ID)
		return -EINVAL;
	/* One at a time: a second caller waits and then runs its own. */
	fs_loop_blocking();
	pthread_mutex_lock(&fs->gc_lock);
	struct store_gc_result res;
	struct err e = { 0 };
	int r = store_gc(fs->store, NULL, NULL, &res, &e);
	if (r < 0) {
		fuse_log(FUSE_LOG_ERR, "snapfs: gc: %s\n", err_str(&e, r));
	} else {
		fs->gc_ran = true;
		fs->gc_last = res;
		fuse_log(FUSE_LOG_INFO, "snapfs: gc: %" PRIu64 " pages freed, packs %" PRIu64
			 " -> %" PRIu64 " bytes\n", res.pages_freed, res.bytes_before, res.bytes_after);
	}
	pthread_mutex_unlock(&fs->gc_lock);
	return r;
}

static ssize_t fs_xattr_get_gc(struct fs *fs, uint64_t ino, char *buf, size_t size)
{
	if (ino != FUSE_ROOT_ID)
		return -ENODATA;
	char val[80];
	if (pthread_mutex_trylock(&fs->gc_lock)) {
		fs_loop_blocking();	/* a gc runs */
		pthread_mutex_lock(&fs->gc_lock);
	}
	bool ran = fs->gc_ran;
	struct store_gc_result res = fs->gc_last;
	pthread_mutex_unlock(&fs->gc_lock);
	if (!ran)
		return -ENODATA;
	int n = snprintf(val, sizeof(val), "%" PRIu64 " %" PRIu64 " %" PRIu64, res.pages_freed,
			 res.bytes_before, res.bytes_after);
	return fs_xattr_value(val, (size_t)n, buf, size);
}

static ssize_t fs_xattr_get_own(struct fs *fs, uint64_t ino, const char *what, char *buf,
				size_t size)
{
	if (!strcmp(what, "gc"))
		return fs_xattr_get_gc(fs, ino, buf, size);
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
		/* A commit, then a look at every page of the file. */
		fs_loop_blocking();
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
	if (fs_acl_name(name))	/* the kernel asks for every file ls -l shows */
		return fs->acl && __atomic_load_n(&fs->acl_any, __ATOMIC_ACQUIRE)
			       ? store_xattr_get(fs->store, ino, name, buf, size)
			       : -ENODATA;
	if (!fs_xattr_is_user(name))
		return -ENODATA;
	return store_xattr_get(fs->store, ino, name, buf, size);
}

/* Without ACLs, those a store keeps (set on a mount with them) are not
 * shown, as they are not used: getxattr finds none, listxattr lists
 * none. */
ssize_t fs_xattr_list(struct fs *fs, uint64_t ino, char *buf, size_t size)
{
	if (fs->acl || !__atomic_load_n(&fs->acl_any, __ATOMIC_ACQUIRE))
		return store_xattr_list(fs->store, ino, buf, size);
	char *all = malloc(STORE_XATTR_LIST_MAX);
	if (!all)
		return -ENOMEM;
	ssize_t n = store_xattr_list(fs->store, ino, all, STORE_XATTR_LIST_MAX);
	size_t len = 0, k;
	for (char *name = all; n > 0 && name < all + n; name += k) {
		k = strlen(name) + 1;
		if (fs_acl_name(name))
			continue;
		if (size && len + k > size) {
			n = -ERANGE;
			break;
		}
		if (size)
			memcpy(buf + len, name, k);
		len += k;
	}
	free(all);
	return n < 0 ? n : (ssize_t)len;
}

/* Is ino open for writing through this mount? */
static bool fs_xattr_has_writers(void *arg, uint64_t ino)
{
	struct fs *fs = arg;
	return fs_inode_writers(&fs->inodes, ino) > 0;
}

#define SEAL_WAIT_S 1

/*
 * user.snapfs.sealed set on a directory.  A file of the tree open for
 * writing refuses it (EBUSY): its later writes, say the dirty pages of a
 * shared writable mapping, would be refused, yet readers would see them
 * in the page cache.  seal_lock keeps opens for writing out meanwhile.
 */
static int fs_xattr_seal(struct fs *fs, uint64_t ino, int flags)
{
	struct store_attr a;
	int r = store_getattr(fs->store, ino, &a);
	if (r < 0)
		return r;
	bool sealed = a.flags & STORE_INODE_SEALED;
	if ((flags & XATTR_CREATE) && sealed)
		return -EEXIST;
	if ((flags & XATTR_REPLACE) && !sealed)
		return -ENODATA;
	fs_loop_blocking();	/* a walk of the subtree, and maybe waits */
	/* The kernel sends a file's release after close(2) has returned,
	 * so a file written and closed just before may still count as open:
	 * a seal that finds a writer waits up to SEAL_WAIT_S for releases
	 * before it gives up. */
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += SEAL_WAIT_S;
	for (;;) {
		uint64_t seen = fs_inode_writer_releases(&fs->inodes);
		pthread_rwlock_wrlock(&fs->seal_lock);
		r = store_seal(fs->store, ino, fs_xattr_has_writers, fs);
		pthread_rwlock_unlock(&fs->seal_lock);
		if (r != -EBUSY || !fs_inode_wait_writer_release(&fs->inodes, seen, &deadline))
			return r;
	}
}

int fs_xattr_set(struct fs *fs, uint64_t ino, const char *name, const char *value, size_t size,
		 int flags)
{
	(void)value, (void)size;
	if (!strcmp(name, FS_XATTR_OWN "sealed"))
		return fs_xattr_seal(fs, ino, flags);
	if (!strcmp(name, FS_XATTR_OWN "gc"))
		return fs_xattr_gc(fs, ino);
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
		fs_loop_blocking();	/* a walk of the subtree */
		int r = store_unseal(fs->store, ino);
		return r == -EINVAL ? -EPERM : r;
	}
	if (!strncmp(name, FS_XATTR_OWN, FS_XATTR_OWN_LEN))
		return -EPERM;
	if (fs->acl && fs_acl_name(name)) {
		/* No ACL left is no error (tar removes a default ACL that
		 * is not there, as ext4 allows); an access ACL removed
		 * leaves the permission bits as they are. */
		int r = store_xattr_remove(fs->store, ino, name);
		return r == -ENODATA ? 0 : r;
	}
	if (!fs_xattr_is_user(name))
		return -EOPNOTSUPP;
	return store_xattr_remove(fs->store, ino, name);
}

/* ---- POSIX ACLs -------------------------------------------------------------- */

int fs_acl_set(struct fs *fs, const struct store_attr *a, const char *name, const void *value,
	       size_t size, bool kill_sgid)
{
	if (!fs->acl)
		return -EOPNOTSUPP;
	int r = fs_acl_check(value, size);
	if (r)
		return r;
	__atomic_store_n(&fs->acl_any, true, __ATOMIC_RELEASE);
	if (!strcmp(name, FS_ACL_DEFAULT))	/* kept as it is, for new inodes */
		return S_ISDIR(a->mode) ? store_xattr_set(fs->store, a->ino, name, value, size, 0)
					: -EACCES;
	bool equiv;
	uint32_t mode = fs_acl_mode(value, size, a->mode, &equiv);
	if (kill_sgid)
		mode &= ~(uint32_t)S_ISGID;
	/* An ACL that says no more than the bits is dropped, as ext4 does:
	 * getfacl then shows the bits, and ls -l no "+". */
	return store_xattr_set_mode(fs->store, a->ino, name, equiv ? NULL : value, size, mode);
}

int fs_acl_chmod_file(struct fs *fs, uint64_t ino, uint32_t mode)
{
	if (!__atomic_load_n(&fs->acl_any, __ATOMIC_ACQUIRE))
		return -ENODATA;
	uint8_t acl[FS_ACL_MAX];
	int n = store_xattr_get(fs->store, ino, FS_ACL_ACCESS, acl, sizeof(acl));
	if (n < 0)
		return n == -ERANGE ? -EIO : n;
	if (fs_acl_check(acl, (size_t)n)) {
		fuse_log(FUSE_LOG_ERR, "snapfs: inode %" PRIu64 ": its access ACL is malformed\n", ino);
		return -EIO;
	}
	fs_acl_chmod(acl, (size_t)n, mode);
	return store_xattr_set_mode(fs->store, ino, FS_ACL_ACCESS, acl, (size_t)n, mode);
}

void fs_acl_new(struct fs *fs, uint64_t parent, uint32_t umask, struct fs_acl_new *acl,
		struct store_new *n)
{
	n->xattrs = acl->xattrs;
	n->n_xattrs = 0;
	if (!fs->acl)
		return;	/* the kernel applied the umask */
	int r = __atomic_load_n(&fs->acl_any, __ATOMIC_ACQUIRE)
			? store_xattr_get(fs->store, parent, FS_ACL_DEFAULT, acl->def, FS_ACL_MAX)
			: -ENODATA;
	if (r <= 0 || fs_acl_check(acl->def, (size_t)r)) {
		n->mode &= ~(umask & 0777);
		return;
	}
	memcpy(acl->acl, acl->def, (size_t)r);
	if (fs_acl_inherit(acl->acl, (size_t)r, &n->mode))
		acl->xattrs[n->n_xattrs++] =
			(struct store_xattr){ FS_ACL_ACCESS, acl->acl, (size_t)r };
	if (S_ISDIR(n->mode))
		acl->xattrs[n->n_xattrs++] =
			(struct store_xattr){ FS_ACL_DEFAULT, acl->def, (size_t)r };
}
