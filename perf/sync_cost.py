#!/usr/bin/env python3
"""What an fdatasync costs after a write that grows a file, against one into bytes the file
already holds (zero-filled first), and into space only fallocate'd. Why core::log zero-fills
its segments ahead of the records (ZERO_AHEAD in core/src/log/mod.rs).

    python3 perf/sync_cost.py [DIR] [--writes N] [--bytes B]

DIR defaults to /var/tmp (use the file system of the data directory). Prints mean, p50 and
p99 of the fdatasync alone, per mode, twice, alternating.
"""
import argparse
import os
import time


def run(directory: str, mode: str, writes: int, size: int) -> str:
    path = os.path.join(directory, f"sync_cost.{os.getpid()}.seg")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if mode == "zeroed":
            os.write(fd, b"\0" * (writes * size))
            os.fsync(fd)
        elif mode == "fallocated":
            os.posix_fallocate(fd, 0, writes * size)
            os.fsync(fd)
        data = b"x" * size
        lat = []
        for i in range(writes):
            os.pwrite(fd, data, i * size)
            t = time.perf_counter()
            os.fdatasync(fd)
            lat.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    us = lambda s: s * 1e6
    return (f"{mode:10} mean {us(sum(lat) / len(lat)):6.0f} us  p50 {us(lat[len(lat) // 2]):6.0f}"
            f"  p99 {us(lat[int(len(lat) * 0.99)]):6.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", default="/var/tmp")
    ap.add_argument("--writes", type=int, default=3000)
    ap.add_argument("--bytes", type=int, default=16384)
    a = ap.parse_args()
    for _ in range(2):
        for mode in ("appending", "fallocated", "zeroed"):
            print(run(a.dir, mode, a.writes, a.bytes))


if __name__ == "__main__":
    main()
