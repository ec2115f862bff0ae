#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""conform.py - POSIX behaviour checked against what ext4 does.

    conform.py DIR            run the scenarios in DIR/probe, compare
    conform.py DIR --record   print the observations (to re-record EXPECT)

Each scenario records one observation: an errno name ("ok" for success),
a mode, a link count, or which of atime/mtime/ctime ("amc", "-" for
unchanged) an operation moved on the file or its directory.  EXPECT is
what ext4 gave on Debian 12's kernel (mounted relatime, run as root;
the "user:" scenarios run as nobody, so a FUSE mount needs allow_other):
`conform.py /some/ext4/dir --record`.  twinfs must give the same.
Exit 1 with every difference listed."""
import ctypes
import errno
import fcntl
import json
import mmap
import os
import stat
import sys
import time

EXPECT = {
    'append_pwrite': 'abcZ',
    'chmod': '--c',
    'chmod_7777': '0o107777',
    'chown_nop': '--c',
    'chown_same': '--c',
    'create:parent': '-mc',
    'create_7777': '0o107755',
    'dangling_created': True,
    'dir_size_kind': 'nonzero',
    'fallocate': '-mc',
    'fallocate:size': 8192,
    'fallocate_rc': 'ok',
    'ftruncate_rdonly': 'EINVAL',
    'ftruncate_same': '-mc',
    'getxattr_erange': 'ERANGE',
    'getxattr_missing': 'ENODATA',
    'getxattr_small': 1,
    'link:file': '--c',
    'link:parent': '-mc',
    'link_dir': 'EPERM',
    'link_exists': 'EEXIST',
    'link_missing': 'ENOENT',
    'listxattr_erange': 'ERANGE',
    'listxattr_size': 19,
    'lseek_neg': 'EINVAL',
    'lstat_nochange': '---',
    'mkdir:parent': '-mc',
    'mkdir_7777': '0o41755',
    'mkdir_exists_file': 'EEXIST',
    'mknod_exists': 'EEXIST',
    'nlink_file': 1,
    'nlink_root_probe': 7,
    'open_creat_dangling': 'ok',
    'open_creat_dir': 'EISDIR',
    'open_dir_rdwr': 'EISDIR',
    'open_excl_symlink': 'EEXIST',
    'open_nofollow': 'ELOOP',
    'otrunc_empty': '-mc',
    'otrunc_nonempty': '-mc',
    'read(relatime)': 'a--',
    'read_dir': 'EISDIR',
    'read_wronly': 'EBADF',
    'readdir': 'a--',
    'readlink_file': 'EINVAL',
    'removexattr': '--c',
    'rename:dst_parent': '-mc',
    'rename:file': '--c',
    'rename:src_parent': '-mc',
    'rename_dir:dir': '--c',
    'rename_dir:nlink': [3, 3],
    'rename_dir:src_parent': '-mc',
    'rename_dir_over_empty_dir': 'ok',
    'rename_dir_over_file': 'ENOTDIR',
    'rename_dot': 'EBUSY',
    'rename_file_over_dir': 'EISDIR',
    'rename_into_self': 'EINVAL',
    'rename_missing': 'ENOENT',
    'rename_over_link_nlink': 1,
    'rename_parent_into_child': 'EINVAL',
    'rename_samelink': ['h1', 'h2'],
    'rename_to_dot': 'EBUSY',
    'rmdir:parent': '-mc',
    'rmdir_dot': 'EINVAL',
    'rmdir_dotdot': 'ENOTEMPTY',
    'seek_data_past': 'ENXIO',
    'seek_hole_0': 1,
    'seek_hole_past': 'ENXIO',
    'setgid:dir_gid': 12345,
    'setgid:dir_mode': '0o42755',
    'setgid:fifo_gid': 12345,
    'setgid:file_gid': 12345,
    'setgid:sym_gid': 12345,
    'setxattr': '--c',
    'setxattr_badns': 'ENOTSUP',
    'setxattr_bigvalue': 'E2BIG',
    'setxattr_fifo_user': 'EPERM',
    'setxattr_longname': 'ERANGE',
    'setxattr_symlink_user': 'EPERM',
    'setxattr_trusted': 'ok',
    'sparse_read': '0000000000',
    'symlink:parent': '-mc',
    'symlink_empty': 'ENOENT',
    'symlink_size': 1,
    'truncate_dir': 'EISDIR',
    'truncate_huge': 'EFBIG',
    'truncate_neg': 'EINVAL',
    'truncate_same': '-mc',
    'truncate_shrink': '-mc',
    'umask:dir': '0o40750',
    'umask:file': '0o100640',
    'unlink:file': '--c',
    'unlink:parent': '-mc',
    'unlink_missing': 'ENOENT',
    'unlinked_fstat_nlink': 0,
    'write': '-mc',
    'write0': '---',
    'write_dirfd': 'EBADF',
    'write_rdonly': 'EBADF',
    'user:chgrp_mine_to_other': 'EPERM',
    'user:chgrp_mine_to_own': 'ok',
    'user:chgrp_suid_mode': '0o100755',
    'user:chgrp_suid_own': 'ok',
    'user:chmod_mine_sgid': 'ok',
    'user:chmod_mine_sgid_mode': '0o102755',
    'user:chmod_root_file': 'EPERM',
    'user:chmod_sticky_file': 'ok',
    'user:chmod_sticky_file_mode': '0o101644',
    'user:chown_mine_nop': 'ok',
    'user:chown_mine_to_root': 'EPERM',
    'user:create_in_nox_dir': 'EACCES',
    'user:create_in_ro_dir': 'EACCES',
    'user:create_in_sgid': 'ok',
    'user:create_in_sgid_gid': 4242,
    'user:create_sgid_nonmember_mode': '0o100755',
    'user:getxattr_wonly': 'EACCES',
    'user:link_own_file': 'ok',
    'user:link_root_file': 'EPERM',
    'user:list_nox_dir': 'ok',
    'user:mkdir_in_sgid': 'ok',
    'user:mkdir_in_sgid_gid': 4242,
    'user:mkdir_in_sgid_mode': '0o42755',
    'user:mknod_chr_user': 'EPERM',
    'user:open_readonly_trunc': 'EACCES',
    'user:open_readonly_write': 'EACCES',
    'user:open_wonly_read': 'EACCES',
    'user:removexattr_readonly': 'EACCES',
    'user:rename_root_dir_across': 'EACCES',
    'user:rename_root_dir_same': 'ok',
    'user:setxattr_readonly': 'EACCES',
    'user:setxattr_security_user': 'EPERM',
    'user:setxattr_trusted_user': 'EPERM',
    'user:setxattr_writable': 'ok',
    'user:stat_in_nox_dir': 'EACCES',
    'user:sticky_rename_root': 'EPERM',
    'user:sticky_rmdir_root': 'EPERM',
    'user:sticky_unlink_mine': 'ok',
    'user:sticky_unlink_root': 'EPERM',
    'user:truncate_readonly': 'EACCES',
    'user:truncate_writable': 'ok',
    'user:utime_now_readonly': 'EACCES',
    'user:utime_now_writable': 'ok',
    'user:utime_set_mine': 'ok',
    'user:utime_set_writable': 'EPERM',
    'append_pos': 5,
    'deadcwd_create': 'ENOENT',
    'deadcwd_list': 'ok',
    'deadcwd_list_n': 0,
    'deadcwd_mkdir': 'ENOENT',
    'excl_dir': 'EEXIST',
    'fadvise': 'ok',
    'fdatasync_dirfd': 'ok',
    'fifo_nonblock_wr': 'ENXIO',
    'flock': 'ok',
    'fsync_dirfd': 'ok',
    'fsync_rdonly': 'ok',
    'lchmod': 'ok',
    'lchmod_symlink': 'NotImplementedError',
    'lchown_symlink': 'ok',
    'lchown_uid': 5,
    'lockf': 'ok',
    'lockf_conflict': 'EAGAIN',
    'mmap_past_eof': 'signal 7',
    'mmap_within': '7878',
    'openat_after_rename': 'ok',
    'openat_after_rename_where': True,
    'read_far': 0,
    'rename_dirself': 'ok',
    'rename_self': 'ok',
    'seek_end': 3,
    'seek_far': 1099511627776,
    'statvfs_namemax': 255,
    'symlink_mtime': 4.0,
    'unl_fchmod': 'ok',
    'unl_fchown': 'ok',
    'unl_fsetxattr': 'ok',
    'unl_ftruncate': 'ok',
    'unl_futimes': 'ok',
    'unl_getxattr': '1',
    'unl_linkat': 'EXDEV',
    'unl_mode': '0o100600',
    'unl_mtime': 8.0,
    'unl_read': '68650000000000000000616263',
    'unl_size': 2,
    'unl_uid': 1,
    'unl_write': 'ok',
    'utime_symlink_nofollow': 'ok',
    'xattr_many_err': 'ENOSPC',
    'xattr_many_n_ge_10': True,
    'times:exchange_dstdir': '-mc',
    'times:exchange_file': '--c',
    'times:exchange_rc': 0,
    'times:falloc_keep': '-mc',
    'times:mkfifo_parent': '-mc',
    'times:mmap_write': 'amc',
    'times:punch': '-mc',
    'times:rename_dir_into_dst': '-mc',
    'times:rename_dir_out_self': '--c',
    'times:rename_victim_ctime': '--c',
    'times:truncate_grow': '-mc',
    'times:utime_explicit': 'amc',
    'times:utime_now': 'amc',
    'times:zero_range': '-mc',
}

libc = ctypes.CDLL(None, use_errno=True)
base = sys.argv[1]
out = {}


def rec(k, v):
    out[k] = v


def tryop(k, f, *a):
    try:
        r = f(*a)
        rec(k, 'ok')
        return r
    except OSError as e:
        rec(k, errno.errorcode.get(e.errno, e.errno))
        return None


def st(p, follow=True):
    return os.stat(p) if follow else os.lstat(p)


def tick():
    time.sleep(0.02)   # timestamps must be able to move


def changed(k, p, before, follow=True):
    s = st(p, follow)
    rec(k, ''.join(f[3] if getattr(s, f) != getattr(before, f) else '-'
                   for f in ('st_atime_ns', 'st_mtime_ns', 'st_ctime_ns')))


os.umask(0o022)
d = os.path.join(os.path.abspath(base), 'probe')
os.mkdir(d, 0o755)


def put(p, data=''):
    with open(p, 'w') as f:
        f.write(data)


def times_of(k, p, op, *a, follow=True):
    """Run op(*a); record which times of p it moved."""
    before = st(p, follow)
    tick()
    op(*a)
    changed(k, p, before, follow)


def open_close(p, flags, mode=0o644):
    os.close(os.open(p, flags, mode))


# ---- which times each operation moves ----
times_of('create:parent', d, put, d + '/f')
f0 = st(d + '/f')
times_of('link:parent', d, os.link, d + '/f', d + '/g')
changed('link:file', d + '/f', f0)
f0 = st(d + '/f')
times_of('unlink:parent', d, os.unlink, d + '/g')
changed('unlink:file', d + '/f', f0)
os.mkdir(d + '/sub')
s0, f0 = st(d + '/sub'), st(d + '/f')
times_of('rename:src_parent', d, os.rename, d + '/f', d + '/sub/f2')
changed('rename:dst_parent', d + '/sub', s0)
changed('rename:file', d + '/sub/f2', f0)
os.mkdir(d + '/dm')
f0 = st(d + '/dm')
times_of('rename_dir:src_parent', d, os.rename, d + '/dm', d + '/sub/dm')
changed('rename_dir:dir', d + '/sub/dm', f0)
rec('rename_dir:nlink', [st(d).st_nlink, st(d + '/sub').st_nlink])
t = d + '/t'
put(t, 'hello')
times_of('truncate_same', t, os.truncate, t, 5)
times_of('truncate_shrink', t, os.truncate, t, 2)
fd = os.open(t, os.O_RDWR)
times_of('ftruncate_same', t, os.ftruncate, fd, 2)
os.close(fd)
times_of('otrunc_nonempty', t, open_close, t, os.O_WRONLY | os.O_TRUNC)
times_of('otrunc_empty', t, open_close, t, os.O_WRONLY | os.O_TRUNC)
times_of('chmod', t, os.chmod, t, 0o600)
times_of('chown_nop', t, os.chown, t, -1, -1)
times_of('chown_same', t, os.chown, t, 0, 0)
times_of('setxattr', t, os.setxattr, t, 'user.x', b'1')
times_of('removexattr', t, os.removexattr, t, 'user.x')


def pwrite_at(p, data, off):
    fd = os.open(p, os.O_WRONLY)
    os.pwrite(fd, data, off)
    os.close(fd)


times_of('write0', t, pwrite_at, t, b'', 0)
times_of('write', t, pwrite_at, t, b'z', 0)
times_of('read(relatime)', t, lambda: open(t).read())
times_of('symlink:parent', d, os.symlink, 'x', d + '/sl')
times_of('mkdir:parent', d, os.mkdir, d + '/m2')
times_of('rmdir:parent', d, os.rmdir, d + '/m2')
times_of('readdir', d, os.listdir, d)
times_of('lstat_nochange', d + '/sl', os.lstat, d + '/sl', follow=False)
fd = os.open(d + '/fa', os.O_CREAT | os.O_WRONLY, 0o644)
times_of('fallocate', d + '/fa', tryop, 'fallocate_rc', os.posix_fallocate,
         fd, 0, 8192)
os.close(fd)
rec('fallocate:size', st(d + '/fa').st_size)

# ---- renaming a name onto another link of the same inode: nothing ----
put(d + '/h1', '1')
os.link(d + '/h1', d + '/h2')
os.rename(d + '/h1', d + '/h2')
rec('rename_samelink', sorted(x for x in os.listdir(d) if x.startswith('h')))

# ---- a setgid directory passes on its group (and setgid to subdirs) ----
sg = d + '/sg'
os.mkdir(sg)
os.chown(sg, 0, 12345)
os.chmod(sg, 0o2775)
put(sg + '/f')
os.mkdir(sg + '/dd', 0o755)
os.mknod(sg + '/fifo', 0o644 | stat.S_IFIFO)
os.symlink('q', sg + '/sym')
rec('setgid:file_gid', st(sg + '/f').st_gid)
rec('setgid:dir_gid', st(sg + '/dd').st_gid)
rec('setgid:dir_mode', oct(st(sg + '/dd').st_mode))
rec('setgid:fifo_gid', st(sg + '/fifo').st_gid)
rec('setgid:sym_gid', os.lstat(sg + '/sym').st_gid)

# ---- modes: umask, all twelve bits ----
os.umask(0o027)
put(d + '/um')
os.mkdir(d + '/umd')
os.umask(0o022)
rec('umask:file', oct(st(d + '/um').st_mode))
rec('umask:dir', oct(st(d + '/umd').st_mode))
open_close(d + '/m7', os.O_CREAT | os.O_WRONLY, 0o7777)
rec('create_7777', oct(st(d + '/m7').st_mode))
os.mkdir(d + '/d7', 0o7777)
rec('mkdir_7777', oct(st(d + '/d7').st_mode))
os.chmod(d + '/m7', 0o7777)
rec('chmod_7777', oct(st(d + '/m7').st_mode))

# ---- errno of each failing call ----
tryop('rmdir_dot', os.rmdir, d + '/sub/.')
tryop('rmdir_dotdot', os.rmdir, d + '/sub/..')
tryop('rename_to_dot', os.rename, d + '/sub', d + '/.')
tryop('rename_dot', os.rename, d + '/sub/.', d + '/xx')
tryop('mkdir_exists_file', os.mkdir, t)
tryop('link_dir', os.link, d + '/sub', d + '/sublink')
tryop('link_missing', os.link, d + '/nope', d + '/x2')
tryop('link_exists', os.link, t, d + '/sl')
tryop('unlink_missing', os.unlink, d + '/nope')
tryop('rename_missing', os.rename, d + '/nope', d + '/x3')
tryop('rename_file_over_dir', os.rename, t, d + '/sub')
tryop('rename_dir_over_file', os.rename, d + '/sub', t)
os.mkdir(d + '/e1')
os.mkdir(d + '/e2')
tryop('rename_dir_over_empty_dir', os.rename, d + '/e1', d + '/e2')
tryop('rename_into_self', os.rename, d + '/sub', d + '/sub/dm/x')
tryop('rename_parent_into_child', os.rename, d + '/sub', d + '/sub/dm')
tryop('truncate_neg', os.truncate, t, -1)
tryop('truncate_dir', os.truncate, d + '/sub', 0)
tryop('truncate_huge', os.truncate, t, 1 << 62)
fd = os.open(t, os.O_RDONLY)
tryop('ftruncate_rdonly', os.ftruncate, fd, 0)
tryop('write_rdonly', os.write, fd, b'x')
tryop('lseek_neg', os.lseek, fd, -1, os.SEEK_SET)
tryop('seek_data_past', os.lseek, fd, 100, os.SEEK_DATA)
tryop('seek_hole_past', os.lseek, fd, 100, os.SEEK_HOLE)
rec('seek_hole_0', os.lseek(fd, 0, os.SEEK_HOLE))
os.close(fd)
fd = os.open(t, os.O_WRONLY)
tryop('read_wronly', os.read, fd, 1)
os.close(fd)
fd = os.open(d + '/sub', os.O_RDONLY)
tryop('read_dir', os.read, fd, 1)
tryop('write_dirfd', os.write, fd, b'x')
os.close(fd)
tryop('open_dir_rdwr', os.open, d + '/sub', os.O_RDWR)
tryop('open_creat_dir', os.open, d + '/sub', os.O_CREAT | os.O_WRONLY)
tryop('open_excl_symlink', os.open, d + '/sl',
      os.O_CREAT | os.O_EXCL | os.O_WRONLY)
tryop('open_nofollow', os.open, d + '/sl', os.O_RDONLY | os.O_NOFOLLOW)
# O_CREAT through a dangling symlink creates its target
tryop('open_creat_dangling', open_close, d + '/sl', os.O_CREAT | os.O_WRONLY)
rec('dangling_created', os.path.exists(d + '/x'))
tryop('mknod_exists', os.mknod, t, 0o644 | stat.S_IFIFO)
tryop('symlink_empty', os.symlink, '', d + '/se')
tryop('readlink_file', os.readlink, t)

# ---- xattrs: namespaces, limits, sizes ----
tryop('getxattr_missing', os.getxattr, t, 'user.none')
tryop('setxattr_badns', os.setxattr, t, 'bogus.x', b'1')
tryop('setxattr_trusted', os.setxattr, t, 'trusted.x', b'1')
tryop('setxattr_longname', os.setxattr, t, 'user.' + 'a' * 300, b'1')
tryop('setxattr_bigvalue', os.setxattr, t, 'user.big', b'v' * 70000)
tryop('setxattr_symlink_user',
      lambda: os.setxattr(d + '/sl', 'user.x', b'1', follow_symlinks=False))
tryop('setxattr_fifo_user', os.setxattr, sg + '/fifo', 'user.x', b'1')
os.setxattr(t, 'user.two', b'ab')
buf = ctypes.create_string_buffer(1)
one = ctypes.c_size_t(1)


def raw(rc):
    return errno.errorcode.get(ctypes.get_errno()) if rc < 0 else rc


rec('getxattr_small', raw(libc.getxattr(t.encode(), b'trusted.x', buf, one)))
rec('getxattr_erange', raw(libc.getxattr(t.encode(), b'user.two', buf, one)))
rec('listxattr_erange', raw(libc.listxattr(t.encode(), buf, one)))
rec('listxattr_size', libc.listxattr(t.encode(), None, ctypes.c_size_t(0)))

# ---- sizes, link counts, data ----
rec('dir_size_kind', 'zero' if st(d + '/e2').st_size == 0 else 'nonzero')
rec('symlink_size', os.lstat(d + '/sl').st_size)
rec('nlink_file', st(t).st_nlink)
rec('nlink_root_probe', st(d).st_nlink)
fd = os.open(d + '/ap', os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
os.write(fd, b'abc')
os.pwrite(fd, b'Z', 0)      # Linux: O_APPEND wins over the offset
os.close(fd)
rec('append_pwrite', open(d + '/ap', 'rb').read().decode())
fd = os.open(d + '/sp', os.O_CREAT | os.O_RDWR, 0o644)
os.pwrite(fd, b'E', 10000)
rec('sparse_read', os.pread(fd, 5, 4096).hex())
os.close(fd)
put(d + '/r1', '1')
put(d + '/r2', '2')
os.link(d + '/r2', d + '/r3')
os.rename(d + '/r1', d + '/r2')
rec('rename_over_link_nlink', st(d + '/r3').st_nlink)
fd = os.open(d + '/uo', os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b'x')
os.unlink(d + '/uo')
rec('unlinked_fstat_nlink', os.fstat(fd).st_nlink)
os.close(fd)

# ---- more times: a rename's victim, utimes, directories moved in and
# out, RENAME_EXCHANGE, every fallocate mode, truncate up, mmap stores ----
tm = d + '/times'
os.mkdir(tm)


def tt(k, p, op, *a):
    times_of('times:' + k, p, op, *a)


put(tm + '/r1')
put(tm + '/r2')
os.link(tm + '/r2', tm + '/r3')
tt('rename_victim_ctime', tm + '/r3', os.rename, tm + '/r1', tm + '/r2')
put(tm + '/u')
tt('utime_explicit', tm + '/u', os.utime, tm + '/u', (5, 5))
tt('utime_now', tm + '/u', os.utime, tm + '/u', None)
os.mkdir(tm + '/x')
os.mkdir(tm + '/y')
put(tm + '/y/f')
tt('rename_dir_into_dst', tm + '/y', os.rename, tm + '/x', tm + '/y/x')
b = st(tm + '/y/x')
tick()
os.rename(tm + '/y/x', tm + '/x2')
changed('times:rename_dir_out_self', tm + '/x2', b)
put(tm + '/e1')
os.mkdir(tm + '/ed')
put(tm + '/ed/e2')
b, b2 = st(tm + '/e1'), st(tm + '/ed')
tick()
rec('times:exchange_rc', libc.renameat2(-100, (tm + '/e1').encode(), -100,
                                        (tm + '/ed/e2').encode(),
                                        2))           # RENAME_EXCHANGE
changed('times:exchange_file', tm + '/ed/e2', b)
changed('times:exchange_dstdir', tm + '/ed', b2)
fd = os.open(tm + '/ph', os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b'a' * 16384)
for k, mode, length in (('punch', 3, 4096), ('falloc_keep', 1, 1 << 20),
                        ('zero_range', 16, 4096)):
    tt(k, tm + '/ph', libc.fallocate, fd, mode, ctypes.c_int64(0),
       ctypes.c_int64(length))
os.close(fd)
tt('mkfifo_parent', tm, os.mkfifo, tm + '/ff')
put(tm + '/g')
tt('truncate_grow', tm + '/g', os.truncate, tm + '/g', 10000)


def mmap_store(p):
    fd = os.open(p, os.O_RDWR)
    m = mmap.mmap(fd, 4096)
    m[0:1] = b'z'
    m.flush()
    m.close()
    os.close(fd)
    time.sleep(0.05)


put(tm + '/mm')
os.truncate(tm + '/mm', 4096)
tt('mmap_write', tm + '/mm', mmap_store, tm + '/mm')

# ---- a file open after its last name went; a removed cwd; a renamed
# directory's descriptor; mmap past EOF; locks; odd fsyncs ----
mo = d + '/more'
os.mkdir(mo)
fd = os.open(mo + '/u', os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b'hello')
os.unlink(mo + '/u')
tryop('unl_fchmod', os.fchmod, fd, 0o600)
rec('unl_mode', oct(os.fstat(fd).st_mode))
tryop('unl_fchown', os.fchown, fd, 1, 1)
rec('unl_uid', os.fstat(fd).st_uid)
tryop('unl_ftruncate', os.ftruncate, fd, 2)
rec('unl_size', os.fstat(fd).st_size)
tryop('unl_futimes', os.utime, fd, (7, 8))
rec('unl_mtime', os.fstat(fd).st_mtime)
tryop('unl_fsetxattr', os.setxattr, fd, 'user.q', b'1')
rec('unl_getxattr', os.getxattr(fd, 'user.q').decode())
tryop('unl_linkat', os.link, '/proc/self/fd/%d' % fd, mo + '/back')
tryop('unl_write', os.pwrite, fd, b'abc', 10)
rec('unl_read', os.pread(fd, 20, 0).hex())
os.close(fd)

os.mkdir(mo + '/gone')
cwd = os.getcwd()
os.chdir(mo + '/gone')
os.rmdir(mo + '/gone')
tryop('deadcwd_create', put, 'x')
tryop('deadcwd_mkdir', os.mkdir, 'y')
tryop('deadcwd_list', os.listdir, '.')
rec('deadcwd_list_n', len(os.listdir('.')) if out['deadcwd_list'] == 'ok'
    else -1)
os.chdir(cwd)

os.mkdir(mo + '/r1')
dfd = os.open(mo + '/r1', os.O_RDONLY)
os.rename(mo + '/r1', mo + '/r2')
tryop('openat_after_rename', lambda: os.close(
    os.open('f', os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dfd)))
rec('openat_after_rename_where', os.path.exists(mo + '/r2/f'))
os.close(dfd)

p = mo + '/mm'
with open(p, 'wb') as f:
    f.write(b'x' * 8192)
fd = os.open(p, os.O_RDWR)
m = mmap.mmap(fd, 8192)
os.ftruncate(fd, 100)
pid = os.fork()
if pid == 0:                  # a load past the new EOF: SIGBUS
    _ = m[5000]
    os._exit(0)
_, status = os.waitpid(pid, 0)
rec('mmap_past_eof', 'signal %d' % os.WTERMSIG(status)
    if os.WIFSIGNALED(status) else 'exit %d' % os.WEXITSTATUS(status))
rec('mmap_within', m[50:52].hex())
m.close()
os.close(fd)

p = mo + '/xa'
put(p)
n = 0
try:
    for i in range(200):
        os.setxattr(p, 'user.k%03d' % i, b'v' * 200)
        n += 1
except OSError as e:
    rec('xattr_many_err', errno.errorcode.get(e.errno))
rec('xattr_many_n_ge_10', n >= 10)

tryop('excl_dir', os.open, mo, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
put(mo + '/same')
tryop('rename_self', os.rename, mo + '/same', mo + '/same')
tryop('rename_dirself', os.rename, mo + '/r2', mo + '/r2')
p = mo + '/ap2'
fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_APPEND, 0o644)
os.write(fd, b'12345')
rec('append_pos', os.lseek(fd, 0, os.SEEK_CUR))
os.close(fd)
fd = os.open(p, os.O_RDONLY)
rec('seek_end', os.lseek(fd, -2, os.SEEK_END))
rec('seek_far', os.lseek(fd, 1 << 40, os.SEEK_SET))
rec('read_far', len(os.read(fd, 10)))
tryop('fsync_rdonly', os.fsync, fd)
tryop('fadvise', os.posix_fadvise, fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.close(fd)
dfd = os.open(mo, os.O_RDONLY)
tryop('fsync_dirfd', os.fsync, dfd)
tryop('fdatasync_dirfd', os.fdatasync, dfd)
os.close(dfd)

fd = os.open(p, os.O_RDWR)
tryop('flock', fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
tryop('lockf', fcntl.lockf, fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
pid = os.fork()
if pid == 0:                  # another process meets the lock
    code = 0
    try:
        fcntl.lockf(os.open(p, os.O_RDWR), fcntl.LOCK_EX | fcntl.LOCK_NB,
                    1, 0)
    except OSError as e:
        code = e.errno
    os._exit(code)
_, status = os.waitpid(pid, 0)
rec('lockf_conflict', errno.errorcode.get(os.WEXITSTATUS(status),
                                          os.WEXITSTATUS(status)))
os.close(fd)
rec('statvfs_namemax', os.statvfs(base).f_namemax)
os.mkfifo(mo + '/ff')
tryop('fifo_nonblock_wr', os.open, mo + '/ff', os.O_WRONLY | os.O_NONBLOCK)
tryop('lchmod', lambda: os.chmod(mo + '/ff', 0o600, follow_symlinks=False))
os.symlink('ff', mo + '/sl')
try:
    os.chmod(mo + '/sl', 0o600, follow_symlinks=False)
    rec('lchmod_symlink', 'ok')
except (OSError, NotImplementedError) as e:
    rec('lchmod_symlink', type(e).__name__ + str(getattr(e, 'errno', '')))
tryop('lchown_symlink', os.lchown, mo + '/sl', 5, 5)
rec('lchown_uid', os.lstat(mo + '/sl').st_uid)
tryop('utime_symlink_nofollow',
      lambda: os.utime(mo + '/sl', (3, 4), follow_symlinks=False))
rec('symlink_mtime', os.lstat(mo + '/sl').st_mtime)

# ---- as an unprivileged user (nobody; the mount needs allow_other) ----
U = G = 65534


def mk(p, mode, uid=0, gid=0, is_dir=False):
    if is_dir:
        os.mkdir(p)
    else:
        put(p, 'x')
    os.chown(p, uid, gid)
    os.chmod(p, mode)


u = d + '/user'
W = u + '/w_dir'
mk(u, 0o755, is_dir=True)
mk(u + '/ro_dir', 0o555, is_dir=True)
mk(u + '/nox_dir', 0o766, is_dir=True)      # others: rw but no search
mk(u + '/nox_dir/f', 0o644)
mk(u + '/sticky', 0o1777, is_dir=True)
mk(u + '/sticky/rootf', 0o666)
mk(u + '/sticky/rootd', 0o777, is_dir=True)
mk(u + '/sticky/userf', 0o644, U, G)
mk(W, 0o777, is_dir=True)
mk(W + '/rootfile', 0o666)
mk(W + '/rootro', 0o644)
mk(W + '/wonly', 0o622)
mk(W + '/mine', 0o644, U, G)
mk(W + '/mysuid', 0o6755, U, G)
mk(W + '/rootdir', 0o755, is_dir=True)     # its '..' is not ours to change
mk(W + '/sgd', 0o2777, 0, 4242, is_dir=True)
os.setxattr(W + '/rootfile', 'user.a', b'1')


def user_scenarios():
    def urec(k, v):
        rec('user:' + k, v)

    def utry(k, f, *a):
        tryop('user:' + k, f, *a)

    def mode(p):
        return oct(os.stat(p).st_mode)

    utry('create_in_ro_dir', put, u + '/ro_dir/x')
    utry('stat_in_nox_dir', os.stat, u + '/nox_dir/f')
    utry('list_nox_dir', os.listdir, u + '/nox_dir')
    utry('create_in_nox_dir', put, u + '/nox_dir/y')
    utry('sticky_unlink_root', os.unlink, u + '/sticky/rootf')
    utry('sticky_rmdir_root', os.rmdir, u + '/sticky/rootd')
    utry('sticky_rename_root', os.rename, u + '/sticky/rootf', u + '/sticky/z')
    utry('sticky_unlink_mine', os.unlink, u + '/sticky/userf')
    utry('chmod_root_file', os.chmod, W + '/rootfile', 0o777)
    utry('chown_mine_to_root', os.chown, W + '/mine', 0, -1)
    utry('chgrp_mine_to_other', os.chown, W + '/mine', -1, 0)
    utry('chgrp_mine_to_own', os.chown, W + '/mine', -1, G)
    utry('chown_mine_nop', os.chown, W + '/mine', U, G)
    utry('chmod_mine_sgid', os.chmod, W + '/mine', 0o2755)
    urec('chmod_mine_sgid_mode', mode(W + '/mine'))
    utry('chgrp_suid_own', os.chown, W + '/mysuid', -1, G)
    urec('chgrp_suid_mode', mode(W + '/mysuid'))
    utry('utime_now_writable', os.utime, W + '/rootfile', None)
    utry('utime_set_writable', os.utime, W + '/rootfile', (1, 1))
    utry('utime_now_readonly', os.utime, W + '/rootro', None)
    utry('utime_set_mine', os.utime, W + '/mine', (5, 5))
    utry('truncate_readonly', os.truncate, W + '/rootro', 0)
    utry('truncate_writable', os.truncate, W + '/rootfile', 1)
    utry('open_wonly_read', os.open, W + '/wonly', os.O_RDONLY)
    utry('open_readonly_trunc', os.open, W + '/rootro',
         os.O_RDONLY | os.O_TRUNC)
    utry('open_readonly_write', os.open, W + '/rootro', os.O_WRONLY)
    utry('setxattr_readonly', os.setxattr, W + '/rootro', 'user.b', b'1')
    utry('setxattr_writable', os.setxattr, W + '/rootfile', 'user.b', b'1')
    utry('getxattr_wonly', os.getxattr, W + '/wonly', 'user.a')
    utry('setxattr_trusted_user', os.setxattr, W + '/mine', 'trusted.t', b'1')
    utry('setxattr_security_user', os.setxattr, W + '/mine', 'security.t',
         b'1')
    utry('removexattr_readonly', os.removexattr, W + '/rootro', 'user.a')
    utry('link_root_file', os.link, W + '/rootro', W + '/lnk')
    utry('link_own_file', os.link, W + '/mine', W + '/lnk2')
    utry('rename_root_dir_across', os.rename, W + '/rootdir',
         u + '/sticky/moved')
    utry('rename_root_dir_same', os.rename, W + '/rootdir', W + '/rootdir2')
    utry('mkdir_in_sgid', os.mkdir, W + '/sgd/sub')
    urec('mkdir_in_sgid_gid', os.stat(W + '/sgd/sub').st_gid)
    urec('mkdir_in_sgid_mode', mode(W + '/sgd/sub'))
    utry('create_in_sgid', put, W + '/sgd/f')
    urec('create_in_sgid_gid', os.stat(W + '/sgd/f').st_gid)
    open_close(W + '/sgd/f2', os.O_CREAT | os.O_WRONLY, 0o2755)
    urec('create_sgid_nonmember_mode', mode(W + '/sgd/f2'))
    utry('mknod_chr_user', os.mknod, W + '/chr', 0o644 | stat.S_IFCHR,
         os.makedev(1, 3))
    utry('chmod_sticky_file', os.chmod, W + '/mine', 0o1644)
    urec('chmod_sticky_file_mode', mode(W + '/mine'))


# in a child with the user's ids; its observations come back by a pipe
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    code = 0
    try:
        os.close(r)
        os.setgroups([])
        os.setresgid(G, G, G)
        os.setresuid(U, U, U)
        user_scenarios()
        os.write(w, json.dumps(out).encode())
    except BaseException as e:
        print('user scenarios: %r' % e, file=sys.stderr)
        code = 1
    os._exit(code)
os.close(w)
data = b''
while True:
    c = os.read(r, 1 << 16)
    if not c:
        break
    data += c
_, status = os.waitpid(pid, 0)
if status:
    sys.exit(1)
out = json.loads(data)

if '--record' in sys.argv[2:]:
    print(json.dumps(out, indent=0, sort_keys=True))
    sys.exit(0)
bad = [k for k in sorted(set(EXPECT) | set(out)) if EXPECT.get(k) != out.get(k)]
for k in bad:
    print('%s: got %r, ext4 gives %r' % (k, out.get(k), EXPECT.get(k)))
print('conform: %d observations, %d differ from ext4' % (len(out), len(bad)))
sys.exit(1 if bad else 0)
