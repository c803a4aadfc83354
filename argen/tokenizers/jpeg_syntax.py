"""An incremental automaton over the bytes of a baseline JPEG scan.

A state is where a decoder stands at a byte boundary: the MCU and block, the phase (a Huffman
code of the DC or AC table being read, or the magnitude bits that follow it), the coefficient
index, the partial code read so far, and whether the last byte was 0xFF (a stuffed 0x00 must
follow). After an interval's last MCU the remaining bits of the byte are ones (libjpeg's
padding); then a restart marker RSTn follows, or, after the last MCU, nothing: the stream may
end exactly there. Feeding a byte walks its 8 bits through the Huffman tables of the header;
a byte is allowed when the walk neither leaves the tables nor breaks the block structure
(magnitude category above 11 / 10, a run past coefficient 63) and the block can still be
finished; ``successors`` walks all 256 bytes as one bit tree. The streams it accepts are
exactly those :func:`argen.tokenizers.jpeg_scan.scan_is_valid` accepts.

``min_bytes(state)`` bounds how many bytes it takes at most to finish along the shortest
completion (twice the bytes of its bits, for stuffing, plus markers): a sampler that keeps
``min_bytes`` within the tokens left always ends a stream in time. Transitions are computed
when first asked for; the shortest completions are cached.
"""

from __future__ import annotations

import math
from functools import lru_cache

from argen.tokenizers.jpeg_scan import ScanFormat

DC, DC_BITS, AC, AC_BITS, PAD, MARKER, RESTART, END = range(8)
EOB_LIMIT = 64  # coefficients per block
State = tuple[int, int, int, int, int, int, bool]  # phase, mcu, block, k, length, code, stuffed


class HuffmanTable:
    """One table's codes as (length, code) -> symbol, its proper prefixes, and below each
    prefix the (remaining code bits, symbol) of every code that extends it."""

    def __init__(self, codes: dict[tuple[int, int], int]):
        self.leaves = dict(codes)
        self.inner = {(n, c >> (length - n)) for length, c in codes for n in range(1, length)} | {(0, 0)}
        self.below: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for (length, code), symbol in codes.items():
            for n in range(length + 1):
                self.below.setdefault((n, code >> (length - n)), []).append((length - n, symbol))


