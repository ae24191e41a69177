/*
 * host/snapshot_write.c: writing snapshot directories (see snapshot.h).
 *
 * The order of work is what makes a snapshot safe to find: every file is
 * written and fsync'ed inside a temporary directory beside the target, the
 * manifest last, the directory fsync'ed, renamed to its real name without
 * replacing anything, and the parent directory fsync'ed.  A reader that
 * sees the name sees a complete snapshot; a crash leaves at most a
 * ".NAME.partial-" directory (with a random suffix) behind.
 *
 * Region bytes are written a run of non-zero pages at a time and all-zero
 * pages are skipped, so the files are sparse and a page store that keeps
 * holes for free stores nothing for them.  Region files of a derived
 * snapshot are clones (copy_file_range) of its parent's.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "file.h"
#include "snapshot.h"

#define PAGE 4096u
#define COPY_CHUNK (1u << 20)

/* "a/b" into out, truncated to cap - 1 bytes (split_path keeps names short) */
static void path_join(char *out, size_t cap, const char *a, const char *b)
{
	size_t k = strnlen(a, cap - 1);
	memcpy(out, a, k);
	if (k + 1 < cap)
		out[k++] = '/';
	size_t lb = strnlen(b, cap - 1 - k);
	memcpy(out + k, b, lb);
	out[k + lb] = 0;
}

static int page_is_zero(const uint8_t *p)
{
	return p[0] == 0 && memcmp(p, p + 1, PAGE - 1) == 0;
}

static int write_all(int fd, const void *buf, size_t len, off_t off, const char *name,
		     struct err *e)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_set(e, -errno, "%s: write: %s", name, strerror(errno));
		if (n == 0)
			return err_set(e, -EIO, "%s: write made no progress", name);
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Write len bytes of mem at offset at of fd, skipping all-zero pages (the
 * file must hold zeros there already: a new file, or beyond its end).
 */
static int write_sparse_at(int fd, const uint8_t *mem, size_t len, off_t at, const char *name,
			   struct snapshot_stats *st, struct err *e)
{
	size_t off = 0;
	while (off < len) {
		size_t n = len - off < PAGE ? len - off : PAGE;
		if (n == PAGE && page_is_zero(mem + off)) {
			st->bytes_zero += PAGE;
			off += PAGE;
			continue;
		}
		size_t end = off + n;
		while (end < len && !(len - end >= PAGE && page_is_zero(mem + end)))
			end += len - end < PAGE ? len - end : PAGE;
		int r = write_all(fd, mem + off, end - off, at + (off_t)off, name, e);
		if (r < 0)
			return r;
		st->bytes_written += end - off;
		off = end;
	}
	return 0;
}

static int set_size(int fd, uint64_t len, const char *name, struct err *e)
{
	if (ftruncate(fd, (off_t)len) != 0)
		return err_set(e, -errno, "%s: truncate to %llu bytes: %s", name,
			       (unsigned long long)len, strerror(errno));
	return 0;
}

/* Copy the data parts of src into dst with read/write; holes stay holes. */
static int copy_sparse(int src, int dst, uint64_t len, const char *name,
		       struct snapshot_stats *st, struct err *e)
{
	uint8_t *buf = malloc(COPY_CHUNK);
	if (!buf)
		return err_set(e, -ENOMEM, "%s: out of memory", name);
	int r = 0;
	off_t off = 0;
	while ((uint64_t)off < len) {
		off_t data = lseek(src, off, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			data = off;	/* no SEEK_DATA here: copy everything */
		off_t hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > len)
			hole = (off_t)len;
		for (off = data; off < hole;) {
			size_t want = (size_t)(hole - off) < COPY_CHUNK ? (size_t)(hole - off) : COPY_CHUNK;
			ssize_t n = pread(src, buf, want, off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				r = err_set(e, n < 0 ? -errno : -EIO, "%s: read: %s", name,
					    n < 0 ? strerror(errno) : "file shrank while copying");
				goto out;
			}
			if ((r = write_sparse_at(dst, buf, (size_t)n, off, name, st, e)) < 0)
				goto out;
			off += n;
		}
	}
	r = set_size(dst, len, name, e);
out:
	free(buf);
	return r;
}

