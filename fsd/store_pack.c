/*
 * fsd/store_pack.c: the pack-file page backend.
 *
 * Pages are appended to files packs/ID.pack (ID: the pack's number in 8
 * hex digits, from 00000001), each page at a 4 KiB-aligned offset so reads
 * can be spliced straight from the pack into the FUSE device.  A location
 * is (pack id << 36) | page number.  Packs are append-only; a new pack is
 * started when the current one passes PACK_MAX_BYTES.  Space is reclaimed
 * only by gc: compact copies the live pages out of packs that are at
 * least a quarter dead into new packs, if the disk has room for them (and
 * merges small packs, once there are two or more, into new ones); release
 * deletes packs that no longer hold live pages, cuts dead pages off the
 * end of the others and punches the rest of their dead pages out as
 * holes, the live ones keeping their locations.  Both only touch the
 * packs that gc_mark saw, less the one then taking pages (whose dead
 * pages release only punches out): compact runs beside puts, which go to
 * that one or to packs started later.
 *
 * Appends are staged: put copies the pages into one of a few 1 MiB
 * staging buffers and hands out their locations at once; the store's pack
 * writer thread writes each full buffer with one pwrite.  The caller (the
 * thread that hashed the pages) thus pays a memcpy instead of the page
 * cache's cost, and on two cores hashing and writing overlap.  Pages in
 * a buffer the caller lends (a FUSE request's, store_write_lent) are not
 * even copied: the staging buffer points at them and keeps a reference
 * to the lent one until they are written (up to STAGE_LENT lent buffers
 * each; pages of more are copied).  Staged pages are served from memory
 * by get(); sync, fd_of (of a staged page), release, usage and close
 * first wait until what was staged is in the files (and every lent
 * buffer let go), so durability is as before: nothing is durable before
 * sync() returns, and sync() returns only once every page put before it is
 * written and fdatasync'ed (the writer thread starts writeback of each
 * buffer at once, so that fdatasync has little left to do).  A failed
 * background write is kept and returned by the next sync, so no commit can
 * refer to a page that did not reach its pack.
 *
 * Threads: a mutex guards the pack table, the append position and the
 * staging buffers' states; reads (pread) and the background pwrite run
 * outside it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "store_i.h"	/* STORE_TEST_HOOK */
#include "store_pack_i.h"

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct pack_be *pb_of(struct store_backend *be)
{
	return (struct pack_be *)be;
}

void pack_name(const struct pack_be *pb, uint32_t id, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%08x.pack", pb->dir, id);
}

/*
 * The id of a file named as pack_name names packs: exactly eight
 * lowercase hex digits and ".pack", so no two names mean one id.  0 for
 * any other name (id 0 is no pack: location 0 is a hole).
 */
static uint64_t pack_id_of(const char *name)
{
	static const char digits[] = "0123456789abcdef";
	uint64_t id = 0;
	for (int i = 0; i < 8; i++) {
		const char *d = name[i] ? strchr(digits, name[i]) : NULL;
		if (!d)
			return 0;
		id = id << 4 | (uint64_t)(d - digits);
	}
	return strcmp(name + 8, ".pack") ? 0 : id;
}

/* Open the existing pack name in dirfd into *fd, its status in *sb.  A
 * pack is a regular file the store made: a symbolic link is refused
 * (-ELOOP), since it could lead anywhere, into the store's own mount
 * point included, and so is any other kind of file (-EINVAL), without
 * blocking on a FIFO. */
