/*
 * fsd/store_data.c: file contents beyond writing.  Reads and splice maps
 * served from the cached page maps, truncate, punch, clone and
 * SEEK_DATA/SEEK_HOLE, open-file counts and the figures behind the
 * user.snapfs.* xattrs, and deleting a file with its pages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store_i.h"

/* ---- reading ----------------------------------------------------------------- */

/* The page of ino at byte off is damaged (what: how, and what it means):
 * the read fails with EIO, and the log says where, once per open of the
 * store, since a damaged pack fails every read of its pages. */
static int read_damaged(struct store *st, uint64_t ino, uint64_t off, const char *what)
{
	if (!__atomic_exchange_n(&st->read_fail_logged, true, __ATOMIC_RELAXED) && st->log) {
		char msg[2400];
		snprintf(msg, sizeof(msg),
			 "store %.2048s: inode %llu: the page at byte %llu %s; run snapfs-admin fsck",
			 st->dir, (unsigned long long)ino, (unsigned long long)off, what);
		st->log(st->log_arg, msg);
	}
	return -EIO;
}

/* Page data of ino at byte off could not be read (r). */
static int read_failed(struct store *st, uint64_t ino, uint64_t off, int r)
{
	char what[160];
	snprintf(what, sizeof(what),
		 "cannot be read (%s): a pack file is damaged, cut short or gone",
		 r == -EIO ? "past the end of its pack" :
		 r == -ENOENT ? "its pack file is missing" : strerror(-r));
	return read_damaged(st, ino, off, what);
}

/* Under STORE_VERIFY: does page, read from loc, match hash?  0, or -EIO
 * (logged) if not. */
static int read_verify(struct store *st, struct store_hasher *h, uint64_t ino, uint64_t off,
		       const uint8_t *page, const uint8_t *hash, uint64_t loc)
{
	uint8_t got[STORE_HASH_SIZE];
	if (store_hash(h, page, STORE_PAGE_SIZE, got))
		return -EIO;
	if (!memcmp(got, hash, STORE_HASH_SIZE))
		return 0;
	char where[96] = "its pack", what[160];
	if (st->be->ops->where)
		st->be->ops->where(st->be, loc, where, sizeof(where));
	snprintf(what, sizeof(what), "does not match its hash (at %s): a pack file is damaged",
		 where);
	return read_damaged(st, ino, off, what);
}

/* Copy the slots of pages [pg, pg+n) out (mem_lock held). */
static int slots_copy(struct store *st, struct sinode *si, uint64_t pg, size_t n,
		      uint8_t (*hashes)[32], uint64_t *locs)
{
	int r = 0;
	for (size_t i = 0; i < n && !r; i++) {
		const uint8_t *h;
		r = slot_get(st, si, pg + i, &h, &locs[i]);
		if (hashes)
			memcpy(hashes[i], h, STORE_HASH_SIZE);
	}
	return r;
}

/* Read [off, off+len) of si, already clipped to its size, into buf. */
static int read_range(struct store *st, struct sinode *si, uint8_t *buf, size_t len, uint64_t off)
{
	if (!len)
		return 0;
	uint64_t pg0 = off >> STORE_PAGE_SHIFT;
	size_t np = (size_t)(((off + len - 1) >> STORE_PAGE_SHIFT) - pg0 + 1);
	uint64_t stack_locs[64];
	uint8_t stack_h[64][32];
	uint64_t *locs = np <= 64 ? stack_locs : malloc(np * sizeof(*locs));
	uint8_t(*hashes)[32] = np <= 64 ? stack_h : malloc(np * sizeof(*hashes));
	int r = 0;
	if (!locs || !hashes) {
		r = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&st->mem_lock);
	r = slots_copy(st, si, pg0, np, hashes, locs);
	pthread_mutex_unlock(&st->mem_lock);
	if (r)
		goto out;

	/* Pages are only ever appended, and gc frees them only under
	 * gc_lock (a page it moves keeps its old copy until then), so the
	 * locations stay good after mem_lock is dropped. */
	uint8_t page[STORE_PAGE_SIZE] __attribute__((aligned(64)));
	struct store_hasher *h = NULL;
	if (st->verify && !(h = store_hasher_get(st)))
		r = -ENOMEM;
	for (size_t i = 0; i < np && !r; i++) {
		uint64_t ps = (pg0 + i) << STORE_PAGE_SHIFT;
		uint64_t a = ps > off ? ps : off;
		uint64_t b = ps + STORE_PAGE_SIZE < off + len ? ps + STORE_PAGE_SIZE : off + len;
		uint8_t *dst = buf + (a - off);
		if (!locs[i]) {
			memset(dst, 0, (size_t)(b - a));
			continue;
		}
		uint8_t *to = b - a == STORE_PAGE_SIZE ? dst : page;
		r = st->be->ops->get(st->be, hashes[i], locs[i], to);
		if (r)
			r = read_failed(st, si->ino, ps, r);
		else if (h)
			r = read_verify(st, h, si->ino, ps, to, hashes[i], locs[i]);
		if (!r && to == page)
			memcpy(dst, page + (a - ps), (size_t)(b - a));
	}
	if (h)
		store_hasher_put(st, h);
out:
	if (locs != stack_locs)
		free(locs);
	if (hashes != stack_h)
		free(hashes);
	return r;
}

