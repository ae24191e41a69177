/*
 * fsd/fs_loop.c: the multi-threaded session loop.
 *
 * libfuse's own loop keeps every idle worker blocked in read() on the
 * FUSE device, and the kernel hands each request to the one that has
 * waited longest: a sleeping thread is woken for every request, even
 * when the thread that served the previous one is about to ask for the
 * next.  On the virtual machines this was measured on, a wake-up costs
 * about as much as serving a cached read, and a cold sequential read of
 * 1 GiB (2,048 read-ahead requests) made 2,300 context switches and ran
 * at 0.7 of the speed of a single-threaded loop.
 *
 * Here one worker listens on the device while requests are short.  The
 * listener serves a request itself, then listens again and usually finds
 * the next request already queued, if it is short by its kind (see
 * request_kind): a read, getattr, lookup or readdir, which only reads
 * what the store has in memory or in its read connection, or a change to
 * the namespace or a small write, which is one short transaction.  A
 * short change that has to wait after all (for the index or a file that
 * another call holds, a commit, a disk sync, a checkpoint, another
 * program's transaction) or to work for long (deleting a large file)
 * says so first through fs_loop_blocking, which the store calls
 * (store_set_block_hint), and the listener hands the device on before it
 * waits.  (Not for the store's memory lock and read connection, which
 * every read takes as well and which are held for long only by rare
 * calls: gc, recovery, a large clone.)  Before serving a slow kind (fsync, a large
 * write, a clone, ...), the listener makes sure another worker listens
 * (waking an idle one, or starting one, up to max_threads), so that the
 * slow call holds up nothing else; a worker done with a slow request
 * listens beside the current listener rather than going idle, so that a
 * stream of slow requests (a large copy's writes) costs one wake-up
 * each, as in libfuse's loop, not two.  Short kinds are treated as slow
 * while the running average of how long they take is above QUICK_NS (as
 * when the pack files or the index are read from a disk), so that calls
 * waiting for the disk run side by side.  (Unpacking a tar archive of
 * 8,000 small files, about ten requests each, took 0.9 of the time, and
 * removing them 0.8, of when every change woke another worker: a store
 * on tmpfs, 2 vCPUs.)
 *
 * A listener that has just served a short request, in a stream of them
 * (the last one came soon after it began to listen), first polls the
 * device for a while (busy_poll_ns) before it blocks in read(): a
 * program that makes one call after another (ls -l, rm -r, tar x) sends
 * its next request within tens of microseconds, and picking it up
 * without being woken saves a wake-up per request, which on the
 * virtual machines this was measured on costs more than serving the
 * request.  (ls -l of 3,000 files: 46 instead of 130 us per file; an
 * extended attribute that is not there, getxattr: 22-26 instead of
 * 32-66 us.)  Not after a slow request, whose worker is not the only
 * one listening, nor on one CPU, where the poll would only hold up the
 * program it waits for (fs_loop_busy_poll_default).
 *
 * A large write lends its receive buffer to the store (fs_loop_lend,
 * store_write_lent), which then writes the write's new pages to their
 * pack file straight from it instead of copying them to a staging
 * buffer first: a copy of each new page less, which a 1 GiB copy-in
 * spent about 0.16 s of its 2.8 s of CPU on (and 1 GiB written with dd
 * into a new store took 1.47 s instead of 1.56, median of 16 runs each,
 * faster in 15 of the 16 pairs; 2 vCPUs, store on tmpfs).  The worker
 * reads its next request into a spare buffer meanwhile; the lent one
 * becomes a spare again once the store has written its pages.  Spares
 * are made when first needed, at most LEND_SPARES of them: without a
 * free one (or the memory for it), a write is copied as before.
 *
 * Stopping: a signal (libfuse's handlers mark the session exited) wakes
 * the main thread from its wait, or, if another thread took it, the main
 * thread sees it within a second; an unmount ends the listeners' reads.
 * Listeners still reading are then interrupted by WAKE_SIG, whose handler
 * does nothing but end the read (EINTR); other workers finish the request
 * they serve and leave.  (Not pthread_cancel, as libfuse's loop does:
 * unwinding a worker's frames that way trips AddressSanitizer.)
 */
