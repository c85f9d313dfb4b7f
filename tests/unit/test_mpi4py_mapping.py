"""The mpi4py backend's pure decisions: which MPI op and datatype a (ReduceOp, dtype) maps to,
all_to_all split counts, and the errors for what MPI cannot do (no mpirun needed)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
MPI = pytest.importorskip("mpi4py.MPI")

from mpidist.backends.mpi4py import buffers, ops  # noqa: E402

R = torch.distributed.ReduceOp


@pytest.mark.parametrize("op,dtype,expected", [
    (R.SUM, torch.float32, "SUM"), (R.AVG, torch.float64, "SUM"),
    (R.PRODUCT, torch.int64, "PROD"), (R.BXOR, torch.uint8, "BXOR"),
    (R.SUM, torch.bool, "LOR"), (R.PRODUCT, torch.bool, "LAND"), (R.BXOR, torch.bool, "LXOR"),
    (R.MIN, torch.bool, "LAND"), (R.MAX, torch.int8, "MAX"),
])
def test_standard_ops(op, dtype, expected):
    assert ops.mpi_op(op, dtype, "all_reduce") == getattr(MPI, expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_reduce_through_a_user_op_with_their_own_rounding(dtype):
    op = ops.mpi_op(R.SUM, dtype, "all_reduce")
    assert op not in (MPI.SUM, MPI.OP_NULL)
    assert ops.mpi_type(dtype, "x").Get_size() == 2
    acc = torch.tensor([1.0, 2.0, 1024.0], dtype=dtype)
    x = torch.tensor([0.5, 0.25, 1.0], dtype=dtype)
    expected = acc + x  # torch's own half arithmetic: 1025 rounds to 1024 in fp16
    op.Reduce_local([x.view(torch.int16).numpy(), 3, ops.half_type()],
                    [acc.view(torch.int16).numpy(), 3, ops.half_type()])
    assert acc.equal(expected)


@pytest.mark.parametrize("op,dtype,message", [
    (R.BAND, torch.float32, "does not support ReduceOp.BAND on torch.float32"),
    (R.BOR, torch.bfloat16, "does not support ReduceOp.BOR on torch.bfloat16"),
])
def test_bitwise_ops_on_floats_name_the_op(op, dtype, message):
    with pytest.raises(NotImplementedError, match=message):
        ops.mpi_op(op, dtype, "all_reduce")


def test_avg_needs_floats():
    with pytest.raises(TypeError, match=r"AVG needs a floating-point tensor, got torch\.int32"):
        ops.mpi_op(R.AVG, torch.int32, "all_reduce")


def test_unsupported_dtype_is_named():
    with pytest.raises(TypeError, match=r"broadcast does not support dtype torch\.float8"):
        ops.mpi_type(torch.float8_e4m3fn, "broadcast")


def test_cuda_tensors_are_refused_with_the_alternative():
    meta = torch.empty(2, device="meta")
    with pytest.raises(NotImplementedError, match=r"takes CPU tensors.*use the nccl backend"):
        buffers.check(meta, "all_reduce")


@pytest.mark.parametrize("shape,splits,size,counts", [
    ((6, 2), [], 3, [4, 4, 4]),
    ((6, 2), [1, 2, 3], 3, [2, 4, 6]),
    ((4,), [0, 4], 2, [0, 4]),
])
def test_split_counts(shape, splits, size, counts):
    assert buffers.split_counts(torch.empty(shape), splits, size, "a2a") == counts


@pytest.mark.parametrize("shape,splits,size,message", [
    ((5, 2), [], 2, "dim 0 \\(5\\) is not divisible by the group size 2"),
    ((6,), [1, 2], 3, "must have 3 entries summing to dim 0 \\(6\\)"),
])
def test_bad_splits_are_explained(shape, splits, size, message):
    with pytest.raises(ValueError, match=message):
        buffers.split_counts(torch.empty(shape), splits, size, "a2a")