/*
 * Clip [off, off + *len) at si's size, for a read (data_begin without
 * change).  data_begin stored any tail page it saw, but an append may
 * start one after it looked, growing the size at once while the page's
 * slot still holds the old bytes: a read clipped at the new size would
 * return the old bytes (zeros past the old end) for bytes just appended.
 * Such a tail in the range is stored now, under wlock, which is then kept
 * (*locked) until the caller has copied the slots, so that no other tail
 * can start meanwhile.  (mem_lock taken here; 0 or -errno, nothing held)
 */
static int clip_read(struct store *st, struct sinode *si, uint64_t off, size_t *len,
		     bool *locked)
{
	*locked = false;
	for (;;) {
		pthread_mutex_lock(&st->mem_lock);
		uint64_t size = si->size;
		size_t n = off >= size ? 0 : *len > size - off ? (size_t)(size - off) : *len;
		bool held = n && si->tail && si->tail_pg >= off >> STORE_PAGE_SHIFT &&
			    si->tail_pg <= (off + n - 1) >> STORE_PAGE_SHIFT;
		pthread_mutex_unlock(&st->mem_lock);
		if (!held || *locked) {
			*len = n;
			return 0;
		}
		store_wlock(st, si);
		*locked = true;
		int r = tail_flush(st, si);
		if (r) {
			pthread_mutex_unlock(&si->wlock);
			*locked = false;
			return r;
		}
	}
}

#ifdef STORE_TEST_HOOKS
void (*store_test_hook)(const char *where, struct store *st, uint64_t ino);
#endif

ssize_t store_read(struct store *st, uint64_t ino, void *buf, size_t len, uint64_t off)
{
	struct sinode *si;
	int r = data_begin(st, ino, false, &si);
	if (r)
		return r;
	STORE_TEST_HOOK("read", st, ino);
	bool locked;
	r = clip_read(st, si, off, &len, &locked);
	if (!r)
		r = read_range(st, si, buf, len, off);
	if (locked)
		pthread_mutex_unlock(&si->wlock);
	data_end(st, si, false);
	return r ? r : (ssize_t)len;
}

/* Are the extents' bytes all in their packs?  A splice from a pack cut
 * short behind the store's back comes up short, and the kernel takes a
 * short read for the end of the file, so this looks first: one fstat per
 * pack named. */
static int extents_present(struct store *st, uint64_t ino, uint64_t off,
			   const struct store_extent *ext, size_t n)
{
	uint64_t at = off;
	for (size_t i = 0; i < n; at += ext[i++].len) {
		bool seen = ext[i].fd < 0;
		for (size_t j = 0; j < i && !seen; j++)
			seen = ext[j].fd == ext[i].fd;
		if (seen)
			continue;
		struct stat sb;
		if (fstat(ext[i].fd, &sb) < 0)
			return read_failed(st, ino, at, -errno);
		uint64_t size = (uint64_t)sb.st_size, p = at;
		for (size_t j = i; j < n; p += ext[j++].len)
			if (ext[j].fd == ext[i].fd && ext[j].pos + ext[j].len > size)
				return read_failed(st, ino,
						   (p + (size > ext[j].pos ? size - ext[j].pos : 0)) &
							   ~(uint64_t)(STORE_PAGE_SIZE - 1),
						   -EIO);
	}
	return 0;
}

