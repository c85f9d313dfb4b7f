"""Rank-side suite (run under mpirun by tests/integration/test_mpi4py_backend.py).

Every collective and dtype on the mpi4py backend against gloo on the same
inputs. Where gloo itself lacks a combination (AVG, some dtypes) the
expected value is computed locally from every rank's inputs, which each rank
can rebuild (inputs are a function of the rank).
"""

import pytest
import torch
import torch.distributed as dist

R = dist.ReduceOp
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8,
          torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool]
GLOO_LACKS = {torch.int16}  # gloo: "Invalid scalar type" (checked below)
N = 1000  # elements: several MPI segments for the user-op dtypes
# torch >= 2.13 names the one-tensor collectives *_single (the old names warn); 2.11 has
# only the old ones. Each build is tested through the names it offers.
ALL_GATHER_SINGLE = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
REDUCE_SCATTER_SINGLE = (getattr(dist, "reduce_scatter_single", None)
                         or dist.reduce_scatter_tensor)


def make(rank, dtype, n=N):
    base = (torch.arange(n) + rank) % 3 + 1  # 1..3: products and sums exact everywhere
    return base % 2 == 0 if dtype == torch.bool else base.to(dtype)


def reference(op, dtype, size):
    xs = [make(r, dtype) for r in range(size)]
    if dtype == torch.bool:
        stack = torch.stack(xs)
        if op in (R.SUM, R.MAX, R.BOR):
            return stack.any(0)
        if op in (R.PRODUCT, R.MIN, R.BAND):
            return stack.all(0)
        return stack.sum(0) % 2 == 1  # BXOR
    stack = torch.stack([x.to(torch.float64 if dtype.is_floating_point else torch.int64)
                         for x in xs])
    if op == R.SUM:
        out = stack.sum(0)
    elif op == R.AVG:
        out = stack.sum(0) / size
    elif op == R.PRODUCT:
        out = stack.prod(0)
    elif op == R.MIN:
        out = stack.min(0).values
    elif op == R.MAX:
        out = stack.max(0).values
    else:
        fn = {R.BAND: torch.bitwise_and, R.BOR: torch.bitwise_or, R.BXOR: torch.bitwise_xor}[op]
        out = stack[0]
        for x in stack[1:]:
            out = fn(out, x)
    return out.to(dtype)


@pytest.fixture(scope="module")
def groups():
    """(gloo world group, mpi4py world group), made once for the module."""
    gloo = dist.new_group(backend="gloo")
    mpi = dist.new_group(backend="mpi4py")
    assert dist.get_backend(mpi) == "mpi4py"
    yield gloo, mpi
    dist.destroy_process_group(mpi)
    dist.destroy_process_group(gloo)


def check(actual, expected_gloo, expected_local):
    assert actual.dtype == expected_local.dtype
    torch.testing.assert_close(actual, expected_local, rtol=0, atol=0)
    if expected_gloo is not None:
        torch.testing.assert_close(actual, expected_gloo, rtol=0, atol=0)


def ops_for(dtype):
    ops = [R.SUM, R.PRODUCT, R.MIN, R.MAX]
    if dtype == torch.bool or not dtype.is_floating_point:
        ops += [R.BAND, R.BOR, R.BXOR]
    if dtype.is_floating_point:
        ops.append(R.AVG)
    return ops


CASES = [(d, op) for d in DTYPES for op in ops_for(d)]


@pytest.mark.parametrize("dtype,op", CASES, ids=[f"{d}-{o}".replace("torch.", "").replace(
    "RedOpType.", "") for d, o in CASES])
def test_all_reduce(groups, dtype, op):
    gloo, mpi = groups
    rank, size = dist.get_rank(), dist.get_world_size()
    theirs = make(rank, dtype)
    try:
        dist.all_reduce(theirs, op=op, group=gloo)
        got_gloo = theirs
    except (RuntimeError, ValueError, TypeError):  # gloo has no AVG, some dtypes
        got_gloo = None
    ours = make(rank, dtype)
    dist.all_reduce(ours, op=op, group=mpi)
    check(ours, got_gloo, reference(op, dtype, size))


