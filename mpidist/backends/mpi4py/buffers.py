"""Tensors as MPI buffers: zero-copy numpy views of CPU storage, copies only when needed.

A plain tensor (CPU, contiguous, an MPI dtype) is its own buffer
(``fast_spec``); anything else goes through ``Buf``, a contiguous stand-in
written back by ``sync``. The v-collectives (all_gather, gather, all_to_all)
receive into one flat buffer that ``receiver`` unpacks into the caller's tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from .ops import HALF, MPI_TYPES, mpi_type

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["Buf", "check", "fast_spec", "flatten", "raw", "receiver", "split_counts", "vspec"]

def fast_spec(tensor: Tensor) -> list[Any] | None:
    """The MPI buffer of a plain tensor (CPU, contiguous, no grad, an MPI dtype), else
    None for the general path. Checked first: it is most calls, and the cheapest."""
    if tensor.is_cpu and not tensor.requires_grad and tensor.is_contiguous():
        mpi_type = MPI_TYPES.get(tensor.dtype)
        if mpi_type is not None:
            return [tensor.numpy(), tensor.numel(), mpi_type]
    return None


def check(tensor: Tensor, what: str) -> None:
    if tensor.device.type != "cpu":
        raise NotImplementedError(
            f"mpi4py backend: {what} takes CPU tensors, got one on {tensor.device}; "
            "use the nccl backend for CUDA tensors")
    if tensor.is_sparse:
        raise NotImplementedError(f"mpi4py backend: {what} does not support sparse tensors")


class Buf:
    """A tensor as an MPI buffer: a contiguous stand-in if needed, copied back by ``sync``."""

    __slots__ = ("contiguous", "dtype", "spec", "tensor")

    def __init__(self, tensor: Tensor, what: str) -> None:
        check(tensor, what)
        self.tensor = tensor
        self.dtype = tensor.dtype
        contiguous = tensor.detach()
        if not contiguous.is_contiguous():
            contiguous = contiguous.contiguous()
        self.contiguous = contiguous
        self.spec = [raw(contiguous), contiguous.numel(), mpi_type(tensor.dtype, what)]

    def sync(self) -> None:
        """Write a received contiguous stand-in back into the caller's tensor."""
        if self.contiguous.data_ptr() != self.tensor.data_ptr():
            with torch.no_grad():
                self.tensor.copy_(self.contiguous)


def flatten(tensors: Sequence[Tensor], what: str) -> Tensor:
    """One contiguous buffer holding ``tensors`` back to back (for v-collectives)."""
    for tensor in tensors:
        check(tensor, what)
    return torch.cat([t.detach().reshape(-1) for t in tensors]) if tensors else torch.empty(0)


def receiver(
    outputs: list[Tensor], dtype: torch.dtype, what: str
) -> tuple[list[Any], Callable[[], None]]:
    """One flat receive buffer for ``outputs`` (any sizes), as an MPI v-spec, and the
    finisher that copies its pieces into them."""
    counts = [out.numel() for out in outputs]
    flat = torch.empty(sum(counts), dtype=dtype)

    def unpack() -> None:
        with torch.no_grad():
            for out, piece in zip(outputs, torch.split(flat, counts), strict=True):
                out.copy_(piece.view(out.shape))

    return vspec(flat, counts, what), unpack


def raw(tensor: Tensor) -> Any:
    return (tensor.view(torch.int16) if tensor.dtype in HALF else tensor).numpy()


def vspec(flat: Tensor, counts: list[int], what: str) -> list[Any]:
    displs, offset = [], 0
    for count in counts:
        displs.append(offset)
        offset += count
    return [raw(flat), (counts, displs), mpi_type(flat.dtype, what)]


def split_counts(tensor: Tensor, splits: list[int], size: int, what: str) -> list[int]:
    """Element counts per peer for all_to_all_single (splits are along dim 0)."""
    rows = tensor.shape[0] if tensor.dim() else 1
    per_row = tensor.numel() // rows if rows else 0
    if not splits:
        if rows % size:
            raise ValueError(f"mpi4py backend: {what}: dim 0 ({rows}) is not divisible by "
                             f"the group size {size}; pass split sizes")
        return [rows // size * per_row] * size
    if len(splits) != size or sum(splits) != rows:
        raise ValueError(f"mpi4py backend: {what}: split sizes {splits} must have {size} "
                         f"entries summing to dim 0 ({rows})")
    return [s * per_row for s in splits]

