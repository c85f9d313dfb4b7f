"""``mpi4py``: a torch.distributed process group on mpi4py, for stock PyPI torch.

PyPI torch has no MPI backend (it needs a source build against your MPI).
This one is a Python ``ProcessGroup`` subclass registered with
``torch.distributed.Backend.register_backend``, so ``init_process_group
("mpi4py")``, ``new_group(backend="mpi4py")`` and every ``dist.*`` collective
work on CPU tensors, moved zero-copy through the buffer protocol (numpy views
of the tensor's storage).

Design points:

* Each group gets its own MPI communicator, so its traffic never matches the
  user's ``COMM_WORLD`` messages. The group's ranks are matched to MPI ranks
  through the group's store (rank ``r`` of the group publishes its MPI rank),
  so a group made any way -- the default group, ``new_group``, a group of a
  MultiProcessTestCase that uses 2 of 4 MPI ranks -- gets the right one.
* ``async_op=False`` runs the blocking MPI call (the fastest path) and returns
  a finished Work; ``async_op=True`` starts the non-blocking call (``I*``) and
  returns a Work whose ``wait`` completes it, so communication overlaps.
* float16/bfloat16 travel as 2-byte elements and reduce through a user MPI op
  that computes in torch with the dtype's own rounding, as gloo does.
  Non-contiguous tensors go through a contiguous copy that is written back.
* Anything MPI cannot express here raises ``NotImplementedError`` naming the
  collective and what to use instead.
"""

from __future__ import annotations

import zlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist
from mpi4py import MPI
from torch._C._distributed_c10d import (
    AllgatherOptions,
    AllreduceCoalescedOptions,
    AllreduceOptions,
    AllToAllOptions,
    BarrierOptions,
    BroadcastOptions,
    GatherOptions,
    ReduceOptions,
    ReduceScatterOptions,
    ScatterOptions,
)

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["NAME", "MPI4PyProcessGroup", "MPIWork", "register"]

NAME = "mpi4py"
T = TypeVar("T")

_Red = dist.ReduceOp