/*
 * Clone file src_name of directory src_dir (len bytes, as its manifest
 * says) into dst: copy_file_range, which inside a snapfs mount copies page
 * references only; where the kernel or filesystem cannot, a sparse copy.
 */
static int clone_file(const char *src_dir, const char *src_name, int src_fd, uint64_t len,
		      int dst, const char *name, struct snapshot_stats *st, struct err *e)
{
	char path[PATH_MAX];
	path_join(path, sizeof(path), src_dir, src_name);
	/* An open file given is used as it is (copy_file_range with offsets
	 * leaves its position alone); else the file is opened by name. */
	int src = src_fd >= 0 ? src_fd : file_open_read(AT_FDCWD, path, O_NOFOLLOW);
	if (src < 0)
		return err_set(e, -errno, "%s: open: %s", path, strerror(errno));
	int r = 0;
	struct stat sst;
	if (fstat(src, &sst) != 0) {
		r = err_set(e, -errno, "%s: stat: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sst.st_mode) || (uint64_t)sst.st_size != len) {
		r = err_set(e, -EINVAL, "%s: %llu bytes, its manifest says %llu", path,
			    (unsigned long long)sst.st_size, (unsigned long long)len);
		goto out;
	}
	loff_t in = 0, out = 0;
	while ((uint64_t)in < len) {
		ssize_t n = copy_file_range(src, &in, dst, &out, len - (uint64_t)in, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && in == 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS ||
					 errno == EINVAL)) {
			r = copy_sparse(src, dst, len, name, st, e);
			goto out;
		}
		if (n < 0) {
			r = err_set(e, -errno, "%s: cloning %s: %s", name, path, strerror(errno));
			goto out;
		}
		if (n == 0) {
			r = err_set(e, -EIO, "%s: %s shrank while cloning", name, path);
			goto out;
		}
		st->bytes_cloned += (uint64_t)n;
	}
	r = set_size(dst, len, name, e);
out:
	if (src != src_fd)
		close(src);
	return r;
}

/* Create file in dirfd from mem (sparse or not) or as a clone, and fsync it;
 * errors name it as dir/file, dir being the snapshot's final path (dirfd is
 * the temporary directory that becomes it, gone again after a failure). */
static int write_file(int dirfd, const char *dir, const char *file, const void *mem, size_t len,
		      int sparse, const char *clone_dir, int clone_fd, uint64_t clone_len,
		      struct snapshot_stats *st, struct err *e)
{
	char name[PATH_MAX];
	path_join(name, sizeof(name), dir, file);
	int fd = openat(dirfd, file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (fd < 0)
		return err_set(e, -errno, "%s: create: %s", name, strerror(errno));
	int r;
	if (clone_dir)
		r = clone_file(clone_dir, file, clone_fd, clone_len, fd, name, st, e);
	else if (sparse)
		r = write_sparse_at(fd, mem, len, 0, name, st, e);
	else
		r = write_all(fd, mem, len, 0, name, e);
	if (r == 0 && !clone_dir) {
		if (sparse)
			r = set_size(fd, len, name, e);
		else
			st->bytes_written += len;
	}
	if (r == 0 && fsync(fd) != 0)
		r = err_set(e, -errno, "%s: fsync: %s", name, strerror(errno));
	if (close(fd) != 0 && r == 0)
		r = err_set(e, -errno, "%s: close: %s", name, strerror(errno));
	st->bytes_logical += clone_dir ? clone_len : len;
	return r;
}

static void remove_tree(const char *tmp, const struct manifest *m)
{
	char path[PATH_MAX];
	const char *fixed[] = { SNAPSHOT_MANIFEST, SNAPSHOT_CPU };
	for (size_t i = 0; i < 2; i++) {
		path_join(path, sizeof(path), tmp, fixed[i]);
		unlink(path);
	}
	for (size_t i = 0; i < m->nregions; i++) {
		path_join(path, sizeof(path), tmp, m->regions[i].file);
		unlink(path);
	}
	rmdir(tmp);
}

static int fsync_path(const char *path, struct err *e)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return err_set(e, -errno, "%s: open: %s", path, strerror(errno));
	int r = fsync(fd) == 0 ? 0 : err_set(e, -errno, "%s: fsync: %s", path, strerror(errno));
	close(fd);
	return r;
}

