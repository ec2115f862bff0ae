#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""fsx.py - an fsx-style data exerciser: random writes, truncates, hole
punches, zero ranges, mmap stores and reads on one file, each checked
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
        if op < 0.35:                                  # write
            data = rnd.randbytes(length)
            log.append('%d write %d+%d' % (n, off, length))
            if os.pwrite(fd, data, off) != length:
                fail('short write')
            if off > len(model):
                model.extend(bytes(off - len(model)))
            model[off:off + length] = data
        elif op < 0.55:                                # read
            log.append('%d read %d+%d' % (n, off, length))
            check_range(off, length, 'read')
        elif op < 0.65:                                # truncate
            new = rnd.randrange(MAXLEN)
            log.append('%d truncate %d' % (n, new))
            os.ftruncate(fd, new)
            if new < len(model):
                del model[new:]
            else:
                model.extend(bytes(new - len(model)))
        elif op < 0.75:                                # punch a hole
            log.append('%d punch %d+%d' % (n, off, length))
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
                      length)
            end = min(off + length, len(model))
            if off < end:
                model[off:end] = bytes(end - off)
        elif op < 0.82:                                # zero a range
            log.append('%d zero %d+%d' % (n, off, length))
            fallocate(fd, FALLOC_FL_ZERO_RANGE, off, length)
            if off + length > len(model):
                model.extend(bytes(off + length - len(model)))
            model[off:off + length] = bytes(length)
        elif op < 0.90 and size > 0:                   # store through mmap
            o = rnd.randrange(size)
            k = min(rnd.randrange(1, 20000), size - o)
            data = rnd.randbytes(k)
            log.append('%d mmap write %d+%d' % (n, o, k))
            mm = mmap.mmap(fd, size)
            mm[o:o + k] = data
            mm.flush()
            mm.close()
            model[o:o + k] = data
        elif op < 0.95:                                # fsync
            log.append('%d fsync' % n)
            os.fsync(fd)
        else:                                          # everything
            log.append('%d check all' % n)
            check_all('check all')
    check_all('at the end')
    os.close(fd)
    with open(model_path, 'wb') as f:
        f.write(model)


if __name__ == '__main__':
    main()
