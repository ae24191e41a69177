/*
 * fsd/store_pack_gc.c: the pack backend's part of gc (see store_pack.c
 * for the design): gc_mark fixes which packs gc may touch, gc_plan and
 * gc_scope say which of them it rewrites, compact copies their live pages
 * into new packs, release deletes packs without live pages, cuts dead
 * pages off the ends of the others and leaves the rest to reclaim, which
 * punches them out as holes once nothing can read them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "store_pack_i.h"

/* Can the pack folder's filesystem take bytes more, with room to spare
 * for the index?  (If it cannot say, try.) */
static bool room_for(const struct pack_be *pb, uint64_t bytes)
{
	struct statvfs v;
	if (fstatvfs(pb->dir_fd, &v) < 0)
		return true;
	return (uint64_t)v.f_bavail * v.f_frsize >= bytes + bytes / 16 + (4u << 20);
}

/* Is a pack of size bytes, live_bytes of them live, worth rewriting?
 * Only once at least a quarter of it is dead: rewriting up to
 * PACK_MAX_BYTES to free a few pages costs far more than it gives back.
 * (A pack shorter than its live pages is damaged: rewriting it fails,
 * saying so.) */
static bool worth_compacting(uint64_t size, uint64_t live_bytes)
{
	return size < live_bytes || size - live_bytes >= size / COMPACT_DEAD_PART;
}

/* A pack smaller than this is small.  The last pack each gc fills is
 * partly full, and takes later puts only if none came during the gc (a
 * new pack took them); so that such packs do not pile up, one fd each,
 * a gc that finds two or more small packs merges them. */
#define PACK_SMALL_BYTES (PACK_MAX_BYTES / 4)

/* The index of the first of live[0..n) (sorted by loc) at or after loc. */
static size_t live_first_at(const struct store_live_page *live, size_t n, uint64_t loc)
{
	size_t a = 0, b = n;
	while (a < b) {
		size_t mid = a + (b - a) / 2;
		if (live[mid].loc < loc)
			a = mid + 1;
		else
			b = mid;
	}
	return a;
}

/* Bytes of live[0..n) (sorted by loc) in pack id. */
static uint64_t live_bytes_in(const struct store_live_page *live, size_t n, uint32_t id)
{
	size_t first = live_first_at(live, n, (uint64_t)id << PACK_SHIFT);
	size_t end = live_first_at(live, n, (uint64_t)(id + 1) << PACK_SHIFT);
	return (uint64_t)(end - first) * STORE_PAGE_SIZE;
}

/* May gc move pages out of pack id, or delete or cut it?  Only if it was
 * there at gc_mark and took no pages since (puts go to the pack then
 * current and to newer ones).  gc_* are written by gc_mark and gc_plan
 * only, which run before compact and release, in the same thread. */
static bool gc_may_touch(const struct pack_be *pb, uint32_t id)
{
	return pb->gc_marked && id <= pb->gc_max && id != pb->gc_cur;
}

void pb_gc_mark(struct store_backend *be,
		uint64_t (*live_in)(void *arg, uint64_t lo, uint64_t hi), void *arg)
{
	struct pack_be *pb = pb_of(be);
	pthread_mutex_lock(&pb->lock);
	/* compact preads the packs: nothing of theirs may still be staged
	 * (a failed write is the next sync's to report). */
	pack_stage_flush(pb);
	pb->gc_marked = true;
	pb->gc_max = pb->n ? pb->packs[pb->n - 1].id : 0;
	pb->gc_cur = 0;
	pb->gc_last_fill = 0;
	pb->gc_merge = false;
	for (size_t i = 0; i < pb->n; i++)
		pb->packs[i].gc_scope = false;	/* gc_plan says */
	/* The pack taking pages is compacted like the others if it is worth
	 * it, and later puts start a new one; if not, it goes on taking
	 * them, out of this gc's reach. */
	if (pb->cur) {
		uint64_t id = pb->cur->id;
		uint64_t live = live_in(arg, id << PACK_SHIFT, (id + 1) << PACK_SHIFT);
		if (worth_compacting(pb->cur->size, live * STORE_PAGE_SIZE))
			pb->cur = NULL;
		else
			pb->gc_cur = pb->cur->id;
	}
	pthread_mutex_unlock(&pb->lock);
}