def movement_ops(rank, size, dtype):
    """name -> fn(group) returning this rank's result of that collective."""
    def broadcast(g):
        t = make(rank, dtype)
        dist.broadcast(t, src=size - 1, group=g)
        return t

    def all_gather(g):
        out = [torch.zeros(N, dtype=dtype) for _ in range(size)]
        dist.all_gather(out, make(rank, dtype), group=g)
        return torch.stack(out)

    def all_gather_single(g):
        out = torch.zeros(N * size, dtype=dtype)
        ALL_GATHER_SINGLE(out, make(rank, dtype), group=g)
        return out

    def gather(g):
        out = [torch.zeros(N, dtype=dtype) for _ in range(size)] if rank == 1 else None
        dist.gather(make(rank, dtype), out, dst=1, group=g)
        return torch.stack(out) if rank == 1 else None

    def scatter(g):
        out = torch.zeros(N, dtype=dtype)
        dist.scatter(out, [make(r, dtype) for r in range(size)] if rank == 0 else None,
                     src=0, group=g)
        return out

    def all_to_all(g):
        out = [torch.zeros(N, dtype=dtype) for _ in range(size)]
        dist.all_to_all(out, [make(rank * size + j, dtype) for j in range(size)], group=g)
        return torch.stack(out)

    def all_to_all_single(g):
        out = torch.zeros(N * size, dtype=dtype)
        dist.all_to_all_single(out, make(rank, dtype, N * size), group=g)
        return out

    def reduce(g):
        t = make(rank, dtype)
        dist.reduce(t, dst=0, group=g)
        return t if rank == 0 else None

    def reduce_scatter(g):
        out = torch.zeros(N, dtype=dtype)
        dist.reduce_scatter(out, [make(rank + j, dtype) for j in range(size)], group=g)
        return out

    def reduce_scatter_single(g):
        out = torch.zeros(N, dtype=dtype)
        REDUCE_SCATTER_SINGLE(out, make(rank, dtype, N * size), group=g)
        return out

    def gather_single(g):  # torch >= 2.14
        out = torch.zeros(N * size, dtype=dtype) if rank == 1 else None
        dist.gather_single(make(rank, dtype), out, dst=1, group=g)
        return out

    ops = [broadcast, all_gather, all_gather_single, gather, scatter, all_to_all,
           all_to_all_single]
    if hasattr(dist, "gather_single"):
        ops.append(gather_single)
    if dtype != torch.bool:
        ops += [reduce, reduce_scatter, reduce_scatter_single]
    return {fn.__name__: fn for fn in ops}


def movement_expected(rank, size, dtype):
    """What each collective must give this rank, from every rank's (rebuildable) inputs."""
    wide = torch.float64 if dtype.is_floating_point else torch.int64

    def total(tensors):
        return torch.stack([t.to(wide) for t in tensors]).sum(0).to(dtype)

    def chunk(j):  # rank j's all_to_all_single / reduce_scatter_single input, my chunk
        return make(j, dtype, N * size)[rank * N:(rank + 1) * N]

    return {
        "broadcast": make(size - 1, dtype),
        "all_gather": torch.stack([make(r, dtype) for r in range(size)]),
        "all_gather_single": torch.cat([make(r, dtype) for r in range(size)]),
        "gather": torch.stack([make(r, dtype) for r in range(size)]) if rank == 1 else None,
        "gather_single": torch.cat([make(r, dtype) for r in range(size)]) if rank == 1 else None,
        "scatter": make(rank, dtype),
        "all_to_all": torch.stack([make(j * size + rank, dtype) for j in range(size)]),
        "all_to_all_single": torch.cat([chunk(j) for j in range(size)]),
        "reduce": total([make(r, dtype) for r in range(size)]) if rank == 0 else None,
        "reduce_scatter": total([make(j + rank, dtype) for j in range(size)]),
        "reduce_scatter_single": total([chunk(j) for j in range(size)]),
    }


def test_gloo_still_lacks_int16(groups):
    """GLOO_LACKS is current: if gloo gains int16, compare against it too."""
    with pytest.raises(RuntimeError, match="Invalid scalar type"):
        dist.broadcast(torch.zeros(2, dtype=torch.int16), src=0, group=groups[0])