_MPI_TYPES: dict[torch.dtype, MPI.Datatype] = {
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
_HALF = (torch.float16, torch.bfloat16)  # no MPI type: 2-byte elements, own ops
_HALF_TYPE: MPI.Datatype | None = None

_STANDARD_OPS = {
    _Red.SUM: MPI.SUM, _Red.PRODUCT: MPI.PROD, _Red.MIN: MPI.MIN, _Red.MAX: MPI.MAX,
    _Red.BAND: MPI.BAND, _Red.BOR: MPI.BOR, _Red.BXOR: MPI.BXOR, _Red.AVG: MPI.SUM,
}
_BOOL_OPS = {
    _Red.SUM: MPI.LOR, _Red.MAX: MPI.LOR, _Red.BOR: MPI.LOR,
    _Red.PRODUCT: MPI.LAND, _Red.MIN: MPI.LAND, _Red.BAND: MPI.LAND, _Red.BXOR: MPI.LXOR,
}
_BITWISE = (_Red.BAND, _Red.BOR, _Red.BXOR)
_AVG = _Red.AVG
_HALF_FNS: dict[Any, Callable[[Tensor, Tensor], Any]] = {
    _Red.SUM: lambda acc, x: acc.add_(x),
    _Red.AVG: lambda acc, x: acc.add_(x),
    _Red.PRODUCT: lambda acc, x: acc.mul_(x),
    _Red.MIN: lambda acc, x: torch.minimum(acc, x, out=acc),
    _Red.MAX: lambda acc, x: torch.maximum(acc, x, out=acc),
}
_half_ops: dict[tuple[torch.dtype, Any], MPI.Op] = {}


def _half_type() -> MPI.Datatype:
    global _HALF_TYPE
    if _HALF_TYPE is None:
        _HALF_TYPE = MPI.BYTE.Create_contiguous(2).Commit()
    return _HALF_TYPE


def _mpi_type(dtype: torch.dtype, what: str) -> MPI.Datatype:
    if dtype in _HALF:
        return _half_type()
    try:
        return _MPI_TYPES[dtype]
    except KeyError:
        raise TypeError(f"mpi4py backend: {what} does not support dtype {dtype}") from None


def _half_op(dtype: torch.dtype, red: Any) -> MPI.Op:
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


def _mpi_op(reduce_op: Any, dtype: torch.dtype, what: str) -> MPI.Op:
    red = getattr(reduce_op, "op", reduce_op)  # ReduceOp wrapper or its RedOpType
    try:
        return _ops[red, dtype]
    except KeyError:
        pass
    if red == _Red.AVG and not dtype.is_floating_point:
        raise TypeError(f"mpi4py backend: {what} with ReduceOp.AVG needs a floating-point "
                        f"tensor, got {dtype}")
    if dtype == torch.bool:
        op = _BOOL_OPS.get(red)
    elif dtype in _HALF:
        op = _half_op(dtype, red) if red in _HALF_FNS else None
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


def _fast_spec(tensor: Tensor) -> list[Any] | None:
    """The MPI buffer of a plain tensor (CPU, contiguous, no grad, an MPI dtype), else
    None for the general path. Checked first: it is most calls, and the cheapest."""
    if tensor.is_cpu and not tensor.requires_grad and tensor.is_contiguous():
        mpi_type = _MPI_TYPES.get(tensor.dtype)
        if mpi_type is not None:
            return [tensor.numpy(), tensor.numel(), mpi_type]
    return None


def _check(tensor: Tensor, what: str) -> None:
    if tensor.device.type != "cpu":
        raise NotImplementedError(
            f"mpi4py backend: {what} takes CPU tensors, got one on {tensor.device}; "
            "use the nccl backend for CUDA tensors")
    if tensor.is_sparse:
        raise NotImplementedError(f"mpi4py backend: {what} does not support sparse tensors")


class _Buf:
    """A tensor as an MPI buffer: a contiguous stand-in if needed, copied back by ``sync``."""

    __slots__ = ("contiguous", "dtype", "spec", "tensor")

    def __init__(self, tensor: Tensor, what: str) -> None:
        _check(tensor, what)
        self.tensor = tensor
        self.dtype = tensor.dtype
        contiguous = tensor.detach()
        if not contiguous.is_contiguous():
            contiguous = contiguous.contiguous()
        self.contiguous = contiguous
        self.spec = [_raw(contiguous), contiguous.numel(), _mpi_type(tensor.dtype, what)]

    def sync(self) -> None:
        """Write a received contiguous stand-in back into the caller's tensor."""
        if self.contiguous.data_ptr() != self.tensor.data_ptr():
            with torch.no_grad():
                self.tensor.copy_(self.contiguous)


def _flat(tensors: Sequence[Tensor], what: str) -> Tensor:
    """One contiguous buffer holding ``tensors`` back to back (for v-collectives)."""
    for tensor in tensors:
        _check(tensor, what)
    return torch.cat([t.detach().reshape(-1) for t in tensors]) if tensors else torch.empty(0)


class MPIWork(dist._Work):  # type: ignore[misc,name-defined]  # private in torch's stubs
    """A collective's handle: MPI requests still in flight, and what to do after.

    ``wait`` completes the requests, then runs the finishers (copy back to
    non-contiguous outputs, divide for AVG, unpack a gather). A blocking call
    returns one with nothing in flight.
    """

    def __init__(
        self,
        what: str,
        outputs: list[Tensor],
        requests: Sequence[MPI.Request] = (),
        finish: Sequence[Callable[[], None]] = (),
        status: MPI.Status | None = None,
    ) -> None:
        super().__init__()
        self.what = what
        self.outputs = outputs
        self.requests = list(requests)
        self.finishers = list(finish)
        self.status = status
        self.done = not self.requests
        if self.done:
            self._finish()

    def _finish(self) -> None:
        for finish in self.finishers:
            finish()
        self.finishers = []

    def wait(self, timeout: timedelta | None = None) -> bool:
        if self.done:
            return True
        limit = timeout.total_seconds() if isinstance(timeout, timedelta) else 0.0
        if limit <= 0:
            MPI.Request.Waitall(self.requests, self._statuses())
        else:
            deadline = MPI.Wtime() + limit
            while not MPI.Request.Testall(self.requests, self._statuses()):
                if MPI.Wtime() > deadline:
                    raise RuntimeError(f"mpi4py backend: {self.what} timed out after "
                                       f"{limit:g} s")
        self.done = True
        self._finish()
        return True

    def _statuses(self) -> list[MPI.Status] | None:
        return [self.status] if self.status is not None else None

    def is_completed(self) -> bool:
        if not self.done and MPI.Request.Testall(self.requests, self._statuses()):
            self.done = True
            self._finish()
        return self.done

    def is_success(self) -> bool:
        return self.is_completed()

    def exception(self) -> None:
        return None

    def result(self) -> list[Tensor]:
        self.wait()
        return self.outputs

    def synchronize(self) -> None:
        self.wait()

    def get_future(self) -> torch.futures.Future[list[Tensor]]:
        """A future holding the outputs; it completes when the collective does."""
        self.wait()
        future: torch.futures.Future[list[Tensor]] = torch.futures.Future()
        future.set_result(self.outputs)
        return future

    def _source_rank(self) -> int:
        self.wait()
        return self.status.Get_source() if self.status is not None else -1

    source_rank = _source_rank


#: the finished Work every blocking fast-path call returns (nothing in it varies)
_DONE = MPIWork("done", [])


class MPI4PyProcessGroup(dist.ProcessGroup):
    """A torch.distributed group whose collectives are MPI calls on its own communicator."""

    def __init__(self, comm: MPI.Comm, rank: int, size: int) -> None:
        super().__init__(rank, size)  # type: ignore[call-arg]  # stubs: (store, rank, size)
        self.comm = comm
        self._name = self._desc = ""

    # torch asks a group's backends for these; this group is its own backend
    def getBackendName(self) -> str:
        return NAME

    def getGroupName(self) -> str:
        return self._name

    def setGroupName(self, name: str) -> None:
        self._name = name

    def getGroupDesc(self) -> str:
        return self._desc

    def setGroupDesc(self, desc: str) -> None:
        self._desc = desc

    def __repr__(self) -> str:
        return f"MPI4PyProcessGroup(rank={self.rank()}, size={self.size()})"

    # -- helpers ------------------------------------------------------------------

    def _run(
        self,
        what: str,
        outputs: list[Tensor],
        blocking: Callable[[], Any],
        nonblocking: Callable[[], MPI.Request],
        opts: Any,
        finish: Sequence[Callable[[], None]] = (),
    ) -> MPIWork:
        if getattr(opts, "asyncOp", True) is False:
            blocking()
            return MPIWork(what, outputs, (), finish)
        return MPIWork(what, outputs, [nonblocking()], finish)

    def _root(self, opts: Any, what: str) -> int:
        root = int(opts.rootRank)
        if not 0 <= root < self.size():
            raise ValueError(f"mpi4py backend: {what} root {root} is not a rank of this "
                             f"group of {self.size()}")
        return root

    @staticmethod
    def _one(items: Sequence[T], what: str) -> T:
        if len(items) != 1:
            raise NotImplementedError(f"mpi4py backend: {what} takes one tensor per rank, "
                                      f"got {len(items)}")
        return items[0]

    def _after_reduce(self, red: Any, buf: _Buf) -> list[Callable[[], None]]:
        """Finishers of a reduction into ``buf``: divide for AVG, then copy back."""
        finish: list[Callable[[], None]] = []
        if getattr(red, "op", red) == _Red.AVG:
            size = self.size()

            def divide() -> None:
                buf.contiguous.div_(size)

            finish.append(divide)
        return [*finish, buf.sync]

    # -- collectives --------------------------------------------------------------

    def allreduce(self, tensors: list[Tensor], opts: Any = None) -> MPIWork:
        opts = opts or AllreduceOptions()
        if len(tensors) == 1 and not opts.asyncOp:
            red = opts.reduceOp.op
            spec = _fast_spec(tensors[0]) if red != _AVG else None
            if spec is not None:
                self.comm.Allreduce(MPI.IN_PLACE, spec, _mpi_op(red, tensors[0].dtype,
                                                                "all_reduce"))
                return _DONE
        buf = _Buf(self._one(tensors, "all_reduce"), "all_reduce")
        op = _mpi_op(opts.reduceOp, buf.dtype, "all_reduce")
        comm = self.comm
        return self._run(
            "all_reduce", tensors,
            lambda: comm.Allreduce(MPI.IN_PLACE, buf.spec, op),
            lambda: comm.Iallreduce(MPI.IN_PLACE, buf.spec, op),
            opts, self._after_reduce(opts.reduceOp, buf))

    def allreduce_coalesced(self, tensors: list[Tensor], opts: Any = None) -> MPIWork:
        opts = opts or AllreduceCoalescedOptions()
        works = [self.allreduce([t], _with_op(opts)) for t in tensors]
        return _all_of("all_reduce_coalesced", tensors, works)

    def broadcast(self, tensors: list[Tensor], opts: Any = None) -> MPIWork:
        opts = opts or BroadcastOptions()
        if len(tensors) == 1 and not opts.asyncOp:
            spec = _fast_spec(tensors[0])
            if spec is not None:  # torch's frontend has checked the root
                self.comm.Bcast(spec, opts.rootRank)
                return _DONE
        buf = _Buf(self._one(tensors, "broadcast"), "broadcast")
        root = self._root(opts, "broadcast")
        comm = self.comm
        finish = [buf.sync] if self.rank() != root else []
        return self._run("broadcast", tensors, lambda: comm.Bcast(buf.spec, root),
                         lambda: comm.Ibcast(buf.spec, root), opts, finish)

    def reduce(self, tensors: list[Tensor], opts: Any = None) -> MPIWork:
        opts = opts or ReduceOptions()
        buf = _Buf(self._one(tensors, "reduce"), "reduce")
        root = self._root(opts, "reduce")
        op = _mpi_op(opts.reduceOp, buf.dtype, "reduce")
        comm = self.comm
        send = MPI.IN_PLACE if self.rank() == root else buf.spec
        recv = buf.spec if self.rank() == root else None
        finish = self._after_reduce(opts.reduceOp, buf) if self.rank() == root else []
        return self._run("reduce", tensors, lambda: comm.Reduce(send, recv, op, root),
                         lambda: comm.Ireduce(send, recv, op, root), opts, finish)

    def allgather(
        self, output_lists: list[list[Tensor]], inputs: list[Tensor], opts: Any = None
    ) -> MPIWork:
        opts = opts or AllgatherOptions()
        what = "all_gather"
        src = _Buf(self._one(inputs, what), what)
        outputs = self._one(output_lists, what)
        for out in outputs:
            _check(out, what)
        if len(outputs) != self.size() or \
                outputs[self.rank()].numel() != src.contiguous.numel():
            raise ValueError(f"mpi4py backend: {what} needs {self.size()} outputs, this "
                             f"rank's of {src.contiguous.numel()} elements")
        spec, unpack = _receiver(outputs, src.dtype, what)
        comm = self.comm
        return self._run(what, outputs, lambda: comm.Allgatherv(src.spec, spec),
                         lambda: comm.Iallgatherv(src.spec, spec), opts, [unpack])

    def all_gather_single(self, output: Tensor, input: Tensor, opts: Any = None) -> MPIWork:
        opts = opts or AllgatherOptions()
        if not opts.asyncOp:
            send, recv = _fast_spec(input), _fast_spec(output)
            if send is not None and recv is not None and recv[1] == send[1] * self.size() \
                    and recv[2] is send[2]:
                recv[1] = send[1]  # elements received from each rank
                self.comm.Allgather(send, recv)
                return _DONE
        src, out = _Buf(input, "all_gather_into_tensor"), _Buf(output, "all_gather_into_tensor")
        if out.contiguous.numel() != src.contiguous.numel() * self.size():
            raise ValueError("mpi4py backend: all_gather_into_tensor output must hold "
                             f"{self.size()} x the input's {src.contiguous.numel()} elements")
        comm = self.comm
        recv = [out.spec[0], src.contiguous.numel(), out.spec[2]]
        return self._run("all_gather_into_tensor", [output],
                         lambda: comm.Allgather(src.spec, recv),
                         lambda: comm.Iallgather(src.spec, recv), opts, [out.sync])

    _allgather_base = all_gather_single

    def gather(
        self, output_lists: list[list[Tensor]], inputs: list[Tensor], opts: Any = None
    ) -> MPIWork:
        opts = opts or GatherOptions()
        src = _Buf(self._one(inputs, "gather"), "gather")
        root = self._root(opts, "gather")
        comm = self.comm
        if self.rank() != root:
            return self._run("gather", [], lambda: comm.Gatherv(src.spec, None, root),
                             lambda: comm.Igatherv(src.spec, None, root), opts)
        outputs = self._one(output_lists, "gather")
        if len(outputs) != self.size():
            raise ValueError(f"mpi4py backend: gather needs {self.size()} outputs on the root")
        spec, unpack = _receiver(outputs, src.dtype, "gather")
        return self._run("gather", outputs, lambda: comm.Gatherv(src.spec, spec, root),
                         lambda: comm.Igatherv(src.spec, spec, root), opts, [unpack])

    def scatter(
        self, outputs: list[Tensor], input_lists: list[list[Tensor]], opts: Any = None
    ) -> MPIWork:
        opts = opts or ScatterOptions()
        out = _Buf(self._one(outputs, "scatter"), "scatter")
        root = self._root(opts, "scatter")
        comm = self.comm
        send = None
        if self.rank() == root:
            pieces = self._one(input_lists, "scatter")
            if len(pieces) != self.size():
                raise ValueError(f"mpi4py backend: scatter needs {self.size()} inputs on "
                                 "the root")
            flat = _flat(pieces, "scatter")
            send = _vspec(flat, [p.numel() for p in pieces], "scatter")
        return self._run("scatter", outputs, lambda: comm.Scatterv(send, out.spec, root),
                         lambda: comm.Iscatterv(send, out.spec, root), opts, [out.sync])

    def reduce_scatter(
        self, outputs: list[Tensor], input_lists: list[list[Tensor]], opts: Any = None
    ) -> MPIWork:
        opts = opts or ReduceScatterOptions()
        out = _Buf(self._one(outputs, "reduce_scatter"), "reduce_scatter")
        pieces = self._one(input_lists, "reduce_scatter")
        if len(pieces) != self.size():
            raise ValueError(f"mpi4py backend: reduce_scatter needs {self.size()} inputs")
        counts = [p.numel() for p in pieces]
        flat = _flat(pieces, "reduce_scatter").to(out.dtype)
        return self._reduce_scatter("reduce_scatter", outputs, out, flat, counts, opts)

    def _reduce_scatter(
        self, what: str, result: list[Tensor], out: _Buf, flat: Tensor, counts: list[int],
        opts: Any,
    ) -> MPIWork:
        op = _mpi_op(opts.reduceOp, out.dtype, what)
        send = [_raw(flat), flat.numel(), out.spec[2]]
        comm = self.comm
        return self._run(what, result,
                         lambda: comm.Reduce_scatter(send, out.spec, counts, op),
                         lambda: comm.Ireduce_scatter(send, out.spec, counts, op),
                         opts, self._after_reduce(opts.reduceOp, out))

    def reduce_scatter_single(
        self, output: Tensor, input: Tensor, opts: Any = None
    ) -> MPIWork:
        opts = opts or ReduceScatterOptions()
        what = "reduce_scatter_tensor"
        out, src = _Buf(output, what), _Buf(input, what)
        if src.contiguous.numel() != out.contiguous.numel() * self.size():
            raise ValueError(f"mpi4py backend: {what} input must hold {self.size()} x the "
                             f"output's {out.contiguous.numel()} elements")
        counts = [out.contiguous.numel()] * self.size()
        return self._reduce_scatter(what, [output], out, src.contiguous, counts, opts)

    _reduce_scatter_base = reduce_scatter_single

    def alltoall(
        self, outputs: list[Tensor], inputs: list[Tensor], opts: Any = None
    ) -> MPIWork:
        opts = opts or AllToAllOptions()
        what = "all_to_all"
        if len(outputs) != self.size() or len(inputs) != self.size():
            raise ValueError(f"mpi4py backend: {what} needs {self.size()} inputs and outputs")
        send = _vspec(_flat(inputs, what), [t.numel() for t in inputs], what)
        recv, unpack = _receiver(outputs, inputs[0].dtype, what)
        comm = self.comm
        return self._run(what, outputs, lambda: comm.Alltoallv(send, recv),
                         lambda: comm.Ialltoallv(send, recv), opts, [unpack])

    def all_to_all_single(
        self, output: Tensor, input: Tensor, output_splits: list[int],
        input_splits: list[int], opts: Any = None,
    ) -> MPIWork:
        opts = opts or AllToAllOptions()
        what = "all_to_all_single"
        out, src = _Buf(output, what), _Buf(input, what)
        send_counts = _split_counts(input, input_splits, self.size(), what)
        recv_counts = _split_counts(output, output_splits, self.size(), what)
        send = _vspec(src.contiguous, send_counts, what)
        recv = _vspec(out.contiguous, recv_counts, what)
        comm = self.comm
        return self._run(what, [output], lambda: comm.Alltoallv(send, recv),
                         lambda: comm.Ialltoallv(send, recv), opts, [out.sync])

    alltoall_base = all_to_all_single

    def barrier(self, opts: Any = None) -> MPIWork:
        comm = self.comm
        return self._run("barrier", [], comm.Barrier, comm.Ibarrier,
                         opts or BarrierOptions())

    # -- point to point (always non-blocking: dist.send waits, dist.isend does not) --

    def send(self, tensors: list[Tensor], dst: int, tag: int) -> MPIWork:
        buf = _Buf(self._one(tensors, "send"), "send")
        return MPIWork("send", tensors, [self.comm.Isend(buf.spec, dst, tag)])

    def recv(self, tensors: list[Tensor], src: int, tag: int) -> MPIWork:
        buf = _Buf(self._one(tensors, "recv"), "recv")
        return MPIWork("recv", tensors, [self.comm.Irecv(buf.spec, src, tag)], [buf.sync],
                       MPI.Status())

    def recv_anysource(self, tensors: list[Tensor], tag: int) -> MPIWork:
        return self.recv(tensors, MPI.ANY_SOURCE, tag)

    # -- what MPI cannot do here ----------------------------------------------------

    def _unsupported(self, what: str, instead: str) -> MPIWork:
        raise NotImplementedError(f"mpi4py backend: {what} is not supported; {instead}")

    def allgather_coalesced(self, *args: Any, **kwargs: Any) -> MPIWork:
        return self._unsupported("all_gather_coalesced", "call all_gather per tensor")

    def all_gather_single_coalesced(self, *args: Any, **kwargs: Any) -> MPIWork:
        return self._unsupported("all_gather_into_tensor_coalesced",
                                 "call all_gather_into_tensor per tensor")

    allgather_into_tensor_coalesced = all_gather_single_coalesced

    def reduce_scatter_single_coalesced(self, *args: Any, **kwargs: Any) -> MPIWork:
        return self._unsupported("reduce_scatter_tensor_coalesced",
                                 "call reduce_scatter_tensor per tensor")

    reduce_scatter_tensor_coalesced = reduce_scatter_single_coalesced

    # -- lifetime -------------------------------------------------------------------

    def shutdown(self) -> None:
        """Free the communicator (``destroy_process_group`` calls this on every member)."""
        if self.comm != MPI.COMM_NULL:
            self.comm.Free()

    abort = shutdown


def _receiver(
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

    return _vspec(flat, counts, what), unpack


def _raw(tensor: Tensor) -> Any:
    return (tensor.view(torch.int16) if tensor.dtype in _HALF else tensor).numpy()


def _vspec(flat: Tensor, counts: list[int], what: str) -> list[Any]:
    displs, offset = [], 0
    for count in counts:
        displs.append(offset)
        offset += count
    return [_raw(flat), (counts, displs), _mpi_type(flat.dtype, what)]


def _split_counts(tensor: Tensor, splits: list[int], size: int, what: str) -> list[int]:
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


def _with_op(opts: Any) -> Any:
    single = AllreduceOptions()
    single.reduceOp = opts.reduceOp
    single.asyncOp = getattr(opts, "asyncOp", True)
    return single


def _all_of(what: str, outputs: list[Tensor], works: list[MPIWork]) -> MPIWork:
    requests = [r for w in works for r in w.requests]
    finishers = [f for w in works for f in w.finishers]
    for work in works:
        work.done, work.finishers = True, []
    return MPIWork(what, outputs, requests, finishers)


def _group_comm(store: Any, rank: int, size: int, group_id: str) -> MPI.Comm:
    """An MPI communicator whose rank ``r`` is the process that is group rank ``r``.

    Collective over the group's members only (non-members never call it).
    """
    world = MPI.COMM_WORLD
    if size > world.Get_size():
        raise RuntimeError(
            f"mpi4py backend: a group of {size} ranks in an MPI world of "
            f"{world.Get_size()}; start every rank with mpirun/srun")
    if size == world.Get_size():  # every process is a member: no need for the store
        return world.Split(0, rank)
    store.set(f"mpi4py/{rank}", str(world.Get_rank()))
    keys = [f"mpi4py/{r}" for r in range(size)]
    store.wait(keys)
    members = [int(store.get(key)) for key in keys]
    group = world.Get_group().Incl(members)
    try:
        return world.Create_group(group, zlib.crc32(group_id.encode()) % 32768)
    finally:
        group.Free()


def _create(options: Any, _pg_options: Any) -> MPI4PyProcessGroup:
    comm = _group_comm(options.store, options.group_rank, options.group_size,
                       str(options.group_id))
    return MPI4PyProcessGroup(comm, options.group_rank, options.group_size)


def register() -> None:
    """Make ``"mpi4py"`` a torch.distributed backend for CPU tensors (idempotent)."""
    if NAME.upper() not in dist.Backend._plugins:
        dist.Backend.register_backend(NAME, _create, extended_api=True, devices=["cpu"])
