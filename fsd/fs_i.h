/*
 * fsd/fs_i.h: what the files of the filesystem module share privately
 * (fs.c handlers, fs_xattr.c attributes, fs_inode.c table).
 */
#ifndef SNAPFS_FS_I_H
#define SNAPFS_FS_I_H

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fs.h"
#include "fs_inode.h"
#include "store.h"

struct fs_handle;

struct fs {
	struct store *store;
	struct fs_config cfg;
	struct fs_inode_table inodes;
	/* Open file handles, so that fs_free frees those the kernel never
	 * released (the session ended with files still open). */
	pthread_mutex_t handles_lock;
	struct fs_handle *handles;
	/* Held shared by opens for writing, from their check that the file
	 * is not sealed until they count as writers (by creates from the
	 * file's making), and exclusively while a tree is sealed, which no
	 * writer may be in. */
	pthread_rwlock_t seal_lock;
	/* The figures of the last gc run through the mount (user.snapfs.gc). */
	pthread_mutex_t gc_lock;
	bool gc_ran;
	struct store_gc_result gc_last;
};

/*
 * Whether an access at now updates the atime of an inode with attributes
 * a.  Relatime, as the kernel decides for local filesystems: when atime
 * is not after mtime or ctime (the first access since a change), or is a
 * day old.  Strict: unless atime is now already.
 */
bool fs_atime_due(enum fs_atime rule, const struct store_attr *a, struct timespec now);

/* Fill a struct stat from store attributes (st_blocks from pages stored). */
void fs_attr_to_stat(const struct store_attr *a, struct stat *st);

/* Drop n kernel lookups of ino; tells the store when the last one goes. */
void fs_forget_ino(struct fs *fs, uint64_t ino, uint64_t n);

/* Undo an open: free the handle fh, release the store's file, and the
 * inode if nothing holds it any more. */
void fs_release_file(struct fs *fs, uint64_t ino, uint64_t fh);

/*
 * Extended attributes as the filesystem shows them (fs_xattr.c).  user.*
 * names are kept in the store.  user.snapfs.* are the filesystem's own:
 * "sealed" (setting it seals, see store_seal(); it reads "1" once set;
 * removing it from the top of a sealed tree unseals it, see store_unseal(),
 * for uid 0 only: anyone else, and any other directory, gets -EPERM),
 * and, on regular files, the read-only figures "digest" (hex), "pages",
 * "shared_pages" and "zero_pages" (decimal).  Setting "gc" on the root
 * runs store_gc() on the live store (every other call waits meanwhile)
 * and reading it there gives the last run's pages freed and pack bytes
 * before and after, in decimal, separated by spaces.  They can be read by name but
 * are not listed, so tools that copy xattrs (cp -a, rsync -X, tar
 * --xattrs) do not carry them to other files.  Other namespaces are not
 * supported.  All return -errno on failure; get and list return the
 * value's length (size 0: only the length; -ERANGE if size is too small).
 */
ssize_t fs_xattr_get(struct fs *fs, uint64_t ino, const char *name, char *buf, size_t size);
ssize_t fs_xattr_list(struct fs *fs, uint64_t ino, char *buf, size_t size);
int fs_xattr_set(struct fs *fs, uint64_t ino, const char *name, const char *value, size_t size,
		 int flags);
/* uid: the user asking (unsealing needs 0). */
int fs_xattr_remove(struct fs *fs, uint64_t ino, const char *name, uint32_t uid);

#endif