def by_gloo(fn, gloo):
    """``fn`` on gloo, or None where this torch's gloo lacks the op (2.11: all_to_all,
    2.14: gather_single); it raises on every rank alike, so no rank waits."""
    try:
        return fn(gloo)
    except RuntimeError as exc:
        if "does not support" not in str(exc):
            raise
        return None


@pytest.mark.parametrize("dtype", DTYPES, ids=[str(d)[6:] for d in DTYPES])
def test_movement_collectives(groups, dtype):
    """broadcast, reduce, all_gather(+single), gather, scatter, reduce_scatter(+single),
    all_to_all(+single): mpi4py gives the expected values, and equals gloo wherever
    gloo supports the dtype."""
    gloo, mpi = groups
    rank, size = dist.get_rank(), dist.get_world_size()
    expected = movement_expected(rank, size, dtype)
    compared = 0
    for name, fn in movement_ops(rank, size, dtype).items():
        ours = fn(mpi)
        theirs = by_gloo(fn, gloo) if dtype not in GLOO_LACKS else None  # every rank calls
        if expected[name] is None:  # not the root of a rooted collective
            assert ours is None
            continue
        assert ours.equal(expected[name]), name
        if theirs is not None:
            assert ours.equal(theirs), f"{name}: mpi4py differs from gloo"
            compared += 1
    assert compared >= (0 if dtype in GLOO_LACKS else 5)


def test_uneven_all_to_all_single(groups):
    gloo, mpi = groups
    rank, size = dist.get_rank(), dist.get_world_size()
    in_splits = [j + 1 for j in range(size)]  # send j+1 rows to rank j
    out_splits = [rank + 1] * size  # receive rank+1 rows from everyone
    rows = sum(in_splits)
    inp = torch.arange(rows * 3, dtype=torch.float32).reshape(rows, 3) + 100 * rank
    outs = []
    for group in (gloo, mpi):
        out = torch.zeros(sum(out_splits), 3)
        dist.all_to_all_single(out, inp, out_splits, in_splits, group=group)
        outs.append(out)
    assert outs[1].equal(outs[0])
    first = sum(in_splits[:rank])  # where rank 0's rows for me start
    mine = torch.arange(rows * 3, dtype=torch.float32).reshape(rows, 3)[first:first + rank + 1]
    assert outs[1][: rank + 1].equal(mine)


def test_non_contiguous_tensors(groups):
    _, mpi = groups
    rank, size = dist.get_rank(), dist.get_world_size()
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4) + rank
    t = base.t()  # a view, not contiguous
    assert not t.is_contiguous()
    dist.all_reduce(t, group=mpi)
    expected = sum(torch.arange(12, dtype=torch.float32).reshape(3, 4) + r for r in range(size))
    assert base.equal(expected), "the result must land in the caller's (strided) storage"
    outs = [torch.zeros(4, 3).t() for _ in range(size)]
    dist.all_gather(outs, (torch.ones(3, 4) * rank), group=mpi)
    for r, out in enumerate(outs):
        assert out.equal(torch.ones(3, 4) * r)
    b = torch.zeros(4, 3).t()
    if rank == 0:
        b.copy_(torch.full((3, 4), 7.0))
    dist.broadcast(b, src=0, group=mpi)
    assert b.equal(torch.full((3, 4), 7.0))


def test_async_work_objects(groups):
    _, mpi = groups
    rank, size = dist.get_rank(), dist.get_world_size()
    a, b = torch.ones(1 << 16) * rank, torch.ones(8)
    w1 = dist.all_reduce(a, group=mpi, async_op=True)
    w2 = dist.broadcast(b * rank, src=0, group=mpi, async_op=True)
    w3 = dist.barrier(group=mpi, async_op=True)
    assert isinstance(w1, dist.Work)
    w2.wait()
    w3.wait()
    assert w1.wait() is True
    assert w1.is_completed() and w1.is_success()
    assert a.equal(torch.ones(1 << 16) * sum(range(size)))
    fut = dist.all_reduce(torch.ones(4), group=mpi, async_op=True).get_future()
    assert fut.wait()[0].equal(torch.ones(4) * size)