/* Split path into its directory (".") and last name, ignoring trailing '/'. */
static int split_path(const char *path, char *parent, char *base, struct err *e)
{
	size_t len = strlen(path);
	while (len > 1 && path[len - 1] == '/')
		len--;
	if (len == 0 || len >= PATH_MAX - 64)
		return err_set(e, -EINVAL, "\"%s\": not a usable snapshot directory name", path);
	size_t slash = len;
	while (slash > 0 && path[slash - 1] != '/')
		slash--;
	const char *b = path + slash;
	size_t blen = len - slash;
	if (blen == 0 || (blen == 1 && b[0] == '.') || (blen == 2 && b[0] == '.' && b[1] == '.'))
		return err_set(e, -EINVAL, "\"%s\": not a usable snapshot directory name", path);
	memcpy(base, b, blen);
	base[blen] = 0;
	if (slash == 0) {
		strcpy(parent, ".");
	} else {
		size_t plen = slash > 1 ? slash - 1 : 1;
		memcpy(parent, path, plen);
		parent[plen] = 0;
	}
	return 0;
}

/*
 * Rename the finished temporary directory tmp to dir, never replacing a
 * name that appeared meanwhile.  Where the filesystem has no
 * RENAME_NOREPLACE (EINVAL; ENOSYS on old kernels), a check and a plain
 * rename do; only an empty directory made between the two steps could
 * still be replaced.
 */
static int put_in_place(const char *tmp, const char *dir, struct err *e)
{
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_NOREPLACE) == 0)
		return 0;
	int err = errno;
	if (err == EINVAL || err == ENOSYS) {
		struct stat sb;
		if (lstat(dir, &sb) == 0)
			err = EEXIST;
		else if (errno != ENOENT)
			err = errno;
		else if (rename(tmp, dir) == 0)
			return 0;
		else
			err = errno;
	}
	if (err == EEXIST || err == ENOTEMPTY)
		return err_set(e, -EEXIST, "%s: appeared while this snapshot was being "
			       "written (snapshots are never overwritten)", dir);
	return err_set(e, -err, "%s: rename from %s: %s", dir, tmp, strerror(err));
}

/* dir as a new snapshot's name: usable, not too long, not there yet. */
static int check_new_dir(const char *dir, char *parent, char *base, struct err *e)
{
	int r = split_path(dir, parent, base, e);
	if (r < 0)
		return r;
	if (strlen(base) > NAME_MAX)
		return err_set(e, -ENAMETOOLONG, "%s: a name of %zu bytes, more than %d", dir,
			       strlen(base), NAME_MAX);
	struct stat sb;
	if (lstat(dir, &sb) == 0)
		return err_set(e, -EEXIST, "%s: already exists (snapshots are never overwritten)", dir);
	if (errno != ENOENT)
		return err_set(e, -errno, "%s: %s", dir, strerror(errno));
	return 0;
}

int snapshot_write(const char *dir, const struct snapshot_parts *p, struct snapshot_stats *stp,
		   struct err *e)
{
	struct snapshot_stats st = { 0 };
	char parent[PATH_MAX], base[PATH_MAX], tmp[PATH_MAX + 64];
	int r = check_new_dir(dir, parent, base, e);
	if (r < 0)
		return r;

