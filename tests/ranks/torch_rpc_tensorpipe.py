"""torch's TensorPipe RPC suite wired as torch/test/distributed/rpc/test_tensorpipe_agent.py
wires it (RPC, dist autograd, dist optimizer, remote module, DDP under dist autograd;
world size 4, CPU). Shared by tests/integration/test_isolation.py and
benchmarks/bench_torch_suites.py (``--suites rpc``)."""

from torch.testing._internal.distributed.rpc.tensorpipe_rpc_agent_test_fixture import (
    TensorPipeRpcAgentTestFixture,
)
from torch.testing._internal.distributed.rpc_utils import (
    GENERIC_TESTS,
    TENSORPIPE_TESTS,
    generate_tests,
)

globals().update(generate_tests("TensorPipe", TensorPipeRpcAgentTestFixture,
                                GENERIC_TESTS + TENSORPIPE_TESTS, __name__))