class ScanAutomaton:
    """Baseline-JPEG scan syntax for one header, byte by byte."""

    def __init__(self, scan: ScanFormat):
        self.scan = scan
        tables = {key: HuffmanTable(codes) for key, codes in scan.huffman.items()}
        self.tables = [(tables[(0, dc)], tables[(1, ac)]) for _component, dc, ac in scan.blocks]
        self.interval = scan.restart_interval or scan.mcus
        self.intervals = -(-scan.mcus // self.interval)
        for name in (
            "min_bytes",
            "block_rest",
            "ac_rest",
            "walk",
        ):  # computed when first asked for, then cached
            setattr(self, name, lru_cache(maxsize=None)(getattr(self, name)))
        self.mcu_bits = sum(self.block_bits(b) for b in range(len(self.tables)))

    @property
    def start(self) -> State:
        return (DC, 0, 0, 0, 0, 0, False)

    def finished(self, state: State) -> bool:
        return state[0] == END and not state[6]

    # --- one byte ----------------------------------------------------------------------
    def step(self, state: State, byte: int) -> State | None:
        """The state after ``byte``, or None when no valid scan continues with it."""
        if state[6] or state[0] in (MARKER, RESTART, END):
            return self.successors(state).get(byte)
        bits: tuple | None = state[:6]
        for shift in range(7, -1, -1):
            bits = self.bit(bits, (byte >> shift) & 1)
            if bits is None:
                return None
        return self.byte_boundary(bits, byte == 0xFF)

    def successors(self, state: State) -> dict[int, State]:
        """Every allowed next byte -> the state after it (the 8 bits of all bytes walked as one
        binary tree)."""
        phase, mcu, _, _, _, _, stuffed = state
        if stuffed:
            return {0: (*state[:6], False)}
        if phase == MARKER:
            return {0xFF: (RESTART, mcu, 0, 0, 0, 0, False)}
        if phase == RESTART:
            return {0xD0 + (mcu // self.interval - 1) % 8: (DC, mcu, 0, 0, 0, 0, False)}
        if phase == END:
            return {}
        table = dict(self.walk(state[:6], 8))
        if 0xFF in table:  # a 0xFF data byte is followed by a stuffed 0x00
            table[0xFF] = (*table[0xFF][:6], True)
        return table

    def walk(self, bits: tuple, n: int) -> list[tuple[int, State]]:
        """(value of the next ``n`` bits, the state at the byte boundary after them, not yet
        marked stuffed) for every allowed bit string; shared tails are cached."""
        if n == 0:
            after = self.byte_boundary(bits, False)
            return [] if after is None else [(0, after)]
        ends = []
        for bit in (0, 1):
            following = self.bit(bits, bit)
            if following is not None:
                high = bit << (n - 1)
                ends += [(high | value, end) for value, end in self.walk(following, n - 1)]
        return ends

    def byte_boundary(self, bits: tuple, stuffed: bool) -> State | None:
        """The state once a byte has been read (``stuffed``: it was 0xFF), if the scan can
        still be finished."""
        if bits[0] == PAD:
            bits = (END if bits[1] == self.scan.mcus else MARKER, bits[1], 0, 0, 0, 0)
        after = (*bits, stuffed)
        return after if math.isfinite(self.min_bytes(after)) else None

    def bit(self, state: tuple, bit: int) -> tuple | None:
        phase, mcu, block, k, length, code = state
        if phase == PAD:
            return state if bit else None  # padding bits are ones
        if phase in (DC_BITS, AC_BITS):
            return (phase, mcu, block, k, 0, code - 1) if code > 1 else self.coefficient(mcu, block, k)
        table = self.tables[block][phase == AC]
        length, code = length + 1, (code << 1) | bit
        symbol = table.leaves.get((length, code))
        if symbol is None:
            return (phase, mcu, block, k, length, code) if (length, code) in table.inner else None
        if phase == DC:
            if symbol > 11:
                return None
            return (DC_BITS, mcu, block, 1, 0, symbol) if symbol else self.coefficient(mcu, block, 1)
        run, size = symbol >> 4, symbol & 15
        if size == 0:
            if run != 15:
                return self.block_done(mcu, block)  # end of block
            return self.coefficient(mcu, block, k + 16) if k + 16 <= EOB_LIMIT else None
        if size > 10 or k + run > 63:
            return None
        return (AC_BITS, mcu, block, k + run + 1, 0, size)

    def coefficient(self, mcu: int, block: int, k: int) -> tuple:
        """Ready to read coefficient ``k`` of a block (or the next block after the 64th)."""
        return self.block_done(mcu, block) if k == EOB_LIMIT else (AC, mcu, block, k, 0, 0)

    def block_done(self, mcu: int, block: int) -> tuple:
        if block + 1 < len(self.tables):
            return (DC, mcu, block + 1, 0, 0, 0)
        mcu += 1
        if mcu % self.interval == 0 or mcu == self.scan.mcus:
            return (PAD, mcu, 0, 0, 0, 0)  # the interval is complete
        return (DC, mcu, 0, 0, 0, 0)

    # --- shortest completions ----------------------------------------------------------
    def min_bytes(self, state: State) -> float:
        """Bytes that surely suffice to finish the scan from ``state`` (inf: it cannot be
        finished). Decreases by at least one along some allowed byte of every finite state."""
        phase, mcu, block, k, length, code, stuffed = state
        if phase == END:
            return int(stuffed)
        if phase in (MARKER, RESTART):
            return int(stuffed) + (2 if phase == MARKER else 1) + self.intervals_from(mcu)
        bits = self.block_rest(phase, block, k, length, code)
        bits += sum(self.block_bits(b) for b in range(block + 1, len(self.tables)))
        end = min((mcu // self.interval + 1) * self.interval, self.scan.mcus)
        bits += (end - mcu - 1) * self.mcu_bits
        if math.isinf(bits):
            return math.inf
        later = 2 + self.intervals_from(end) if end < self.scan.mcus else 0
        return int(stuffed) + 2 * math.ceil(bits / 8) + later

    def intervals_from(self, mcu: int) -> float:
        """Bytes of the intervals from ``mcu`` (an interval's first) to the end, with markers."""
        total = 0.0
        while mcu < self.scan.mcus:
            end = min(mcu + self.interval, self.scan.mcus)
            total += 2 * math.ceil((end - mcu) * self.mcu_bits / 8) + (2 if end < self.scan.mcus else 0)
            mcu = end
        return total

    def block_rest(self, phase: int, block: int, k: int, length: int, code: int) -> float:
        """Fewest bits that finish the current block."""
        dc, ac = self.tables[block]
        if phase in (DC_BITS, AC_BITS):
            return code + self.ac_rest(block, k)
        table = dc if phase == DC else ac
        costs = [
            extra + self.symbol_bits(phase, block, k, symbol)
            for extra, symbol in table.below.get((length, code), ())
        ]
        return min(costs, default=math.inf)

    def block_bits(self, block: int) -> float:
        return self.block_rest(DC, block, 0, 0, 0)

    def ac_rest(self, block: int, k: int) -> float:
        """Fewest bits that finish a block from coefficient ``k``."""
        return 0 if k == EOB_LIMIT else self.block_rest(AC, block, k, 0, 0)

    def symbol_bits(self, phase: int, block: int, k: int, symbol: int) -> float:
        """Fewest bits after a decoded symbol to the end of its block."""
        if phase == DC:
            return symbol + self.ac_rest(block, 1) if symbol <= 11 else math.inf
        run, size = symbol >> 4, symbol & 15
        if size == 0:
            if run != 15:
                return 0
            return self.ac_rest(block, k + 16) if k + 16 <= EOB_LIMIT else math.inf
        if size > 10 or k + run > 63:
            return math.inf
        return size + self.ac_rest(block, k + run + 1)
