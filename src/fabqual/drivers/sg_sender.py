"""A stdlib-only SG_IO sender that runs on a node: CDBs in on stdin, results out on stdout.

Uploaded to the initiator and run as ``python3 sg_sender.py /dev/sgN``, it sends
many commands through one process (``sg_raw`` per CDB costs a process and an SSH
round trip each). One request per line::

    <cdb hex> <direction: n|r|w> <transfer length> [<data-out hex>]

one JSON object per answer: ``status``, ``host_status``, ``driver_status``,
``resid``, ``duration_ms``, ``sense`` (hex), ``data`` (hex of the data-in bytes
actually transferred), or ``error`` when the ioctl itself failed (errno text).

``--loop r|w --length N --count K --cdb HEX`` repeats one command K times and
prints commands/s and MB/s; ``--seconds S --inflight Q`` instead of ``--count``
keeps Q commands in flight (one thread and sg file descriptor each; SG_IO releases
the GIL) for S seconds and adds the median command time: the raw path measured the
way the tunnel runs, for the benchmark.
Python here must not import fabqual: the guest has only the standard library.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import statistics
import struct
import sys
import threading
import time

SG_IO = 0x2285
DIRECTIONS = {"n": -1, "w": -2, "r": -3}  # SG_DXFER_NONE, TO_DEV, FROM_DEV
# struct sg_io_hdr on LP64 (88 bytes): see <scsi/sg.h>.
HDR = struct.Struct("=iiBBHIQQQIIi4xQBBBBHHiII4x")
SENSE_LEN = 64
TIMEOUT_MS = 20_000


class Sender:
    def __init__(self, device: str, max_length: int = 1 << 20) -> None:
        self.fd = os.open(device, os.O_RDWR)
        self.buffer = ctypes.create_string_buffer(max_length)
        self.sense = ctypes.create_string_buffer(SENSE_LEN)
        self.cdb = ctypes.create_string_buffer(16)

    def send(self, cdb: bytes, direction: str, length: int, data_out: bytes = b"") -> dict[str, object]:
        if direction == "w":
            ctypes.memmove(self.buffer, data_out.ljust(length, b"\0"), length)
        ctypes.memmove(self.cdb, cdb, len(cdb))
        hdr = bytearray(
            HDR.pack(
                ord("S"), DIRECTIONS[direction], len(cdb), SENSE_LEN, 0, length,
                ctypes.addressof(self.buffer) if length else 0, ctypes.addressof(self.cdb),
                ctypes.addressof(self.sense), TIMEOUT_MS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            )
        )  # fmt: skip
        start = time.monotonic()
        try:
            fcntl.ioctl(self.fd, SG_IO, hdr)
        except OSError as error:
            return {"error": os.strerror(error.errno or 0)}
        fields = HDR.unpack(hdr)
        # fields: 12 usr_ptr, 13 status, 14 masked_status, 15 msg_status, 16 sb_len_wr, 17 host, 18 driver, 19 resid
        status, sb_len, host, driver, resid = fields[13], fields[16], fields[17], fields[18], fields[19]
        got = max(0, length - resid) if direction == "r" else 0
        return {
            "status": status,
            "host_status": host,
            "driver_status": driver,
            "resid": resid,
            "duration_ms": round((time.monotonic() - start) * 1000, 3),
            "sense": self.sense.raw[:sb_len].hex(),
            "data": self.buffer.raw[:got].hex(),
        }


def serve(sender: Sender) -> None:
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        data_out = bytes.fromhex(parts[3]) if len(parts) > 3 else b""
        answer = sender.send(bytes.fromhex(parts[0]), parts[1], int(parts[2]), data_out)
        sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def loop(sender: Sender, cdb: bytes, direction: str, length: int, count: int, data_out: bytes) -> None:
    errors = 0
    start = time.monotonic()
    for _ in range(count):
        answer = sender.send(cdb, direction, length, data_out)
        if answer.get("status") != 0 or answer.get("host_status") or "error" in answer:
            errors += 1
    seconds = time.monotonic() - start
    print(
        json.dumps(
            {
                "commands": count,
                "errors": errors,
                "seconds": seconds,
                "commands_per_s": count / seconds,
                "mb_per_s": count * length / seconds / 1e6,
            }
        )
    )


def timed_loop(
    device: str, cdb: bytes, direction: str, length: int, seconds: float, inflight: int, data_out: bytes
) -> None:
    """``inflight`` threads, each with its own fd, repeating the command until ``seconds`` have passed."""
    durations: list[list[float]] = [[] for _ in range(inflight)]
    errors = [0] * inflight
    senders = [Sender(device, max(length, 1)) for _ in range(inflight)]
    start = time.monotonic()
    deadline = start + seconds

    def worker(index: int) -> None:
        while time.monotonic() < deadline:
            answer = senders[index].send(cdb, direction, length, data_out)
            if answer.get("status") != 0 or answer.get("host_status") or "error" in answer:
                errors[index] += 1
            else:
                durations[index].append(float(str(answer["duration_ms"])))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(inflight)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    done = [d for per in durations for d in per]
    print(
        json.dumps(
            {
                "commands": len(done),
                "errors": sum(errors),
                "inflight": inflight,
                "length": length,
                "seconds": elapsed,
                "commands_per_s": len(done) / elapsed,
                "mb_per_s": len(done) * length / elapsed / 1e6,
                "median_ms": statistics.median(done) if done else None,
            }
        )
    )


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(
            "usage: sg_sender.py /dev/sgN"
            " [--loop r|w --length N (--count K | --seconds S [--inflight Q]) --cdb HEX [--data HEX]]"
        )
        return 2
    options = dict(zip(argv[2::2], argv[3::2], strict=False))
    length = int(options.get("--length", "0"))
    sender = Sender(argv[1], max(length, 1 << 20))
    if "--loop" in options and "--seconds" in options:
        data = bytes.fromhex(options.get("--data", ""))
        cdb = bytes.fromhex(options["--cdb"])
        seconds, inflight = float(options["--seconds"]), int(options.get("--inflight", "1"))
        timed_loop(argv[1], cdb, options["--loop"], length, seconds, inflight, data)
    elif "--loop" in options:
        data = bytes.fromhex(options.get("--data", ""))
        loop(sender, bytes.fromhex(options["--cdb"]), options["--loop"], length, int(options["--count"]), data)
    else:
        serve(sender)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
