"""The running batch's KV cache: rows of different lengths in one transformers `DynamicCache`.

Every row is right-aligned: its real tokens are the last `lengths[i]` columns and the
columns before them are left padding (masked out). With that one invariant a new
group of requests joins by left-padding the shorter of the two caches and concatenating
rows; a finished row leaves by `index_select`; and padding never accumulates, because
after rows leave the leading columns that are padding in every row are cut off.
The attention mask and the position ids follow from `lengths` alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class BatchKV:
    """A `DynamicCache` plus the real length of each row.

    Args:
        cache: the model's cache after a forward pass (its layers must be full-attention
            `DynamicLayer`s; sliding-window layers keep state this class does not move).
        lengths: real tokens per row, shape [rows], on the cache's device.
    """

    def __init__(self, cache: DynamicCache, lengths: torch.Tensor):
        for layer in cache.layers:
            if type(layer) is not DynamicLayer:
                raise TypeError(f"only full-attention DynamicLayer caches can be batched, got {type(layer).__name__}")
        self.cache = cache
        self.lengths = lengths

    @property
    def rows(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def width(self) -> int:
        """Columns in the cache: the longest row's length, plus padding left by rows that joined later."""
        return self.cache.get_seq_length()

    def step_inputs(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Attention mask (None when no row is padded) and position ids for one new token per row."""
        width = self.width + 1
        lengths = self.lengths + 1
        positions = self.lengths.unsqueeze(1)
        if bool((lengths == width).all()):
            return None, positions
        return padding_mask(lengths, width), positions

    def advance(self) -> None:
        """Count the token the last forward pass appended to every row."""
        self.lengths += 1

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (indices, in the new order) and cut columns that became all padding."""
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, rows)
            layer.values = layer.values.index_select(0, rows)
        self.lengths = self.lengths.index_select(0, rows)
        unused = self.width - int(self.lengths.max())
        if unused > 0:
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, unused:, :]
                layer.values = layer.values[:, :, unused:, :]

    def extend(self, other: BatchKV) -> None:
        """Append the rows of `other` after ours; the narrower cache is left-padded to the wider."""
        width = max(self.width, other.width)
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
            mine.values = torch.cat([_left_pad(mine.values, width), _left_pad(theirs.values, width)])
        self.lengths = torch.cat([self.lengths, other.lengths])


def padding_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """[rows, width] mask with ones on the last `lengths[i]` columns of row i."""
    columns = torch.arange(width, device=lengths.device)
    return (columns.unsqueeze(0) >= (width - lengths).unsqueeze(1)).long()


def left_padded(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input ids, attention mask and position ids of prompts left-padded to the longest one."""
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    width = int(lengths.max())
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
    mask = padding_mask(lengths, width)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask, positions


def _left_pad(tensor: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - tensor.shape[-2]
    return F.pad(tensor, (0, 0, missing, 0)) if missing else tensor
