"""The launcher layer's pure parts: command lines, the mismatch line, diagnose."""

from __future__ import annotations

import os

from mpidist.bootstrap.launchers import LAUNCHERS, diagnose, mismatch
from mpidist.bootstrap.settings import LAUNCHER_SIZE_VARS


def test_open_mpi_5_maps_by_slot_so_the_hosts_counts_hold():
    cmd = LAUNCHERS["ompi5"].command("mpirun", 4, hosts=[("n1", 3), ("n2", 1)],
                                     forward=["PATH"], agent="/a", subnet="10.0.0.0/24")
    assert cmd[:7] == ["mpirun", "-n", "4", "--map-by", "slot:OVERSUBSCRIBE", "--bind-to",
                       "none"]
    assert "--oversubscribe" not in cmd
    assert cmd[cmd.index("--host") + 1] == "n1:3,n2:1"
    assert cmd[cmd.index("-x"):cmd.index("-x") + 2] == ["-x", "PATH"]


def test_without_oversubscription_open_mpi_keeps_its_default_binding():
    """The benchmarks run ranks <= cores as users do: no flag, so each rank is bound."""
    assert LAUNCHERS["ompi4"].command("mpirun", 2, oversubscribe=False) == ["mpirun", "-n", "2"]
    assert LAUNCHERS["ompi5"].command("mpirun", 2, oversubscribe=False) == ["mpirun", "-n", "2"]
    assert LAUNCHERS["ompi4"].command("mpirun", 2)[3:] == ["--oversubscribe"]


def test_hydra_spells_hosts_agent_and_interface_its_own_way():
    mpich = LAUNCHERS["mpich"].command("mpiexec", 3, hosts=[("n1", 2), ("n2", 1)],
                                       forward=["PATH", "PYTHONPATH"], agent="/a", iface="br0")
    assert mpich == ["mpiexec", "-n", "3", "-hosts", "n1:2,n2:1", "-genvlist",
                     "PATH,PYTHONPATH", "-launcher", "ssh", "-launcher-exec", "/a",
                     "-iface", "br0"]
    impi = LAUNCHERS["impi"].command("mpiexec", 3, agent="/a")
    assert impi[-4:] == ["-bootstrap", "ssh", "-bootstrap-exec", "/a"]
    assert LAUNCHERS["srun"].command("srun", 4) == ["srun", "--ntasks=4", "--mpi=pmix"]


def test_intel_mpi_keeps_host_counts_in_one_private_machinefile_per_layout():
    layout = [("n1", 2), ("n2", 1)]
    first = LAUNCHERS["impi"].command("mpiexec", 3, hosts=layout)
    again = LAUNCHERS["impi"].command("mpiexec", 3, hosts=layout)
    path = first[first.index("-machinefile") + 1]
    assert again == first  # the same file: launches leave nothing new behind
    with open(path) as machinefile:
        assert machinefile.read() == "n1:2\nn2:1\n"
    assert os.stat(path).st_mode & 0o077 == 0  # nobody else may read or swap it
    other = LAUNCHERS["impi"].command("mpiexec", 2, hosts=[("n1", 1), ("n2", 1)])
    assert other[other.index("-machinefile") + 1] != path


def test_every_launchers_task_variables_are_checked():
    assert ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK") in LAUNCHER_SIZE_VARS
    assert ("PMI_SIZE", "PMI_RANK") in LAUNCHER_SIZE_VARS
    assert ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID") in LAUNCHER_SIZE_VARS


def test_a_launcher_the_library_cannot_talk_to_is_one_line():
    mpich = "MPICH Version:      5.0.2\nMPICH Release date: ..."
    line = mismatch(mpich, {"OMPI_COMM_WORLD_SIZE": "2"})
    assert line.startswith("Open MPI's mpirun started this task, but mpi4py loads MPICH "
                           "Version: 5.0.2:")
    assert "\n" not in line
    assert "Hydra" in mismatch("Open MPI v5.0.11, package: ...", {"PMI_SIZE": "2"})
    assert mismatch("Open MPI v4.1.4", {"OMPI_COMM_WORLD_SIZE": "2"}) == ""
    assert mismatch(mpich, {"PMI_SIZE": "2"}) == ""
    assert mismatch("Open MPI v5", {"PMI_SIZE": "2", "PMIX_RANK": "0"}) == ""  # srun pmix


def test_diagnose_prefers_the_keepers_line_and_reads_each_launcher():
    text = ["mpidist: rank 2/4 (host n2) died: exit code 7",
            "   Process name: [prterun-vm-9145@1,2]", "   Exit code:    7",
            "srun: error: n2: task 3: Segmentation fault"]
    found = diagnose(text).splitlines()
    assert found[0] == "rank 2/4 (host n2) died: exit code 7"
    assert "rank 3 (host n2) died: Segmentation fault" in found
    assert "rank 2 exited with code 7" in found


def test_diagnose_names_a_lost_node():
    prrte = ["A daemon failed to report back after being spawned. This could",
             "back to prterun:", "  Local host:    vm", "  Remote host:   mdn2",
             "  Daemon exit status: 0"]
    assert diagnose(prrte) == "node mdn2 was lost: its launcher daemon stopped answering"


def test_diagnose_names_a_node_lost_after_start_up_under_open_mpi_5():
    """PRRTE's words when a running node's daemon goes (seen in CI, Open MPI 5.0)."""
    prrte = ["PRTE has lost communication with a remote daemon.",
             "", "  HNP daemon   : [prterun-vm-20991@0,0] on node vm",
             "  Remote daemon: [prterun-vm-20991@0,2] on node mdn2", "",
             "This is usually due to either a failure of the TCP network"]
    assert diagnose(prrte) == "node mdn2 was lost: its launcher daemon stopped answering"
