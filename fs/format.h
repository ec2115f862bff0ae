/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * format.h - the whole on-disk format of twinfs, and the only place it is
 * described.  Everything is little-endian; the le* wrapper types make a
 * missing conversion a compile error.
 *
 * Image layout (block size TFS_BLOCK_SIZE = 4096):
 *
 *   block 0, 1          superblock ring; slot = generation % 2.  The only
 *                       blocks ever written in place (W1).
 *   block 2 .. 2+L-1    intent log region (circular, L = s_log_blocks).
 *                       Not referenced by any root; written in place.
 *   the rest            write-anywhere area: every block reachable from a
 *                       root is written once and never again until freed
 *                       and the freeing superblock is durable (W2).
 *
 * Everything else hangs off the superblock as trees of block pointers:
 *
 *   s_ifile   the inode file: dinode number N lives in file block
 *             N / TFS_INODES_PER_BLOCK at slot N % TFS_INODES_PER_BLOCK.
 *   s_afile   the allocation map: bit (b % TFS_BITS_PER_BLOCK) of file
 *             block b / TFS_BITS_PER_BLOCK is set when block b is in use.
 *             The superblock and log blocks are marked used at mkfs.
 *   s_sfile   the snapshot table: struct tfs_snap slots, TFS_SNAPS_PER_BLOCK
 *             a block; a snapshot pins the inode-file root of one CP.
 *   s_dfile   the deadlist: struct tfs_dead entries (i_size counts them),
 *             blocks that left the live tree while a snapshot held them.
 *
 * Snapshot rule: a block born in CP b and dropped from the live tree in
 * CP k is held by snapshot s exactly when b <= s < k.  It is freed when
 * no snapshot holds it; until then it waits in the deadlist.  Metafile
 * blocks (map, table, deadlist) are never held by snapshots.
 *
 * A file's tree: i_root points at a block of height i_height; height 0 is
 * a data block, height h > 0 an indirect block of TFS_BPTRS_PER_BLOCK
 * pointers to height h-1.  A pointer with bp_blkno == 0 is a hole.
 */
#ifndef TWINFS_FORMAT_H
#define TWINFS_FORMAT_H

#include <stdint.h>
#include <stddef.h>

typedef struct { uint16_t v; } le16;
typedef struct { uint32_t v; } le32;
typedef struct { uint64_t v; } le64;

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "twinfs: big-endian hosts need byte swaps in the le* accessors"
#endif
static inline uint16_t get16(le16 x) { return x.v; }
static inline uint32_t get32(le32 x) { return x.v; }
static inline uint64_t get64(le64 x) { return x.v; }
static inline le16 put16(uint16_t v) { return (le16){ v }; }
static inline le32 put32(uint32_t v) { return (le32){ v }; }
static inline le64 put64(uint64_t v) { return (le64){ v }; }

#define TFS_BLOCK_SHIFT       12
#define TFS_BLOCK_SIZE        (1u << TFS_BLOCK_SHIFT)
#define TFS_MAGIC             0x3153464e49575400ull /* "\0TWINFS1" */
#define TFS_VERSION           1
#define TFS_SB_SLOTS          2
#define TFS_LOG_START         2
#define TFS_MIN_BLOCKS        256   /* 1 MiB: log + a handful of files */
#define TFS_MAX_BLOCKS        (1ull << 40)
#define TFS_NAME_MAX          255
#define TFS_SYMLINK_MAX       4095
#define TFS_XATTR_NAME_MAX    255
#define TFS_LINK_MAX          65000

/* Inode numbers.  0 is never used; ROOT matches FUSE_ROOT_ID. */
#define TFS_INO_ROOT          1
#define TFS_INO_ORPHANS       2     /* hidden dir: unlinked but still open */
#define TFS_INO_FIRST         3
#define TFS_MAX_INO           ((1ull << 48) - 2)

/* ---- block pointer (32 bytes) ----------------------------------------- */
struct tfs_bptr {
	le64 bp_blkno;   /* 0 = hole */
	le64 bp_birth;   /* CP generation that wrote the block */
	le64 bp_csum[2]; /* XXH3-128 of the block's 4096 bytes */
};
_Static_assert(sizeof(struct tfs_bptr) == 32, "bptr size");
#define TFS_BPTRS_PER_BLOCK   (TFS_BLOCK_SIZE / sizeof(struct tfs_bptr))
#define TFS_BPTR_SHIFT        7
#define TFS_MAX_HEIGHT        6     /* 128^6 * 4 KiB = 16 EiB > 2^63 bytes */