int store_map(struct store *st, uint64_t ino, uint64_t off, size_t len,
	      struct store_extent *ext, size_t max, size_t *covered)
{
	if (!st->be->ops->fd_of || st->verify)
		return -EOPNOTSUPP;
	struct sinode *si;
	int r = data_begin(st, ino, false, &si);
	if (r)
		return r;
	STORE_TEST_HOOK("map", st, ino);
	bool locked;
	r = clip_read(st, si, off, &len, &locked);
	if (r) {
		data_end(st, si, false);
		return r;
	}
	size_t n = 0, done = 0;
	uint64_t pg0 = off >> STORE_PAGE_SHIFT;
	size_t np = len ? (size_t)(((off + len - 1) >> STORE_PAGE_SHIFT) - pg0 + 1) : 0;
	uint64_t *locs = np ? malloc(np * sizeof(*locs)) : NULL;
	if (np && !locs)
		r = -ENOMEM;
	if (!r && np) {
		pthread_mutex_lock(&st->mem_lock);
		r = slots_copy(st, si, pg0, np, NULL, locs);
		pthread_mutex_unlock(&st->mem_lock);
	}
	if (locked)
		pthread_mutex_unlock(&si->wlock);
	for (size_t i = 0; i < np && !r; i++) {
		uint64_t ps = (pg0 + i) << STORE_PAGE_SHIFT;
		uint64_t a = ps > off ? ps : off;
		uint64_t b = ps + STORE_PAGE_SIZE < off + len ? ps + STORE_PAGE_SIZE : off + len;
		int fd = -1;
		uint64_t pos = 0;
		if (locs[i]) {
			r = st->be->ops->fd_of(st->be, locs[i], &fd, &pos);
			if (r == -ENOENT || r == -EIO)
				r = read_failed(st, ino, ps, r);
			if (r)
				break;
			pos += a - ps;
		}
		struct store_extent *last = n ? &ext[n - 1] : NULL;
		if (last && last->fd == fd && (fd < 0 || last->pos + last->len == pos)) {
			last->len += (size_t)(b - a);
		} else {
			if (n == max)
				break;
			ext[n++] = (struct store_extent){ .fd = fd, .pos = pos, .len = (size_t)(b - a) };
		}
		done += (size_t)(b - a);
	}
	free(locs);
	sinode_put(st, si);
	if (!r)
		r = extents_present(st, ino, off, ext, n);
	if (r) {
		pthread_rwlock_unlock(&st->gc_lock);
		return r;
	}
	/* gc_lock stays held until store_map_done. */
	if (covered)
		*covered = done;
	return (int)n;
}

void store_map_done(struct store *st)
{
	pthread_rwlock_unlock(&st->gc_lock);
}

/* ---- truncate, punch, clone, seek -------------------------------------------- */

/* Make pages [from, to) holes (mem_lock held). */
static int holes(struct store *st, struct sinode *si, uint64_t from, uint64_t to)
{
	int r = 0;
	uint64_t last = (uint64_t)si->nchunks << CHUNK_SHIFT;
	if (to > last)
		to = last;
	for (uint64_t pg = from; pg < to && !r; pg++) {
		size_t ci = (size_t)(pg >> CHUNK_SHIFT);
		r = chunk_read(st, si, ci);
		if (!r && !si->chunks[ci]) {
			/* skip the chunks of holes up to the next one to look at */
			pg = ((uint64_t)chunk_next(si, ci + 1, true) << CHUNK_SHIFT) - 1;
			continue;
		}
		if (!r)
			r = slot_set(st, si, pg, NULL, 0);
	}
	return r;
}

/* Bytes of a file from which truncating it counts as long work (see
 * store_set_block_hint). */
#define LONG_WORK_BYTES (32ull << 20)

static int truncate_locked(struct store *st, struct sinode *si, uint64_t size)
{
	if (si->size > size && si->size - size >= LONG_WORK_BYTES)
		store_may_block(st);
	pthread_mutex_lock(&st->mem_lock);
	int r = 0;
	if (size < si->size) {
		/* Bytes past the end of the last page are kept zero, so that a
		 * page's hash depends only on the file's content. */
		unsigned in = size & (STORE_PAGE_SIZE - 1);
		if (in)
			r = patch_page(st, si, size >> STORE_PAGE_SHIFT, in, NULL, STORE_PAGE_SIZE - in);
		uint64_t first = (size + STORE_PAGE_SIZE - 1) >> STORE_PAGE_SHIFT;
		if (!r)
			r = holes(st, si, first, UINT64_MAX);
	}
	if (!r) {
		si->size = size;
		sinode_touch(st, si);
	}
	pthread_mutex_unlock(&st->mem_lock);
	return r;
}