/* Does compact copy the live pages out of a pack of size bytes, live_bytes
 * of them live, that gc may touch (room on the disk aside)?  A pack at
 * least a quarter dead, or a small one when small packs are merged. */
static bool gc_rewrites(const struct pack_be *pb, uint64_t size, uint64_t live_bytes)
{
	return worth_compacting(size, live_bytes) || (pb->gc_merge && size < PACK_SMALL_BYTES);
}

void pb_gc_plan(struct store_backend *be, const struct store_live_page *live, size_t n)
{
	struct pack_be *pb = pb_of(be);
	pthread_mutex_lock(&pb->lock);
	size_t small = 0;	/* with live pages: release deletes the others */
	for (size_t i = 0; i < pb->n; i++) {
		const struct pack *p = &pb->packs[i];
		small += gc_may_touch(pb, p->id) && p->size < PACK_SMALL_BYTES &&
			 live_bytes_in(live, n, p->id);
	}
	pb->gc_merge = small >= 2;
	/* What release may free in: packs with data no listed page takes
	 * (dead pages, or pages put but not yet committed, which the keep
	 * list of release will name), and every pack compact may rewrite.  A pack whose
	 * every page was live at gc_mark gains no dead page before release
	 * but by a page dying meanwhile, which the next gc frees; leaving it
	 * out spares the store listing its pages again while every call
	 * waits.  Packs new since gc_mark are not the gc's. */
	for (size_t i = 0; i < pb->n; i++) {
		struct pack *p = &pb->packs[i];
		if (p->id > pb->gc_max)
			continue;
		uint64_t live_bytes = live_bytes_in(live, n, p->id);
		p->gc_scope = p->size - p->holes > live_bytes ||
			      (gc_may_touch(pb, p->id) && gc_rewrites(pb, p->size, live_bytes));
	}
	pthread_mutex_unlock(&pb->lock);
}