/* ---- inode (256 bytes) --------------------------------------------------
 * offset  field
 *   0     i_mode, i_nlink, i_uid, i_gid
 *  16     i_size      bytes (files, symlinks); buckets * 4096 (directories)
 *  24     i_blocks    4 KiB blocks in the tree (data + indirect)
 *  32     i_rdev
 *  40     i_atime .. i_btime seconds, then their nanoseconds
 *  88     i_gen       CP generation that created the inode
 *  96     i_flags, i_height, i_dirbits
 * 104     i_root      the file tree
 * 136     i_xattr     one block of extended attributes, or a hole
 * 168     i_parent    directories: ".."
 * 176     i_nentries  directories: entries besides . and ..
 * 184     reserved
 */
struct tfs_dinode {
	le32 i_mode;     /* 0 = free slot */
	le32 i_nlink;
	le32 i_uid;
	le32 i_gid;
	le64 i_size;
	le64 i_blocks;
	le64 i_rdev;
	le64 i_atime;
	le64 i_mtime;
	le64 i_ctime;
	le64 i_btime;
	le32 i_atime_ns;
	le32 i_mtime_ns;
	le32 i_ctime_ns;
	le32 i_btime_ns;
	le64 i_gen;
	le32 i_flags;
	uint8_t i_height;
	uint8_t i_dirbits;  /* directories: log2 of the number of buckets */
	uint8_t i_pad[2];
	struct tfs_bptr i_root;
	struct tfs_bptr i_xattr;
	le64 i_parent;       /* directory holding its first link; ".." */
	le64 i_nentries;     /* directories: entries, without . and .. */
	uint8_t i_reserved[72];
};
_Static_assert(sizeof(struct tfs_dinode) == 256, "dinode size");
_Static_assert(offsetof(struct tfs_dinode, i_root) == 104, "i_root offset");
#define TFS_INODES_PER_BLOCK  (TFS_BLOCK_SIZE / sizeof(struct tfs_dinode))
#define TFS_BITS_PER_BLOCK    (TFS_BLOCK_SIZE * 8u)

/* ---- superblock (one block; checksum over the first TFS_SB_CSUM_LEN) ----- */
struct tfs_super {
	le64 s_magic;
	le32 s_version;
	le32 s_block_size;
	le64 s_gen;          /* CP generation; slot = s_gen % TFS_SB_SLOTS */
	le64 s_nblocks;      /* image size in blocks */
	le64 s_log_blocks;   /* L: log region is blocks 2 .. 2+L-1 */
	le64 s_log_seq;      /* first log block sequence not covered here */
	le64 s_log_epoch;    /* log blocks of another epoch are stale */
	le64 s_next_ino;     /* inode numbers are never reused */
	le64 s_used_blocks;  /* set bits in the allocation map */
	le64 s_ninodes;      /* inodes in use */
	le64 s_time;         /* when this CP was written (seconds) */
	le32 s_time_ns;
	le32 s_flags;
	uint8_t s_uuid[16];
	char s_label[64];    /* NUL-padded */
	le64 s_next_snap;    /* snapshot ids are never reused */
	uint8_t s_pad[72];
	struct tfs_dinode s_ifile;  /* offset 256 */
	struct tfs_dinode s_afile;  /* offset 512 */
	struct tfs_dinode s_sfile;  /* offset 768: snapshot table */
	struct tfs_dinode s_dfile;  /* offset 1024: deadlist */
	uint8_t s_reserved[TFS_BLOCK_SIZE - 1280 - 16];
	le64 s_csum[2];      /* XXH3-128 of bytes 0 .. TFS_SB_CSUM_LEN-1 */
};
_Static_assert(sizeof(struct tfs_super) == TFS_BLOCK_SIZE, "super size");
_Static_assert(offsetof(struct tfs_super, s_ifile) == 256, "s_ifile offset");
#define TFS_SB_CSUM_LEN       (TFS_BLOCK_SIZE - 16)

/* ---- snapshot table slot (512 bytes) ------------------------------------ */
struct tfs_snap {
	le64 sn_id;          /* 0: free slot */
	le64 sn_gen;         /* the CP whose root this pins */
	le64 sn_time;
	le32 sn_time_ns;
	le32 sn_flags;
	le64 sn_used;        /* blocks in the live tree when taken */
	char sn_name[128];   /* NUL-padded */
	struct tfs_dinode sn_ifile;  /* offset 168: root of the inode file */
	le64 sn_ninodes;     /* inodes in use when taken */
	uint8_t sn_reserved[80];
};
_Static_assert(sizeof(struct tfs_snap) == 512, "snap size");
#define TFS_SNAPS_PER_BLOCK   (TFS_BLOCK_SIZE / sizeof(struct tfs_snap))
#define TFS_SNAP_NAME_MAX     127
#define TFS_MAX_SNAPS         32766  /* slots: inode numbers carry 15 bits */
#define TFS_SNAP_AUTO         1u     /* made by keep_cps or a schedule */

