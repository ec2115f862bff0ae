#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""fsx.py - an fsx-style data exerciser: random writes, truncates, hole
punches, zero ranges, preallocations, mmap stores and loads, O_DIRECT
writes and reads, copy_file_range and reads on one file, each checked
against a model of the bytes kept in memory.

    fsx.py FILE MODEL SEED NOPS [--resume]

Starts from an empty FILE, or with --resume from the MODEL a previous run
saved (the file must then read back as the model says: the caller unmounts,
drops caches and mounts between the two).  Saves the model at the end.
Exit 1 with the op log's tail on the first difference."""
import ctypes
import mmap
import os
import random
import sys

FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 1, 2, 16
MAXLEN = 8 << 20            # the file stays under 8 MiB
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                           ctypes.c_int64]


def fallocate(fd, mode, off, length):
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def main():
    path, model_path, seed, nops = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    resume = '--resume' in sys.argv[5:]
    rnd = random.Random(seed)
    log = []
    if resume:
        with open(model_path, 'rb') as f:
            model = bytearray(f.read())
        fd = os.open(path, os.O_RDWR)
    else:
        model = bytearray()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    dfd = os.open(path, os.O_RDWR | os.O_DIRECT)   # the same file, uncached

    def fail(what):
        print('fsx: seed %d: %s' % (seed, what), file=sys.stderr)
        for line in log[-20:]:
            print('  ' + line, file=sys.stderr)
        sys.exit(1)

    def check_range(off, length, how):
        got = os.pread(fd, length, off)
        want = bytes(model[off:off + length])
        if got != want:
            i = next((k for k in range(min(len(got), len(want)))
                      if got[k] != want[k]), min(len(got), len(want)))
            fail('%s: %d bytes at %d differ from the model at +%d '
                 '(got %d bytes, want %d)' % (how, length, off, i, len(got),
                                              len(want)))

    def put(off, data):
        if off > len(model):
            model.extend(bytes(off - len(model)))
        model[off:off + len(data)] = data

    def check_all(how):
        size = os.fstat(fd).st_size
        if size != len(model):
            fail('%s: size %d, model %d' % (how, size, len(model)))
        for off in range(0, len(model), 1 << 20):
            check_range(off, 1 << 20, how)

    if resume:
        check_all('after remount')
    for n in range(nops):
        op = rnd.random()
        size = len(model)
        # offsets near block edges and the end of file are where bugs live
        off = rnd.choice([rnd.randrange(MAXLEN // 2),
                          rnd.randrange(MAXLEN // 4096) * 4096 + rnd.choice([0, 1, 4095]),
                          max(0, size - rnd.randrange(8192))])
        length = rnd.choice([rnd.randrange(1, 64), rnd.randrange(1, 16384),
                             rnd.randrange(1, 262144)])
        length = max(1, min(length, MAXLEN - off))
        if op < 0.33:                                  # write
            data = rnd.randbytes(length)
            log.append('%d write %d+%d' % (n, off, length))
            if os.pwrite(fd, data, off) != length:
                fail('short write')
            put(off, data)
        elif op < 0.48:                                # read
            log.append('%d read %d+%d' % (n, off, length))
            check_range(off, length, 'read')
        elif op < 0.56:                                # truncate
            new = rnd.randrange(MAXLEN)
            log.append('%d truncate %d' % (n, new))
            os.ftruncate(fd, new)
            if new < len(model):
                del model[new:]
            else:
                model.extend(bytes(new - len(model)))
        elif op < 0.63:                                # punch a hole
            log.append('%d punch %d+%d' % (n, off, length))
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                      length)
            end = min(off + length, len(model))
            if off < end:
                model[off:end] = bytes(end - off)
        elif op < 0.69:                                # zero a range
            log.append('%d zero %d+%d' % (n, off, length))
            fallocate(fd, FALLOC_FL_ZERO_RANGE, off, length)
            put(off, bytes(length))
        elif op < 0.72:                                # preallocate
            keep = rnd.random() < 0.5
            log.append('%d fallocate%s %d+%d' % (n, ' keep_size' if keep
                                                 else '', off, length))
            fallocate(fd, FALLOC_FL_KEEP_SIZE if keep else 0, off, length)
            if not keep and off + length > len(model):
                model.extend(bytes(off + length - len(model)))
        elif op < 0.77 and size > 0:                   # store through mmap
            o = rnd.randrange(size)
            k = min(rnd.randrange(1, 20000), size - o)
            data = rnd.randbytes(k)
            log.append('%d mmap write %d+%d' % (n, o, k))
            mm = mmap.mmap(fd, size)
            mm[o:o + k] = data
            mm.flush()
            mm.close()
            model[o:o + k] = data
        elif op < 0.80 and size > 0:                   # load through mmap
            o = rnd.randrange(size)
            k = min(rnd.randrange(1, 20000), size - o)
            log.append('%d mmap read %d+%d' % (n, o, k))
            mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
            got = mm[o:o + k]
            mm.close()
            if got != bytes(model[o:o + k]):
                fail('mmap read: %d bytes at %d differ from the model' % (k, o))
        elif op < 0.86:                                # O_DIRECT, aligned
            o = rnd.randrange(MAXLEN // 4096 - 16) * 4096
            k = rnd.randrange(1, 17) * 4096
            buf = mmap.mmap(-1, k)                     # page-aligned
            if rnd.random() < 0.5:
                data = rnd.randbytes(k)
                buf[:] = data
                log.append('%d direct write %d+%d' % (n, o, k))
                if os.pwritev(dfd, [buf], o) != k:
                    fail('short direct write')
                put(o, data)
            else:
                log.append('%d direct read %d+%d' % (n, o, k))
                got = os.preadv(dfd, [buf], o)
                want = bytes(model[o:o + k])
                if got != len(want) or buf[:got] != want:
                    fail('direct read: %d bytes at %d differ from the model '
                         '(got %d bytes, want %d)' % (k, o, got, len(want)))
            buf.close()
        elif op < 0.91 and size > 0:                   # copy_file_range
            src = rnd.randrange(size)
            k = min(length, size - src)
            dst = rnd.randrange(MAXLEN - k)
            if dst < src + k and src < dst + k:        # may not overlap
                dst = src + k if src + 2 * k <= MAXLEN else max(0, src - k)
            if dst < src + k and src < dst + k:
                continue
            log.append('%d copy_file_range %d+%d -> %d' % (n, src, k, dst))
            data = bytes(model[src:src + k])
            done = 0
            while done < k:
                c = os.copy_file_range(fd, fd, k - done, src + done, dst + done)
                if c <= 0:
                    fail('copy_file_range returned %d' % c)
                done += c
            put(dst, data)
        elif op < 0.95:                                # fsync
            log.append('%d fsync' % n)
            os.fsync(fd)
        else:                                          # everything
            log.append('%d check all' % n)
            check_all('check all')
    check_all('at the end')
    os.close(dfd)
    os.close(fd)
    with open(model_path, 'wb') as f:
        f.write(model)


if __name__ == '__main__':
    main()
