/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * super.c - the superblock ring: seal (checksum) a superblock, decode
 * and check one slot, and pick the newest valid slot at mount.
 */
#include <stdlib.h>

#include "fs_impl.h"

void super_seal(struct tfs_super *sb)
{
	csum_block(sb, TFS_SB_CSUM_LEN, sb->s_csum);
}

static bool dinode_sane(const struct tfs_dinode *d)
{
	return d->i_height <= TFS_MAX_HEIGHT;
}

/* Check one slot.  -EINVAL: not a twinfs superblock at all. */
int super_decode(const void *blk, uint64_t nblocks, struct tfs_super *out)
{
	const struct tfs_super *sb = blk;
	le64 sum[2];
	uint64_t nb, lb;

	if (get64(sb->s_magic) != TFS_MAGIC)
		return -EINVAL;
	csum_block(sb, TFS_SB_CSUM_LEN, sum);
	if (!csum_equal(sum, sb->s_csum))
		return -EBADMSG;
	if (get32(sb->s_version) != TFS_VERSION)
		return -EPROTONOSUPPORT;
	nb = get64(sb->s_nblocks);
	lb = get64(sb->s_log_blocks);
	if (get32(sb->s_block_size) != TFS_BLOCK_SIZE || nb < TFS_MIN_BLOCKS ||
	    nb > TFS_MAX_BLOCKS || (nblocks && nb > nblocks) || lb < 8 ||
	    TFS_LOG_START + lb >= nb || !dinode_sane(&sb->s_ifile) ||
	    !dinode_sane(&sb->s_afile) || get64(sb->s_gen) == 0 ||
	    get64(sb->s_used_blocks) > nb ||
	    get64(sb->s_next_ino) > TFS_MAX_INO + 1)
		return -EUCLEAN;
	memcpy(out, sb, sizeof(*out));
	return 0;
}

/* Newest valid slot.  Errors: -EINVAL (no twinfs here), -EUCLEAN etc. */
int super_pick(struct bdev *bd, struct tfs_super *out)
{
	struct tfs_super *cand = malloc(sizeof(*cand));
	void *blk = malloc(TFS_BLOCK_SIZE);
	int best_rc = -EINVAL, found = 0;

	if (!cand || !blk) {
		free(cand);
		free(blk);
		return -ENOMEM;
	}
	for (unsigned slot = 0; slot < TFS_SB_SLOTS; slot++) {
		int rc = bdev_read(bd, slot, blk);
		if (!rc)
			rc = super_decode(blk, bd->nblocks, cand);
		if (rc) {
			if (rc != -EINVAL && best_rc == -EINVAL)
				best_rc = rc;
			if (rc == -EIO)
				best_rc = rc;
			continue;
		}
		if (get64(cand->s_gen) % TFS_SB_SLOTS != slot) {
			best_rc = -EUCLEAN;
			continue;
		}
		if (!found || get64(cand->s_gen) > get64(out->s_gen))
			memcpy(out, cand, sizeof(*out));
		found = 1;
	}
	free(cand);
	free(blk);
	return found ? 0 : best_rc;
}

int fs_super_check(const void *blk, uint64_t dev_blocks)
{
	struct tfs_super sb;

	return super_decode(blk, dev_blocks, &sb);
}
