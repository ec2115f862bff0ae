#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""twinfs benchmark driver: twinfs against fuse2fs, zfs-fuse, passthrough_ll
and a native ext4 directory, side by side on one disk.

Run through bench/run (which installs the packages); see bench/README.md.
Standard library only, plus matplotlib (python3-matplotlib) for the chart.
"""
import argparse
import ctypes
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MiB = 1 << 20
GiB = 1 << 30
libc = ctypes.CDLL(None, use_errno=True)


def log(*a):
    print(time.strftime('%H:%M:%S'), *a, flush=True)


def sh(cmd, check=True, timeout=120, **kw):
    r = subprocess.run(cmd, check=False, timeout=timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, **kw)
    if check and r.returncode:
        raise RuntimeError('%s exited %d: %s' % (' '.join(cmd), r.returncode,
                                                 r.stdout.strip()[-500:]))
    return r


def syncfs(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            e = ctypes.get_errno()
            raise OSError(e, 'syncfs ' + path)
    finally:
        os.close(fd)


def drop_caches():
    os.sync()
    with open('/proc/sys/vm/drop_caches', 'w') as f:
        f.write('3\n')


def wait_for(pred, timeout, what):
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError('timed out waiting for ' + what)
        time.sleep(0.01)


def vm_hwm_kib(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_hwm(pid):
    try:
        with open('/proc/%d/clear_refs' % pid, 'w') as f:
            f.write('5\n')
    except OSError:
        pass


def close_fds_under(path):
    for fd in os.listdir('/proc/self/fd'):
        try:
            if os.readlink('/proc/self/fd/' + fd).startswith(path + '/'):
                os.close(int(fd))
        except OSError:
            pass


def umount(mnt):
    for _ in range(20):
        if not os.path.ismount(mnt):
            return
        r = sh(['umount', mnt], check=False)
        if r.returncode == 0:
            return
        time.sleep(0.5)
    sh(['umount', '-l', mnt], check=False)


def stop_proc(p, timeout=60):
    if p is None or p.poll() is not None:
        return
    try:
        p.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


# --------------------------------------------------------------- systems
class System:
    """One file system under test. mnt is where workloads run."""
    name = '?'
    meta = True          # takes part in the metadata workloads
    proc = None

    def __init__(self, tmp):
        self.tmp = tmp
        self.dir = os.path.join(tmp, self.name)
        os.makedirs(self.dir)
        self.mnt = os.path.join(self.dir, 'mnt')
        os.makedirs(self.mnt)
        self.logf = open(os.path.join(self.dir, 'daemon.log'), 'ab')

    def setup(self):
        pass

    def cold(self):
        """Empty every cache: the daemon's (remount) and the kernel's."""
        self.unmount()
        drop_caches()
        self.mount()

    def mount(self):
        pass

    def unmount(self):
        pass

    def cleanup(self):
        self.unmount()

    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def _spawn(self, argv):
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=self.logf,
                                     stdin=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError('%s exited with %d; see %s' % (
                    argv[0], self.proc.returncode, self.logf.name))
            return os.path.ismount(self.mnt)
        wait_for(up, 60, self.name + ' mount')

    def _fuse_unmount(self):
        if os.path.ismount(self.mnt):
            umount(self.mnt)
        stop_proc(self.proc)
        self.proc = None


class Native(System):
    """Kernel ext4 on a loop device over a 4 GiB image on the same disk
    (isolated, so its syncfs does not flush the other systems' images)."""
    name = 'native'

    def setup(self):
        self.img = os.path.join(self.dir, 'ext4.img')
        with open(self.img, 'wb') as f:
            f.truncate(4 * GiB)
        sh(['mkfs.ext4', '-F', '-q', self.img])
        self.mount()

    def mount(self):
        sh(['mount', '-t', 'ext4', '-o', 'loop', self.img, self.mnt])

    def unmount(self):
        if os.path.ismount(self.mnt):
            umount(self.mnt)


class Passthrough(System):
    name = 'passthrough_ll'
    meta = False
    binary = None

    def setup(self):
        self.src = os.path.join(self.dir, 'src')
        os.makedirs(self.src)
        self.mount()

    def mount(self):
        self._spawn([self.binary, '-f', '-o', 'source=' + self.src, self.mnt])

    def unmount(self):
        self._fuse_unmount()


class Fuse2fs(System):
    name = 'fuse2fs'

    def setup(self):
        self.img = os.path.join(self.dir, 'ext4.img')
        with open(self.img, 'wb') as f:
            f.truncate(4 * GiB)
        sh(['mkfs.ext4', '-F', '-q', self.img])
        self.mount()

    def mount(self):
        self._spawn(['fuse2fs', self.img, self.mnt, '-f'])

    def unmount(self):
        self._fuse_unmount()


class ZfsFuse(System):
    name = 'zfs-fuse'
    pool = 'twbench'

    def setup(self):
        self.vdev = os.path.join(self.dir, 'vdev')
        with open(self.vdev, 'wb') as f:
            f.truncate(4 * GiB)
        self.proc = subprocess.Popen(['zfs-fuse', '--no-daemon',
                                      '--no-kstat-mount'],
                                     stdout=self.logf, stderr=self.logf,
                                     stdin=subprocess.DEVNULL)
        t0 = time.monotonic()
        while True:      # the daemon needs a moment before zpool can talk
            if self.proc.poll() is not None:
                raise RuntimeError('zfs-fuse exited; see ' + self.logf.name)
            r = sh(['zpool', 'list'], check=False)
            if r.returncode == 0:
                break
            if time.monotonic() - t0 > 30:
                raise RuntimeError('zfs-fuse did not start: ' + r.stdout)
            time.sleep(0.2)
        # cachefile=none: the pool never enters /var/lib/zfs/zpool.cache,
        # so nothing of it survives the run
        self.pool = 'twbench%d' % os.getpid()
        sh(['zpool', 'create', '-f', '-o', 'cachefile=none', '-m', self.mnt,
            self.pool, self.vdev])
        wait_for(lambda: os.path.ismount(self.mnt), 30, 'zfs mount')
        self.imported = True

    def mount(self):
        sh(['zpool', 'import', '-o', 'cachefile=none', '-d', self.dir, self.pool])
        self.imported = True
        wait_for(lambda: os.path.ismount(self.mnt), 30, 'zfs mount')

    def unmount(self):
        if getattr(self, 'imported', False):
            sh(['zpool', 'export', self.pool], check=False)
            self.imported = False

    def cleanup(self):
        if getattr(self, 'imported', False):
            r = sh(['zpool', 'destroy', '-f', self.pool], check=False)
            if r.returncode:
                log('zpool destroy:', r.stdout.strip())
                sh(['zpool', 'export', '-f', self.pool], check=False)
            self.imported = False
        if os.path.ismount(self.mnt):
            umount(self.mnt)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Twinfs(System):
    name = 'twinfs'
    bindir = None
    size = '4G'

    def setup(self):
        self.img = os.path.join(self.dir, 'twinfs.img')
        self.mkfs(self.img, self.size)
        self.mount()

    def mkfs(self, img, size):
        if os.path.exists(img):
            os.unlink(img)
        sh([os.path.join(self.bindir, 'tools', 'mkfs.twinfs'), '-s', size, img],
           timeout=600)

    def mount(self):
        argv = [os.path.join(self.bindir, 'fs', 'twinfs'), '-f']
        if os.environ.get('TWINFS_OPTS'):
            argv += ['-o', os.environ['TWINFS_OPTS']]
        self._spawn(argv + [self.img, self.mnt])

    def unmount(self):
        self._fuse_unmount()

    def ctl(self, *args):
        return sh([os.path.join(self.bindir, 'tools', 'twinfsctl')] + list(args))

    def status(self):
        r = self.ctl('--json', 'status', self.mnt)
        return json.loads(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------- workloads
def rand_buf(n):
    return memoryview(bytearray(os.urandom(n)))


def w_seqwrite(s, cfg, res):
    path = os.path.join(s.mnt, 'seq')
    buf = rand_buf(MiB)
    total = cfg.seq_mib * MiB
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    done = 0
    while done < total:
        done += os.write(fd, buf)
        if time.perf_counter() - t0 > cfg.limit:
            res.note('seq write stopped at the time limit')
            break
    os.fsync(fd)
    os.close(fd)
    res.add('seqwrite', done / MiB / (time.perf_counter() - t0))


def w_seqread(s, cfg, res):
    path = os.path.join(s.mnt, 'seq')
    s.cold()
    buf = bytearray(MiB)
    t0 = time.perf_counter()
    done = 0
    with open(path, 'rb', buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            done += n
            if time.perf_counter() - t0 > cfg.limit:
                break
    res.add('seqread_cold', done / MiB / (time.perf_counter() - t0))
    os.unlink(path)
    syncfs(s.mnt)


def w_random(s, cfg, res):
    path = os.path.join(s.mnt, 'rand')
    size = cfg.rand_mib * MiB
    buf = rand_buf(MiB)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    for off in range(0, size, MiB):
        os.pwrite(fd, buf, off)
    os.fsync(fd)
    nblk = size // 4096
    rnd = random.Random(1)
    offs = [rnd.randrange(nblk) * 4096 for _ in range(1 << 16)]
    perm = [b * 4096 for b in range(nblk)]   # reads: each block once
    rnd.shuffle(perm)
    pieces = [buf[i * 4096:(i + 1) * 4096] for i in range(256)]
    # random writes for cfg.rand_secs, then fsync
    n = 0
    t0 = time.perf_counter()
    end = t0 + cfg.rand_secs
    pw = os.pwrite
    while True:
        for i in range(1024):
            pw(fd, pieces[i & 255], offs[(n + i) & 0xffff])
        n += 1024
        if time.perf_counter() >= end:
            break
    os.fsync(fd)
    res.add('randwrite', n / (time.perf_counter() - t0))
    os.close(fd)

    def rread(key, passes):
        fd = os.open(path, os.O_RDONLY)
        pr = os.pread
        n = 0
        t0 = time.perf_counter()
        end = t0 + cfg.rread_secs
        while n < nblk * passes:
            k = n % nblk
            for o in perm[k:k + 256]:
                pr(fd, 4096, o)
            n += len(perm[k:k + 256])
            if time.perf_counter() >= end:
                break
        res.add(key, n / (time.perf_counter() - t0))
        os.close(fd)
    s.cold()
    rread('randread_cold', 1)
    with open(path, 'rb', buffering=0) as f:      # warm the whole file
        b = bytearray(MiB)
        while f.readinto(b):
            pass
    rread('randread_warm', 1000)
    os.unlink(path)
    syncfs(s.mnt)


def w_files(s, cfg, res):
    root = os.path.join(s.mnt, 'files')
    os.mkdir(root)
    data = os.urandom(4096)
    paths = []
    t0 = time.perf_counter()
    stopped = False
    for d in range(20):
        dp = os.path.join(root, 'd%02d' % d)
        os.mkdir(dp)
        for i in range(cfg.nfiles // 20):
            p = os.path.join(dp, 'f%05d' % i)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, data)
            os.close(fd)
            paths.append(p)
            if not (i & 63) and time.perf_counter() - t0 > cfg.limit:
                stopped = True
                break
        if stopped:
            res.note('file create stopped at the time limit')
            break
    syncfs(s.mnt)
    res.add('create', len(paths) / (time.perf_counter() - t0))

    s.cold()
    t0 = time.perf_counter()
    st = os.stat
    for p in paths:
        st(p)
    res.add('stat_cold', len(paths) / (time.perf_counter() - t0))

    t0 = time.perf_counter()
    for p in paths:
        os.unlink(p)
    syncfs(s.mnt)
    res.add('delete', len(paths) / (time.perf_counter() - t0))
    shutil.rmtree(root)
    syncfs(s.mnt)


def preread(tree):
    b = bytearray(MiB)
    for dp, dns, fns in os.walk(tree):
        for fn in fns:
            p = os.path.join(dp, fn)
            if os.path.islink(p):
                continue
            try:
                with open(p, 'rb', buffering=0) as f:
                    while f.readinto(b):
                        pass
            except OSError:
                pass


def w_tree(s, cfg, res, rep):
    if rep > 0 and s.name in cfg.tree_slow:
        res.note('tree measured fewer times: skipped from the rep after a '
                 'copy took over %ds' % cfg.tree_slow_secs)
        return
    dst = os.path.join(s.mnt, 'tree')
    s.cold()          # fresh daemon, so VmHWM is this copy's peak
    pid = s.pid()
    if pid:
        reset_hwm(pid)
    preread(cfg.tree_src)
    t0 = time.perf_counter()
    try:
        subprocess.run(['cp', '-a', cfg.tree_src, dst], check=True,
                       timeout=cfg.tree_limit)
        syncfs(s.mnt)
        dt = time.perf_counter() - t0
        res.add('cp_tree', dt)
    except subprocess.TimeoutExpired:
        res.note('cp -a hit the %ds limit' % cfg.tree_limit)
        res.add('cp_tree', float(cfg.tree_limit), bound=True)
        dt = cfg.tree_limit
    if dt > cfg.tree_slow_secs:
        cfg.tree_slow.add(s.name)
    if pid:
        h = vm_hwm_kib(pid)
        if h:
            res.add('rss_tree', h / 1024.0)
    s.cold()
    t0 = time.perf_counter()
    subprocess.run(['find', dst], check=True, stdout=subprocess.DEVNULL,
                   timeout=600)
    res.add('find_cold', time.perf_counter() - t0)
    t0 = time.perf_counter()
    subprocess.run(['rm', '-rf', dst], check=True, timeout=600)
    syncfs(s.mnt)
    res.add('rm_tree', time.perf_counter() - t0)


def w_append(s, cfg, res):
    for nthr in (1, 8):
        lats = [[] for _ in range(nthr)]
        counts = [0] * nthr
        rec = b'x' * 200 + b'\n'
        end = time.perf_counter() + cfg.append_secs
        barrier = threading.Barrier(nthr + 1)

        def worker(k):
            p = os.path.join(s.mnt, 'log%d' % k)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            barrier.wait()
            pc = time.perf_counter
            l = lats[k]
            while True:
                a = pc()
                os.write(fd, rec)
                os.fsync(fd)
                b = pc()
                l.append(b - a)
                if b >= end:
                    break
            os.close(fd)
            os.unlink(p)
        ths = [threading.Thread(target=worker, args=(k,)) for k in range(nthr)]
        for t in ths:
            t.start()
        end = time.perf_counter() + cfg.append_secs
        t0 = time.perf_counter()
        barrier.wait()
        for t in ths:
            t.join()
        dt = time.perf_counter() - t0
        all_l = sorted(x for l in lats for x in l)
        res.add('append%d' % nthr, len(all_l) / dt)
        res.add('append%d_p50' % nthr, pct(all_l, 50) * 1e3)
        res.add('append%d_p99' % nthr, pct(all_l, 99) * 1e3)
    syncfs(s.mnt)


def pct(sorted_vals, p):
    if not sorted_vals:
        return float('nan')
    k = min(len(sorted_vals) - 1, int(round(p / 100.0 * (len(sorted_vals) - 1))))
    return sorted_vals[k]


# twinfs only -------------------------------------------------------------
def w_cp_latency(s, cfg, res):
    """4 KiB writes while CPs run: p50 against p99 (a CP must not stall)."""
    path = os.path.join(s.mnt, 'cplat')
    size = 64 * MiB
    buf = rand_buf(MiB)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    for off in range(0, size, MiB):
        os.pwrite(fd, buf, off)
    os.fsync(fd)
    cps0 = s.status()['cps']
    stop = threading.Event()
    cp_times = []

    def cper():
        while not stop.wait(cfg.cp_every):
            t = time.perf_counter()
            s.ctl('cp', s.mnt)
            cp_times.append(time.perf_counter() - t)
    th = threading.Thread(target=cper)
    th.start()
    lat = []
    rnd = random.Random(2)
    nblk = size // 4096
    end = time.perf_counter() + cfg.cplat_secs
    pc = time.perf_counter
    try:
        while True:
            off = rnd.randrange(nblk) * 4096
            a = pc()
            os.pwrite(fd, buf[:4096], off)
            b = pc()
            lat.append(b - a)
            if b >= end:
                break
    finally:
        stop.set()
        th.join()
    os.close(fd)
    lat.sort()
    cps = s.status()['cps'] - cps0
    res.add('cplat_p50_us', pct(lat, 50) * 1e6)
    res.add('cplat_p99_us', pct(lat, 99) * 1e6)
    res.add('cplat_max_ms', lat[-1] * 1e3)
    res.add('cplat_cps', cps)
    res.add('cplat_p99_over_p50', pct(lat, 99) / max(pct(lat, 50), 1e-9))
    os.unlink(path)
    syncfs(s.mnt)


def w_growth(s, cfg, res):
    """CP time against dirty blocks; mount time against image size."""
    path = os.path.join(s.mnt, 'grow')
    buf = rand_buf(MiB)
    size = 256 * MiB if not cfg.smoke else 32 * MiB
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    for off in range(0, size, MiB):
        os.pwrite(fd, buf, off)
    os.fsync(fd)
    s.ctl('cp', s.mnt)
    nblk = size // 4096
    rnd = random.Random(3)
    for nd in cfg.cp_dirty:
        for _ in range(cfg.reps):
            s.ctl('cp', s.mnt)
            blocks = rnd.sample(range(nblk), min(nd, nblk))
            for b in blocks:
                os.pwrite(fd, buf[:4096], b * 4096)
            st = s.status()
            t = time.perf_counter()
            s.ctl('cp', s.mnt)
            wall = time.perf_counter() - t
            st2 = s.status()
            res.add('cp_ms_%d' % nd, st2['last_cp_usec'] / 1000.0)
            res.add('cp_wall_ms_%d' % nd, wall * 1000.0)
            res.add('cp_dirty_mib_%d' % nd, st['dirty_bytes'] / MiB)
    os.close(fd)
    os.unlink(path)
    s.unmount()
    img0 = s.img
    try:
        for size in cfg.mount_sizes:
            s.img = os.path.join(s.dir, 'grow.img')
            t = time.perf_counter()
            s.mkfs(s.img, size)
            res.add('mkfs_s_%s' % size, time.perf_counter() - t)
            for _ in range(cfg.reps):
                drop_caches()
                t = time.perf_counter()
                s.mount()
                res.add('mount_ms_%s' % size, (time.perf_counter() - t) * 1e3)
                h = vm_hwm_kib(s.pid())
                if h:
                    res.add('mount_rss_mib_%s' % size, h / 1024.0)
                s.unmount()
            os.unlink(s.img)
    finally:
        s.img = img0
        if not os.path.ismount(s.mnt):
            s.mount()


# ---------------------------------------------------------------- results
class Results:
    def __init__(self):
        self.data = {}      # system -> key -> [values]
        self.bound = {}     # system -> key -> True when a value is a limit
        self.notes = []
        self.sys = None

    def add(self, key, v, bound=False):
        self.data.setdefault(self.sys, {}).setdefault(key, []).append(v)
        if bound:
            self.bound.setdefault(self.sys, {})[key] = True
        log('  %-14s %-22s %.4g%s' % (self.sys, key, v, ' (limit)' if bound else ''))

    def note(self, msg):
        m = '%s: %s' % (self.sys, msg)
        if m not in self.notes:
            self.notes.append(m)
        log('  note:', m)


# key, label, unit, higher is better, in ratio chart
WORKLOADS = [
    ('seqwrite', 'sequential write 1 GiB, 1 MiB + fsync', 'MB/s', True),
    ('seqread_cold', 'sequential read, cold', 'MB/s', True),
    ('randwrite', 'random 4 KiB write + fsync', 'IOPS', True),
    ('randread_cold', 'random 4 KiB read, cold', 'IOPS', True),
    ('randread_warm', 'random 4 KiB read, warm', 'IOPS', True),
    ('create', 'create 4 KiB files + syncfs', 'files/s', True),
    ('stat_cold', 'stat files, cold', 'files/s', True),
    ('delete', 'delete files + syncfs', 'files/s', True),
    ('cp_tree', 'cp -a tree in + syncfs', 's', False),
    ('find_cold', 'find tree, cold', 's', False),
    ('rm_tree', 'rm -rf tree + syncfs', 's', False),
    ('append1', 'append+fsync, 1 thread', 'ops/s', True),
    ('append8', 'append+fsync, 8 threads', 'ops/s', True),
]
EXTRA = [
    ('append1_p50', 'append+fsync 1 thread p50', 'ms', False),
    ('append1_p99', 'append+fsync 1 thread p99', 'ms', False),
    ('append8_p50', 'append+fsync 8 threads p50', 'ms', False),
    ('append8_p99', 'append+fsync 8 threads p99', 'ms', False),
    ('rss_tree', 'daemon peak RSS (VmHWM) during cp -a', 'MiB', False),
]
SYSTEMS = ['twinfs', 'fuse2fs', 'zfs-fuse', 'passthrough_ll', 'native']
PEERS = ['fuse2fs', 'zfs-fuse']


def med(vals):
    return statistics.median(vals) if vals else None


def fmt(v):
    if v is None:
        return '–'
    a = abs(v)
    if a >= 1000:
        return '{:,.0f}'.format(v)
    if a >= 100:
        return '%.0f' % v
    if a >= 10:
        return '%.1f' % v
    return '%.2f' % v


def cell(res, sysname, key):
    vals = res.data.get(sysname, {}).get(key)
    if not vals:
        return '–'
    b = '≥' if res.bound.get(sysname, {}).get(key) else ''
    if len(vals) == 1:
        return b + fmt(vals[0]) + ' (n=1)'
    return '%s%s (%s–%s)' % (b, fmt(med(vals)), fmt(min(vals)), fmt(max(vals)))


def speed_ratio(res, key, hib, peers):
    """twinfs speed over the best of peers: > 1 means twinfs is faster."""
    t = med(res.data.get('twinfs', {}).get(key, []))
    pv = [med(res.data.get(p, {}).get(key, [])) for p in peers]
    pv = [v for v in pv if v]
    if not t or not pv:
        return None
    if hib:
        return t / max(pv)
    return min(pv) / t


URING_PARAM = '/sys/module/fuse/parameters/enable_uring'


URING_STATE = None


def uring_param(value=None):
    """The fuse module's enable_uring ('Y'/'N'), set to value if given;
    None when the kernel has no FUSE over io_uring."""
    try:
        if value is not None:
            with open(URING_PARAM, 'w') as f:
                f.write(value)
        with open(URING_PARAM) as f:
            return f.read().strip()
    except OSError:
        return None


def machine():
    out = []
    try:
        with open('/proc/cpuinfo') as f:
            models = [l.split(':', 1)[1].strip() for l in f
                      if l.startswith('model name')]
        out.append('CPU: %d × %s' % (len(models), models[0] if models else '?'))
    except OSError:
        pass
    with open('/proc/loadavg') as f:
        out.append('load average at the end of the run (other work on the '
                   'machine adds noise): ' + ' '.join(f.read().split()[:3]))
    for cmd in (['uname', '-r'], ['free', '-g'], ['df', '-h', '/var/tmp']):
        r = sh(cmd, check=False)
        out.append('$ ' + ' '.join(cmd) + '\n' + r.stdout.rstrip())
    r = sh(['dpkg-query', '-W', 'fuse2fs', 'zfs-fuse', 'libfuse3-dev'],
           check=False)
    out.append('$ dpkg-query -W fuse2fs zfs-fuse libfuse3-dev\n' + r.stdout.rstrip())
    r = sh(['git', '-C', REPO, 'log', '-1', '--format=%h %s'], check=False)
    out.append('twinfs commit: ' + r.stdout.strip())
    out.append('fuse enable_uring during the run: %s (only twinfs speaks '
               'FUSE over io_uring; the peers use /dev/fuse either way)'
               % (URING_STATE or 'not in this kernel'))
    return out


def report(res, cfg, outdir, elapsed):
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, 'results.json'), 'w') as f:
        json.dump({'data': res.data, 'bound': res.bound, 'notes': res.notes,
                   'mode': 'smoke' if cfg.smoke else 'full', 'reps': cfg.reps,
                   'elapsed_s': elapsed}, f, indent=1, sort_keys=True)
    systems = [s for s in SYSTEMS if s in res.data]
    L = []
    L.append('# twinfs benchmark results (%s mode)' % ('smoke' if cfg.smoke else 'full'))
    L.append('')
    L.append('Generated by `bench/run%s` on %s in %.0f s; %d repetition(s) per '
             'target; each cell is the median (min–max). Ratios are twinfs '
             '*speed* over the peer\'s (for times: peer time / twinfs time), '
             'so **> 1 means twinfs is faster**. "best peer" is the better of '
             'fuse2fs and zfs-fuse; the issue\'s target is ≥ 1.5 there and '
             '≥ 1.0 against passthrough_ll on sequential write, sequential '
             'read and random write.' % (' --smoke' if cfg.smoke else '',
                                          time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                                          elapsed, cfg.reps))
    L.append('')
    L.append('Sizes: sequential %d MiB, random file %d MiB for %g s (reads %g s '
             'each, at most one pass), %d files, tree %s, appends of 201 B '
             '%g s per thread count. native = kernel ext4 on a loop-mounted '
             '4 GiB image; twinfs mounted with default options%s.'
             % (cfg.seq_mib, cfg.rand_mib, cfg.rand_secs, cfg.rread_secs,
                cfg.nfiles, cfg.tree_desc, cfg.append_secs,
                (' plus -o ' + os.environ['TWINFS_OPTS']) if os.environ.get('TWINFS_OPTS') else ''))
    L.append('')
    hdr = ['workload', 'unit'] + systems + ['twinfs / best peer',
                                            'twinfs / passthrough_ll']
    L.append('| ' + ' | '.join(hdr) + ' |')
    L.append('|' + '---|' * len(hdr))
    for key, label, unit, hib in WORKLOADS + EXTRA:
        if not any(res.data.get(s, {}).get(key) for s in systems):
            continue
        row = [label, unit] + [cell(res, s, key) for s in systems]
        if (key, label, unit, hib) in WORKLOADS:
            r1 = speed_ratio(res, key, hib, PEERS)
            r2 = speed_ratio(res, key, hib, ['passthrough_ll'])
            row += ['%.2f×' % r1 if r1 else '–', '%.2f×' % r2 if r2 else '–']
        else:
            row += ['', '']
        L.append('| ' + ' | '.join(row) + ' |')
    L.append('')
    tw = res.data.get('twinfs', {})
    def gorder(k):
        pre, _, suf = k.rpartition('_')
        mult = {'G': 1, 'T': 1024}.get(suf[-1:], None)
        num = int(suf[:-1]) * mult if mult else (int(suf) if suf.isdigit() else 0)
        return (pre if num or suf.isdigit() else k, num)
    gkeys = sorted((k for k in tw if k.startswith(('cp_', 'mount_', 'mkfs_', 'cplat_'))
                    and k not in ('cp_tree',)), key=gorder)
    if gkeys:
        L.append('## twinfs only: CPs and growth')
        L.append('')
        L.append('| figure | median (min–max) |')
        L.append('|---|---|')
        for k in gkeys:
            L.append('| %s | %s |' % (k, cell(res, 'twinfs', k)))
        L.append('')
        L.append('cp_ms_N: CP duration from `twinfsctl status` (last_cp_usec) after '
                 'N random 4 KiB blocks were dirtied; cp_wall_ms_N: `twinfsctl cp` '
                 'round trip; cp_dirty_mib_N: dirty bytes reported before the CP. '
                 'mount_ms_SIZE: spawn of `twinfs -f` until the mount point is '
                 'mounted, on a sparse image made by mkfs.twinfs, caches dropped; '
                 'mount_rss_mib: VmHWM right after mount. cplat_*: 4 KiB pwrite '
                 'latency while `twinfsctl cp` runs every %g s.' % cfg.cp_every)
        L.append('')
    if res.notes:
        L.append('## Notes from this run')
        L.append('')
        for n in res.notes:
            L.append('- ' + n)
        L.append('')
    L.append('## Machine')
    L.append('')
    L.append('```')
    L.extend(machine())
    L.append('```')
    L.append('')
    text = '\n'.join(L)
    with open(os.path.join(outdir, 'results.md'), 'w') as f:
        f.write(text)
    print(text)
    chart(res, outdir)
    if not cfg.smoke and not cfg.out and not cfg.only:
        readme_table(os.path.join(outdir, 'results.md'))


def readme_table(results_md):
    """Copy the latest table into bench/README.md between the markers."""
    rd = os.path.join(HERE, 'README.md')
    try:
        text = open(rd).read()
    except OSError:
        return
    a, b = '<!-- results -->', '<!-- /results -->'
    if a not in text or b not in text:
        return
    body = open(results_md).read().split('\n', 1)[1].strip()
    body = body.replace('\n## ', '\n#### ')
    new = (text.split(a)[0] + a + '\n\n' + body +
           '\n\n![twinfs/peer ratios](results/ratios.png)\n\n' + b +
           text.split(b, 1)[1])
    with open(rd, 'w') as f:
        f.write(new)


def chart(res, outdir):
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        log('matplotlib missing: no chart')
        return
    labels, r1, r2 = [], [], []
    for key, label, unit, hib in WORKLOADS:
        a = speed_ratio(res, key, hib, PEERS)
        b = speed_ratio(res, key, hib, ['passthrough_ll'])
        if a is None and b is None:
            continue
        labels.append(label)
        r1.append(a or 0)
        r2.append(b or 0)
    fig, ax = plt.subplots(figsize=(11, 5.5))
    if not labels:
        ax.text(0.5, 0.5, 'twinfs was not measured in this run',
                ha='center', va='center', transform=ax.transAxes)
        ax.set_axis_off()
    else:
        x = range(len(labels))
        w = 0.4
        ax.bar([i - w / 2 for i in x], r1, w, label='twinfs / best of fuse2fs, zfs-fuse')
        ax.bar([i + w / 2 for i in x], r2, w, label='twinfs / passthrough_ll')
        ax.axhline(1.0, color='k', lw=0.8)
        ax.axhline(1.5, color='r', lw=0.8, ls='--', label='target vs peers (1.5×)')
        ax.set_yscale('log')
        from matplotlib.ticker import FormatStrFormatter, LogLocator
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_formatter(FormatStrFormatter(''))
        ax.yaxis.set_major_formatter(FormatStrFormatter('%g'))
        ax.set_ylabel('speed ratio (> 1: twinfs faster), log scale')
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=35, ha='right', fontsize=8)
        for i, v in enumerate(r1):
            if v:
                ax.text(i - w / 2, v, '%.2f' % v, ha='center', va='bottom', fontsize=7)
        ax.legend(fontsize=8)
        ax.set_title('twinfs speed relative to peers (median of runs)')
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, 'ratios.png'), dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------- main
def make_tree(dst, max_bytes, max_entries):
    """Copy /usr/include then /usr/share into dst, up to the caps."""
    nbytes = nent = 0
    os.makedirs(dst)
    for top in ('/usr/include', '/usr/share'):
        for dp, dns, fns in os.walk(top):
            dns.sort()
            rel = os.path.relpath(dp, '/usr')
            od = os.path.join(dst, rel)
            os.makedirs(od, exist_ok=True)
            nent += 1
            for fn in sorted(fns):
                if nbytes >= max_bytes or nent >= max_entries:
                    return nbytes, nent
                sp = os.path.join(dp, fn)
                op = os.path.join(od, fn)
                try:
                    if os.path.islink(sp):
                        os.symlink(os.readlink(sp), op)
                    elif os.path.isfile(sp):
                        st = os.stat(sp)
                        if st.st_size > 64 * 1024:
                            continue
                        shutil.copy2(sp, op)
                        nbytes += st.st_size
                    else:
                        continue
                except OSError:
                    continue
                nent += 1
    return nbytes, nent


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--smoke', action='store_true', help='tiny sizes, < 2 min')
    ap.add_argument('--reps', type=int)
    ap.add_argument('--systems', default=','.join(SYSTEMS))
    ap.add_argument('--build', default=os.path.join(REPO, 'build-bench'))
    ap.add_argument('--passthrough-bin')
    ap.add_argument('--out')
    ap.add_argument('--tmp', default='/var/tmp')
    ap.add_argument('--no-uring', action='store_true',
                    help='leave the fuse module parameter enable_uring as '
                    'it is (by default the run sets it to Y and puts it back '
                    'after, so twinfs takes requests over io_uring)')
    ap.add_argument('--only', help='comma list of workloads to run: '
                    'seq,random,files,tree,append,cp (default: all); '
                    'results go to results/only/ unless --out is given')
    cfg = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit('bench/run must run as root (mounts, drop_caches)')
    smoke = cfg.smoke
    cfg.reps = cfg.reps or (1 if smoke else 3)
    cfg.seq_mib = 32 if smoke else 1024
    cfg.rand_mib = 16 if smoke else 256
    cfg.rand_secs = 1 if smoke else 20
    cfg.rread_secs = 0.5 if smoke else 3
    cfg.budget = 100 if smoke else 21 * 60
    cfg.nfiles = 400 if smoke else 20000
    cfg.append_secs = 0.5 if smoke else 3
    cfg.limit = 30 if smoke else 120
    cfg.tree_limit = 30 if smoke else 150
    cfg.tree_slow_secs = 30 if smoke else 30
    cfg.tree_slow = set()
    cfg.tree_bytes = (16 if smoke else 240) * MiB
    cfg.tree_entries = 1500 if smoke else 38000
    cfg.cp_dirty = (64, 512) if smoke else (256, 4096, 32768)
    cfg.mount_sizes = ('1G', '64G') if smoke else ('1G', '16G', '256G', '1T')
    cfg.cplat_secs = 1 if smoke else 8
    cfg.cp_every = 0.25 if smoke else 1.0
    only = set(cfg.only.split(',')) if cfg.only else None
    bad = only - {'seq', 'random', 'files', 'tree', 'append', 'cp'} if only else None
    if bad:
        sys.exit('bench: unknown workload(s) in --only: %s' % ','.join(sorted(bad)))

    def run(w):
        return only is None or w in only
    out = cfg.out or os.path.join(HERE, 'results',
                                  'smoke' if smoke else 'only' if only else '')
    want = cfg.systems.split(',')

    res = Results()
    systems = []
    tmp = tempfile.mkdtemp(prefix='twinfs-bench.', dir=cfg.tmp)

    def on_signal(signum, frame):
        raise KeyboardInterrupt('signal %d' % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    t_start = time.monotonic()
    rc = 0
    global URING_STATE
    uring_saved = uring_param()
    if uring_saved is not None and not cfg.no_uring:
        URING_STATE = uring_param('Y')
    else:
        URING_STATE = uring_saved
    try:
        log('fuse enable_uring:', URING_STATE)
        log('work dir', tmp, '(all images on the disk of /var/tmp)')
        tb, te = (make_tree(os.path.join(tmp, 'tree-src'), cfg.tree_bytes,
                            cfg.tree_entries) if run('tree') else (0, 0))
        cfg.tree_src = os.path.join(tmp, 'tree-src')
        cfg.tree_desc = '%.0f MB / %d entries from /usr/include + /usr/share' % (tb / 1e6, te)
        log('tree source:', cfg.tree_desc)
        classes = {'native': Native, 'passthrough_ll': Passthrough,
                   'fuse2fs': Fuse2fs, 'zfs-fuse': ZfsFuse, 'twinfs': Twinfs}
        Twinfs.bindir = cfg.build
        Passthrough.binary = cfg.passthrough_bin
        for name in SYSTEMS:
            if name not in want:
                continue
            if name == 'twinfs' and not os.access(
                    os.path.join(cfg.build, 'fs', 'twinfs'), os.X_OK):
                res.notes.append('twinfs: not built (%s/fs/twinfs missing): not measured'
                                 % cfg.build)
                log(res.notes[-1])
                continue
            if name == 'passthrough_ll' and not (cfg.passthrough_bin and
                                                 os.access(cfg.passthrough_bin, os.X_OK)):
                res.notes.append('passthrough_ll: not built (libfuse3-dev example missing): not measured')
                log(res.notes[-1])
                continue
            s = classes[name](tmp)
            systems.append(s)
            res.sys = name
            log('setting up', name)
            s.setup()
        for rep in range(cfg.reps):
            for s in systems:
                res.sys = s.name
                if rep > 0 and time.monotonic() - t_start > cfg.budget:
                    res.note('rep %d skipped: the run passed its %d s budget'
                             % (rep + 1, cfg.budget))
                    continue
                log('rep %d/%d: %s' % (rep + 1, cfg.reps, s.name))
                if run('seq'):
                    w_seqwrite(s, cfg, res)
                    w_seqread(s, cfg, res)
                if run('random'):
                    w_random(s, cfg, res)
                if s.meta:
                    if run('files'):
                        w_files(s, cfg, res)
                    if run('tree'):
                        w_tree(s, cfg, res, rep)
                    if run('append'):
                        w_append(s, cfg, res)
        for s in systems:
            if s.name == 'twinfs' and run('cp'):
                res.sys = 'twinfs'
                log('twinfs: writes during CPs, CP time, mount time')
                w_cp_latency(s, cfg, res)
                w_growth(s, cfg, res)
    except KeyboardInterrupt as e:
        log('interrupted:', e)
        rc = 130
    except Exception as e:
        import traceback
        traceback.print_exc()
        res.notes.append('run failed: %s: %s' % (res.sys, e))
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if uring_saved is not None and URING_STATE != uring_saved:
            uring_param(uring_saved)
        for s in systems:
            s.logf.close()
        close_fds_under(tmp)    # an interrupted workload's open file: busy mount
        for s in reversed(systems):
            try:
                s.cleanup()
            except Exception as e:
                log('cleanup of', s.name, 'failed:', e)
        for s in systems:
            if os.path.ismount(s.mnt):
                umount(s.mnt)
        if rc:      # never overwrite a complete run's results
            out = os.path.join(out, 'partial')
        if res.data:
            try:
                report(res, cfg, out, time.monotonic() - t_start)
            except Exception:
                import traceback
                traceback.print_exc()
        if rc:
            for s in systems:
                try:
                    tail = open(s.logf.name, errors='replace').read()[-1500:]
                    if tail.strip():
                        log('%s daemon log (tail):\n%s' % (s.name, tail))
                except OSError:
                    pass
        shutil.rmtree(tmp, ignore_errors=True)
        left = [l for l in open('/proc/self/mounts') if 'twinfs-bench.' in l]
        if left:
            log('WARNING: mounts left behind:', left)
            rc = rc or 1
        log('done in %.0f s' % (time.monotonic() - t_start))
    return rc


if __name__ == '__main__':
    sys.exit(main())
