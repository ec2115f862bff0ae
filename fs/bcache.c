/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bcache.c - the buffer cache: a hash of buffers by (owner, level, idx),
 * an LRU of clean buffers and the list of dirty ones.  Everything here
 * runs under fs->lock.  Buffers are only ever evicted between operations
 * (bcache_evict), so a pointer from bcache_find stays valid for the rest
 * of the operation that got it.
 *
 * The cache lives within a memory budget (see struct bcache).
 * Eviction keeps a clean buffer whose content a CP is still writing
 * (io_gen newer than the durable generation): its address is not on the
 * disk yet.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "fs_impl.h"

static size_t bc_slot(const struct bcache *bc, uint64_t owner, uint8_t level,
		      uint64_t idx)
{
	uint64_t h = owner * 0x9e3779b97f4a7c15ull ^ (idx + level) *
		     0xc2b2ae3d27d4eb4full;
	h ^= h >> 29;
	return (size_t)(h & (bc->nhash - 1));
}

static void list_init(struct buf *head)
{
	head->prev = head->next = head;
}

static void list_del(struct buf *b)
{
	b->prev->next = b->next;
	b->next->prev = b->prev;
	b->prev = b->next = b;
}

static void list_add_tail(struct buf *head, struct buf *b)
{
	b->prev = head->prev;
	b->next = head;
	head->prev->next = b;
	head->prev = b;
}

int bcache_init(struct bcache *bc, size_t max_bytes)
{
	memset(bc, 0, sizeof(*bc));
	bc->nhash = 1u << 16;
	bc->hash = calloc(bc->nhash, sizeof(*bc->hash));
	if (!bc->hash)
		return -ENOMEM;
	list_init(&bc->lru);
	list_init(&bc->dirty);
	bc->max_blocks = max_bytes / TFS_BLOCK_SIZE;
	if (bc->max_blocks < 256)
		bc->max_blocks = 256;
	return 0;
}

/* Pages come from 2 MiB mmap'd slabs, never from malloc: a cache of
 * 4 KiB aligned blocks fragments malloc's arenas until the process holds
 * far more than it uses.  Freed pages go on a stack and are handed out
 * again; past an eighth of the budget the excess is given back to the
 * kernel (MADV_DONTNEED) but kept mapped for later reuse. */
enum { SLAB_PAGES = 512 };

void *bcache_page(struct bcache *bc)
{
	void *slab;

	if (bc->npool)
		return bc->pool[--bc->npool];
	if (bc->ncold)
		return bc->cold[--bc->ncold];
	if (bc->nslabs && bc->slab_used < SLAB_PAGES)
		return (uint8_t *)bc->slabs[bc->nslabs - 1] +
		       (size_t)bc->slab_used++ * TFS_BLOCK_SIZE;
	/* the slab array's capacity is 2^k - 1: grow when it is full */
	if ((bc->nslabs & (bc->nslabs + 1)) == 0) {
		void **ns = realloc(bc->slabs, (bc->nslabs * 2 + 1) * sizeof(*ns));
		if (!ns)
			return NULL;
		bc->slabs = ns;
	}
	slab = mmap(NULL, (size_t)SLAB_PAGES * TFS_BLOCK_SIZE,
		    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (slab == MAP_FAILED)
		return NULL;
	bc->slabs[bc->nslabs++] = slab;
	bc->slab_used = 1;
	return slab;
}

/* Push p on a stack of pages; a page without a place would be lost. */
static void page_push(void ***stk, size_t *n, size_t *cap, void *p)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 1024;
		void **ns = realloc(*stk, nc * sizeof(*ns));
		VERIFY(ns);
		*stk = ns;
		*cap = nc;
	}
	(*stk)[(*n)++] = p;
}

void bcache_page_free(struct bcache *bc, void *p)
{
	if (!p)
		return;
	if (bc->npool < bc->max_blocks / 8) {
		page_push(&bc->pool, &bc->npool, &bc->cappool, p);
		return;
	}
	madvise(p, TFS_BLOCK_SIZE, MADV_DONTNEED);
	page_push(&bc->cold, &bc->ncold, &bc->capcold, p);
}

static void buf_free(struct bcache *bc, struct buf *b)
{
	bcache_page_free(bc, b->data);
	free(b);
}

void bcache_destroy(struct bcache *bc)
{
	for (size_t i = 0; i < bc->nhash && bc->hash; i++) {
		struct buf *b = bc->hash[i];
		while (b) {
			struct buf *n = b->hnext;
			buf_free(bc, b);
			b = n;
		}
	}
	free(bc->hash);
	bc->hash = NULL;
	for (size_t i = 0; i < bc->nslabs; i++)
		munmap(bc->slabs[i], (size_t)SLAB_PAGES * TFS_BLOCK_SIZE);
	free(bc->slabs);
	free(bc->pool);
	free(bc->cold);
	bc->slabs = NULL;
	bc->pool = bc->cold = NULL;
	bc->nslabs = bc->npool = bc->ncold = 0;
}

