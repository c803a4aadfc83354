"""Rotary position embeddings: over a 2-D token grid (half the head dims rotate with the row,
half with the column), a video's (frame, row, column) block, or a 1-D stream."""

from __future__ import annotations

import torch


def rope_2d(
    height: int, width: int, head_dim: int, base: float, prefix_len: int, zero_prefix: bool = False
) -> torch.Tensor:
    """Rotation table (prefix_len + height*width, head_dim // 2, 2) of (cos, sin).

    Prefix (condition) positions get the identity rotation, or with ``zero_prefix`` an all-zero
    table that zeroes their queries and keys (what LlamaGen's official models were trained
    with); grid positions follow raster order.
    """
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}")
    quarter = head_dim // 4
    inv_freq = 1.0 / base ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (Dh/4,)
    rows = torch.outer(torch.arange(height, dtype=torch.float64), inv_freq)  # (H, Dh/4)
    cols = torch.outer(torch.arange(width, dtype=torch.float64), inv_freq)  # (W, Dh/4)
    angles = torch.cat(
        [rows[:, None].expand(-1, width, -1), cols[None, :].expand(height, -1, -1)], dim=-1
    ).reshape(height * width, head_dim // 2)  # (H*W, Dh/2)
    return rotation_table(angles, prefix_len, zero_prefix)


def rope_3d(
    frames: int, height: int, width: int, head_dim: int, base: float, prefix_len: int
) -> torch.Tensor:
    """Rotation table (prefix_len + frames*height*width, head_dim // 2, 2) for video tokens in
    (frame, row, column) order: 3/8 of the head-dim pairs rotate with the row, 3/8 with the
    column, the rest with the frame; the prefix is not rotated."""
    pairs = head_dim // 2
    spatial = pairs * 3 // 8
    if head_dim % 2 or spatial < 1 or pairs - 2 * spatial < 1:
        raise ValueError(f"3-D RoPE needs an even head_dim of at least 6, got {head_dim}")

    def angles(length: int, n: int) -> torch.Tensor:  # (length, n)
        inv_freq = 1.0 / base ** (torch.arange(n, dtype=torch.float64) / n)
        return torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)

    t = angles(frames, pairs - 2 * spatial)[:, None, None].expand(-1, height, width, -1)
    r = angles(height, spatial)[None, :, None].expand(frames, -1, width, -1)
    c = angles(width, spatial)[None, None, :].expand(frames, height, -1, -1)
    grid = torch.cat([t, r, c], dim=-1).reshape(frames * height * width, pairs)  # (T*H*W, Dh/2)
    return rotation_table(grid, prefix_len)


def rope_1d(length: int, head_dim: int, base: float, prefix_len: int) -> torch.Tensor:
    """Rotation table (prefix_len + length, head_dim // 2, 2) for a 1-D sequence (byte
    streams): every head-dim pair rotates with the position; the prefix is not rotated."""
    half = head_dim // 2
    inv_freq = 1.0 / base ** (torch.arange(half, dtype=torch.float64) / half)  # (Dh/2,)
    return rotation_table(torch.outer(torch.arange(length, dtype=torch.float64), inv_freq), prefix_len)


def rotation_table(angles: torch.Tensor, prefix_len: int, zero_prefix: bool = False) -> torch.Tensor:
    """Angles (L, Dh/2) -> (cos, sin) table (prefix_len + L, Dh/2, 2); prefix rows identity, or
    all zero with ``zero_prefix``."""
    angles = torch.cat([angles.new_zeros(prefix_len, angles.shape[1]), angles])
    table = torch.stack([angles.cos(), angles.sin()], dim=-1).float()
    if zero_prefix:
        table[:prefix_len] = 0
    return table


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of ``x`` (B, L, H, Dh) by ``table`` (L, Dh/2, 2) or, per row,
    (B, L, Dh/2, 2)."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)  # (B, L, H, Dh/2, 2)
    table = table if table.dim() == 4 else table[None]
    cos, sin = table[:, :, None, :, 0], table[:, :, None, :, 1]
    x0, x1 = pairs[..., 0], pairs[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], dim=-1)
    return out.flatten(-2).type_as(x)