	/* the manifest as it will be written: digests of written files filled in */
	struct manifest *m = malloc(sizeof(*m));
	if (!m)
		return err_set(e, -ENOMEM, "%s: out of memory", dir);
	*m = p->m;
	for (size_t i = 0; i < m->nregions; i++) {
		if (!p->mem[i] && !p->clone_dir) {
			r = err_set(e, -EINVAL, "%s: region \"%s\" has neither bytes nor a file to clone",
				    dir, m->regions[i].name);
			goto free_m;
		}
		if (p->mem[i] && (r = manifest_digest_buf(p->mem[i], p->len[i], m->regions[i].digest)) < 0) {
			err_set(e, r, "%s: hashing region \"%s\"", dir, m->regions[i].name);
			goto free_m;
		}
	}
	char *mtext = NULL, *ctext = NULL;
	size_t mlen, clen;
	if ((r = manifest_format(m, &mtext, &mlen, e)) < 0 ||
	    (r = cpustate_format(&p->cpu, &ctext, &clen, e)) < 0) {
		err_prefix(e, "%s", dir);
		goto free_text;
	}

	/* ".NAME.partial-XXXXXX", NAME cut so that it fits in a name; errors
	 * name the snapshot's own path, as the directory is gone after one */
	char dotname[NAME_MAX + 1];
	snprintf(dotname, sizeof(dotname), ".%.*s.partial-XXXXXX", NAME_MAX - 16, base);
	path_join(tmp, sizeof(tmp), parent, dotname);
	if (!mkdtemp(tmp)) {
		r = err_set(e, -errno, "%s: creating a temporary directory in %s: %s", dir, parent,
			    strerror(errno));
		goto free_text;
	}
	int dirfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		r = err_set(e, -errno, "%s: opening %s: %s", dir, tmp, strerror(errno));
		goto remove_tmp;
	}
	for (size_t i = 0; r == 0 && i < m->nregions; i++) {
		const struct manifest_region *reg = &m->regions[i];
		int cfd = !p->mem[i] && p->clone_from ? snapshot_region_fd(p->clone_from, reg->file)
						       : -1;
		if (!p->mem[i] && p->clone_from && cfd < 0)
			r = err_set(e, -EINVAL, "%s: region file %s of %s is not open to clone", dir,
				    reg->file, p->clone_dir);
		else
			r = write_file(dirfd, dir, reg->file, p->mem[i], p->len[i], 1,
				       p->mem[i] ? NULL : p->clone_dir, cfd, reg->size, &st, e);
	}
	if (r == 0)
		r = write_file(dirfd, dir, SNAPSHOT_CPU, ctext, clen, 0, NULL, -1, 0, &st, e);
	if (r == 0)
		r = write_file(dirfd, dir, SNAPSHOT_MANIFEST, mtext, mlen, 0, NULL, -1, 0, &st, e);
	if (r == 0 && fchmod(dirfd, 0755) != 0)
		r = err_set(e, -errno, "%s: chmod: %s", dir, strerror(errno));
	if (r == 0 && fsync(dirfd) != 0)
		r = err_set(e, -errno, "%s: fsync: %s", dir, strerror(errno));
	close(dirfd);
	if (r < 0)
		goto remove_tmp;

	r = put_in_place(tmp, dir, e);
	if (r < 0)
		goto remove_tmp;
	r = fsync_path(parent, e);
	if (r < 0)
		goto free_text;	/* the snapshot is in place; report the sync failure */

	/*
	 * Seal only inside a FUSE mount: elsewhere the attribute would be a
	 * plain user xattr that means nothing there, and "cp -a" of the copy
	 * back into a snapfs mount would seal the directory before its files
	 * are copied in.
	 */
	struct statfs sfs;
	if (statfs(dir, &sfs) == 0 && sfs.f_type != FUSE_SUPER_MAGIC)
		st.seal_errno = ENOTSUP;
	else if (setxattr(dir, SNAPSHOT_SEAL_XATTR, "1", 1, 0) == 0)
		st.sealed = 1;
	else
		st.seal_errno = errno;
	goto free_text;