int pb_gc_scope(struct store_backend *be, struct store_loc_range **out, size_t *n)
{
	struct pack_be *pb = pb_of(be);
	pthread_mutex_lock(&pb->lock);
	size_t k = 0;
	for (size_t i = 0; i < pb->n; i++)
		k += pb->packs[i].gc_scope;
	struct store_loc_range *r = k ? malloc(k * sizeof(*r)) : NULL;
	*n = 0;
	if (k && !r) {
		pthread_mutex_unlock(&pb->lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < pb->n; i++)
		if (pb->packs[i].gc_scope) {
			uint64_t id = pb->packs[i].id;
			r[(*n)++] = (struct store_loc_range){ id << PACK_SHIFT, (id + 1) << PACK_SHIFT };
		}
	pthread_mutex_unlock(&pb->lock);
	*out = r;
	return 0;
}

/* Copy n pages starting at page src_page of src_fd to dst_fd at dst_off. */
static int copy_pages(int src_fd, uint64_t src_page, int dst_fd, uint64_t dst_off, unsigned n,
		      void *buf)
{
	size_t len = (size_t)n * STORE_PAGE_SIZE;
	ssize_t got = pread(src_fd, buf, len, (off_t)(src_page * STORE_PAGE_SIZE));
	if (got < 0)
		return -errno;
	if ((size_t)got != len)
		return -EIO;
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	return pack_write_all(dst_fd, &iov, 1, dst_off);
}

/* The packs a compact fills: made durable by it, not by a commit's sync
 * (whose caller could otherwise find them being synced by the other and
 * go on before the data is on disk). */
struct fill {
	struct {
		uint32_t id;
		int fd;		/* open until release, which only gc calls */
	} *packs;
	size_t n;
	uint64_t size;		/* of packs[n - 1] */
};

/* Start a new pack to fill (lock not held). */
static int fill_new(struct pack_be *pb, struct fill *f)
{
	void *packs = realloc(f->packs, (f->n + 1) * sizeof(*f->packs));
	if (!packs)
		return -ENOMEM;
	f->packs = packs;
	struct pack *p;
	pthread_mutex_lock(&pb->lock);
	int r = pack_new(pb, &p);
	if (!r) {
		p->gc_fill = true;
		f->packs[f->n].id = p->id;
		f->packs[f->n++].fd = p->fd;
		f->size = 0;
	}
	pthread_mutex_unlock(&pb->lock);
	return r;
}

/* Sync the filled packs (if ok) and hand them back to the table's rules. */
static int fill_done(struct pack_be *pb, struct fill *f, bool ok, struct err *e)
{
	int r = 0;
	for (size_t i = 0; ok && !r && i < f->n; i++)
		if (fdatasync(f->packs[i].fd) < 0)
			r = pack_sync_failed(pb, f->packs[i].id, e);
	if (ok && !r && f->n && fsync(pb->dir_fd) < 0)
		r = err_set(e, -errno, "%s: fsync: %s", pb->dir, strerror(errno));
	/* Not made durable, the packs are deleted at once: nothing refers to
	 * them, and on a full disk their space is what writes need next. */
	ok = ok && !r;
	pthread_mutex_lock(&pb->lock);
	for (size_t i = 0; i < f->n; i++) {
		struct pack *p = pack_find(pb, f->packs[i].id);
		p->gc_fill = false;
		if (ok) {
			p->synced = p->size;
			continue;
		}
		char path[PATH_MAX];
		pack_name(pb, p->id, path, sizeof(path));
		unlink(path);
		close(p->fd);
		pack_drop(pb, (size_t)(p - pb->packs));
	}
	pthread_mutex_unlock(&pb->lock);
	free(f->packs);
	return r;
}

int pb_compact(struct store_backend *be, struct store_live_page *live, size_t n,
	       store_progress_fn progress, void *arg, struct err *e)
{
	struct pack_be *pb = pb_of(be);
	enum { BATCH = 64 };
	if (!pb->gc_marked)
		return err_set(e, -EINVAL, "compacting packs: gc_mark was not called");
	void *buf = malloc(BATCH * STORE_PAGE_SIZE);
	if (!buf)
		return err_set(e, -ENOMEM, "compacting packs: out of memory");
	struct fill f = { 0 };
	int r = 0;
	size_t i = 0;
	while (i < n && !r) {
		/* The live pages of one pack: live[i..j). */
		uint32_t id = (uint32_t)(live[i].loc >> PACK_SHIFT);
		size_t j = i;
		while (j < n && (uint32_t)(live[j].loc >> PACK_SHIFT) == id)
			j++;
		if (!gc_may_touch(pb, id)) {
			i = j;
			continue;
		}
		/* Its fd stays open until release, which only gc calls. */
		int src_fd;
		uint64_t src_size = 0;
		pthread_mutex_lock(&pb->lock);
		r = pack_fd(pb, id, &src_fd);
		if (!r)
			src_size = pack_find(pb, id)->size;
		pthread_mutex_unlock(&pb->lock);
		if (r) {
			r = err_set(e, r, "pack %08x: referenced but %s", id,
				    r == -ENOENT ? "missing"
				    : r == -EIO  ? "not a regular file"
						 : strerror(-r));
			break;
		}
		/* Not rewritten (release punches its dead pages out in place):
		 * a pack mostly live, unless small and merged; and any pack
		 * whose live pages the disk has no room to copy. */
		uint64_t live_bytes = (uint64_t)(j - i) * STORE_PAGE_SIZE;
		if (!gc_rewrites(pb, src_size, live_bytes) || !room_for(pb, live_bytes)) {
			i = j;
			continue;
		}
		/* Runs of consecutive pages are copied in one go, into packs
		 * of at most PACK_MAX_BYTES like any other.  Nothing else
		 * writes to these packs or reads the copies before the store
		 * points at them, so no lock is held while copying. */
		for (size_t k = i; k < j && !r;) {
			if (!f.n || f.size + STORE_PAGE_SIZE > PACK_MAX_BYTES) {
				r = fill_new(pb, &f);
				if (r) {
					r = err_set(e, r, "compacting packs: new pack: %s", strerror(-r));
					break;
				}
			}
			uint64_t room = (PACK_MAX_BYTES - f.size) / STORE_PAGE_SIZE;
			uint64_t first = live[k].loc & PACK_PAGE_MASK;
			unsigned run = 1;
			while (k + run < j && run < BATCH && run < room &&
			       (live[k + run].loc & PACK_PAGE_MASK) == first + run)
				run++;
			uint64_t off = f.size;
			r = copy_pages(src_fd, first, f.packs[f.n - 1].fd, off, run, buf);
			if (r) {
				r = err_set(e, r, "compacting pack %08x: %s", id, strerror(-r));
				break;
			}
			f.size += (uint64_t)run * STORE_PAGE_SIZE;
			pthread_mutex_lock(&pb->lock);
			pack_find(pb, f.packs[f.n - 1].id)->size = f.size;
			pthread_mutex_unlock(&pb->lock);
			for (unsigned m = 0; m < run; m++)
				live[k + m].loc = ((uint64_t)f.packs[f.n - 1].id << PACK_SHIFT) |
						  (off / STORE_PAGE_SIZE + m);
			k += run;
		}
		if (progress)
			progress(arg, "compacting packs", j, n);
		i = j;
	}
	free(buf);
	uint32_t last = f.n ? f.packs[f.n - 1].id : 0;
	int fr = fill_done(pb, &f, !r, e);
	pb->gc_last_fill = r || fr ? 0 : last;
	return r ? r : fr;
}

/* Leave the fd of a deleted pack for reclaim to close (lock held): the
 * close frees the pack's blocks and drops its cached pages, about 0.2 s
 * per GiB, which release's caller should not spend holding calls off. */
static void doom(struct pack_be *pb, int fd)
{
	int *d = realloc(pb->doomed, (pb->ndoomed + 1) * sizeof(*d));
	if (!d) {
		close(fd);
		return;
	}
	pb->doomed = d;
	pb->doomed[pb->ndoomed++] = fd;
}

/* Punch out what release queued, beside other calls (lock not held): the
 * packs stay open until a later release or close, and nothing refers to
 * the pages.  Then count each pack's holes again. */
static void punch_queued(struct pack_be *pb)
{
	pthread_mutex_lock(&pb->lock);
	struct punch *q = pb->punches;
	size_t n = pb->npunches;
	pb->punches = NULL;
	pb->npunches = pb->cappunches = 0;
	pthread_mutex_unlock(&pb->lock);
	for (size_t i = 0; i < n; i++) {
		pthread_mutex_lock(&pb->lock);
		struct pack *p = pb->no_punch ? NULL : pack_find(pb, q[i].id);
		int fd = p ? p->fd : -1;
		pthread_mutex_unlock(&pb->lock);
		if (fd < 0)
			continue;
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)q[i].off,
			      (off_t)q[i].len) < 0 && errno == EOPNOTSUPP) {
			pthread_mutex_lock(&pb->lock);
			pb->no_punch = true;	/* dead pages stay, as they must */
			pthread_mutex_unlock(&pb->lock);
		}
		if (i + 1 < n && q[i + 1].id == q[i].id)
			continue;
		pthread_mutex_lock(&pb->lock);
		p = pack_find(pb, q[i].id);
		uint64_t size = p ? p->size : 0;
		pthread_mutex_unlock(&pb->lock);
		uint64_t holes = pack_holes_below(fd, size);
		pthread_mutex_lock(&pb->lock);
		if ((p = pack_find(pb, q[i].id)) && p->size >= size)
			p->holes = holes;
		pthread_mutex_unlock(&pb->lock);
	}
	free(q);
}

