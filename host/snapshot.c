/*
 * host/snapshot.c: opening snapshot directories as guests, resetting
 * sandboxes to them, and verifying them (see snapshot.h; writing is in
 * snapshot_write.c).
 *
 * Everything in a snapshot directory is untrusted input: the manifest and
 * cpu files go through the strict parsers, each region file's size is
 * checked against the manifest before it is mapped (a short file would
 * fault when the guest touches its end), and the scratch image — the one
 * file whose bytes the host reads (page tables, boot block) — is checked
 * against its digest before use.  Region files are mapped, not read: their
 * digests are checked by snapshot_verify() on request, and if one changes
 * or shrinks under a running sandbox, KVM reports the fault and the
 * sandbox ends with an error (the host never touches those pages itself).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "callbuf.h"
#include "file.h"
#include "pagetable.h"
#include "snapmap.h"
#include "snapshot.h"

#define PAGE SNAPVM_PAGE_SIZE

struct snapshot {
	char *dir;
	struct manifest m;
	struct cpustate cpu;
	struct guest *g;
	struct snapmap *maps[GUEST_REGIONS_MAX];
	size_t nmaps;
	/* The mapped region files, open, by manifest region (-1: none), so
	 * that a derived snapshot clones the very files mapped here. */
	int fds[MANIFEST_REGIONS_MAX];
};

struct guest *snapshot_guest(const struct snapshot *s) { return s->g; }
const struct manifest *snapshot_manifest(const struct snapshot *s) { return &s->m; }
const struct cpustate *snapshot_cpu(const struct snapshot *s) { return &s->cpu; }
const char *snapshot_dir(const struct snapshot *s) { return s->dir; }

void snapshot_close(struct snapshot *s)
{
	if (!s)
		return;
	guest_close(s->g);
	for (size_t i = 0; i < s->nmaps; i++)
		snapmap_put(s->maps[i]);
	for (size_t i = 0; i < MANIFEST_REGIONS_MAX; i++)
		if (s->fds[i] >= 0)
			close(s->fds[i]);
	free(s->dir);
	free(s);
}

/* Read the scratch image: at most the region's size, a page multiple, digest right. */
static int read_scratch(int dirfd, const char *dir, const struct manifest_region *r,
			void **img, size_t *len, struct err *e)
{
	char name[PATH_MAX];
	snprintf(name, sizeof(name), "%s/%s", dir, r->file);
	int fd = file_open_read(dirfd, r->file, O_NOFOLLOW);
	if (fd < 0)
		return err_set(e, -errno, "%s: open: %s", name, strerror(errno));
	int ret = 0;
	uint8_t *buf = NULL;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		ret = err_set(e, -errno, "%s: stat: %s", name, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = err_set(e, -EINVAL, "%s: not a regular file", name);
		goto out;
	}
	uint64_t size = (uint64_t)st.st_size;
	if (size < PAGE || size % PAGE || size > r->size) {
		ret = err_set(e, -EINVAL, "%s: %llu bytes; a scratch image is whole pages, at least "
			      "one and at most the scratch region's %llu", name,
			      (unsigned long long)size, (unsigned long long)r->size);
		goto out;
	}
	buf = malloc(size);
	if (!buf) {
		ret = err_set(e, -ENOMEM, "%s: out of memory for %llu bytes", name,
			      (unsigned long long)size);
		goto out;
	}
	for (uint64_t off = 0; off < size;) {
		ssize_t n = pread(fd, buf + off, size - off, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = err_set(e, n < 0 ? -errno : -EIO, "%s: read: %s", name,
				      n < 0 ? strerror(errno) : "file shrank while reading");
			goto out;
		}
		off += (uint64_t)n;
	}
	uint8_t digest[MANIFEST_DIGEST_LEN];
	if ((ret = manifest_digest_buf(buf, size, digest)) < 0) {
		err_set(e, ret, "%s: hashing failed", name);
		goto out;
	}
	if (memcmp(digest, r->digest, sizeof(digest)) != 0) {
		ret = err_set(e, -EINVAL, "%s: digest mismatch (the file is not the one the manifest "
			      "describes)", name);
		goto out;
	}
	*img = buf;
	*len = size;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return ret;
}

/* Map manifest region i's file (through the process-wide cache), and
 * keep it open. */
static int map_region(struct snapshot *s, int dirfd, size_t i, const void **mem, struct err *e)
{
	const struct manifest_region *r = &s->m.regions[i];
	char name[PATH_MAX];
	snprintf(name, sizeof(name), "%s/%s", s->dir, r->file);
	int fd = file_open_read(dirfd, r->file, O_NOFOLLOW);
	if (fd < 0)
		return err_set(e, -errno, "%s: open: %s", name, strerror(errno));
	int ret = snapmap_get(fd, name, r->size, mem, &s->maps[s->nmaps], e);
	if (ret == 0) {
		s->nmaps++;
		s->fds[i] = fd;
	} else {
		close(fd);
	}
	return ret;
}

int snapshot_region_fd(const struct snapshot *s, const char *file)
{
	for (size_t i = 0; i < s->m.nregions; i++)
		if (s->fds[i] >= 0 && !strcmp(s->m.regions[i].file, file))
			return s->fds[i];
	return -1;
}