def test_point_to_point(groups):
    _, mpi = groups
    rank, size = dist.get_rank(), dist.get_world_size()
    right, left = (rank + 1) % size, (rank - 1) % size
    out = torch.zeros(5, dtype=torch.int64)
    reqs = [dist.isend(torch.full((5,), rank), right, group=mpi, tag=3),
            dist.irecv(out, left, group=mpi, tag=3)]
    for req in reqs:
        req.wait()
    assert out.equal(torch.full((5,), left))
    # blocking send/recv, and recv from any source
    if rank == 0:
        got = torch.zeros(2)
        senders = sorted(dist.recv(got, group=mpi) for _ in range(size - 1))
        assert senders == list(range(1, size))
    else:
        dist.send(torch.ones(2) * rank, 0, group=mpi)
    half = torch.zeros(3, dtype=torch.bfloat16)
    if rank == 0:
        dist.send(torch.tensor([1.5, 2.5, -3.0], dtype=torch.bfloat16), 1, group=mpi)
    elif rank == 1:
        dist.recv(half, 0, group=mpi)
        assert half.equal(torch.tensor([1.5, 2.5, -3.0], dtype=torch.bfloat16))


def test_sub_groups_match_gloo():
    rank, size = dist.get_rank(), dist.get_world_size()
    members = list(range(0, size, 2))  # even ranks
    gloo = dist.new_group(members, backend="gloo")
    mpi = dist.new_group(members, backend="mpi4py")
    if rank in members:
        a, b = torch.ones(3) * (rank + 1), torch.ones(3) * (rank + 1)
        dist.all_reduce(a, group=gloo)
        dist.all_reduce(b, group=mpi)
        assert b.equal(a) and a[0] == sum(r + 1 for r in members)
        assert dist.get_rank(mpi) == members.index(rank)
        t = torch.full((2,), float(rank))
        dist.broadcast(t, src=members[-1], group=mpi)  # global rank, as torch takes it
        assert t.equal(torch.full((2,), float(members[-1])))
    dist.destroy_process_group(mpi)
    dist.destroy_process_group(gloo)


def test_unsupported_calls_name_the_op(groups):
    _, mpi = groups
    with pytest.raises(NotImplementedError, match=r"all_reduce does not support ReduceOp\.BAND "
                       r"on torch\.float32"):
        dist.all_reduce(torch.ones(2), op=R.BAND, group=mpi)
    with pytest.raises((NotImplementedError, ValueError, RuntimeError),
                       match="PREMUL_SUM"):
        dist.all_reduce(torch.ones(2), op=dist._make_nccl_premul_sum(2.0), group=mpi)
    with pytest.raises(TypeError, match="AVG needs a floating-point tensor"):
        dist.all_reduce(torch.ones(2, dtype=torch.int32), op=R.AVG, group=mpi)
    with pytest.raises(NotImplementedError, match="all_gather_into_tensor_coalesced"):
        mpi.allgather_into_tensor_coalesced([torch.zeros(4)], [torch.zeros(2)], None)


def test_batch_isend_irecv_and_object_collectives(groups):
    _, mpi = groups
    rank, size = dist.get_rank(), dist.get_world_size()
    right, left = (rank + 1) % size, (rank - 1) % size
    got = torch.zeros(3)
    ops = [dist.P2POp(dist.isend, torch.full((3,), float(rank)), right, group=mpi),
           dist.P2POp(dist.irecv, got, left, group=mpi)]
    for req in dist.batch_isend_irecv(ops):
        req.wait()
    assert got.equal(torch.full((3,), float(left)))
    objects = [None] * size
    dist.all_gather_object(objects, {"rank": rank}, group=mpi)
    assert objects == [{"rank": r} for r in range(size)]
    box = [f"from {size - 1}"] if rank == size - 1 else [None]
    dist.broadcast_object_list(box, src=size - 1, group=mpi)
    assert box == [f"from {size - 1}"]