void pb_reclaim(struct store_backend *be)
{
	struct pack_be *pb = pb_of(be);
	pthread_mutex_lock(&pb->lock);
	int *d = pb->doomed;
	size_t n = pb->ndoomed;
	pb->doomed = NULL;
	pb->ndoomed = 0;
	pthread_mutex_unlock(&pb->lock);
	for (size_t i = 0; i < n; i++)
		close(d[i]);
	free(d);
	punch_queued(pb);
}

/* Give back the space of pack p's dead pages, its live ones live[0..n)
 * (lock held): if cut_tail, dead pages past the last live one are cut
 * off; runs of them before it are left for reclaim to punch out as holes
 * (punching can take 0.1 ms a run on ext4, too long to hold calls off;
 * the pages are in no index and no prefix set by now, so nothing can
 * come to refer to them meanwhile), the live ones keeping their
 * locations.  Nothing to do for a pack whose data is all live. */
static int cut_dead(struct pack_be *pb, struct pack *p, const struct store_live_page *live,
		    size_t n, bool cut_tail, struct err *e)
{
	uint64_t end = n ? ((live[n - 1].loc & PACK_PAGE_MASK) + 1) * STORE_PAGE_SIZE : 0;
	if (cut_tail && p->size > end) {
		if (ftruncate(p->fd, (off_t)end) < 0)
			return err_set(e, -errno, "pack %08x: truncate: %s", p->id, strerror(errno));
		p->size = end;
		p->holes = pack_holes_below(p->fd, end);
	}
	if (pb->no_punch || p->size - p->holes <= (uint64_t)n * STORE_PAGE_SIZE)
		return 0;
	uint64_t next = 0;	/* the first page not known to be live */
	for (size_t i = 0; i <= n; i++) {
		uint64_t pg = i < n ? live[i].loc & PACK_PAGE_MASK : p->size / STORE_PAGE_SIZE;
		if (pg > next) {
			if (pb->npunches == pb->cappunches) {
				size_t cap = pb->cappunches ? 2 * pb->cappunches : 64;
				struct punch *q = realloc(pb->punches, cap * sizeof(*q));
				if (!q)
					return 0;	/* the rest stays: no harm */
				pb->punches = q;
				pb->cappunches = cap;
			}
			pb->punches[pb->npunches++] = (struct punch){
				.id = p->id,
				.off = next * STORE_PAGE_SIZE,
				.len = (pg - next) * STORE_PAGE_SIZE,
			};
		}
		if (pg + 1 > next)
			next = pg + 1;
	}
	return 0;
}