int store_truncate(struct store *st, uint64_t ino, uint64_t size)
{
	if (size > STORE_MAX_FILE_SIZE)
		return -EFBIG;
	struct sinode *si;
	int r = data_begin(st, ino, true, &si);
	if (r)
		return r;
	r = truncate_locked(st, si, size);
	data_end(st, si, true);
	return r;
}

int store_punch(struct store *st, uint64_t ino, uint64_t off, uint64_t len)
{
	struct sinode *si;
	int r = data_begin(st, ino, true, &si);
	if (r)
		return r;
	pthread_mutex_lock(&st->mem_lock);
	uint64_t end = off + len < off ? UINT64_MAX : off + len;
	if (end > si->size)
		end = si->size;
	while (off < end && !r) {
		uint64_t pg = off >> STORE_PAGE_SHIFT;
		unsigned in = off & (STORE_PAGE_SIZE - 1);
		uint64_t n = STORE_PAGE_SIZE - in;
		if (n > end - off)
			n = end - off;
		if (n == STORE_PAGE_SIZE) {
			uint64_t whole = (end - off) >> STORE_PAGE_SHIFT;
			r = holes(st, si, pg, pg + whole);
			off += whole << STORE_PAGE_SHIFT;
		} else {
			r = patch_page(st, si, pg, in, NULL, (size_t)n);
			off += n;
		}
	}
	if (!r)
		sinode_touch(st, si);
	pthread_mutex_unlock(&st->mem_lock);
	data_end(st, si, true);
	return r;
}

/* Copy bytes through a buffer (both wlocks held). */
static int copy_bytes(struct store *st, struct sinode *src, uint64_t so, struct sinode *dst,
		      uint64_t doff, uint64_t len)
{
	enum { BUF = 1 << 20 };
	if (!len)
		return 0;	/* the head or tail of an aligned clone */
	uint8_t *buf = malloc(len < BUF ? (size_t)len : BUF);
	if (!buf)
		return -ENOMEM;
	int r = 0;
	while (len && !r) {
		size_t n = len < BUF ? (size_t)len : BUF;
		r = read_range(st, src, buf, n, so);
		if (!r) {
			ssize_t w = write_locked(st, dst, buf, n, doff, NULL);
			r = w < 0 ? (int)w : 0;
		}
		so += n;
		doff += n;
		len -= n;
	}
	free(buf);
	return r;
}

static int clone_locked(struct store *st, struct sinode *src, uint64_t so, struct sinode *dst,
			uint64_t doff, uint64_t len)
{
	if ((so & (STORE_PAGE_SIZE - 1)) != (doff & (STORE_PAGE_SIZE - 1)))
		return copy_bytes(st, src, so, dst, doff, len);
	/* Head up to a page boundary, whole pages by reference, tail. */
	uint64_t head = (STORE_PAGE_SIZE - (so & (STORE_PAGE_SIZE - 1))) & (STORE_PAGE_SIZE - 1);
	if (head > len)
		head = len;
	int r = copy_bytes(st, src, so, dst, doff, head);
	so += head;
	doff += head;
	len -= head;
	uint64_t whole = len >> STORE_PAGE_SHIFT;
	if (!r && whole) {
		pthread_mutex_lock(&st->mem_lock);
		uint64_t sp = so >> STORE_PAGE_SHIFT, dp = doff >> STORE_PAGE_SHIFT;
		for (uint64_t i = 0; i < whole && !r; i++) {
			const uint8_t *h;
			uint64_t loc;
			r = slot_get(st, src, sp + i, &h, &loc);
			uint8_t hash[STORE_HASH_SIZE];
			memcpy(hash, h, sizeof(hash));	/* src may be dst: slot_set may move */
			if (!r)
				r = slot_set(st, dst, dp + i, hash, loc);
		}
		uint64_t end = doff + (whole << STORE_PAGE_SHIFT);
		if (!r && end > dst->size)
			dst->size = end;
		sinode_touch(st, dst);
		pthread_mutex_unlock(&st->mem_lock);
		so += whole << STORE_PAGE_SHIFT;
		doff += whole << STORE_PAGE_SHIFT;
		len -= whole << STORE_PAGE_SHIFT;
	}
	if (!r)
		r = copy_bytes(st, src, so, dst, doff, len);
	return r;
}

