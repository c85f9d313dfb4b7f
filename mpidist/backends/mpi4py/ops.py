"""Which MPI datatype and reduction a (torch dtype, ReduceOp) pair becomes.

float16/bfloat16 have no MPI type: they travel as 2-byte elements and reduce
through a user MPI op that computes in torch with the dtype's own rounding,
as gloo does. Anything MPI cannot express raises an error naming the
collective, the op and the dtype. Ops are made once and cached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.distributed as dist
from mpi4py import MPI

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["AVG", "HALF", "MPI_TYPES", "Red", "half_type", "mpi_op", "mpi_type"]

Red = dist.ReduceOp

MPI_TYPES: dict[torch.dtype, MPI.Datatype] = {
    torch.float32: MPI.FLOAT,
    torch.float64: MPI.DOUBLE,
    torch.int8: MPI.INT8_T,
    torch.uint8: MPI.UINT8_T,
    torch.int16: MPI.INT16_T,
    torch.int32: MPI.INT32_T,
    torch.int64: MPI.INT64_T,
    torch.bool: MPI.C_BOOL,
    torch.complex64: MPI.C_FLOAT_COMPLEX,
    torch.complex128: MPI.C_DOUBLE_COMPLEX,
}
HALF = (torch.float16, torch.bfloat16)  # no MPI type: 2-byte elements, own ops
_HALF_TYPE: MPI.Datatype | None = None

_STANDARD_OPS = {
    Red.SUM: MPI.SUM, Red.PRODUCT: MPI.PROD, Red.MIN: MPI.MIN, Red.MAX: MPI.MAX,
    Red.BAND: MPI.BAND, Red.BOR: MPI.BOR, Red.BXOR: MPI.BXOR, Red.AVG: MPI.SUM,
}
_BOOL_OPS = {
    Red.SUM: MPI.LOR, Red.MAX: MPI.LOR, Red.BOR: MPI.LOR,
    Red.PRODUCT: MPI.LAND, Red.MIN: MPI.LAND, Red.BAND: MPI.LAND, Red.BXOR: MPI.LXOR,
}
_BITWISE = (Red.BAND, Red.BOR, Red.BXOR)
AVG = Red.AVG
_HALF_FNS: dict[Any, Callable[[Tensor, Tensor], Any]] = {
    Red.SUM: lambda acc, x: acc.add_(x),
    Red.AVG: lambda acc, x: acc.add_(x),
    Red.PRODUCT: lambda acc, x: acc.mul_(x),
    Red.MIN: lambda acc, x: torch.minimum(acc, x, out=acc),
    Red.MAX: lambda acc, x: torch.maximum(acc, x, out=acc),
}
_half_ops: dict[tuple[torch.dtype, Any], MPI.Op] = {}


def half_type() -> MPI.Datatype:
    global _HALF_TYPE
    if _HALF_TYPE is None:
        _HALF_TYPE = MPI.BYTE.Create_contiguous(2).Commit()
    return _HALF_TYPE


def mpi_type(dtype: torch.dtype, what: str) -> MPI.Datatype:
    if dtype in HALF:
        return half_type()
    try:
        return MPI_TYPES[dtype]
    except KeyError:
        raise TypeError(f"mpi4py backend: {what} does not support dtype {dtype}") from None


def half_op(dtype: torch.dtype, red: Any) -> MPI.Op:
    """A user MPI op reducing 2-byte elements as ``dtype`` (with its own rounding)."""
    key = (dtype, red)
    if key not in _half_ops:
        combine = _HALF_FNS[red]

        def reduce(inbuf: Any, inoutbuf: Any, datatype: MPI.Datatype) -> None:
            x = torch.frombuffer(inbuf, dtype=dtype)
            acc = torch.frombuffer(inoutbuf, dtype=dtype)
            combine(acc, x)

        _half_ops[key] = MPI.Op.Create(reduce, commute=True)
    return _half_ops[key]


_ops: dict[tuple[Any, torch.dtype], MPI.Op] = {}  # (RedOpType, dtype) -> MPI op


def mpi_op(reduce_op: Any, dtype: torch.dtype, what: str) -> MPI.Op:
    red = getattr(reduce_op, "op", reduce_op)  # ReduceOp wrapper or its RedOpType
    try:
        return _ops[red, dtype]
    except KeyError:
        pass
    if red == Red.AVG and not dtype.is_floating_point:
        raise TypeError(f"mpi4py backend: {what} with ReduceOp.AVG needs a floating-point "
                        f"tensor, got {dtype}")
    if dtype == torch.bool:
        op = _BOOL_OPS.get(red)
    elif dtype in HALF:
        op = half_op(dtype, red) if red in _HALF_FNS else None
    elif red in _BITWISE and (dtype.is_floating_point or dtype.is_complex):
        op = None
    else:
        op = _STANDARD_OPS.get(red)
    if op is None:
        name = str(red).rsplit(".", 1)[-1]
        raise NotImplementedError(
            f"mpi4py backend: {what} does not support ReduceOp.{name} on {dtype}")
    _ops[red, dtype] = op
    return op