int pb_release(struct store_backend *be, const struct store_live_page *live, size_t n,
	       struct err *e)
{
	struct pack_be *pb = pb_of(be);
	if (!pb->gc_marked)
		return err_set(e, -EINVAL, "releasing pages: gc_mark was not called");
	pthread_mutex_lock(&pb->lock);
	int r = pack_stage_flush(pb);
	if (r)
		r = err_set(e, r, "%s: writing pages: %s", pb->dir, strerror(-r));
	size_t k = 0;	/* live[k] is the first live page at or after pack i */
	for (size_t i = 0; i < pb->n && !r;) {
		struct pack *p = &pb->packs[i];
		while (k < n && (uint32_t)(live[k].loc >> PACK_SHIFT) < p->id)
			k++;
		/* The pack taking pages at gc_mark may still take them: its
		 * dead pages are only punched out. */
		bool mine = gc_may_touch(pb, p->id) && p != pb->cur;
		if (!p->gc_scope || (!mine && !(p == pb->cur && p->id <= pb->gc_max))) {
			i++;
			continue;
		}
		size_t first = k;
		while (k < n && (uint32_t)(live[k].loc >> PACK_SHIFT) == p->id)
			k++;
		if (k > first || !mine) {
			r = cut_dead(pb, p, live + first, k - first, mine, e);
			i++;
			continue;
		}
		char path[PATH_MAX];
		pack_name(pb, p->id, path, sizeof(path));
		if (unlink(path) < 0 && errno != ENOENT) {
			r = err_set(e, -errno, "%s: unlink: %s", path, strerror(errno));
			break;
		}
		doom(pb, p->fd);
		pack_drop(pb, i);
	}
	/* If nothing was put since gc_mark retired the current pack, the
	 * last pack compact filled takes the next pages. */
	if (!r && !pb->cur && pb->gc_last_fill) {
		struct pack *p = pack_find(pb, pb->gc_last_fill);
		if (p && p->size < PACK_MAX_BYTES)
			pb->cur = p;
	}
	pb->gc_marked = false;
	pthread_mutex_unlock(&pb->lock);
	if (!r)
		r = pb_sync(be, e);
	return r;
}
