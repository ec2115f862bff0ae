#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""acker.py - a writer whose fsyncs must survive a crash of the daemon.

    acker.py write DIR ACKS SEED    write until an error (the mount died)
    acker.py check DIR ACKS         after the crash and a remount

The writer keeps NFILES files: half rewritten in place (one 4000-byte
pwrite, a single FUSE WRITE, so no crash can leave half of one), half
replaced by rename (write a temporary, fsync it, rename over, fsync the
directory) with a size that changes with the version.  Contents name the
file and the version.  After each fsync that returned, it appends
"name version" to ACKS (a file on another file system, fsynced).  The
check wants every file of ACKS to hold a whole version no older than its
last ack: never torn, never older, never missing."""
import os
import random
import sys

NFILES = 8


def in_place(name):
    return int(name[1:]) < NFILES // 2


def content(name, version):
    head = ('%s %d\n' % (name, version)).encode()
    size = 4000 if in_place(name) else 100 + (version * 7919) % 300000
    return head + bytes([version % 251]) * (size - len(head))


def parse(data):
    head = data.split(b'\n', 1)[0].decode(errors='replace').split()
    if len(head) != 2 or not head[1].isdigit():
        return None, None
    return head[0], int(head[1])


def read_acks(acks_path):
    last = {}
    if os.path.exists(acks_path):
        with open(acks_path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    last[parts[0]] = int(parts[1])
    return last


def write(d, acks_path, seed):
    rnd = random.Random(seed)
    version = read_acks(acks_path)    # a later round goes on from there
    for name in os.listdir(d):
        n, v = parse(open(os.path.join(d, name), 'rb').read(64))
        if n == name and v > version.get(name, 0):
            version[name] = v
    acks = open(acks_path, 'a')
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            name = 'f%d' % rnd.randrange(NFILES)
            v = version.get(name, 0) + 1
            data = content(name, v)
            path = os.path.join(d, name)
            if in_place(name):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
                os.pwrite(fd, data, 0)
                os.fsync(fd)
                os.close(fd)
                if v == 1:
                    os.fsync(dfd)     # a new name is durable with its dir
            else:
                tmp = path + '.tmp'
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.write(fd, data)
                os.fsync(fd)
                os.close(fd)
                os.rename(tmp, path)
                os.fsync(dfd)
            version[name] = v
            acks.write('%s %d\n' % (name, v))
            acks.flush()
            os.fsync(acks.fileno())
    except OSError:
        pass                          # the daemon is gone: that is the test
    print('acker: up to version %d' % max(version.values(), default=0))


def check(d, acks_path):
    last = read_acks(acks_path)
    bad = 0
    for name, v in sorted(last.items()):
        path = os.path.join(d, name)
        try:
            data = open(path, 'rb').read()
        except OSError as e:
            print('%s: acknowledged version %d, now: %s' % (name, v, e))
            bad += 1
            continue
        n, got = parse(data)
        if n != name or got is None:
            print('%s: not a version of this file (%r...)' % (name, data[:40]))
            bad += 1
        elif got < v:
            print('%s: version %d, but %d was acknowledged' % (name, got, v))
            bad += 1
        elif data != content(name, got):
            print('%s: version %d is torn (%d bytes)' % (name, got, len(data)))
            bad += 1
    print('acker: %d files checked, %d bad' % (len(last), bad))
    return 1 if bad or not last else 0


if __name__ == '__main__':
    if sys.argv[1] == 'write':
        write(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(check(sys.argv[2], sys.argv[3]))