#include <errno.h>
#include <linux/fuse.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs_i.h"

#define WAKE_SIG SIGRTMIN

/* A listener polls only if its last request came this soon after it
 * began to listen (or twice busy_poll_ns, if that is longer). */
#define STREAM_NS 250000

/* Short kinds are served by the listener while their average stays below. */
#define QUICK_NS 500000
/* Writes of at most this much data are short (hashed in about 20 us). */
#define SHORT_WRITE (32u << 10)

/* Writes of at least this much data lend their buffer (fs_loop_lend). */
#define LEND_MIN (256u << 10)
/* Receive buffers there may be besides the workers' own. */
#define LEND_SPARES 16u

/* A receive buffer that can be lent to the store. */
struct rbuf {
	struct store_lent lent;	/* first: done() finds the rbuf by it */
	void *mem;
	struct lend_pool *pool;
	struct rbuf *next;	/* in the pool's free list */
};

/* The spares, and every rbuf until it is freed: the store may hold some
 * after the loop has ended (closed), until it writes them out. */
struct lend_pool {
	pthread_mutex_t lock;
	struct rbuf *free;
	size_t size;		/* of each buffer: at least what libfuse reads */
	unsigned made;		/* spares made, at most LEND_SPARES */
	unsigned alive;		/* rbufs not freed */
	bool closed;
};

struct worker {
	pthread_t thread;
	bool listening;
	bool serving;		/* a short request, in the listener's turn */
	bool waited;		/* the request being served said it waits */
	struct fuse_buf buf;
	struct rbuf *rb;	/* buf.mem's, once it was lent (or NULL) */
	struct rbuf *spare;	/* taken for the request being served, if it lends */
	struct fs_loop *loop;
};

struct fs_loop {
	struct fuse_session *se;
	pthread_mutex_t lock;
	pthread_cond_t turn;	/* the device may be free: an idle worker takes it */
	sem_t finish;		/* posted when a worker ends the loop */
	unsigned max_threads, nthreads, idle;
	int64_t busy_poll_ns, stream_ns;
	unsigned listening;	/* workers reading the device */
	bool stop;
	int error;
	int64_t read_avg_ns;	/* how long short reads take, lately */
	int64_t change_avg_ns;	/* how long short changes take, lately */
	/* max_threads of them, allocated up front: starting a worker while
	 * serving never allocates (a worker that could not be started under
	 * memory pressure would only slow the loop down, but an allocation
	 * there would also take a failure meant for the request being
	 * served; lending may allocate a spare, whose failure only means a
	 * copy). */
	struct worker *workers;
	struct lend_pool *pool;	/* NULL: nothing is lent */
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static __thread struct worker *this_worker;

enum kind {
	KIND_READ,	/* reads what the store has in memory or its read connection */
	KIND_CHANGE,	/* one short transaction, unless it says it waits */
	KIND_SLOW,	/* may take long by nature */
};

static enum kind request_kind(const struct fuse_buf *buf)
{
	/* Large requests (a write's data) may stay in a pipe. */
	if ((buf->flags & FUSE_BUF_IS_FD) || buf->size < sizeof(struct fuse_in_header))
		return KIND_SLOW;
	switch (((const struct fuse_in_header *)buf->mem)->opcode) {
	case FUSE_READ:
	case FUSE_GETATTR:
	case FUSE_LOOKUP:
	case FUSE_READLINK:
	case FUSE_READDIR:
	case FUSE_READDIRPLUS:
	case FUSE_RELEASEDIR:
	case FUSE_LISTXATTR:
	case FUSE_ACCESS:
	case FUSE_LSEEK:
	case FUSE_INTERRUPT:
		return KIND_READ;
	case FUSE_WRITE:
		return buf->size <= sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in) +
						SHORT_WRITE
			       ? KIND_CHANGE
			       : KIND_SLOW;
	/* Syncs wait for the disk; a clone, an allocation or a punched
	 * hole may cover a whole file; statfs counts the inodes. */
	case FUSE_FSYNC:
	case FUSE_FSYNCDIR:
	case FUSE_COPY_FILE_RANGE:
	case FUSE_FALLOCATE:
	case FUSE_STATFS:
		return KIND_SLOW;
	default:
		return KIND_CHANGE;
	}
}

