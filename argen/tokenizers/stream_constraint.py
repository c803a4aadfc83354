"""Which ids of a byte vocabulary may come next, by a byte automaton (a codec's syntax).

An id (a byte or a byte-pair merge) is allowed when every byte of it is allowed in turn and
the stream can still be finished, EOS included, within the positions left; EOS is allowed
exactly when the automaton is in a final state (which may also go on). Per automaton state
the ids' costs ("positions needed after this id") are computed once, by walking a trie of the
vocabulary, and cached: a step of sampling is a lookup and a comparison per row.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from argen.tokenizers.byte_vocab import ByteVocabulary

FINISHED = "finished"  # a row past its EOS


class ByteAutomaton(Protocol):
    start: object

    def successors(self, state) -> dict: ...  # every allowed next byte -> the state after it

    def min_bytes(self, state) -> float: ...  # bytes that surely finish the stream from state

    def finished(self, state) -> bool: ...


class StreamConstraint:
    """A vocabulary's ids masked by a byte automaton, for streams of at most ``max_len`` ids."""

    def __init__(self, automaton: ByteAutomaton, vocab: ByteVocabulary, max_len: int):
        self.automaton, self.vocab, self.max_len = automaton, vocab, max_len
        shortest = automaton.min_bytes(automaton.start) + 1
        if shortest > max_len:
            raise ValueError(
                f"a syntax-constrained stream may need {shortest} ids with EOS; max_len is {max_len}"
            )
        self.trie: dict = {}  # byte -> [children, id or -1]
        for token in range(vocab.bos):
            node = self.trie
            *head, last = vocab.token_bytes(token)
            for byte in head:
                node = node.setdefault(byte, [{}, -1])[0]
            node.setdefault(last, [{}, -1])[1] = token
        self.costs: dict = {}  # state -> (its row in self.needs, id -> next state)
        self.needs = torch.empty(256, vocab.size)  # per state: positions each id needs after it
        self.known = 0  # rows of self.needs in use

    def options(self, state) -> tuple[int, dict]:
        """(the state's row of ``needs``: positions each id needs after it, inf if it is not
        allowed (V,); id -> next state)."""
        if state in self.costs:
            return self.costs[state]
        need = [math.inf] * self.vocab.size
        following = {self.vocab.eos: FINISHED}
        if state is FINISHED or self.automaton.finished(state):
            need[self.vocab.eos] = 0
        stack = [(state, self.trie)] if state is not FINISHED else []
        while stack:
            at, node = stack.pop()
            for byte, after in self.automaton.successors(at).items():
                if byte not in node:
                    continue
                children, token = node[byte]
                if token >= 0:
                    need[token] = self.automaton.min_bytes(after) + 1  # + EOS
                    following[token] = after
                if children:
                    stack.append((after, children))
        if self.known == len(self.needs):  # grow the table (amortised: doubling)
            self.needs = torch.cat([self.needs, torch.empty_like(self.needs)])
        self.needs[self.known] = torch.tensor(need)
        self.costs[state] = (self.known, following)
        self.known += 1
        return self.costs[state]

    def begin(self, rows: int) -> ConstrainedRows:
        return ConstrainedRows(self, rows)


class ConstrainedRows:
    """The automaton state of each row of one sampling call."""

    def __init__(self, constraint: StreamConstraint, rows: int):
        self.constraint = constraint
        self.states = [constraint.automaton.start] * rows

    def allowed(self, remaining: int | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """(B, V) bool: the ids each row may take with ``remaining`` positions after it (one
        number, or one per row (B,))."""
        rows = torch.tensor([self.constraint.options(s)[0] for s in self.states])
        if isinstance(remaining, torch.Tensor):
            remaining = remaining.cpu()[:, None]  # (B, 1)
        return (self.constraint.needs[rows] <= remaining).to(device)  # (B, V)

    def fork(self) -> ConstrainedRows:
        """A copy whose rows move on independently (speculative drafts)."""
        copy = ConstrainedRows(self.constraint, 0)
        copy.states = list(self.states)
        return copy

    def advance(self, tokens: torch.Tensor) -> None:
        """Move every row past its drawn id (B,); a finished row stays finished."""
        self.walk(tokens[:, None], torch.ones_like(tokens))

    def walk(self, tokens: torch.Tensor, counts: torch.Tensor) -> None:
        """Move each row past its first ``counts`` (B,) ids of ``tokens`` (B, T)."""
        for row, (ids, count) in enumerate(zip(tokens.tolist(), counts.tolist())):
            for token in ids[:count]:
                state = self.states[row]
                if state is not FINISHED:
                    self.states[row] = self.constraint.options(state)[1][token]