static int pack_open_existing(int dirfd, const char *name, bool rdonly, int *fd, struct stat *sb)
{
	int f = openat(dirfd, name,
		       (rdonly ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (f < 0)
		return -errno;
	int r = fstat(f, sb) < 0 ? -errno : !S_ISREG(sb->st_mode) ? -EINVAL : 0;
	if (!r && fcntl(f, F_SETFL, 0) < 0)	/* back to blocking */
		r = -errno;
	if (r) {
		close(f);
		return r;
	}
	*fd = f;
	return 0;
}

/* What pack_open_existing's refusals mean, for messages. */
static const char *pack_open_error(int r)
{
	return r == -ELOOP    ? "is a symbolic link; a pack must be a regular file in the pack folder"
	       : r == -EINVAL ? "is not a regular file"
			      : strerror(-r);
}

/* Add pack id with its open fd to the table (lock held). */
static struct pack *pack_add(struct pack_be *pb, uint32_t id, int fd, uint64_t size)
{
	if (pb->n == pb->cap) {
		size_t cap = pb->cap ? 2 * pb->cap : 16;
		size_t cur = pb->cur ? (size_t)(pb->cur - pb->packs) : SIZE_MAX;
		struct pack *p = realloc(pb->packs, cap * sizeof(*p));
		if (!p)
			return NULL;
		pb->packs = p;
		pb->cap = cap;
		if (cur != SIZE_MAX)
			pb->cur = &pb->packs[cur];
	}
	size_t i = pb->n;
	while (i > 0 && pb->packs[i - 1].id > id)
		i--;
	size_t cur = pb->cur ? (size_t)(pb->cur - pb->packs) : SIZE_MAX;
	memmove(&pb->packs[i + 1], &pb->packs[i], (pb->n - i) * sizeof(*pb->packs));
	pb->n++;
	if (cur != SIZE_MAX && cur >= i)
		pb->cur = &pb->packs[cur + 1];
	pb->packs[i] = (struct pack){ .id = id, .fd = fd, .size = size, .synced = size };
	return &pb->packs[i];
}

struct pack *pack_find(struct pack_be *pb, uint32_t id)
{
	size_t lo = 0, hi = pb->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (pb->packs[mid].id == id)
			return &pb->packs[mid];
		if (pb->packs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void pack_drop(struct pack_be *pb, size_t i)
{
	size_t cur = pb->cur ? (size_t)(pb->cur - pb->packs) : SIZE_MAX;
	if (cur != SIZE_MAX && cur > i)
		pb->cur = &pb->packs[cur - 1];
	memmove(&pb->packs[i], &pb->packs[i + 1], (pb->n - i - 1) * sizeof(*pb->packs));
	pb->n--;
	pb->dir_unsynced = true;
}

int pack_fd(struct pack_be *pb, uint32_t id, int *fd)
{
	struct pack *p = pack_find(pb, id);
	if (!p) {
		char path[PATH_MAX];
		pack_name(pb, id, path, sizeof(path));
		struct stat sb;
		int f, r = pack_open_existing(AT_FDCWD, path, pb->rdonly, &f, &sb);
		if (r)
			return r == -ELOOP || r == -EINVAL ? -EIO : -ENOENT;
		p = pack_add(pb, id, f, (uint64_t)sb.st_size);
		if (!p) {
			close(f);
			return -ENOMEM;
		}
	}
	*fd = p->fd;
	return 0;
}

int pack_new(struct pack_be *pb, struct pack **out)
{
	uint32_t last = pb->n ? pb->packs[pb->n - 1].id : 0;
	uint64_t next = (uint64_t)(last > pb->id_floor ? last : pb->id_floor) + 1;
	if (next > PACK_ID_MAX)
		return -ENOSPC;	/* no id left to name a location with */
	uint32_t id = (uint32_t)next;
	char path[PATH_MAX];
	pack_name(pb, id, path, sizeof(path));
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	struct pack *p = pack_add(pb, id, fd, 0);
	if (!p) {
		close(fd);
		unlink(path);
		return -ENOMEM;
	}
	pb->dir_unsynced = true;
	*out = p;
	return 0;
}

/*
 * Can n more bytes of pages go to disk and leave the index its reserve
 * (store_page_room)?  The disk is asked again once what it granted
 * last (half the room then, up to 64 MiB) is used up, so a nearly full
 * disk is asked often and an empty one rarely.  (lock held)
 */
static int pack_room(struct pack_be *pb, uint64_t bytes)
{
	if (pb->room >= bytes) {
		pb->room -= bytes;
		return 0;
	}
	struct statvfs v;
	if (fstatvfs(pb->dir_fd, &v) < 0)
		return 0;	/* cannot tell: the write will */
	uint64_t room = store_page_room(&v);
	if (room < bytes) {
		pb->room = 0;
		return -ENOSPC;
	}
	uint64_t grant = room / 2 < (64ull << 20) ? room / 2 : 64ull << 20;
	pb->room = grant > bytes ? grant - bytes : 0;
	return 0;
}

/* Reserve room for n pages in the current pack (lock held). */
static int pack_reserve(struct pack_be *pb, unsigned n, struct pack **out, uint64_t *off)
{
	if (pb->rdonly)
		return -EROFS;
	int r = pack_room(pb, (uint64_t)n * STORE_PAGE_SIZE);
	if (r)
		return r;
	if (!pb->cur || pb->cur->size >= PACK_MAX_BYTES) {
		r = pack_new(pb, &pb->cur);
		if (r)
			return r;
	}
	struct pack *p = pb->cur;
	/* A torn page left by a crash at the end: start at the next page. */
	*off = (p->size + STORE_PAGE_SIZE - 1) & ~(uint64_t)(STORE_PAGE_SIZE - 1);
	p->size = *off + (uint64_t)n * STORE_PAGE_SIZE;
	p->unsynced = true;
	*out = p;
	return 0;
}

int pack_write_all(int fd, struct iovec *iov, int cnt, uint64_t off)
{
	while (cnt > 0) {
		ssize_t w = pwritev(fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		off += (uint64_t)w;
		while (cnt > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* ---- staging -------------------------------------------------------------- */

/* Hand the filling buffer to the writer thread (lock held). */
static void stage_submit(struct pack_be *pb)
{
	struct stage *sg = pb->filling;
	if (!sg)
		return;
	pb->filling = NULL;
	if (!sg->n) {
		sg->state = STAGE_FREE;
		return;
	}
	sg->state = STAGE_FULL;
	sg->seq = ++pb->seq_queued;
	pthread_cond_broadcast(&pb->cond);
}

/* The calling thread is about to wait for the writer thread. */
static void pack_may_block(struct pack_be *pb)
{
	void (*fn)(void) = __atomic_load_n(&pb->be.may_block, __ATOMIC_RELAXED);
	if (fn)
		fn();
}

int pack_stage_flush(struct pack_be *pb)
{
	if (!pb->writer_running)
		return pb->werr;
	stage_submit(pb);
	uint64_t target = pb->seq_queued;
	/* The buffer just submitted is written soon; more is long work. */
	if (target - pb->seq_done > 1)
		pack_may_block(pb);
	while (pb->seq_done < target)
		pthread_cond_wait(&pb->cond, &pb->lock);
	return pb->werr;
}

/* A staging buffer holding any of the len bytes at off of pack id, or NULL
 * (lock held).  Pages are staged whole, so one holding part of a page
 * holds all of it. */
static struct stage *stage_find(struct pack_be *pb, uint32_t id, uint64_t off, uint64_t len)
{
	for (unsigned i = 0; i < STAGE_BUFS; i++) {
		struct stage *sg = &pb->stage[i];
		if (sg->state != STAGE_FREE && sg->id == id && sg->off < off + len &&
		    off < sg->off + (uint64_t)sg->n * STORE_PAGE_SIZE)
			return sg;
	}
	return NULL;
}

/* A buffer to stage pages of pack id from off on, waiting for the writer
 * thread to free one if all are busy (lock held). */
static struct stage *stage_take(struct pack_be *pb, uint32_t id, uint64_t off)
{
	struct stage *sg = pb->filling;
	if (sg && sg->id == id && sg->n < STAGE_PAGES &&
	    sg->off + (uint64_t)sg->n * STORE_PAGE_SIZE == off)
		return sg;
	stage_submit(pb);
	for (;;) {
		for (unsigned i = 0; i < STAGE_BUFS; i++) {
			sg = &pb->stage[i];
			if (sg->state == STAGE_FREE) {
				sg->id = id;
				sg->off = off;
				sg->n = sg->nlent = 0;
				sg->state = STAGE_FILLING;
				if (pb->filling)
					stage_submit(pb);	/* another thread's, taken meanwhile */
				pb->filling = sg;
				return sg;
			}
		}
		pack_may_block(pb);
		pthread_cond_wait(&pb->cond, &pb->lock);
	}
}

static void *writer_main(void *arg)
{
	struct pack_be *pb = arg;
	store_thread_background();	/* first: the name says it is done */
	pthread_setname_np(pthread_self(), "snapfs-pack");
	pthread_mutex_lock(&pb->lock);
	for (;;) {
		/* Oldest full buffer first, so seq_done only ever grows past
		 * buffers that are written. */
		struct stage *sg = NULL;
		for (unsigned i = 0; i < STAGE_BUFS; i++) {
			struct stage *c = &pb->stage[i];
			if (c->state == STAGE_FULL && (!sg || c->seq < sg->seq))
				sg = c;
		}
		if (!sg) {
			if (pb->writer_stop)
				break;
			pthread_cond_wait(&pb->cond, &pb->lock);
			continue;
		}
		sg->state = STAGE_WRITING;
		struct pack *p = pack_find(pb, sg->id);
		int fd = p ? p->fd : -1;
		uint64_t off = sg->off;
		pthread_mutex_unlock(&pb->lock);
		/* Tests: pages stay staged (and lent buffers held) meanwhile. */
		STORE_TEST_HOOK("pack-write", NULL, sg->seq);
		/* Pages that follow each other in memory go in one iovec. */
		struct iovec iov[STAGE_PAGES];
		int cnt = 0;
		for (unsigned i = 0; i < sg->n; i++) {
			if (cnt && (const uint8_t *)iov[cnt - 1].iov_base + iov[cnt - 1].iov_len ==
					   sg->at[i]) {
				iov[cnt - 1].iov_len += STORE_PAGE_SIZE;
				continue;
			}
			iov[cnt++] = (struct iovec){ .iov_base = (void *)sg->at[i],
						     .iov_len = STORE_PAGE_SIZE };
		}
		int r = fd < 0 ? -ENOENT : pack_write_all(fd, iov, cnt, off);
		/* Start writeback now, so the commit's fdatasync finds little
		 * left to write (a hint: its result does not matter). */
		if (!r)
			sync_file_range(fd, (off_t)off, (off_t)sg->n * STORE_PAGE_SIZE,
					SYNC_FILE_RANGE_WRITE);
		pthread_mutex_lock(&pb->lock);
		if (r && !pb->werr)
			pb->werr = r;
		/* Free, no get() reads its pages from the lent buffers any
		 * more; they go back before a flush waiting for them returns. */
		sg->state = STAGE_FREE;
		for (unsigned i = 0; i < sg->nlent; i++)
			store_lent_put(sg->lent[i]);
		sg->nlent = 0;
		pb->seq_done = sg->seq;
		pthread_cond_broadcast(&pb->cond);
	}
	pthread_mutex_unlock(&pb->lock);
	return NULL;
}

static int stage_start(struct pack_be *pb, struct err *e)
{
	for (unsigned i = 0; i < STAGE_BUFS; i++) {
		pb->stage[i].buf = aligned_alloc(STORE_PAGE_SIZE, STAGE_PAGES * STORE_PAGE_SIZE);
		if (!pb->stage[i].buf)
			return err_set(e, -ENOMEM, "%s: staging buffers: out of memory", pb->dir);
	}
	int r = pthread_create(&pb->writer, NULL, writer_main, pb);
	if (r)
		return err_set(e, -r, "%s: pack writer thread: %s", pb->dir, strerror(r));
	pb->writer_running = true;
	return 0;
}

/* Write out what is staged and end the writer thread. */
static void stage_stop(struct pack_be *pb)
{
	if (pb->writer_running) {
		pthread_mutex_lock(&pb->lock);
		pack_stage_flush(pb);
		pb->writer_stop = true;
		pthread_cond_broadcast(&pb->cond);
		pthread_mutex_unlock(&pb->lock);
		pthread_join(pb->writer, NULL);
		pb->writer_running = false;
	}
	for (unsigned i = 0; i < STAGE_BUFS; i++) {
		free(pb->stage[i].buf);
		pb->stage[i].buf = NULL;
	}
}

/* ---- the backend operations ----------------------------------------------- */

/* Stage page at as the next of sg: kept where it is if it lies in lent
 * and sg holds (or can take) a reference to it, else copied (lock held). */
static void stage_add(struct stage *sg, const uint8_t *at, struct store_lent *lent)
{
	unsigned i = 0;
	if (lent) {
		while (i < sg->nlent && sg->lent[i] != lent)
			i++;
		if (i == sg->nlent && i < STAGE_LENT) {
			store_lent_get(lent);
			sg->lent[sg->nlent++] = lent;
		}
	}
	if (lent && i < sg->nlent) {
		sg->at[sg->n] = at;
	} else {
		uint8_t *copy = sg->buf + (size_t)sg->n * STORE_PAGE_SIZE;
		memcpy(copy, at, STORE_PAGE_SIZE);
		sg->at[sg->n] = copy;
	}
	sg->n++;
}

static int pb_put_many(struct store_backend *be, const uint8_t (*hashes)[STORE_HASH_SIZE],
		       const struct iovec *pages, unsigned n, struct store_lent *lent,
		       uint64_t *locs)
{
	(void)hashes;
	struct pack_be *pb = pb_of(be);
	if (n == 0)
		return 0;
	pthread_mutex_lock(&pb->lock);
	int r = pb->werr;
	struct pack *p;
	uint64_t off;
	if (!r)
		r = pack_reserve(pb, n, &p, &off);
	if (r) {
		pthread_mutex_unlock(&pb->lock);
		return r;
	}
	uint32_t id = p->id;	/* p may move while waiting for a buffer */
	for (unsigned i = 0; i < n; i++) {
		uint64_t at = off + (uint64_t)i * STORE_PAGE_SIZE;
		struct stage *sg = stage_take(pb, id, at);
		stage_add(sg, pages[i].iov_base, lent);
		locs[i] = ((uint64_t)id << PACK_SHIFT) | (at / STORE_PAGE_SIZE);
	}
	/* A full buffer goes to the writer now rather than at the next put. */
	if (pb->filling && pb->filling->n == STAGE_PAGES)
		stage_submit(pb);
	pthread_mutex_unlock(&pb->lock);
	return 0;
}

static int pb_put(struct store_backend *be, const uint8_t *hash, const void *page, uint64_t *loc)
{
	struct iovec iov = { .iov_base = (void *)page, .iov_len = STORE_PAGE_SIZE };
	return pb_put_many(be, (const uint8_t(*)[STORE_HASH_SIZE])hash, &iov, 1, NULL, loc);
}

static int pb_fd_of(struct store_backend *be, uint64_t loc, int *fd, uint64_t *pos)
{
	struct pack_be *pb = pb_of(be);
	uint32_t id = (uint32_t)(loc >> PACK_SHIFT);
	*pos = (loc & PACK_PAGE_MASK) * STORE_PAGE_SIZE;
	pthread_mutex_lock(&pb->lock);
	/* A staged page must be in the file before anyone reads the fd. */
	int r = stage_find(pb, id, *pos, STORE_PAGE_SIZE) ? pack_stage_flush(pb) : 0;
	if (!r)
		r = pack_fd(pb, id, fd);
	pthread_mutex_unlock(&pb->lock);
	return r;
}

static void pb_where(struct store_backend *be, uint64_t loc, char *buf, size_t size)
{
	(void)be;
	snprintf(buf, size, "packs/%08x.pack byte 0x%llx", (uint32_t)(loc >> PACK_SHIFT),
		 (unsigned long long)((loc & PACK_PAGE_MASK) * STORE_PAGE_SIZE));
}

/*
 * The index names nothing above loc.  The pack to append to must not hand
 * out a location it names: if that pack is gone (the last one deleted by
 * hand), new packs number past it; if it was cut short, appending would
 * reuse its lost pages' locations, so a new pack is started.
 */
static void pb_hand_out_above(struct store_backend *be, uint64_t loc)
{
	struct pack_be *pb = pb_of(be);
	uint32_t id = (uint32_t)(loc >> PACK_SHIFT);
	uint64_t page = loc & PACK_PAGE_MASK;
	pthread_mutex_lock(&pb->lock);
	if (id > pb->id_floor)
		pb->id_floor = id;
	if (pb->cur && (pb->cur->id < id ||
			(pb->cur->id == id && pb->cur->size / STORE_PAGE_SIZE <= page)))
		pb->cur = NULL;
	pthread_mutex_unlock(&pb->lock);
}

/* Read len bytes at pos of fd into buf: -EIO past the end. */
static int pread_all(int fd, void *buf, size_t len, uint64_t pos)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(pos + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;	/* past the end: the pack was cut short */
		done += (size_t)n;
	}
	return 0;
}

static int pb_get(struct store_backend *be, const uint8_t *hash, uint64_t loc, void *page)
{
	(void)hash;
	struct pack_be *pb = pb_of(be);
	uint32_t id = (uint32_t)(loc >> PACK_SHIFT);
	uint64_t pos = (loc & PACK_PAGE_MASK) * STORE_PAGE_SIZE;
	int fd;
	pthread_mutex_lock(&pb->lock);
	struct stage *sg = stage_find(pb, id, pos, STORE_PAGE_SIZE);
	if (sg) {
		memcpy(page, sg->at[(pos - sg->off) / STORE_PAGE_SIZE], STORE_PAGE_SIZE);
		pthread_mutex_unlock(&pb->lock);
		return 0;
	}
	int r = pack_fd(pb, id, &fd);
	pthread_mutex_unlock(&pb->lock);
	/* Not staged: written before its buffer was freed, so pread sees it. */
	return r ? r : pread_all(fd, page, STORE_PAGE_SIZE, pos);
}

/* n pages of one pack with one pread, unless one of them is staged. */
static int pb_get_run(struct store_backend *be, uint64_t loc, unsigned n, void *pages)
{
	struct pack_be *pb = pb_of(be);
	uint32_t id = (uint32_t)(loc >> PACK_SHIFT);
	uint64_t page = loc & PACK_PAGE_MASK;
	if (!n || page + n - 1 > PACK_PAGE_MASK)
		return -EINVAL;
	uint64_t pos = page * STORE_PAGE_SIZE, len = (uint64_t)n * STORE_PAGE_SIZE;
	int fd;
	pthread_mutex_lock(&pb->lock);
	int r = stage_find(pb, id, pos, len) ? -EAGAIN : pack_fd(pb, id, &fd);
	pthread_mutex_unlock(&pb->lock);
	return r ? r : pread_all(fd, pages, len, pos);
}

int pack_sync_failed(const struct pack_be *pb, uint32_t id, struct err *e)
{
	int err = errno;
	char path[PATH_MAX];
	pack_name(pb, id, path, sizeof(path));
	return err_set(e, -err, "%s: fdatasync: %s", path, strerror(err));
}

int pb_sync(struct store_backend *be, struct err *e)
{
	struct pack_be *pb = pb_of(be);
	pthread_mutex_lock(&pb->lock);
	int r = pack_stage_flush(pb);
	if (r) {
		pthread_mutex_unlock(&pb->lock);
		return err_set(e, r, "%s: writing pages: %s", pb->dir, strerror(-r));
	}
	/* The packs to sync, taken under the lock; the fdatasyncs run
	 * outside it so that puts (and the writer thread) go on meanwhile.
	 * Pages put after the flush above are not this sync's business: a
	 * put marks its pack unsynced again for the next one. */
	struct pack *todo = malloc((pb->n ? pb->n : 1) * sizeof(*todo));
	if (!todo) {
		pthread_mutex_unlock(&pb->lock);
		return err_set(e, -ENOMEM, "%s: sync: out of memory", pb->dir);
	}
	size_t n = 0;
	for (size_t i = 0; i < pb->n; i++)
		if (pb->packs[i].unsynced) {
			todo[n++] = pb->packs[i];
			pb->packs[i].unsynced = false;
		}
	bool dir = pb->dir_unsynced;
	pb->dir_unsynced = false;
	pthread_mutex_unlock(&pb->lock);

	/* A disk's sync is long work; tmpfs's is not. */
	if ((n || dir) && __atomic_load_n(&pb->sync_avg_ns, __ATOMIC_RELAXED) >= SYNC_LONG_NS)
		pack_may_block(pb);
	int64_t t0 = n || dir ? now_ns() : 0;
	size_t done = 0;
	for (; done < n && !r; done++)
		if (fdatasync(todo[done].fd) < 0)
			r = pack_sync_failed(pb, todo[done].id, e);
	if (!r && dir && fsync(pb->dir_fd) < 0)
		r = err_set(e, -errno, "%s: fsync: %s", pb->dir, strerror(errno));
	if (n || dir) {	/* a running average over about 8 */
		int64_t avg = __atomic_load_n(&pb->sync_avg_ns, __ATOMIC_RELAXED);
		__atomic_store_n(&pb->sync_avg_ns, avg + (now_ns() - t0 - avg) / 8, __ATOMIC_RELAXED);
	}
	if (!r) {
		/* What recover must keep: each pack as far as it was flushed. */
		pthread_mutex_lock(&pb->lock);
		for (size_t i = 0; i < n; i++) {
			struct pack *p = pack_find(pb, todo[i].id);
			if (p && p->synced < todo[i].size)
				p->synced = todo[i].size;
		}
		pthread_mutex_unlock(&pb->lock);
	}
	if (r) {
		/* Whatever was not synced stays to be synced. */
		pthread_mutex_lock(&pb->lock);
		for (size_t i = done ? done - 1 : 0; i < n; i++) {
			struct pack *p = pack_find(pb, todo[i].id);
			if (p)
				p->unsynced = true;
		}
		if (dir)
			pb->dir_unsynced = true;
		pthread_mutex_unlock(&pb->lock);
	}
	free(todo);
	return r;
}

uint64_t pack_holes_below(int fd, uint64_t size)
{
	uint64_t holes = 0;
	off_t pos = 0;
	while ((uint64_t)pos < size) {
		off_t data = lseek(fd, pos, SEEK_DATA);
		if (data < 0 || (uint64_t)data >= size)
			return data < 0 && errno != ENXIO ? holes : holes + (size - (uint64_t)pos);
		holes += (uint64_t)(data - pos);
		pos = lseek(fd, data, SEEK_HOLE);
		if (pos < 0)
			return holes;
	}
	return holes;
}

static int pb_recover(struct store_backend *be, struct err *e)
{
	struct pack_be *pb = pb_of(be);
	pthread_mutex_lock(&pb->lock);
	/* Let the writer thread finish what it holds; its errors are what
	 * is being recovered from. */
	pack_stage_flush(pb);
	for (size_t i = 0; i < pb->n; i++) {
		struct pack *p = &pb->packs[i];
		if (p->size <= p->synced || p->gc_fill)
			continue;
		/* Pages past the synced end are forgotten: cut them off so the
		 * space is free again.  If that fails, append after them. */
		if (ftruncate(p->fd, (off_t)p->synced) == 0) {
			p->size = p->synced;
			if (p->holes)	/* some may have been past it */
				p->holes = pack_holes_below(p->fd, p->size);
		} else {
			struct stat sb;
			if (fstat(p->fd, &sb) == 0 && (uint64_t)sb.st_size > p->size)
				p->size = (uint64_t)sb.st_size;
		}
	}
	pb->werr = 0;
	pthread_mutex_unlock(&pb->lock);
	(void)e;
	return 0;
}

static int pb_usage(struct store_backend *be, uint64_t *bytes, uint64_t *containers)
{
	struct pack_be *pb = pb_of(be);
	uint64_t total = 0, count = 0;
	/* Staged pages count: they are in the files once this returns. */
	pthread_mutex_lock(&pb->lock);
	pack_stage_flush(pb);
	pthread_mutex_unlock(&pb->lock);
	DIR *d = opendir(pb->dir);
	if (!d)
		return -errno;
	/* Ask the folder, not the table: a read-only open beside a writer
	 * should see the writer's packs too. */
	for (struct dirent *de; (de = readdir(d));) {
		if (!pack_id_of(de->d_name))
			continue;
		struct stat sb;
		if (fstatat(dirfd(d), de->d_name, &sb, 0) == 0) {
			/* The space it takes: less than its size once dead
			 * pages were punched out. */
			uint64_t on_disk = (uint64_t)sb.st_blocks * 512;
			total += on_disk < (uint64_t)sb.st_size ? on_disk : (uint64_t)sb.st_size;
			count++;
		}
	}
	closedir(d);
	*bytes = total;
	*containers = count;
	return 0;
}

static void pb_close(struct store_backend *be)
{
	struct pack_be *pb = pb_of(be);
	stage_stop(pb);
	pb_reclaim(be);
	for (size_t i = 0; i < pb->n; i++)
		close(pb->packs[i].fd);
	if (pb->dir_fd >= 0)
		close(pb->dir_fd);
	pthread_cond_destroy(&pb->cond);
	pthread_mutex_destroy(&pb->lock);
	free(pb->packs);
	free(pb->dir);
	free(pb);
}

static const struct store_backend_ops pack_ops = {
	.name = "pack",
	.put = pb_put,
	.put_many = pb_put_many,
	.get = pb_get,
	.get_run = pb_get_run,
	.fd_of = pb_fd_of,
	.where = pb_where,
	.hand_out_above = pb_hand_out_above,
	.sync = pb_sync,
	.recover = pb_recover,
	.gc_mark = pb_gc_mark,
	.gc_plan = pb_gc_plan,
	.gc_scope = pb_gc_scope,
	.compact = pb_compact,
	.release = pb_release,
	.reclaim = pb_reclaim,
	.usage = pb_usage,
	.close = pb_close,
};

static int scan_packs(struct pack_be *pb, struct err *e)
{
	DIR *d = opendir(pb->dir);
	if (!d)
		return err_set(e, -errno, "pack folder %s: %s", pb->dir, strerror(errno));
	int r = 0;
	for (struct dirent *de; (de = readdir(d)) && !r;) {
		uint64_t id = pack_id_of(de->d_name);
		if (!id)
			continue;
		if (id > PACK_ID_MAX) {
			r = err_set(e, -EUCLEAN, "%s/%s: pack number beyond the largest, %08x;"
				    " not a pack this store made", pb->dir, de->d_name,
				    PACK_ID_MAX);
			break;
		}
		int fd;
		struct stat sb;
		r = pack_open_existing(dirfd(d), de->d_name, pb->rdonly, &fd, &sb);
		if (r) {
			err_set(e, r, "%s/%s: %s%s", pb->dir, de->d_name, pack_open_error(r),
				r == -EMFILE ? " (every pack stays open: raise the limit, ulimit -n)"
					     : "");
			break;
		}
		struct pack *p = pack_add(pb, (uint32_t)id, fd, (uint64_t)sb.st_size);
		if (!p) {
			close(fd);
			r = err_set(e, -ENOMEM, "%s: out of memory", pb->dir);
		} else if ((uint64_t)sb.st_blocks * 512 < (uint64_t)sb.st_size) {
			p->holes = pack_holes_below(fd, p->size);
		}
	}
	closedir(d);
	/* Append to the newest pack while it has room. */
	if (!r && pb->n && pb->packs[pb->n - 1].size < PACK_MAX_BYTES)
		pb->cur = &pb->packs[pb->n - 1];
	return r;
}

int store_pack_open(const char *dir, bool create, bool rdonly, struct store_backend **out,
		    struct err *e)
{
	*out = NULL;
	if (create && !rdonly && mkdir(dir, 0700) < 0 && errno != EEXIST)
		return err_set(e, -errno, "%s: cannot create: %s", dir, strerror(errno));
	struct pack_be *pb = calloc(1, sizeof(*pb));
	if (!pb || !(pb->dir = strdup(dir))) {
		free(pb);
		return err_set(e, -ENOMEM, "%s: out of memory", dir);
	}
	pb->be.ops = &pack_ops;
	pb->sync_avg_ns = SYNC_LONG_NS;
	pb->rdonly = rdonly;
	pthread_mutex_init(&pb->lock, NULL);
	pthread_cond_init(&pb->cond, NULL);
	pb->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = pb->dir_fd < 0 ? err_set(e, -errno, "pack folder %s: %s%s", dir, strerror(errno),
					 errno == ENOENT ? " (a store's page data is kept there)" : "")
			       : 0;
	if (!r)
		r = scan_packs(pb, e);
	if (!r && !rdonly)
		r = stage_start(pb, e);
	if (r) {
		pb_close(&pb->be);
		return r;
	}
	*out = &pb->be;
	return 0;
}