struct buf *bcache_find(struct bcache *bc, uint64_t owner, uint8_t level,
			uint64_t idx)
{
	struct buf *b = bc->hash[bc_slot(bc, owner, level, idx)];

	for (; b; b = b->hnext)
		if (b->owner == owner && b->idx == idx && b->level == level)
			break;
	if (b && !b->dirty) { /* most recently used goes last */
		list_del(b);
		list_add_tail(&bc->lru, b);
	}
	return b;
}

static void bc_grow(struct bcache *bc)
{
	size_t n = bc->nhash * 2;
	struct buf **h = calloc(n, sizeof(*h));

	if (!h)
		return; /* keep the smaller table: slower, still right */
	for (size_t i = 0; i < bc->nhash; i++) {
		struct buf *b = bc->hash[i];
		while (b) {
			struct buf *next = b->hnext;
			size_t s;
			bc->nhash = n;
			s = bc_slot(bc, b->owner, b->level, b->idx);
			bc->nhash = n / 2;
			b->hnext = h[s];
			h[s] = b;
			b = next;
		}
	}
	free(bc->hash);
	bc->hash = h;
	bc->nhash = n;
}

/* A new clean, zeroed buffer, inserted in the hash.  NULL: out of memory. */
struct buf *bcache_new(struct bcache *bc, uint64_t owner, uint8_t level,
		       uint64_t idx)
{
	struct buf *b = calloc(1, sizeof(*b));
	size_t s;

	if (!b)
		return NULL;
	b->data = bcache_page(bc);
	if (!b->data) {
		free(b);
		return NULL;
	}
	memset(b->data, 0, TFS_BLOCK_SIZE);
	b->owner = owner;
	b->level = level;
	b->idx = idx;
	if (bc->nbufs > bc->nhash * 2)
		bc_grow(bc);
	s = bc_slot(bc, owner, level, idx);
	b->hnext = bc->hash[s];
	bc->hash[s] = b;
	list_init(b);
	list_add_tail(&bc->lru, b);
	bc->nbufs++;
	return b;
}

/* The CP in flight keeps the old bytes; the buffer gets its own copy.
 * Out of memory here cannot be reported to the caller's caller in a
 * useful way, so it is fatal (VERIFY). */
static void bcache_unlend(struct bcache *bc, struct buf *b)
{
	uint8_t *copy;

	if (!b->lent)
		return;
	copy = bcache_page(bc);
	VERIFY(copy);
	memcpy(copy, b->data, TFS_BLOCK_SIZE);
	b->lent->buf = NULL;  /* the CP frees the old bytes */
	b->lent = NULL;
	b->data = copy;
	bc->cp_owned++;
}

/* Remove a buffer (clean or dirty) from the cache and free it. */
void bcache_drop(struct bcache *bc, struct buf *b)
{
	struct buf **pp = &bc->hash[bc_slot(bc, b->owner, b->level, b->idx)];

	while (*pp != b)
		pp = &(*pp)->hnext;
	*pp = b->hnext;
	if (b->dirty)
		bc->ndirty--;
	list_del(b);
	bc->nbufs--;
	if (b->lent) {        /* the CP in flight still writes these bytes */
		b->lent->buf = NULL;
		b->data = NULL;
		bc->cp_owned++;
	}
	buf_free(bc, b);
}

void bcache_mark_dirty(struct bcache *bc, struct buf *b)
{
	ASSERT(!b->dirty);
	bcache_unlend(bc, b);
	b->dirty = true;
	list_del(b);
	list_add_tail(&bc->dirty, b);
	bc->ndirty++;
}

void bcache_mark_clean(struct bcache *bc, struct buf *b)
{
	ASSERT(b->dirty);
	b->dirty = false;
	list_del(b);
	list_add_tail(&bc->lru, b);
	bc->ndirty--;
}

/* Runs after every operation: when all that is left to drop belongs to
 * the CP in flight, give up after a few of those rather than walk the
 * whole list each time (the CP's end evicts again). */
void bcache_evict(struct bcache *bc, uint64_t durable_gen, size_t extra)
{
	struct buf *b = bc->lru.next;
	unsigned kept = 0;

	while (b != &bc->lru && kept < 256 &&
	       bc->nbufs + bc->cp_owned + bc->npool + extra > bc->max_blocks) {
		struct buf *next = b->next;
		if (b->io_gen <= durable_gen)
			bcache_drop(bc, b);
		else
			kept++;
		b = next;
	}
}
