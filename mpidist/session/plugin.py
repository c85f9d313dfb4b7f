"""pytest11 entry point: options, markers, and nothing else unless ``--with-mpi``.

Without ``--with-mpi`` the plugin is inert, as pytest-mpi is: ``mpi``-marked
tests are skipped with a reason and neither mpi4py nor torch is imported.
With it, the MPI world is attached before pytest starts capturing (so ranks
> 0 can be silenced at the file-descriptor level) and ``session.MPISession``
takes over running, gathering and reporting. Everything heavy is imported
only then.
"""

from __future__ import annotations

import gc
from typing import Any, Generator

import pytest

from ..bootstrap import settings
from ..bootstrap.settings import SETTINGS, setting

__all__ = ["rank_of"]

WITH_MPI_REASON = "need --with-mpi option to run"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mpi", "mpidist: one report for tests run under mpirun/srun")
    group.addoption(
        "--with-mpi", action="store_true", default=False,
        help="Run under MPI: every rank runs every test; rank 0 reports the merged "
        "result (pytest-mpi's flag).",
    )
    for item in SETTINGS:
        if item is settings.ISOLATE:  # the bare flag means "on"
            group.addoption(item.option, nargs="?", const="on", default=None,
                            dest=f"mpi_{item.name}", metavar="on|marked|off",
                            help=f"{item.help} [env {item.envvar}, default "
                            f"{item.default!r}]")
        elif item.default is False:
            group.addoption(item.option, action="store_true", default=None,
                            dest=f"mpi_{item.name}",
                            help=f"{item.help} [env {item.envvar}]")
        else:
            group.addoption(item.option, default=None, dest=f"mpi_{item.name}",
                            help=f"{item.help} [env {item.envvar}, default "
                            f"{item.default!r}]")
        parser.addini(item.ini, item.help, default=None)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, None, None]:
    # Outermost wrapper: runs before pytest's capture plugin starts capturing.
    namespace = early_config.known_args_namespace
    if _with_mpi(namespace):
        from ..report.output import start

        # What pytest and the plugins built is kept for the whole run: out of the
        # garbage collector's reach, no collection walks it again (every rank paid
        # about a tenth of its start-up there), and the keeper's and the template's
        # forks share its pages instead of copying each one the collector touches.
        gc.freeze()
        try:
            keep = setting(early_config, settings.KEEPER, namespace)
        except pytest.UsageError:
            keep = False  # start() says what is wrong, once, from rank 0
        if keep:  # before MPI exists: the keeper must never hold an MPI process
            from ..safety import keeper

            keeper.start()
        if _isolation(early_config, namespace) != "off":  # before MPI exists, as the keeper
            from ..isolation import template

            template.fork()
            if template.in_template():  # this process never starts MPI
                return (yield)
        start(early_config, namespace)  # MPI_Init
        if keep:
            link = keeper.link()
            if link is not None:
                link.hold_launcher_sockets()
        _hand_output_to_template()
    return (yield)


def _isolation(config: pytest.Config, namespace: Any) -> str:
    from ..plugins.companions import isolation_mode

    try:
        return isolation_mode(str(setting(config, settings.ISOLATE, namespace)), namespace)
    except pytest.UsageError:
        return "off"  # said once, by rank 0, when the session reads it again


def _hand_output_to_template() -> None:
    from ..isolation import template

    link = template.link()
    if link is not None:
        link.hand_output()  # after the redirection of ranks > 0


def _with_mpi(namespace: Any) -> bool:
    """``--with-mpi``, unless this session only replays a journal (``mpidist run``'s
    report, or rank 0's keeper's): that one must never start MPI, even when an ini's
    ``addopts`` says ``--with-mpi``."""
    return bool(getattr(namespace, "with_mpi", False)
                and not getattr(namespace, "mpi_replay", None))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    # After the full parse, before any pytest_configure: junitxml must not see
    # an --junitxml path on ranks > 0, and MPISession's own configure hooks
    # must take part in the normal (ordered) configure call.
    if _with_mpi(config.option):
        from ..isolation import template

        if template.in_template():
            config.pluginmanager.register(template.TemplatePlugin(config),
                                          "mpidist-template")
            config.pluginmanager.register(template.NoWorkers(), "mpidist-template-no-workers")
            return
        from .session import MPISession

        config.pluginmanager.register(MPISession(config), "mpidist-session")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mpi(min_size=1, ranks=None, timeout=None, isolate=None): a test for MPI; skipped "
        "without --with-mpi, and when the world has fewer than min_size ranks; ranks=k (or "
        "a list) runs it on a group of exactly k ranks; timeout overrides --mpi-timeout; "
        "isolate=True runs it in a fresh process on each rank (--mpi-isolate).",
    )
    config.addinivalue_line(
        "markers", "parallel(nprocs=1): mpi-pytest's spelling of mpi(ranks=nprocs).")
    config.addinivalue_line("markers", "mpi_skip: skip this test under --with-mpi.")
    config.addinivalue_line(
        "markers", "timeout(seconds): per-test time limit (pytest-timeout's marker; "
        "mpidist's watchdog honours it under --with-mpi).")
    config.addinivalue_line("markers", "mpi_xfail: expect this test to fail under --with-mpi.")
    from ..runner import fixtures

    if not config.pluginmanager.is_registered(fixtures):
        config.pluginmanager.register(fixtures, "mpidist-fixtures")
    session = config.pluginmanager.get_plugin("mpidist-session")
    if session is not None:  # last, so the terminal reporter and cache exist
        session.quiet_other_ranks()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from ..placement.sizes import generate

    generate(metafunc)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("with_mpi"):
        return
    skip = pytest.mark.skip(reason=WITH_MPI_REASON)
    for item in items:
        if item.get_closest_marker("mpi") is not None:
            item.add_marker(skip)


def rank_of(config: pytest.Config) -> int | None:
    """This process's rank under ``--with-mpi`` (None without it): for plugins above
    the runner that act on one rank only (the journal recorder)."""
    plugin: Any = config.pluginmanager.get_plugin("mpidist-session")
    return None if plugin is None else int(plugin.rank)