/* ---- deadlist entry (24 bytes) ------------------------------------------- */
struct tfs_dead {
	le64 d_blkno;
	le64 d_birth;
	le64 d_death;        /* the CP that dropped it from the live tree */
};
_Static_assert(sizeof(struct tfs_dead) == 24, "dead size");
#define TFS_DEAD_PER_BLOCK    (TFS_BLOCK_SIZE / sizeof(struct tfs_dead))

/* ---- directory bucket block ----------------------------------------------
 * A directory is a hash table of 2^i_dirbits bucket blocks.  An entry for
 * a name with 64-bit hash H lives in bucket H >> (64 - i_dirbits), so the
 * bucket order is the hash order and a readdir cookie (H + 1 of the last
 * entry returned) stays valid across inserts, removes and bucket splits.
 * A full bucket doubles the table.  Entries are packed from offset 16,
 * each TFS_DIRENT_LEN(namelen) bytes; d_used counts bytes from offset 0.
 * "." and ".." are not stored: ".." of a directory is its i_parent.
 */
struct tfs_dirblk {
	le32 d_magic;
	le16 d_count;
	le16 d_used;
	le64 d_pad;
};
struct tfs_dirent {
	le64 e_hash;
	le64 e_ino;
	uint8_t e_type;      /* DT_* value */
	uint8_t e_namelen;
	char e_name[];
} __attribute__((packed));
_Static_assert(sizeof(struct tfs_dirblk) == 16, "dirblk size");
_Static_assert(sizeof(struct tfs_dirent) == 18, "dirent size");
#define TFS_DIR_MAGIC         0x52494454u /* "TDIR" */
#define TFS_DIRENT_LEN(n)     ((18u + (n) + 7u) & ~7u)
#define TFS_DIR_MAX_BITS      40

/* ---- extended attribute block ---------------------------------------------
 * Entries sorted by name, packed from offset 16: u8 namelen, le16 vallen
 * (unaligned), name, value.  Names carry their namespace prefix.
 */
struct tfs_xattrblk {
	le32 x_magic;
	le16 x_count;
	le16 x_used;
	le64 x_pad;
};
_Static_assert(sizeof(struct tfs_xattrblk) == 16, "xattrblk size");
#define TFS_XATTR_MAGIC       0x52544158u /* "XATR" */
#define TFS_XATTR_HDR         3u

/* ---- intent log block -----------------------------------------------------
 * The log is a byte stream of records cut into blocks.  Block with
 * sequence S lives at TFS_LOG_START + S % L.  It is valid for replay when
 * the magic, uuid, epoch and checksum match and l_seq is the expected S.
 * A record never straddles a flush: every flush starts a new block.
 */
struct tfs_logblk {
	le64 l_magic;
	le64 l_epoch;
	le64 l_seq;
	le32 l_len;          /* payload bytes after the header */
	le32 l_pad;
	uint8_t l_uuid[16];
	le64 l_csum[2];      /* XXH3-128 of the block with l_csum zeroed */
};
_Static_assert(sizeof(struct tfs_logblk) == 64, "logblk size");
#define TFS_LOG_MAGIC         0x474f4c53464e5754ull /* "TWNFSLOG" */
#define TFS_LOG_PAYLOAD       (TFS_BLOCK_SIZE - sizeof(struct tfs_logblk))

/* Log record header, followed by l_len payload bytes (see ilog.c). */
struct tfs_logrec {
	le16 r_type;
	le16 r_pad;
	le32 r_len;          /* payload bytes */
};
_Static_assert(sizeof(struct tfs_logrec) == 8, "logrec size");

enum tfs_logop {
	TFS_OP_CREATE = 1,   /* mknod, mkdir, symlink, create */
	TFS_OP_LINK = 2,
	TFS_OP_UNLINK = 3,   /* unlink and rmdir */
	TFS_OP_RENAME = 4,
	TFS_OP_SETATTR = 5,
	TFS_OP_WRITE = 6,
	TFS_OP_FALLOC = 7,
	TFS_OP_SETXATTR = 8,
	TFS_OP_RMXATTR = 9,
};

#endif
