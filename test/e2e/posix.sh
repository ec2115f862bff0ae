#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# posix.sh - POSIX behaviour through a real FUSE mount, one small test per
# behaviour, each asserting the results and the errno.  python3 makes the
# system calls the shell cannot (open flags, renameat2, fallocate,
# SEEK_DATA/SEEK_HOLE, mmap, utimensat, mknod).
. "$(dirname "$0")/lib.sh"

IMG=$TMP/posix.img
M=$TMP/m

echo "== $TEST_NAME (binaries from $BUILD)"
tfs_mkfs "$IMG" 16g || { echo "mkfs failed" >&2; exit 1; }
tfs_mount "$IMG" "$M" -o allow_other || { echo "mount failed" >&2; exit 1; }

t_open_flags() {
	py "$M" <<'EOF'
d = sys.argv[1] + "/open"
os.mkdir(d)
p = d + "/f"
fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
os.write(fd, b"abc")
os.close(fd)
check(stat.S_IMODE(os.stat(p).st_mode) == 0o640, "mode 0640")
expect_err(errno.EEXIST, os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
fd = os.open(p, os.O_WRONLY | os.O_APPEND)
os.write(fd, b"def")
os.close(fd)
check(open(p, "rb").read() == b"abcdef", "O_APPEND appends")
fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
os.close(fd)
check(os.stat(p).st_size == 0, "O_TRUNC truncates")
expect_err(errno.ENOENT, os.open, d + "/missing", os.O_RDONLY)
expect_err(errno.ENOTDIR, os.open, p, os.O_RDONLY | os.O_DIRECTORY)
expect_err(errno.EISDIR, os.open, d, os.O_WRONLY)
expect_err(errno.ENOTDIR, os.open, p + "/x", os.O_RDONLY)
expect_err(errno.ENOTDIR, os.mkdir, p + "/x")
EOF
}
run_test "open: O_CREAT|O_EXCL, O_APPEND, O_TRUNC, ENOENT, ENOTDIR, EISDIR" t_open_flags

t_dirs() {
	py "$M" <<'EOF'
d = sys.argv[1] + "/dirs"
os.mkdir(d)
check(os.stat(d).st_nlink == 2, "new dir nlink 2")
os.mkdir(d + "/a")
check(os.stat(d).st_nlink == 3, "nlink 3 with a subdir")
expect_err(errno.EEXIST, os.mkdir, d + "/a")
open(d + "/a/f", "w").close()
expect_err(errno.ENOTEMPTY, os.rmdir, d + "/a")
expect_err(errno.ENOTDIR, os.rmdir, d + "/a/f")
expect_err(errno.EISDIR, os.unlink, d + "/a")
os.unlink(d + "/a/f")
os.rmdir(d + "/a")
check(os.stat(d).st_nlink == 2, "nlink back to 2")
expect_err(errno.ENOENT, os.stat, d + "/a")
check(sorted(os.listdir(d)) == [], "empty listing")
EOF
}
run_test "directories: nlink, EEXIST, ENOTEMPTY, ENOTDIR, EISDIR" t_dirs

t_names() {
	py "$M" <<'EOF'
d = sys.argv[1] + "/names"
os.mkdir(d)
ok = "n" * 255
open(d + "/" + ok, "w").close()
check(os.listdir(d) == [ok], "255-byte name listed")
expect_err(errno.ENAMETOOLONG, os.open, d + "/" + "n" * 256, os.O_CREAT | os.O_WRONLY)
expect_err(errno.ENAMETOOLONG, os.mkdir, d + "/" + "m" * 256)
expect_err(errno.ENAMETOOLONG, os.stat, d + "/" + "s" * 256)
u = "\u00e9t\u00e9 \u65e5\u672c \U0001f600"
open(d + "/" + u, "w").close()
check(u in os.listdir(d), "UTF-8 name")
EOF
}
run_test "names: 255 bytes ok, 256 ENAMETOOLONG, UTF-8" t_names

t_rename() {
	py "$M" <<'EOF'
d = sys.argv[1] + "/ren"
os.mkdir(d)
def put(n, s):
    with open(d + "/" + n, "w") as f:
        f.write(s)
def get(n):
    return open(d + "/" + n).read()
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
AT_FDCWD = -100
def renameat2(a, b, flags):
    cerr(libc.renameat2(AT_FDCWD, (d + "/" + a).encode(), AT_FDCWD,
                        (d + "/" + b).encode(), flags), "renameat2")
put("a", "A"); put("b", "B")
os.rename(d + "/a", d + "/c")
check(get("c") == "A" and not os.path.exists(d + "/a"), "plain rename")
os.rename(d + "/c", d + "/b")
check(get("b") == "A" and sorted(os.listdir(d)) == ["b"], "rename replaces")
put("x", "X")
expect_err(errno.EEXIST, renameat2, "x", "b", RENAME_NOREPLACE)
check(get("x") == "X" and get("b") == "A", "NOREPLACE left both")
renameat2("x", "y", RENAME_NOREPLACE)
check(get("y") == "X", "NOREPLACE to a new name")
renameat2("y", "b", RENAME_EXCHANGE)
check(get("y") == "A" and get("b") == "X", "EXCHANGE swapped")
expect_err(errno.ENOENT, renameat2, "y", "nope", RENAME_EXCHANGE)
os.mkdir(d + "/d1"); os.mkdir(d + "/d2"); open(d + "/d2/f", "w").close()
expect_err(errno.ENOTEMPTY, os.rename, d + "/d1", d + "/d2")
expect_err(errno.EISDIR, os.rename, d + "/b", d + "/d1")
expect_err(errno.ENOTDIR, os.rename, d + "/d1", d + "/b")
expect_err(errno.EINVAL, os.rename, d + "/d2", d + "/d2/sub")
os.rename(d + "/d1", d + "/d2/moved")
check(os.stat(d + "/d2/moved").st_nlink == 2 and os.stat(d + "/d2").st_nlink == 3,
      "directory moved, parent link counts")
EOF
}
run_test "rename, RENAME_NOREPLACE, RENAME_EXCHANGE, directory cases" t_rename

t_links() {
	py "$M" <<'EOF'
d = sys.argv[1] + "/links"
os.mkdir(d)
p = d + "/f"
open(p, "w").write("data")
os.link(p, d + "/g")
a, b = os.stat(p), os.stat(d + "/g")
check(a.st_ino == b.st_ino and a.st_nlink == 2, "hard link: same inode, nlink 2")
expect_err(errno.EEXIST, os.link, p, d + "/g")
expect_err(errno.EPERM, os.link, d, d + "/dirlink")
os.unlink(p)
check(os.stat(d + "/g").st_nlink == 1 and open(d + "/g").read() == "data",
      "nlink 1 after unlink, data kept")
os.symlink("g", d + "/s")
check(os.readlink(d + "/s") == "g" and open(d + "/s").read() == "data", "symlink")
check(stat.S_ISLNK(os.lstat(d + "/s").st_mode), "lstat sees a link")
check(os.lstat(d + "/s").st_size == 1, "symlink size is the target length")
long = "t" * 4000
os.symlink(long, d + "/long")
check(os.readlink(d + "/long") == long, "4000-byte target")
os.symlink("l2", d + "/l1"); os.symlink("l1", d + "/l2")
expect_err(errno.ELOOP, os.open, d + "/l1", os.O_RDONLY)
expect_err(errno.ELOOP, os.stat, d + "/l1")
expect_err(errno.EEXIST, os.symlink, "x", d + "/s")
os.symlink("missing", d + "/dangling")
expect_err(errno.ENOENT, os.stat, d + "/dangling")
EOF
}
run_test "hard links and link counts, symlinks, ELOOP, dangling" t_links

t_mknod() {
	py "$M" <<'EOF'
d = sys.argv[1] + "/nodes"
os.mkdir(d)
os.mkfifo(d + "/fifo", 0o600)
check(stat.S_ISFIFO(os.stat(d + "/fifo").st_mode), "fifo")
os.mknod(d + "/sock", 0o600 | stat.S_IFSOCK)
check(stat.S_ISSOCK(os.stat(d + "/sock").st_mode), "socket")
os.mknod(d + "/chr", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
s = os.stat(d + "/chr")
check(stat.S_ISCHR(s.st_mode) and s.st_rdev == os.makedev(1, 3), "char 1,3")
os.mknod(d + "/blk", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
s = os.stat(d + "/blk")
check(stat.S_ISBLK(s.st_mode) and s.st_rdev == os.makedev(7, 0), "block 7,0")
# a fifo on twinfs works as a fifo
pid = os.fork()
if pid == 0:
    with open(d + "/fifo", "w") as f:
        f.write("through")
    os._exit(0)
with open(d + "/fifo") as f:
    check(f.read() == "through", "data through the fifo")
os.waitpid(pid, 0)
EOF
}
run_test "mknod: fifo (usable), socket, char and block devices" t_mknod

t_times() {
	py "$M" <<'EOF'
p = sys.argv[1] + "/times"
open(p, "w").close()
os.utime(p, ns=(1000000000123456789, 1100000000987654321))
s = os.stat(p)
check(s.st_atime_ns == 1000000000123456789, "atime ns: %d" % s.st_atime_ns)
check(s.st_mtime_ns == 1100000000987654321, "mtime ns: %d" % s.st_mtime_ns)
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
class TS(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]
ts = (TS * 2)(TS(0, UTIME_OMIT), TS(0, UTIME_NOW))
before = time.time_ns()
cerr(libc.utimensat(-100, p.encode(), ts, 0), "utimensat")
s = os.stat(p)
check(s.st_atime_ns == 1000000000123456789, "UTIME_OMIT kept atime")
check(abs(s.st_mtime_ns - before) < 5 * 10**9, "UTIME_NOW set mtime")
ctime = s.st_ctime_ns
time.sleep(0.02)
os.chmod(p, 0o600)
check(os.stat(p).st_ctime_ns > ctime, "chmod moves ctime")
m0 = os.stat(p).st_mtime_ns
time.sleep(0.02)
with open(p, "w") as f:
    f.write("x")
check(os.stat(p).st_mtime_ns > m0, "write moves mtime")
EOF
}
run_test "utimensat: nanoseconds, UTIME_NOW, UTIME_OMIT; ctime/mtime" t_times

# ~200 observations (errnos, modes, link counts, which times an operation
# moves; permission rules as nobody) that must equal ext4's, recorded in
# conform.py
t_conform() {
	"$PY" "$E2E_DIR/conform.py" "$M"
}
run_test "same as ext4: errnos, modes, setgid dirs, times, permission rules" t_conform

# AT: the access time of a file after a cold read of it, mounted with
# options $1, its atime set to $2 (seconds) after it was written
atime_after_read() {
	local img=$TMP/atime.img mnt=$TMP/atime
	tfs_mkfs "$img" 64m && tfs_mount "$img" "$mnt" $1 || return 1
	echo x >"$mnt/f"
	touch -a -d "@$2" "$mnt/f"
	echo 3 >/proc/sys/vm/drop_caches # so that the read reaches twinfs
	cat "$mnt/f" >/dev/null
	AT=$(stat -c %X "$mnt/f")
	tfs_umount "$mnt" || return 1
	rm -f "$img"
}
# $1 options, $2 atime before, $3 "moves" or "stays"
atime_case() {
	local moved=stays
	atime_after_read "$1" "$2" || return 1
	[ "$AT" = "$2" ] || moved=moves
	if [ "$moved" != "$3" ]; then
		echo "mounted '$1', atime $2 before a read: $AT after, wanted it to $3" >&2
		return 1
	fi
}
t_atime() {
	local later=$(($(date +%s) + 3600))  # after mtime and ctime
	atime_case "" 1000 moves &&
	atime_case "" "$later" stays &&
	atime_case "-o relatime" "$later" stays &&
	atime_case "-o strictatime" "$later" moves &&
	atime_case "-o noatime" 1000 stays &&
	atime_case "-o nodiratime" 1000 moves
}
run_step "access time on read: relatime by default, -o strictatime, -o noatime" t_atime

t_xattr() {
	py "$M" <<'EOF'
p = sys.argv[1] + "/xattr"
open(p, "w").close()
os.setxattr(p, "user.a", b"1")
os.setxattr(p, "user.b", b"x" * 1000)
check(os.getxattr(p, "user.a") == b"1", "get user.a")
check(sorted(os.listxattr(p)) == ["user.a", "user.b"], "list")
expect_err(errno.EEXIST, os.setxattr, p, "user.a", b"2", os.XATTR_CREATE)
expect_err(errno.ENODATA, os.setxattr, p, "user.c", b"2", os.XATTR_REPLACE)
os.setxattr(p, "user.a", b"22", os.XATTR_REPLACE)
check(os.getxattr(p, "user.a") == b"22", "replaced")
os.removexattr(p, "user.a")
expect_err(errno.ENODATA, os.getxattr, p, "user.a")
expect_err(errno.ENODATA, os.removexattr, p, "user.a")
os.setxattr(p, "user.empty", b"")
check(os.getxattr(p, "user.empty") == b"", "empty value")
EOF
	# POSIX ACLs are not supported (they would not be enforced):
	# refused as on a file system mounted noacl; the mode still reads
	# back through getfacl, and cp -a of a plain file works silently
	touch "$M/acl"
	chmod 640 "$M/acl"
	expect_fail "setfacl" "Operation not supported" setfacl -m u:nobody:r "$M/acl"
	getfacl -p "$M/acl" | grep -q '^group::r--$' || die "getfacl from the mode"
	cp -a "$M/acl" "$M/acl2" 2>"$TMP/cp.err" || die "cp -a: $(cat "$TMP/cp.err")"
	[ ! -s "$TMP/cp.err" ] || die "cp -a complained: $(cat "$TMP/cp.err")"
	expect_eq "cp -a keeps the mode" 640 "$(stat -c %a "$M/acl2")"
}
run_test "xattrs: set/get/list/remove, CREATE/REPLACE, ENODATA; no POSIX ACLs" t_xattr

t_sparse() {
	py "$M" <<'EOF'
p = sys.argv[1] + "/sparse"
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd, b"A" * 4096, 0)
os.pwrite(fd, b"B" * 4096, 1 << 20)
os.ftruncate(fd, 2 << 20)
os.fsync(fd)
s = os.fstat(fd)
check(s.st_size == 2 << 20, "size 2 MiB")
check(8192 <= s.st_blocks * 512 <= 8192 + 64 * 1024,
      "st_blocks honest: %d bytes for 8 KiB of data" % (s.st_blocks * 512))
check(os.lseek(fd, 0, os.SEEK_HOLE) == 4096, "SEEK_HOLE from 0")
check(os.lseek(fd, 4096, os.SEEK_DATA) == 1 << 20, "SEEK_DATA to 1 MiB")
check(os.lseek(fd, 1 << 20, os.SEEK_HOLE) == (1 << 20) + 4096, "SEEK_HOLE after B")
expect_err(errno.ENXIO, os.lseek, fd, (1 << 20) + 8192, os.SEEK_DATA)
check(os.pread(fd, 4096, 8192) == bytes(4096), "hole reads zeros")
# past 4 GiB
big = 5 << 30
os.pwrite(fd, b"far", big)
s = os.fstat(fd)
check(s.st_size == big + 3, "size past 4 GiB")
check(os.pread(fd, 3, big) == b"far", "read at 5 GiB")
check(s.st_blocks * 512 <= 8192 + 4096 + 128 * 1024,
      "write at 5 GiB stays sparse: %d bytes" % (s.st_blocks * 512))
os.close(fd)
EOF
}
run_test "sparse files: st_blocks, SEEK_DATA/SEEK_HOLE, write at 5 GiB" t_sparse

t_fallocate() {
	py "$M" <<'EOF'
p = sys.argv[1] + "/falloc"
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
def falloc(mode, off, n):
    cerr(libc.fallocate(fd, mode, off, n), "fallocate")
KEEP, PUNCH, ZERO = 1, 2, 0x10
falloc(0, 0, 1 << 20)
s = os.fstat(fd)
check(s.st_size == 1 << 20, "mode 0 extends size")
# copy-on-write cannot preallocate overwrites: like ZFS, mode 0 checks
# the space is there and extends the size; the range reads as zeros
check(os.pread(fd, 4096, 8192) == bytes(4096), "allocated range reads zeros")
expect_err(errno.ENOSPC, falloc, 0, 0, 100 << 30)
check(os.fstat(fd).st_size == 1 << 20, "a failed fallocate leaves the size")
falloc(KEEP, 1 << 20, 1 << 20)
check(os.fstat(fd).st_size == 1 << 20, "KEEP_SIZE keeps the size")
os.pwrite(fd, b"\xff" * (1 << 20), 0)
os.fsync(fd)
b0 = os.fstat(fd).st_blocks
falloc(PUNCH | KEEP, 4096, 65536)
check(os.pread(fd, 65536, 4096) == bytes(65536), "punched range reads zeros")
check(os.pread(fd, 4096, 0) == b"\xff" * 4096, "before the hole kept")
check(os.fstat(fd).st_size == 1 << 20, "punch keeps the size")
check(os.fstat(fd).st_blocks < b0, "punch frees blocks")
expect_err(errno.EOPNOTSUPP, falloc, PUNCH, 0, 4096)
falloc(ZERO, 8192 * 16, 8192)
check(os.pread(fd, 8192, 8192 * 16) == bytes(8192), "ZERO_RANGE reads zeros")
expect_err(errno.EINVAL, falloc, 0, 0, 0)
os.close(fd)
EOF
}
run_test "fallocate: size, ENOSPC, KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE, errors" t_fallocate

t_mmap() {
	py "$M" <<'EOF'
import mmap
p = sys.argv[1] + "/mmap"
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
os.ftruncate(fd, 3 * 4096)
m = mmap.mmap(fd, 3 * 4096)
m[100:105] = b"hello"
m[8192:8197] = b"world"
m.flush()
m.close()
os.close(fd)
with open(p, "rb") as f:
    data = f.read()
check(data[100:105] == b"hello" and data[8192:8197] == b"world", "mmap writes read back")
check(data[:100] == bytes(100), "rest is zeros")
EOF
}
run_test "mmap: shared write, msync, read back" t_mmap

statfs_free() { stat -f -c '%f' "$1"; }   # free blocks of the mount

t_unlinked_open() {
	py "$M" <<'EOF'
p = sys.argv[1] + "/unlinked"
def free():
    s = os.statvfs(sys.argv[1])
    return s.f_bfree * s.f_frsize
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
data = os.urandom(1 << 20) * 16
os.write(fd, data)
os.fsync(fd)
os.unlink(p)
expect_err(errno.ENOENT, os.stat, p)
check(os.pread(fd, len(data), 0) == data, "still readable after unlink")
os.pwrite(fd, b"more", len(data))
check(os.fstat(fd).st_nlink == 0, "nlink 0")
before = free()
os.close(fd)
# frees wait for the CP that makes them durable: poll up to 20 s
for i in range(200):
    if free() >= before + (15 << 20):
        break
    time.sleep(0.1)
check(free() >= before + (15 << 20),
      "space returns after close: %d -> %d" % (before, free()))
EOF
}
run_test "unlinked open file: still readable, space returns on close" t_unlinked_open

# a listing while the directory changes (creates that split its hash
# buckets, unlinks): every entry that stays the whole time comes exactly
# once, and no entry comes twice
t_readdir_churn() {
	py "$M" <<'EOF'
import collections, random
d = sys.argv[1] + "/churn"
os.mkdir(d)
N = 5000
for i in range(N):
    open("%s/o%05d" % (d, i), "w").close()
rnd = random.Random(1)
stable = sorted("o%05d" % i for i in range(N))
seen = collections.Counter()
with os.scandir(d) as it:
    for k, e in enumerate(it, 1):
        seen[e.name] += 1
        if k % 50 == 0 and k < 3 * N:
            for j in range(100):
                open("%s/n%05d_%d" % (d, k, j), "w").close()
            for j in range(10):
                os.unlink(d + "/" + stable.pop(rnd.randrange(len(stable))))
dups = [n for n, c in seen.items() if c > 1]
missing = [n for n in stable if n not in seen]
check(not dups, "listed twice: %s" % dups[:5])
check(not missing, "never listed though always there: %s" % missing[:5])
check(len(seen) > N, "the listing saw %d entries" % len(seen))
EOF
}
run_test "readdir while entries come and go: the others exactly once" t_readdir_churn

t_bigdir() {
	py "$M" <<'EOF'
import random
d = sys.argv[1] + "/big"
os.mkdir(d)
N = 100000
t0 = time.time()
for i in range(N):
    os.close(os.open("%s/file-%06d" % (d, i), os.O_CREAT | os.O_WRONLY, 0o644))
t1 = time.time()
print("    %d creates: %.1f s" % (N, t1 - t0))
check(len(os.listdir(d)) == N, "listdir count")
check(os.stat(d).st_nlink == 2, "nlink of a dir with only files")
names = ["%s/file-%06d" % (d, random.randrange(N)) for _ in range(1000)]
t2 = time.time()
for n in names:
    os.stat(n)
for i in range(1000):
    expect_err(errno.ENOENT, os.stat, "%s/missing-%d" % (d, i))
t3 = time.time()
print("    2000 random lookups: %.3f s" % (t3 - t2))
check(t3 - t2 < 2.0, "lookups in a 100,000-entry dir are slow: %.2f s" % (t3 - t2))
os.unlink("%s/file-%06d" % (d, 4242))
check(len(os.listdir(d)) == N - 1, "count after one unlink")
EOF
	[ "$(ls -f "$M/big" | wc -l)" -eq $((100000 - 1 + 2)) ]
}
run_test "a directory of 100,000 entries: count, fast random lookups" t_bigdir

# ENOSPC on a small image, then delete and write again
t_enospc() {
	local s=$TMP/small out rc
	tfs_mkfs "$TMP/small.img" 64m || return 1
	tfs_mount "$TMP/small.img" "$s" || return 1
	out=$(dd if=/dev/zero of="$s/fill" bs=1M count=100 conv=fsync 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		die "dd of 100 MiB into a 64 MiB image succeeded"
	elif ! grep -q "No space left on device" <<<"$out"; then
		die "dd failed, but not with ENOSPC: $out"
	else
		echo "    filled: $(stat -c %s "$s/fill") bytes"
		rm "$s/fill" &&
		for _ in $(seq 200); do
			[ "$(statfs_free "$s")" -gt 8192 ] && break
			sleep 0.1
		done &&
		dd if=/dev/zero of="$s/again" bs=1M count=32 conv=fsync status=none &&
		expect_eq "size after refill" $((32 << 20)) "$(stat -c %s "$s/again")"
		rc=$?
	fi
	tfs_umount "$s" || return 1
	[ $rc -eq 0 ] && [ -n "$out" ] && tfs_fsck_clean "$TMP/small.img"
}
run_step "ENOSPC filling a 64 MiB image; delete frees space for new writes" t_enospc

# fsx-style: random writes, truncates, punches, zero ranges, mmap stores
# and reads against a model; then unmount, drop every cache, mount again
# (cold reads go through read-around) and check and go on
t_fsx() {
	local img=$TMP/fsx.img mnt=$TMP/fsx seed rc=0
	local ops=${TWINFS_FSX_OPS:-3000}
	tfs_mkfs "$img" 1g && tfs_mount "$img" "$mnt" || return 1
	for seed in 1 2; do
		python3 "$(dirname "$0")/fsx.py" "$mnt/f$seed" "$TMP/model$seed" \
			$seed "$ops" || rc=1
	done
	tfs_umount "$mnt" || return 1
	echo 3 >/proc/sys/vm/drop_caches
	tfs_mount "$img" "$mnt" || return 1
	for seed in 1 2; do
		python3 "$(dirname "$0")/fsx.py" "$mnt/f$seed" "$TMP/model$seed" \
			$((seed + 100)) "$ops" --resume || rc=1
	done
	tfs_umount "$mnt" || return 1
	tfs_fsck_clean "$img" || rc=1
	rm -f "$img" "$TMP"/model?
	return $rc
}
run_step "fsx-style exerciser against a model, across a cold remount" t_fsx

# permissions as an unprivileged user (the mount has allow_other)
USER_NAME=twinfs-test
if ! id "$USER_NAME" >/dev/null 2>&1; then
	useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$USER_NAME" ||
		echo "useradd $USER_NAME failed" >&2
fi
as_user() {
	setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --clear-groups -- "$@"
}
t_perms() {
	mkdir "$M/perm"
	chmod 755 "$M/perm"
	echo secret >"$M/perm/secret"
	chmod 600 "$M/perm/secret"
	echo public >"$M/perm/public"
	mkdir -m 1777 "$M/perm/tmp"
	expect_eq "user reads a 0644 file" public "$(as_user cat "$M/perm/public")"
	expect_fail "create in a 0755 root dir" "Permission denied" as_user touch "$M/perm/mine"
	expect_fail "read a 0600 root file" "Permission denied" as_user cat "$M/perm/secret"
	expect_fail "write a 0644 root file" "Permission denied" as_user sh -c "echo x >>'$M/perm/public'"
	expect_fail "unlink in a 0755 root dir" "Permission denied" as_user rm -f "$M/perm/public"
	as_user touch "$M/perm/tmp/mine"
	expect_eq "owner of a user's file" "$USER_NAME" "$(stat -c %U "$M/perm/tmp/mine")"
	expect_fail "chown to root" "Operation not permitted" as_user chown root "$M/perm/tmp/mine"
	expect_fail "chmod a root file" "Operation not permitted" as_user chmod 777 "$M/perm/public"
	touch "$M/perm/tmp/rootfile"
	expect_fail "sticky dir: remove root's file" "Operation not permitted" \
		as_user rm -f "$M/perm/tmp/rootfile"
	as_user chmod 600 "$M/perm/tmp/mine"
	expect_eq "user's chmod" 600 "$(stat -c %a "$M/perm/tmp/mine")"
	as_user rm "$M/perm/tmp/mine"
}
run_test "permissions as $USER_NAME: EACCES in a 0755 root dir, EPERM on chown" t_perms

# setuid/setgid and file capabilities dropped on write, truncate, chown
# (twinfs does it itself when the kernel takes FUSE_HANDLE_KILLPRIV_V2);
# each mode is read right after the change, through the kernel's cache
t_killpriv() {
	local d=$M/perm/tmp
	as_user sh -c "printf a >'$d/kp1'; chmod 6775 '$d/kp1'"
	as_user sh -c "printf b >>'$d/kp1'"
	expect_eq "user's write drops setuid and group-exec setgid" 775 \
		"$(stat -c %a "$d/kp1")"
	as_user sh -c "printf a >'$d/kp2'; chmod 6764 '$d/kp2'"
	as_user sh -c "printf b >>'$d/kp2'"
	expect_eq "setgid without group-exec stays" 2764 "$(stat -c %a "$d/kp2")"
	as_user sh -c "printf a >'$d/kp3'; chmod 4755 '$d/kp3'"
	as_user truncate -s 0 "$d/kp3"
	expect_eq "user's truncate drops setuid" 755 "$(stat -c %a "$d/kp3")"
	printf a >"$M/perm/kp4"
	chmod 6755 "$M/perm/kp4"
	printf b >>"$M/perm/kp4"
	expect_eq "root's write keeps setuid/setgid (CAP_FSETID)" 6755 \
		"$(stat -c %a "$M/perm/kp4")"
	chown "$USER_NAME" "$M/perm/kp4"
	expect_eq "chown drops setuid/setgid" 755 "$(stat -c %a "$M/perm/kp4")"
	expect_eq "file contents after the writes" ab "$(cat "$d/kp1")"
	py "$M/perm" <<'EOF'
import struct
p = sys.argv[1] + "/kp5"
open(p, "wb").write(b"x")
# VFS_CAP_REVISION_2, CAP_NET_RAW permitted
cap = struct.pack("<IIIII", 0x02000000, 1 << 13, 0, 0, 0)
for how in ("write", "truncate"):
    os.setxattr(p, "security.capability", cap)
    check(os.getxattr(p, "security.capability") == cap, "capability set")
    os.chmod(p, 0o4755)
    if how == "write":
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"y")
        os.close(fd)
    else:
        os.truncate(p, 1)
    expect_err(errno.ENODATA, os.getxattr, p, "security.capability")
    check(stat.S_IMODE(os.stat(p).st_mode) == 0o4755,
          "root's %s keeps setuid" % how)
EOF
	rm -f "$d"/kp? "$M/perm/kp4" "$M/perm/kp5"
}
run_test "setuid/setgid and file capabilities dropped on write, truncate, chown" t_killpriv

t_statfs() {
	py "$M" <<'EOF'
s = os.statvfs(sys.argv[1])
check(s.f_bsize == 4096 or s.f_frsize == 4096, "4 KiB blocks")
check(s.f_blocks * s.f_frsize >= 15 << 30, "16 GiB image: %d" % (s.f_blocks * s.f_frsize))
check(s.f_namemax == 255, "namemax %d" % s.f_namemax)
check(s.f_bfree <= s.f_blocks and s.f_bavail <= s.f_bfree, "free <= total")
EOF
}
run_test "statfs: sizes, namemax" t_statfs

t_final() {
	tfs_umount "$M" && tfs_fsck_clean "$IMG"
}
run_step "unmount after all tests: fsck clean" t_final

summary
