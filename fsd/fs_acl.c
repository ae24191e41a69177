/*
 * fsd/fs_acl.c: POSIX ACLs (see fs_i.h).
 *
 * With FUSE_POSIX_ACL the kernel checks permissions against a file's
 * access ACL, which it reads (and caches) as the xattr
 * system.posix_acl_access, and passes setfacl's changes on as setxattr
 * after validating them.  The rest is the filesystem's, as for ext4's
 * ACL code: a file's permission bits and its access ACL describe the same
 * owner, group-class and other permissions, so setting the ACL sets the
 * bits and chmod rewrites the ACL; an ACL that says no more than the bits
 * is not kept; and a new file or folder inherits its parent folder's
 * default ACL (system.posix_acl_default) in place of the umask.
 *
 * The xattr value, as the kernel hands it over: a 4-byte version (2),
 * then 8-byte entries (tag, permissions, id), little-endian, sorted by
 * tag and id.
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "fs_i.h"

#define ACL_VERSION 2
#define ACL_HEAD 4
#define ACL_ENTRY 8

enum {
	TAG_USER_OBJ = 0x01,
	TAG_USER = 0x02,
	TAG_GROUP_OBJ = 0x04,
	TAG_GROUP = 0x08,
	TAG_MASK = 0x10,
	TAG_OTHER = 0x20,
};

bool fs_acl_name(const char *name)
{
	return !strcmp(name, FS_ACL_ACCESS) || !strcmp(name, FS_ACL_DEFAULT);
}

static unsigned acl_count(size_t size)
{
	return (unsigned)((size - ACL_HEAD) / ACL_ENTRY);
}

static uint16_t get16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static uint16_t entry_tag(const uint8_t *acl, unsigned i)
{
	return get16(acl + ACL_HEAD + (size_t)i * ACL_ENTRY);
}

static uint16_t entry_perm(const uint8_t *acl, unsigned i)
{
	return get16(acl + ACL_HEAD + (size_t)i * ACL_ENTRY + 2);
}

static void set_perm(uint8_t *acl, unsigned i, unsigned perm)
{
	uint16_t v = htole16((uint16_t)perm);
	memcpy(acl + ACL_HEAD + (size_t)i * ACL_ENTRY + 2, &v, sizeof(v));
}

int fs_acl_check(const void *value, size_t size)
{
	const uint8_t *acl = value;
	if (size < ACL_HEAD || (size - ACL_HEAD) % ACL_ENTRY || size > FS_ACL_MAX)
		return -EINVAL;
	uint32_t version;
	memcpy(&version, acl, sizeof(version));
	if (le32toh(version) != ACL_VERSION)
		return -EINVAL;
	unsigned seen = 0, named = 0;
	for (unsigned i = 0; i < acl_count(size); i++) {
		unsigned tag = entry_tag(acl, i);
		if (entry_perm(acl, i) & ~7u)
			return -EINVAL;
		switch (tag) {
		case TAG_USER:
		case TAG_GROUP:
			named++;
			break;
		case TAG_USER_OBJ:
		case TAG_GROUP_OBJ:
		case TAG_MASK:
		case TAG_OTHER:
			if (seen & tag)
				return -EINVAL;	/* each at most once */
			seen |= tag;
			break;
		default:
			return -EINVAL;
		}
	}
	/* The three base entries, and a mask if there are named ones. */
	if ((seen & (TAG_USER_OBJ | TAG_GROUP_OBJ | TAG_OTHER)) !=
	    (TAG_USER_OBJ | TAG_GROUP_OBJ | TAG_OTHER))
		return -EINVAL;
	if (named && !(seen & TAG_MASK))
		return -EINVAL;
	return 0;
}

/* The entry that holds the group class's permissions: the mask if there
 * is one, else the owning group's (-1 if neither: a checked ACL has it). */
static int group_class(const uint8_t *acl, size_t size)
{
	int group_obj = -1;
	for (unsigned i = 0; i < acl_count(size); i++) {
		unsigned tag = entry_tag(acl, i);
		if (tag == TAG_MASK)
			return (int)i;
		if (tag == TAG_GROUP_OBJ)
			group_obj = (int)i;
	}
	return group_obj;
}

uint32_t fs_acl_mode(const void *value, size_t size, uint32_t mode, bool *equiv)
{
	const uint8_t *acl = value;
	unsigned user = 0, other = 0;
	*equiv = true;
	for (unsigned i = 0; i < acl_count(size); i++) {
		unsigned tag = entry_tag(acl, i);
		if (tag == TAG_USER_OBJ)
			user = entry_perm(acl, i);
		else if (tag == TAG_OTHER)
			other = entry_perm(acl, i);
		else if (tag != TAG_GROUP_OBJ)
			*equiv = false;	/* a mask or a named entry */
	}
	/* With a mask, the group bits show the mask, as in ls -l. */
	int g = group_class(acl, size);
	unsigned group = g >= 0 ? entry_perm(acl, (unsigned)g) : 0;
	return (mode & 07000) | user << 6 | group << 3 | other;
}

void fs_acl_chmod(void *value, size_t size, uint32_t mode)
{
	uint8_t *acl = value;
	for (unsigned i = 0; i < acl_count(size); i++) {
		unsigned tag = entry_tag(acl, i);
		if (tag == TAG_USER_OBJ)
			set_perm(acl, i, (mode >> 6) & 7);
		else if (tag == TAG_OTHER)
			set_perm(acl, i, mode & 7);
	}
	int g = group_class(acl, size);
	if (g >= 0)
		set_perm(acl, (unsigned)g, (mode >> 3) & 7);
}

bool fs_acl_inherit(void *value, size_t size, uint32_t *mode)
{
	uint8_t *acl = value;
	uint32_t m = *mode;
	bool equiv = true;
	for (unsigned i = 0; i < acl_count(size); i++) {
		unsigned tag = entry_tag(acl, i), perm = entry_perm(acl, i);
		if (tag == TAG_USER_OBJ) {
			perm &= (m >> 6) & 7;
			set_perm(acl, i, perm);
			m = (m & ~(uint32_t)S_IRWXU) | perm << 6;
		} else if (tag == TAG_OTHER) {
			perm &= m & 7;
			set_perm(acl, i, perm);
			m = (m & ~(uint32_t)S_IRWXO) | perm;
		} else if (tag != TAG_GROUP_OBJ) {
			equiv = false;	/* a mask or a named entry */
		}
	}
	/* The group class, limited by the mode asked for. */
	int g = group_class(acl, size);
	if (g >= 0) {
		unsigned perm = entry_perm(acl, (unsigned)g) & ((m >> 3) & 7);
		set_perm(acl, (unsigned)g, perm);
		m = (m & ~(uint32_t)S_IRWXG) | perm << 3;
	}
	*mode = m;
	return !equiv;
}