ssize_t store_clone(struct store *st, uint64_t src, uint64_t src_off, uint64_t dst,
		    uint64_t dst_off, uint64_t len)
{
	if (src_off > STORE_MAX_FILE_SIZE || dst_off > STORE_MAX_FILE_SIZE ||
	    len > STORE_MAX_FILE_SIZE)
		return -EFBIG;
	struct sinode *d, *s;
	int r = data_begin(st, dst, true, &d);
	if (r)
		return r;
	if (src == dst) {
		s = d;
	} else {
		/* Pin src without its wlock first, then take both wlocks in
		 * inode order so two opposite clones cannot deadlock. */
		r = sinode_get(st, src, &s);
		if (r) {
			data_end(st, d, true);
			return r;
		}
		if (src < dst) {
			pthread_mutex_unlock(&d->wlock);
			STORE_TEST_HOOK("clone", st, dst);
			store_wlock(st, s);
			store_wlock(st, d);
		} else {
			store_wlock(st, s);
		}
		r = tail_flush(st, s);
		/* While d's wlock was let go, a write may have started a tail
		 * page in d, which clone_locked's page references would not
		 * see and its later flush would write over them. */
		if (!r)
			r = tail_flush(st, d);
	}
	pthread_mutex_lock(&st->mem_lock);
	uint64_t ssize = s->size;
	pthread_mutex_unlock(&st->mem_lock);
	if (src_off >= ssize)
		len = 0;
	else if (len > ssize - src_off)
		len = ssize - src_off;
	if (dst_off + len > STORE_MAX_FILE_SIZE)
		r = -EFBIG;
	else if (src == dst && len && src_off < dst_off + len && dst_off < src_off + len)
		r = -EINVAL;
	if (!r && len)
		r = clone_locked(st, s, src_off, d, dst_off, len);
	if (s != d) {
		pthread_mutex_unlock(&s->wlock);
		sinode_put(st, s);
	}
	data_end(st, d, true);
	return r ? r : (ssize_t)len;
}

/* SEEK_DATA (data) or SEEK_HOLE from off in si's slots (mem_lock held). */
static int64_t seek_slots(struct store *st, struct sinode *si, uint64_t off, bool data)
{
	int r = 0;
	int64_t res = -ENXIO;
	uint64_t size = si->size;
	if (off < size) {
		uint64_t last = (size - 1) >> STORE_PAGE_SHIFT;
		uint64_t pg = off >> STORE_PAGE_SHIFT;
		for (; pg <= last; pg++) {
			size_t ci = (size_t)(pg >> CHUNK_SHIFT);
			r = chunk_read(st, si, ci);
			if (r)
				break;
			if (ci >= si->nchunks || !si->chunks[ci]) {
				if (!data)
					break;	/* a hole */
				if (ci >= si->nchunks) {
					/* Past the map's last row: holes
					 * only, so no data at all. */
					pg = last + 1;
					break;
				}
				/* on past the chunks of holes */
				pg = ((uint64_t)chunk_next(si, ci + 1, true) << CHUNK_SHIFT) - 1;
				continue;
			}
			bool is_data = si->chunks[ci]->loc[pg & (CHUNK_PAGES - 1)] != 0;
			if (is_data == data)
				break;
		}
		uint64_t at = pg << STORE_PAGE_SHIFT;
		if (at < off)
			at = off;
		if (r)
			res = r;
		else if (data)
			res = pg <= last && at < size ? (int64_t)at : -ENXIO;
		else
			res = at < size ? (int64_t)at : (int64_t)size;
	}
	return res;
}

static int64_t seek(struct store *st, uint64_t ino, uint64_t off, bool data)
{
	struct sinode *si;
	int r = data_begin(st, ino, false, &si);
	if (r)
		return r;
	STORE_TEST_HOOK("seek", st, ino);
	/* A tail page an append started after data_begin looked is in no
	 * slot yet (see clip_read): store it, holding appends off. */
	pthread_mutex_lock(&st->mem_lock);
	bool held = si->tail != NULL;
	if (held) {
		pthread_mutex_unlock(&st->mem_lock);
		store_wlock(st, si);
		r = tail_flush(st, si);
		pthread_mutex_lock(&st->mem_lock);
	}
	int64_t res = r ? r : seek_slots(st, si, off, data);
	pthread_mutex_unlock(&st->mem_lock);
	if (held)
		pthread_mutex_unlock(&si->wlock);
	data_end(st, si, false);
	return res;
}

int64_t store_seek_data(struct store *st, uint64_t ino, uint64_t off)
{
	return seek(st, ino, off, true);
}

int64_t store_seek_hole(struct store *st, uint64_t ino, uint64_t off)
{
	return seek(st, ino, off, false);
}

/* ---- open files and figures ---------------------------------------------------- */