remove_tmp:
	remove_tree(tmp, m);
free_text:
	free(mtext);
	free(ctext);
free_m:
	free(m);
	if (stp)
		*stp = st;
	return r;
}

/* ---- from a sandbox -------------------------------------------------------- */

static int guest_identity(const char *elf, struct manifest *m, struct err *e)
{
	int fd = file_open_read(AT_FDCWD, elf, 0);
	if (fd < 0)
		return err_set(e, -errno, "%s: open: %s", elf, strerror(errno));
	struct stat st;
	int r;
	if (fstat(fd, &st) < 0)
		r = err_set(e, -errno, "%s: stat: %s", elf, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		r = err_set(e, -EINVAL, "%s: not a regular file", elf);
	else
		r = manifest_digest_fd(fd, elf, m->guest_digest, NULL, e);
	close(fd);
	if (r < 0)
		return r;
	const char *slash = strrchr(elf, '/');
	const char *base = slash ? slash + 1 : elf;
	if (strlen(base) >= sizeof(m->guest))
		return err_set(e, -ENAMETOOLONG, "%s: file name too long for a manifest", elf);
	strcpy(m->guest, base);
	return 0;
}

/*
 * The parent line: the parent's directory name when both snapshots sit in
 * one directory (so a tree of snapshots copied elsewhere keeps its
 * lineage), else its absolute path.
 */
static int parent_name(const char *parent_dir, const char *dir, char *out, size_t cap,
		       struct err *e)
{
	char pp[PATH_MAX], pb[PATH_MAX], dp[PATH_MAX], db[PATH_MAX];
	char rp[PATH_MAX], rd[PATH_MAX];
	int r = split_path(parent_dir, pp, pb, e);
	if (r == 0)
		r = split_path(dir, dp, db, e);
	if (r < 0)
		return r;
	if (!realpath(pp, rp) || !realpath(dp, rd))
		return err_set(e, -errno, "%s: resolving the path: %s", parent_dir, strerror(errno));
	int n = strcmp(rp, rd) == 0 ? snprintf(out, cap, "%s", pb)
				    : snprintf(out, cap, "%s%s%s", rp, strcmp(rp, "/") ? "/" : "", pb);
	if (n < 0 || (size_t)n >= cap)
		return err_set(e, -ENAMETOOLONG, "%s: path too long for a manifest", parent_dir);
	for (const char *c = out; *c; c++)
		if (*c == ' ' || (unsigned char)*c < 0x20 || *c == 0x7f)
			return err_set(e, -EINVAL, "%s: a parent path with whitespace or control "
				       "characters cannot be recorded in a manifest; rename the parent",
				       parent_dir);
	if (!strcmp(out, "-"))
		return err_set(e, -EINVAL, "%s: a parent named \"-\" cannot be recorded in a "
			       "manifest; rename the parent (\"-\" there means no parent)",
			       parent_dir);
	return 0;
}

int snapshot_check_target(const char *dir, const struct snapshot *parent, struct err *e)
{
	char pdir[PATH_MAX], base[PATH_MAX], name[MANIFEST_PARENT_MAX];
	int r = check_new_dir(dir, pdir, base, e);
	if (r == 0 && parent)
		r = parent_name(snapshot_dir(parent), dir, name, sizeof(name), e);
	return r;
}

static void perm_kind(const struct guest_region *g, struct manifest_region *r)
{
	r->prot = g->prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
	r->prot |= PROT_READ;
	r->kind = strcmp(g->name, "heap") == 0 ? MANIFEST_KIND_HEAP : MANIFEST_KIND_IMAGE;
}

int snapshot_take(struct sandbox *sb, const struct snapshot_origin *o, const char *dir,
		  struct snapshot_stats *st, struct err *e)
{
	struct sandbox_state state;
	int r = sandbox_save(sb, &state, e);
	if (r < 0)
		return r;
	struct snapshot_parts *p = calloc(1, sizeof(*p));
	if (!p) {
		r = err_set(e, -ENOMEM, "%s: out of memory", dir);
		goto release;
	}
	struct manifest *m = &p->m;
	const struct manifest *pm = o->parent ? snapshot_manifest(o->parent) : NULL;
	const struct guest *pg = o->parent ? snapshot_guest(o->parent) : NULL;
	m->version = MANIFEST_VERSION;
	m->created = time(NULL);
	m->entry = state.entry;
	if (pm) {
		memcpy(m->guest_digest, pm->guest_digest, sizeof(m->guest_digest));
		memcpy(m->guest, pm->guest, sizeof(m->guest));
		r = parent_name(snapshot_dir(o->parent), dir, m->parent, sizeof(m->parent), e);
		p->clone_dir = snapshot_dir(o->parent);
		p->clone_from = o->parent;
	} else if (o->elf_path) {
		r = guest_identity(o->elf_path, m, e);
	} else {
		r = err_set(e, -EINVAL, "%s: no guest ELF or parent snapshot given", dir);
	}
	if (r < 0)
		goto free_parts;
	if (state.nregions + 1 > MANIFEST_REGIONS_MAX) {
		r = err_set(e, -E2BIG, "%s: %zu regions, more than a manifest holds", dir, state.nregions);
		goto free_parts;
	}

	for (size_t i = 0; i < state.nregions; i++) {
		const struct guest_region *g = &state.regions[i];
		struct manifest_region *mr = &m->regions[i];
		snprintf(mr->name, sizeof(mr->name), "%s", g->name);
		mr->gpa = g->gpa;
		mr->size = g->size;
		perm_kind(g, mr);
		snprintf(mr->file, sizeof(mr->file), "%s.mem", g->name);
		if (!pm) {
			p->mem[i] = g->mem;
			p->len[i] = g->size;
			continue;
		}
		/* derived: the region must be the parent's mapping, unchanged */
		const struct manifest_region *pr = manifest_region_find(pm, g->name);
		long gi = -1;
		for (size_t j = 0; j < pg->nregions; j++)
			if (strcmp(pg->regions[j].name, g->name) == 0)
				gi = (long)j;
		if (!pr || gi < 0 || pr->gpa != g->gpa || pr->size != g->size ||
		    pg->regions[gi].mem != g->mem) {
			r = err_set(e, -EINVAL, "%s: region \"%s\" of the sandbox is not the one of "
				    "snapshot %s (was the sandbox made from it?)", dir, g->name,
				    snapshot_dir(o->parent));
			goto free_parts;
		}
		snprintf(mr->file, sizeof(mr->file), "%s", pr->file);
		mr->prot = pr->prot;
		mr->kind = pr->kind;
		memcpy(mr->digest, pr->digest, sizeof(mr->digest));
	}
	size_t s = state.nregions;
	struct manifest_region *sr = &m->regions[s];
	snprintf(sr->name, sizeof(sr->name), "scratch");
	snprintf(sr->file, sizeof(sr->file), "%s", SNAPSHOT_SCRATCH_FILE);
	sr->gpa = SNAPVM_SCRATCH_GPA;
	sr->size = state.scratch_size;
	sr->prot = PROT_READ | PROT_WRITE;
	sr->kind = MANIFEST_KIND_SCRATCH;
	p->mem[s] = state.scratch;
	p->len[s] = state.scratch_len;
	m->nregions = s + 1;

	p->cpu = state.cpu;
	r = snapshot_write(dir, p, st, e);
free_parts:
	free(p);
release:
	sandbox_state_release(&state);
	return r;
}