int snapshot_open(const char *dir, struct snapshot **out, struct err *e)
{
	*out = NULL;
	char path[PATH_MAX];
	void *scratch = NULL;
	size_t scratch_len = 0;
	int dirfd = -1, r;
	struct snapshot *s = calloc(1, sizeof(*s));
	if (!s)
		return err_set(e, -ENOMEM, "%s: out of memory", dir);
	for (size_t i = 0; i < MANIFEST_REGIONS_MAX; i++)
		s->fds[i] = -1;
	s->dir = strdup(dir);
	if (!s->dir) {
		r = err_set(e, -ENOMEM, "%s: out of memory", dir);
		goto fail;
	}
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		r = err_set(e, -errno, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, SNAPSHOT_MANIFEST);
	if ((r = manifest_load(path, &s->m, e)) < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/%s", dir, SNAPSHOT_CPU);
	if ((r = cpustate_load(path, &s->cpu, e)) < 0)
		goto fail;

	struct guest_region regions[GUEST_REGIONS_MAX];
	size_t n = 0;
	const struct manifest_region *scratch_r = NULL;
	for (size_t i = 0; i < s->m.nregions; i++) {
		const struct manifest_region *mr = &s->m.regions[i];
		if (mr->kind == MANIFEST_KIND_SCRATCH) {
			scratch_r = mr;
			continue;
		}
		if (n == GUEST_REGIONS_MAX) {
			r = err_set(e, -EINVAL, "%s/manifest: more than %d memory regions", dir,
				    GUEST_REGIONS_MAX);
			goto fail;
		}
		if (strlen(mr->name) >= GUEST_REGION_NAME_MAX) {
			r = err_set(e, -EINVAL, "%s/manifest: region name \"%s\" is longer than %d bytes",
				    dir, mr->name, GUEST_REGION_NAME_MAX - 1);
			goto fail;
		}
		struct guest_region *g = &regions[n++];
		memset(g, 0, sizeof(*g));
		strcpy(g->name, mr->name);
		g->gpa = mr->gpa;
		g->size = mr->size;
		g->prot = mr->prot;
		g->shared = 1;
		if ((r = map_region(s, dirfd, i, &g->mem, e)) < 0)
			goto fail;
	}
	/* the parser guarantees exactly one scratch region */
	if (scratch_r->gpa != SNAPVM_SCRATCH_GPA || scratch_r->size > SNAPVM_SCRATCH_MAX) {
		r = err_set(e, -EINVAL, "%s/manifest: scratch region at 0x%llx+0x%llx, this host "
			    "needs it at 0x%llx and at most 0x%llx bytes", dir,
			    (unsigned long long)scratch_r->gpa, (unsigned long long)scratch_r->size,
			    SNAPVM_SCRATCH_GPA, SNAPVM_SCRATCH_MAX);
		goto fail;
	}
	if ((r = read_scratch(dirfd, dir, scratch_r, &scratch, &scratch_len, e)) < 0)
		goto fail;

	struct guest_spec spec = {
		.name = dir, .entry = s->m.entry, .regions = regions, .nregions = n,
		.scratch_image = scratch, .scratch_image_len = scratch_len,
		.scratch_size = scratch_r->size, .cpu = &s->cpu,
	};
	if ((r = guest_new(&spec, &s->g, e)) < 0)
		goto fail;
	free(scratch);
	close(dirfd);
	*out = s;
	return 0;
fail:
	free(scratch);
	if (dirfd >= 0)
		close(dirfd);
	snapshot_close(s);
	return r;
}

/*
 * Read len bytes at guest-physical gpa, inside one page, as the snapshot
 * holds them: scratch from the image (zero past its end), region pages by
 * pread from the files opened and mapped (not through the mappings, which
 * would fault if a file shrank since it was opened).
 */
static int read_phys(const struct snapshot *s, uint64_t gpa, void *buf, size_t len,
		     struct err *e)
{
	const struct guest *g = s->g;
	if (gpa >= SNAPVM_SCRATCH_GPA && gpa - SNAPVM_SCRATCH_GPA < g->scratch_size) {
		uint64_t off = gpa - SNAPVM_SCRATCH_GPA;
		if (off + len <= g->scratch_image_len)
			memcpy(buf, (const uint8_t *)g->scratch_image + off, len);
		else
			memset(buf, 0, len);	/* the image is whole pages: all or nothing */
		return 0;
	}
	for (size_t i = 0; i < s->m.nregions; i++) {
		const struct manifest_region *r = &s->m.regions[i];
		if (r->kind == MANIFEST_KIND_SCRATCH || gpa < r->gpa || gpa - r->gpa >= r->size)
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", s->dir, r->file);
		ssize_t k = pread(s->fds[i], buf, len, (off_t)(gpa - r->gpa));
		int err = errno;
		if (k < 0)
			return err_set(e, -err, "%s: read: %s", path, strerror(err));
		if ((size_t)k != len)
			return err_set(e, -EIO, "%s: shorter than the manifest says", path);
		return 0;
	}
	return err_set(e, -EINVAL, "guest-physical 0x%llx is in no region", (unsigned long long)gpa);
}

int snapshot_exports(const struct snapshot *s, char (**names)[SNAPVM_NAME_MAX], size_t *n,
		     struct err *e)
{
	const struct guest *g = s->g;
	const struct snapvm_boot *b = g->scratch_image;
	*names = NULL;
	*n = 0;
	uint64_t va = b->exports_gva, count = b->exports_count;
	if (va == 0 && count == 0)
		return err_set(e, -ENOENT, "%s: the snapshot does not record its guest's export table "
			       "(its guest runtime predates that)", s->dir);
	if (count > SNAPSHOT_EXPORTS_MAX || va % 8)
		return err_set(e, -EINVAL, "%s: scratch image: export table at 0x%llx with %llu "
			       "entries is not valid", s->dir, (unsigned long long)va,
			       (unsigned long long)count);
	struct pt pt;
	int r = pt_attach(&pt, g->scratch_image, SNAPVM_SCRATCH_GPA, g->scratch_image_len,
			  b->pt_root, e);
	if (r < 0) {
		err_prefix(e, "%s: scratch image", s->dir);
		return r;
	}
	char (*out)[SNAPVM_NAME_MAX] = calloc(count ? count : 1, SNAPVM_NAME_MAX);
	if (!out)
		return err_set(e, -ENOMEM, "%s: out of memory", s->dir);
	for (uint64_t i = 0; i < count; i++) {
		struct snapvm_export x;
		uint8_t *p = (uint8_t *)&x;
		uint64_t at = va + i * sizeof(x);
		for (size_t done = 0; done < sizeof(x);) {
			uint64_t a = at + done, gpa, flags;
			size_t k = sizeof(x) - done;
			if (k > SNAPVM_PAGE_SIZE - a % SNAPVM_PAGE_SIZE)
				k = SNAPVM_PAGE_SIZE - a % SNAPVM_PAGE_SIZE;
			if ((r = pt_translate(&pt, a, &gpa, &flags, e)) < 0 ||
			    (r = read_phys(s, gpa, p + done, k, e)) < 0) {
				free(out);
				if (r == -ENOENT) {	/* not mapped: the record is wrong */
					r = -EINVAL;
					if (e)
						e->code = r;
				}
				err_prefix(e, "%s: export table entry %llu at 0x%llx", s->dir,
					   (unsigned long long)i, (unsigned long long)a);
				return r;
			}
			done += k;
		}
		if (!callbuf_name_ok(x.name)) {
			free(out);
			return err_set(e, -EINVAL, "%s: export table entry %llu has no valid name",
				       s->dir, (unsigned long long)i);
		}
		memcpy(out[i], x.name, SNAPVM_NAME_MAX);
	}
	*names = out;
	*n = count;
	return 0;
}

int snapshot_reset(const struct snapshot *s, const struct sandbox_options *opt,
		   struct sandbox **sb, struct err *e)
{
	if (*sb && sandbox_guest(*sb) == s->g) {
		int r = sandbox_reset(*sb, e);
		if (r == 0)
			return 0;
	}
	/* not made from s, or the reset failed: a new sandbox on the same mappings */
	sandbox_free(*sb);
	*sb = NULL;
	return sandbox_new(s->g, opt, sb, e);
}

int snapshot_verify(const char *dir, snapshot_report_fn *report, void *ctx, struct err *e)
{
	char path[PATH_MAX];
	struct err fe = { 0 };
	int first = 0, failed = 0, checked = 0, r;
	struct manifest *m = malloc(sizeof(*m));
	struct cpustate *cpu = malloc(sizeof(*cpu));
	if (!m || !cpu) {
		r = err_set(e, -ENOMEM, "%s: out of memory", dir);
		goto out;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, SNAPSHOT_MANIFEST);
	r = manifest_load(path, m, &fe);
	if (report)
		report(ctx, SNAPSHOT_MANIFEST, r, r < 0 ? err_str(&fe, r) : "parses");
	if (r < 0) {
		err_set(e, r, "%s", err_str(&fe, r));
		goto out;
	}
	checked++;	/* the manifest, reported above */
	snprintf(path, sizeof(path), "%s/%s", dir, SNAPSHOT_CPU);
	r = cpustate_load(path, cpu, &fe);
	checked++;
	if (report)
		report(ctx, SNAPSHOT_CPU, r, r < 0 ? err_str(&fe, r) : "parses");
	if (r < 0) {
		first = r;
		failed++;
	}
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		r = err_set(e, -errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < m->nregions; i++) {
		memset(&fe, 0, sizeof(fe));
		r = manifest_verify_region(dirfd, dir, &m->regions[i], &fe);
		checked++;
		if (report)
			report(ctx, m->regions[i].file, r, r < 0 ? err_str(&fe, r) : "size and digest match");
		if (r < 0 && !first)
			first = r;
		failed += r < 0;
	}
	close(dirfd);
	r = first;
	if (failed)
		err_set(e, r, "%s: %d of %d files failed verification", dir, failed, checked);
out:
	free(m);
	free(cpu);
	return r;
}
