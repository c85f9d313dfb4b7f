"""The process group: each collective as an MPI call on the group's own communicator.

Each group gets its own MPI communicator, so its traffic never matches the
user's ``COMM_WORLD`` messages. The group's ranks are matched to MPI ranks
through the group's store (rank ``r`` of the group publishes its MPI rank), so
a group made any way -- the default group, ``new_group``, a group of a
MultiProcessTestCase that uses 2 of 4 MPI ranks -- gets the right one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

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

from ...errors import UnsupportedCollective
from .buffers import Buf, check, fast_spec, flatten, raw, receiver, split_counts, vspec
from .communicator import group_comm
from .ops import AVG, Red, mpi_op
from .work import DONE, MPIWork, all_of

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["NAME", "MPI4PyProcessGroup", "register"]

NAME = "mpi4py"
T = TypeVar("T")

class MPI4PyProcessGroup(dist.ProcessGroup):
    """A torch.distributed group whose collectives are MPI calls on its own communicator.
    ``pg.name()``: "custom", as torch names any registered backend's group (its tests
    assert it), or "mpi" standing in for torch's MPI backend."""

    def __init__(self, comm: MPI.Comm, rank: int, size: int, backend: str = "custom") -> None:
        super().__init__(rank, size)  # type: ignore[call-arg]  # stubs: (store, rank, size)
        self.comm = comm
        self._backend_name = backend
        self._name = self._desc = ""

    # torch asks a group's backends for these; this group is its own backend
    def getBackendName(self) -> str:
        return self._backend_name

    def getGroupName(self) -> str:
        return self._name

    def setGroupName(self, name: str) -> None:
        self._name = name

    def getGroupDesc(self) -> str:
        return self._desc

    def setGroupDesc(self, desc: str) -> None:
        self._desc = desc

    #: torch asks a backend for these (batch_isend_irecv; new_group on torch 2.11 reads
    #: supports_splitting once a device is bound)
    supports_coalescing = supports_splitting = supports_time_estimate = False

    def _get_backend(self, device: Any) -> MPI4PyProcessGroup:
        """This group is its own backend, whatever the device: torch >= 2.14 asks a group
        for its backend per device (``batch_isend_irecv``), and a Python group registers
        none, so torch's own lookup fails with "No backend type associated with device
        type cpu"; a CUDA tensor then gets this backend's one-line error."""
        return self

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

    def _after_reduce(self, red: Any, buf: Buf) -> list[Callable[[], None]]:
        """Finishers of a reduction into ``buf``: divide for AVG, then copy back."""
        finish: list[Callable[[], None]] = []
        if getattr(red, "op", red) == Red.AVG:
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
            spec = fast_spec(tensors[0]) if red != AVG else None
            if spec is not None:
                self.comm.Allreduce(MPI.IN_PLACE, spec, mpi_op(red, tensors[0].dtype,
                                                                "all_reduce"))
                return DONE
        buf = Buf(self._one(tensors, "all_reduce"), "all_reduce")
        op = mpi_op(opts.reduceOp, buf.dtype, "all_reduce")
        comm = self.comm
        return self._run(
            "all_reduce", tensors,
            lambda: comm.Allreduce(MPI.IN_PLACE, buf.spec, op),
            lambda: comm.Iallreduce(MPI.IN_PLACE, buf.spec, op),
            opts, self._after_reduce(opts.reduceOp, buf))

    def allreduce_coalesced(self, tensors: list[Tensor], opts: Any = None) -> MPIWork:
        opts = opts or AllreduceCoalescedOptions()
        works = [self.allreduce([t], _with_op(opts)) for t in tensors]
        return all_of("all_reduce_coalesced", tensors, works)

    def broadcast(self, tensors: list[Tensor], opts: Any = None) -> MPIWork:
        opts = opts or BroadcastOptions()
        if len(tensors) == 1 and not opts.asyncOp:
            spec = fast_spec(tensors[0])
            if spec is not None:  # torch's frontend has checked the root
                self.comm.Bcast(spec, opts.rootRank)
                return DONE
        buf = Buf(self._one(tensors, "broadcast"), "broadcast")
        root = self._root(opts, "broadcast")
        comm = self.comm
        finish = [buf.sync] if self.rank() != root else []
        return self._run("broadcast", tensors, lambda: comm.Bcast(buf.spec, root),
                         lambda: comm.Ibcast(buf.spec, root), opts, finish)

    def reduce(self, tensors: list[Tensor], opts: Any = None) -> MPIWork:
        opts = opts or ReduceOptions()
        buf = Buf(self._one(tensors, "reduce"), "reduce")
        root = self._root(opts, "reduce")
        op = mpi_op(opts.reduceOp, buf.dtype, "reduce")
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
        src = Buf(self._one(inputs, what), what)
        outputs = self._one(output_lists, what)
        for out in outputs:
            check(out, what)
        if len(outputs) != self.size() or \
                outputs[self.rank()].numel() != src.contiguous.numel():
            raise ValueError(f"mpi4py backend: {what} needs {self.size()} outputs, this "
                             f"rank's of {src.contiguous.numel()} elements")
        spec, unpack = receiver(outputs, src.dtype, what)
        comm = self.comm
        return self._run(what, outputs, lambda: comm.Allgatherv(src.spec, spec),
                         lambda: comm.Iallgatherv(src.spec, spec), opts, [unpack])

    def all_gather_single(self, output: Tensor, input: Tensor, opts: Any = None) -> MPIWork:
        opts = opts or AllgatherOptions()
        if not opts.asyncOp:
            send, recv = fast_spec(input), fast_spec(output)
            if send is not None and recv is not None and recv[1] == send[1] * self.size() \
                    and recv[2] is send[2]:
                recv[1] = send[1]  # elements received from each rank
                self.comm.Allgather(send, recv)
                return DONE
        src, out = Buf(input, "all_gather_into_tensor"), Buf(output, "all_gather_into_tensor")
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
        src = Buf(self._one(inputs, "gather"), "gather")
        root = self._root(opts, "gather")
        comm = self.comm
        if self.rank() != root:
            return self._run("gather", [], lambda: comm.Gatherv(src.spec, None, root),
                             lambda: comm.Igatherv(src.spec, None, root), opts)
        outputs = self._one(output_lists, "gather")
        if len(outputs) != self.size():
            raise ValueError(f"mpi4py backend: gather needs {self.size()} outputs on the root")
        spec, unpack = receiver(outputs, src.dtype, "gather")
        return self._run("gather", outputs, lambda: comm.Gatherv(src.spec, spec, root),
                         lambda: comm.Igatherv(src.spec, spec, root), opts, [unpack])

    def gather_single(self, output: Tensor, input: Tensor, opts: Any = None) -> MPIWork:
        """``dist.gather_single`` (torch >= 2.14): all inputs, end to end, in the root's."""
        what, opts = "gather_single", opts or GatherOptions()
        src, root, comm = Buf(input, what), self._root(opts, what), self.comm
        if self.rank() != root:
            return self._run(what, [], lambda: comm.Gather(src.spec, None, root),
                             lambda: comm.Igather(src.spec, None, root), opts)
        out = Buf(output, what)
        if out.contiguous.numel() != src.contiguous.numel() * self.size():
            raise ValueError(f"mpi4py backend: {what} output must hold {self.size()} x the "
                             f"input's {src.contiguous.numel()} elements")
        recv = [out.spec[0], src.contiguous.numel(), out.spec[2]]
        return self._run(what, [output], lambda: comm.Gather(src.spec, recv, root),
                         lambda: comm.Igather(src.spec, recv, root), opts, [out.sync])

    def scatter(
        self, outputs: list[Tensor], input_lists: list[list[Tensor]], opts: Any = None
    ) -> MPIWork:
        opts = opts or ScatterOptions()
        out = Buf(self._one(outputs, "scatter"), "scatter")
        root = self._root(opts, "scatter")
        comm = self.comm
        send = None
        if self.rank() == root:
            pieces = self._one(input_lists, "scatter")
            if len(pieces) != self.size():
                raise ValueError(f"mpi4py backend: scatter needs {self.size()} inputs on "
                                 "the root")
            flat = flatten(pieces, "scatter")
            send = vspec(flat, [p.numel() for p in pieces], "scatter")
        return self._run("scatter", outputs, lambda: comm.Scatterv(send, out.spec, root),
                         lambda: comm.Iscatterv(send, out.spec, root), opts, [out.sync])

    def reduce_scatter(
        self, outputs: list[Tensor], input_lists: list[list[Tensor]], opts: Any = None
    ) -> MPIWork:
        opts = opts or ReduceScatterOptions()
        out = Buf(self._one(outputs, "reduce_scatter"), "reduce_scatter")
        pieces = self._one(input_lists, "reduce_scatter")
        if len(pieces) != self.size():
            raise ValueError(f"mpi4py backend: reduce_scatter needs {self.size()} inputs")
        counts = [p.numel() for p in pieces]
        flat = flatten(pieces, "reduce_scatter").to(out.dtype)
        return self._reduce_scatter("reduce_scatter", outputs, out, flat, counts, opts)

    def _reduce_scatter(
        self, what: str, result: list[Tensor], out: Buf, flat: Tensor, counts: list[int],
        opts: Any,
    ) -> MPIWork:
        op = mpi_op(opts.reduceOp, out.dtype, what)
        send = [raw(flat), flat.numel(), out.spec[2]]
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
        out, src = Buf(output, what), Buf(input, what)
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
        send = vspec(flatten(inputs, what), [t.numel() for t in inputs], what)
        recv, unpack = receiver(outputs, inputs[0].dtype, what)
        comm = self.comm
        return self._run(what, outputs, lambda: comm.Alltoallv(send, recv),
                         lambda: comm.Ialltoallv(send, recv), opts, [unpack])

    def all_to_all_single(
        self, output: Tensor, input: Tensor, output_splits: list[int],
        input_splits: list[int], opts: Any = None,
    ) -> MPIWork:
        opts = opts or AllToAllOptions()
        what = "all_to_all_single"
        out, src = Buf(output, what), Buf(input, what)
        send_counts = split_counts(input, input_splits, self.size(), what)
        recv_counts = split_counts(output, output_splits, self.size(), what)
        send = vspec(src.contiguous, send_counts, what)
        recv = vspec(out.contiguous, recv_counts, what)
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
        buf = Buf(self._one(tensors, "send"), "send")
        return MPIWork("send", tensors, [self.comm.Isend(buf.spec, dst, tag)])

    def recv(self, tensors: list[Tensor], src: int, tag: int) -> MPIWork:
        buf = Buf(self._one(tensors, "recv"), "recv")
        return MPIWork("recv", tensors, [self.comm.Irecv(buf.spec, src, tag)], [buf.sync],
                       MPI.Status())

    def recv_anysource(self, tensors: list[Tensor], tag: int) -> MPIWork:
        return self.recv(tensors, MPI.ANY_SOURCE, tag)

    # -- what MPI cannot do here ----------------------------------------------------

    def _unsupported(self, what: str, instead: str) -> MPIWork:
        raise UnsupportedCollective(f"mpi4py backend: {what} is not supported; {instead}")

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


def _with_op(opts: Any) -> Any:
    single = AllreduceOptions()
    single.reduceOp = opts.reduceOp
    single.asyncOp = getattr(opts, "asyncOp", True)
    return single


def _create(opts: Any, _pg_options: Any) -> MPI4PyProcessGroup:
    comm = group_comm(opts.store, opts.group_rank, opts.group_size, str(opts.group_id))
    return MPI4PyProcessGroup(comm, opts.group_rank, opts.group_size)


def register() -> None:
    """Make ``"mpi4py"`` a torch.distributed backend for CPU tensors (idempotent)."""
    if NAME.upper() not in dist.Backend._plugins:
        dist.Backend.register_backend(NAME, _create, extended_api=True, devices=["cpu"])