static void *worker_main(void *arg);

/* Start a worker (loop lock held, fewer than max_threads): 0 or -errno. */
static int start_worker(struct fs_loop *l)
{
	struct worker *w = &l->workers[l->nthreads];
	*w = (struct worker){ .loop = l };
	/* Workers leave termination signals to the main thread, which
	 * waits for them, and take only WAKE_SIG and the signals of their
	 * own faults (blocked, a fault would kill without a report). */
	sigset_t all, old;
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(&w->thread, NULL, worker_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		return -r;
	l->nthreads++;
	return 0;
}

/* The listener is about to serve a slow request, or to wait in a short
 * one: let another worker take the device (loop lock held).  With max_threads busy, the device waits
 * for the first of them to finish. */
static void hand_off(struct fs_loop *l)
{
	if (l->listening || l->stop)
		return;
	if (l->idle)
		pthread_cond_signal(&l->turn);
	else if (l->nthreads < l->max_threads && start_worker(l) < 0 && l->nthreads == 1)
		fuse_log(FUSE_LOG_WARNING, "snapfs: cannot start a worker thread; serving in one\n");
}

/* End the loop (loop lock held). */
static void loop_end(struct fs_loop *l, int error)
{
	if (!l->stop && error)
		l->error = error;
	l->stop = true;
	pthread_cond_broadcast(&l->turn);
	sem_post(&l->finish);
}

void fs_loop_blocking(void)
{
	struct worker *w = this_worker;
	if (!w)
		return;
	w->waited = true;
	if (!w->serving)
		return;
	w->serving = false;
	pthread_mutex_lock(&w->loop->lock);
	hand_off(w->loop);
	pthread_mutex_unlock(&w->loop->lock);
}

/* ---- lending receive buffers ---------------------------------------------- */

static void rbuf_free(struct rbuf *rb)
{
	free(rb->mem);
	free(rb);
}

static void pool_free(struct lend_pool *p)
{
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* The store let go of rb (or its worker did, at the end): a spare
 * again, or freed once the loop has ended. */
static void rbuf_done(struct store_lent *b)
{
	struct rbuf *rb = (struct rbuf *)b;
	struct lend_pool *p = rb->pool;
	pthread_mutex_lock(&p->lock);
	bool last = false;
	if (p->closed) {
		rbuf_free(rb);
		last = --p->alive == 0;
	} else {
		rb->next = p->free;
		p->free = rb;
	}
	pthread_mutex_unlock(&p->lock);
	if (last)
		pool_free(p);
}

/* An rbuf for mem (a buffer libfuse allocated, or a new one if NULL),
 * its one reference the caller's; NULL without memory. */
static struct rbuf *rbuf_new(struct lend_pool *p, void *mem)
{
	struct rbuf *rb = malloc(sizeof(*rb));
	if (rb && !mem)
		mem = malloc(p->size);
	if (!rb || !mem) {
		free(rb);
		return NULL;	/* a buffer of libfuse's stays the worker's */
	}
	*rb = (struct rbuf){ .lent = { .refs = 1, .done = rbuf_done }, .mem = mem, .pool = p };
	pthread_mutex_lock(&p->lock);
	p->alive++;
	pthread_mutex_unlock(&p->lock);
	return rb;
}

/* A free spare, or a new one while there are fewer than LEND_SPARES. */
static struct rbuf *pool_take(struct lend_pool *p)
{
	pthread_mutex_lock(&p->lock);
	struct rbuf *rb = p->free;
	if (rb)
		p->free = rb->next;
	bool make = !rb && p->made < LEND_SPARES;
	if (make)
		p->made++;
	pthread_mutex_unlock(&p->lock);
	if (rb) {
		rb->lent.refs = 1;
		return rb;
	}
	if (!make)
		return NULL;
	rb = rbuf_new(p, NULL);
	if (!rb) {
		pthread_mutex_lock(&p->lock);
		p->made--;
		pthread_mutex_unlock(&p->lock);
	}
	return rb;
}

struct store_lent *fs_loop_lend(size_t len)
{
	struct worker *w = this_worker;
	if (!w || !w->loop->pool || len < LEND_MIN || (w->buf.flags & FUSE_BUF_IS_FD))
		return NULL;
	struct lend_pool *p = w->loop->pool;
	if (!w->rb) {
		/* All buffers are as large as the first one libfuse made. */
		pthread_mutex_lock(&p->lock);
		if (!p->size)
			p->size = malloc_usable_size(w->buf.mem);
		bool fits = malloc_usable_size(w->buf.mem) >= p->size;
		pthread_mutex_unlock(&p->lock);
		if (!fits || !(w->rb = rbuf_new(p, w->buf.mem)))
			return NULL;
	}
	if (!w->spare)
		w->spare = pool_take(p);
	return w->spare ? &w->rb->lent : NULL;
}

/* After a request that may have lent w's buffer: if the store kept it,
 * the next request goes into the spare; else the spare goes back. */
static void lend_settle(struct worker *w)
{
	struct rbuf *spare = w->spare;
	if (!spare)
		return;
	w->spare = NULL;
	if (__atomic_load_n(&w->rb->lent.refs, __ATOMIC_ACQUIRE) == 1) {
		rbuf_done(&spare->lent);
		return;
	}
	struct rbuf *kept = w->rb;
	w->rb = spare;
	w->buf.mem = spare->mem;
	store_lent_put(&kept->lent);
}

/* The loop has ended: free the spares, and the rest as the store lets go. */
static void pool_close(struct lend_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->closed = true;
	while (p->free) {
		struct rbuf *rb = p->free;
		p->free = rb->next;
		rbuf_free(rb);
		p->alive--;
	}
	bool last = p->alive == 0;
	pthread_mutex_unlock(&p->lock);
	if (last)
		pool_free(p);
}

/* Poll the device until a request is there or l->busy_poll_ns have
 * passed (no lock held); an error or a signal ends it too, for the read
 * that follows to see. */
static void busy_poll(const struct fs_loop *l)
{
	struct pollfd p = { .fd = fuse_session_fd(l->se), .events = POLLIN };
	int64_t until = now_ns() + l->busy_poll_ns;
	while (poll(&p, 1, 0) == 0 && now_ns() < until)
		;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct fs_loop *l = w->loop;
	bool slow = false;	/* the last request this worker served */
	/* It served a short one just now, which came soon after it began
	 * to listen: the next may be about to come. */
	bool quick = false, soon = false;
	this_worker = w;
	pthread_setname_np(pthread_self(), "snapfs-worker");
	sigset_t wake;
	sigemptyset(&wake);
	sigaddset(&wake, WAKE_SIG);
	pthread_sigmask(SIG_UNBLOCK, &wake, NULL);
	pthread_mutex_lock(&l->lock);
	while (!l->stop) {
		/* One listener, or two after a slow request: then the next
		 * slow one finds a listener to leave the device to, without
		 * waking a worker for it. */
		if (l->listening >= (slow ? 2u : 1u)) {
			slow = quick = false;
			l->idle++;
			pthread_cond_wait(&l->turn, &l->lock);
			l->idle--;
			continue;
		}
		l->listening++;
		w->listening = true;
		pthread_mutex_unlock(&l->lock);
		int64_t listen_ns = now_ns();
		if (quick && soon && l->busy_poll_ns)
			busy_poll(l);
		int r = fuse_session_receive_buf(l->se, &w->buf);
		soon = now_ns() - listen_ns < l->stream_ns;
		pthread_mutex_lock(&l->lock);
		w->listening = false;
		l->listening--;
		if (r == -EINTR || r == -EAGAIN)
			continue;
		if (r <= 0 || fuse_session_exited(l->se)) {
			loop_end(l, r < 0 ? r : 0);
			break;
		}
		enum kind kind = request_kind(&w->buf);
		int64_t *avg = kind == KIND_READ ? &l->read_avg_ns : &l->change_avg_ns;
		slow = kind == KIND_SLOW || *avg >= QUICK_NS;
		if (slow)
			hand_off(l);
		pthread_mutex_unlock(&l->lock);
		w->serving = !slow;
		w->waited = false;
		int64_t t0 = now_ns();
		fuse_session_process_buf(l->se, &w->buf);
		lend_settle(w);
		int64_t took = now_ns() - t0;
		w->serving = false;
		pthread_mutex_lock(&l->lock);
		/* Handed on by fs_loop_blocking: served as a slow one.  A
		 * request that said it waits does not count in the average,
		 * which is for the kinds' usual cost (also while they are
		 * treated as slow, so that it comes down again). */
		if (w->waited)
			slow = true;
		else if (kind != KIND_SLOW)	/* a running average over about 8 */
			*avg += (took - *avg) / 8;
		quick = !slow;
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

static void wake_handler(int sig)
{
	(void)sig;
}

unsigned fs_loop_busy_poll_default(void)
{
	cpu_set_t cpus;
	if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0 && CPU_COUNT(&cpus) < 2)
		return 0;
	return FS_BUSY_POLL_US;
}

int fs_loop_run(struct fuse_session *se, unsigned max_threads, unsigned busy_poll_us)
{
	struct fs_loop l = { .se = se, .max_threads = max_threads ? max_threads : 1,
			     .busy_poll_ns = (int64_t)busy_poll_us * 1000 };
	l.stream_ns = 2 * l.busy_poll_ns > STREAM_NS ? 2 * l.busy_poll_ns : STREAM_NS;
	struct sigaction sa = { .sa_handler = wake_handler }, old_sa;
	sigemptyset(&sa.sa_mask);
	sigaction(WAKE_SIG, &sa, &old_sa);	/* no SA_RESTART: reads end */
	pthread_mutex_init(&l.lock, NULL);
	pthread_cond_init(&l.turn, NULL);
	sem_init(&l.finish, 0, 0);
	l.workers = calloc(l.max_threads, sizeof(*l.workers));
	/* Without it, writes are copied. */
	l.pool = calloc(1, sizeof(*l.pool));
	if (l.pool)
		pthread_mutex_init(&l.pool->lock, NULL);
	pthread_mutex_lock(&l.lock);
	int r = l.workers ? start_worker(&l) : -ENOMEM;
	if (r)
		fuse_log(FUSE_LOG_ERR, "snapfs: cannot start the worker threads: %s\n", strerror(-r));
	while (!r && !l.stop && !fuse_session_exited(se)) {
		pthread_mutex_unlock(&l.lock);
		/* A signal ends the wait (EINTR), unless it came just before
		 * it: hence the timeout. */
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec++;
		sem_clockwait(&l.finish, CLOCK_MONOTONIC, &until);
		pthread_mutex_lock(&l.lock);
	}
	loop_end(&l, 0);
	/* Interrupt the reads, again until none is left: one may have
	 * been about to start when the first signal came. */
	while (l.listening) {
		for (unsigned i = 0; i < l.nthreads; i++)
			if (l.workers[i].listening)
				pthread_kill(l.workers[i].thread, WAKE_SIG);
		pthread_mutex_unlock(&l.lock);
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
		pthread_mutex_lock(&l.lock);
	}
	if (!r)
		r = l.error;
	pthread_mutex_unlock(&l.lock);
	for (unsigned i = 0; i < l.nthreads; i++) {
		pthread_join(l.workers[i].thread, NULL);
		if (l.workers[i].rb)
			store_lent_put(&l.workers[i].rb->lent);
		else
			free(l.workers[i].buf.mem);
	}
	free(l.workers);
	if (l.pool)
		pool_close(l.pool);
	sem_destroy(&l.finish);
	pthread_cond_destroy(&l.turn);
	pthread_mutex_destroy(&l.lock);
	sigaction(WAKE_SIG, &old_sa, NULL);
	return r < 0 ? r : 0;
}
