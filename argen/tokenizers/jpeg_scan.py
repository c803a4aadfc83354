"""A strict reader of baseline JPEG scans: does an entropy-coded segment decode to exactly
the image's blocks? Decoders (libjpeg, ffmpeg) render damaged scans silently; this says
whether a generated stream is a well-formed scan for the fixed header it is paired with."""

from __future__ import annotations

import re
from dataclasses import dataclass

UNSUPPORTED = {0xC1: "extended sequential", 0xC2: "progressive", 0xC3: "lossless"} | {
    m: "arithmetic-coded" for m in (0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF)
}


@dataclass(frozen=True)
class ScanFormat:
    """What the fixed header says about the scan that follows it."""

    huffman: dict[tuple[int, int], dict[tuple[int, int], int]]  # (class, id) -> {(length, code): symbol}
    blocks: tuple[tuple[int, int, int], ...]  # per block of an MCU: (component, dc table, ac table)
    components: int
    mcus: int
    restart_interval: int


def segments(header: bytes):
    """(marker, payload) of every segment after SOI."""
    i = 2
    while i + 4 <= len(header):
        marker, length = header[i + 1], int.from_bytes(header[i + 2 : i + 4], "big")
        yield marker, header[i + 4 : i + 2 + length]
        i += 2 + length


def parse_header(header: bytes) -> ScanFormat:
    huffman, frame, selectors, interval = {}, {}, [], 0
    width = height = 0
    for marker, payload in segments(header):
        if marker == 0xC4:  # DHT: one or more tables
            j = 0
            while j < len(payload):
                table, counts = payload[j], payload[j + 1 : j + 17]
                symbols, codes, code, k = payload[j + 17 : j + 17 + sum(counts)], {}, 0, 0
                for length, count in enumerate(counts, 1):
                    for _ in range(count):
                        codes[(length, code)] = symbols[k]
                        code, k = code + 1, k + 1
                    code <<= 1
                huffman[(table >> 4, table & 15)] = codes
                j += 17 + sum(counts)
        elif marker in UNSUPPORTED:
            raise ValueError(f"{UNSUPPORTED[marker]} JPEG is not supported: only baseline (SOF0) scans are")
        elif marker == 0xC0:  # SOF0: size and sampling factors
            if payload[0] != 8:
                raise ValueError(f"{payload[0]}-bit JPEG is not supported: only 8-bit baseline scans are")
            height, width = int.from_bytes(payload[1:3], "big"), int.from_bytes(payload[3:5], "big")
            for c in range(payload[5]):
                ident, factors = payload[6 + 3 * c], payload[7 + 3 * c]
                frame[ident] = (factors >> 4, factors & 15)
        elif marker == 0xDD:  # DRI
            interval = int.from_bytes(payload[:2], "big")
        elif marker == 0xDA:  # SOS: table selectors per component
            for c in range(payload[0]):
                ident, tables = payload[1 + 2 * c], payload[2 + 2 * c]
                selectors.append((ident, tables >> 4, tables & 15))
    h_max = max(h for h, _ in frame.values())
    v_max = max(v for _, v in frame.values())
    mcus = -(-width // (8 * h_max)) * -(-height // (8 * v_max))
    blocks = tuple(
        (index, dc, ac)
        for index, (ident, dc, ac) in enumerate(selectors)
        for _ in range(frame[ident][0] * frame[ident][1])
    )
    return ScanFormat(huffman, blocks, len(selectors), mcus, interval)


class Bits:
    def __init__(self, data: bytes):
        self.value, self.left = int.from_bytes(data, "big"), 8 * len(data)

    def read(self, n: int) -> int:
        if n > self.left:
            raise ValueError("scan ends inside a block")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def symbol(self, codes: dict[tuple[int, int], int]) -> int:
        code = 0
        for length in range(1, 17):
            code = (code << 1) | self.read(1)
            if (length, code) in codes:
                return codes[(length, code)]
        raise ValueError("no Huffman code matches")

    def only_padding(self) -> bool:
        ones = (1 << self.left) - 1
        return self.left < 8 and (self.value & ones) == ones


def decode_interval(bits: Bits, scan: ScanFormat, mcus: int) -> None:
    """Read ``mcus`` MCUs of Huffman-coded blocks; raise on any malformed code."""
    for _ in range(mcus):
        for _component, dc, ac in scan.blocks:
            size = bits.symbol(scan.huffman[(0, dc)])
            if size > 11:
                raise ValueError("DC difference too large")
            bits.read(size)
            k = 1
            while k < 64:
                run_size = bits.symbol(scan.huffman[(1, ac)])
                run, size = run_size >> 4, run_size & 15
                if size == 0:
                    if run != 15:
                        break  # end of block
                    if k + 16 > 64:
                        raise ValueError("a run of 16 zeros past coefficient 63")
                    k += 16
                    continue
                if size > 10:
                    raise ValueError("AC magnitude category above 10")
                k += run
                if k > 63:
                    raise ValueError("coefficient index past 63")
                bits.read(size)
                k += 1


def scan_is_valid(data: bytes, scan: ScanFormat) -> bool:
    """Whether ``data`` (the bytes between the header and EOI) is exactly the image's scan:
    every MCU decodes, restart markers come in order where the interval says, and nothing but
    padding bits follow."""
    parts = re.split(rb"\xff([\xd0-\xd7])", data)
    chunks, markers = parts[0::2], parts[1::2]
    interval = scan.restart_interval or scan.mcus
    if len(chunks) != -(-scan.mcus // interval):
        return False
    if any(m[0] != 0xD0 + i % 8 for i, m in enumerate(markers)):
        return False
    for i, chunk in enumerate(chunks):
        if re.search(rb"\xff[^\x00]|\xff$", chunk):  # a marker inside entropy-coded data
            return False
        bits = Bits(chunk.replace(b"\xff\x00", b"\xff"))
        try:
            decode_interval(bits, scan, min(interval, scan.mcus - i * interval))
        except ValueError:
            return False
        if not bits.only_padding():
            return False
    return True