int store_file_open(struct store *st, uint64_t ino)
{
	struct sinode *si;
	int r = sinode_get(st, ino, &si);
	if (r)
		return r;
	pthread_mutex_lock(&st->mem_lock);
	si->opens++;
	si->users--;
	pthread_mutex_unlock(&st->mem_lock);
	return 0;
}

int store_make(struct store *st, uint64_t parent, const char *name, const struct store_new *n,
	       bool open, struct store_attr *out)
{
	if (!open)
		return ns_make(st, parent, name, n, NULL, out);
	if (!out || ((n->mode & S_IFMT) && !S_ISREG(n->mode)))
		return -EINVAL;
	struct sinode *si = sinode_new(st);
	if (!si)
		return -ENOMEM;
	int r = ns_make(st, parent, name, n, NULL, out);
	if (r) {
		sinode_new_free(st, si);
		return r;
	}
	STORE_TEST_HOOK("create", st, out->ino);
	sinode_open_new(st, si, out);
	return 0;
}

int store_create(struct store *st, uint64_t parent, const char *name, uint32_t mode,
		 uint32_t uid, uint32_t gid, struct store_attr *out)
{
	struct store_new n = { .mode = S_IFREG | (mode & 07777), .uid = uid, .gid = gid };
	return store_make(st, parent, name, &n, true, out);
}

int store_file_release(struct store *st, uint64_t ino)
{
	STORE_TEST_HOOK("release", st, ino);
	pthread_mutex_lock(&st->mem_lock);
	struct sinode *si = sinode_find(st, ino);
	if (!si || !si->opens) {
		pthread_mutex_unlock(&st->mem_lock);
		return -EBADF;
	}
	bool last = --si->opens == 0;
	bool doomed = last && si->released;
	pthread_mutex_unlock(&st->mem_lock);
	if (!last || st->rdonly)
		return 0;
	if (doomed) {
		/* store_inode_release came first: delete if still unlinked. */
		store_db_lock(st);
		int r = store_delete_inode_if_unlinked(st, ino);
		pthread_mutex_unlock(&st->db_lock);
		return r;
	}
	return store_commit(st, NULL);
}

int store_file_info(struct store *st, uint64_t ino, struct store_file_info *out)
{
	memset(out, 0, sizeof(*out));
	int r = st->rdonly ? 0 : store_commit(st, NULL);
	if (r)
		return r;
	struct sinode *si;
	r = data_begin(st, ino, false, &si);
	if (r)
		return r;
	pthread_mutex_lock(&st->mem_lock);
	uint64_t size = si->size;
	uint64_t np = (size + STORE_PAGE_SIZE - 1) >> STORE_PAGE_SHIFT;
	uint8_t(*hashes)[32] = np ? malloc(np * STORE_HASH_SIZE) : NULL;
	uint64_t *locs = np ? malloc(np * sizeof(*locs)) : NULL;
	if (np && (!hashes || !locs))
		r = -ENOMEM;
	else
		r = slots_copy(st, si, 0, np, hashes, locs);
	pthread_mutex_unlock(&st->mem_lock);
	data_end(st, si, false);
	if (r) {
		free(hashes);
		free(locs);
		return r;
	}

	struct store_hasher *h = store_hasher_get(st);
	r = h ? store_hash_begin(h) : -ENOMEM;
	uint8_t le[8];
	put_le64(le, size);
	if (!r)
		r = store_hash_add(h, le, sizeof(le));
	if (!r && np)
		r = store_hash_add(h, hashes, np * STORE_HASH_SIZE);
	if (!r)
		r = store_hash_end(h, out->digest);
	store_hasher_put(st, h);

	out->size = size;
	pthread_mutex_lock(&st->rdb_lock);
	sqlite3_exec(st->rdb, "BEGIN", NULL, NULL, NULL);
	sqlite3_stmt *s = store_stmt(st, st->rdb, "SELECT refs FROM page WHERE loc = ?");
	if (!s)
		r = r ? r : -EIO;
	for (uint64_t i = 0; i < np && !r; i++) {
		if (store_hash_is_hole(hashes[i])) {
			out->zero_pages++;
			continue;
		}
		out->pages++;
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, (int64_t)locs[i]);
		if (store_step(st, s) == SQLITE_ROW && sqlite3_column_int64(s, 0) > 1)
			out->shared_pages++;
	}
	if (s)
		sqlite3_reset(s);
	sqlite3_exec(st->rdb, "COMMIT", NULL, NULL, NULL);
	pthread_mutex_unlock(&st->rdb_lock);
	free(hashes);
	free(locs);
	return r;
}
