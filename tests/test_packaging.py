"""``pip install -e .`` gives a checkout that ``twistd`` finds from any directory.

twistd finds plugins by scanning every ``sys.path`` entry for ``twisted/plugins/``,
so an editable install must put the checkout itself on ``sys.path`` (setuptools'
import-hook mode does not). The test installs a copy of the checkout into a
throw-away venv that sees this run's dependencies, minus the project's own installed
copy, and asks twistd for its plugins from another directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import REPO

# What a build reads: the rest of the checkout (tests, a .venv, ...) stays behind.
SOURCES = ("setup.cfg", "pyproject.toml", "README.rst", "gateway", "plugins", "twisted")
PROJECT_ENTRIES = ("gateway", "plugins", "twisted")
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


def dependencies_without_project(view: Path) -> Path:
    """Symlinks to this run's site-packages, leaving out the installed gateway,
    plugins and ``twisted/plugins/mqttgateway.py`` (a ``pip install .`` puts them
    there, and twistd would find that copy instead of the editable one)."""
    site = Path(sysconfig.get_paths()["purelib"])
    view.mkdir()
    for entry in site.iterdir():
        if entry.name in PROJECT_ENTRIES or entry.name.startswith(("mqttgateway-", "__editable__")):
            continue
        (view / entry.name).symlink_to(entry)
    twisted = view / "twisted"
    twisted.mkdir()
    for entry in (site / "twisted").iterdir():
        if entry.name != "plugins":
            (twisted / entry.name).symlink_to(entry)
    (twisted / "plugins").mkdir()
    for entry in (site / "twisted" / "plugins").iterdir():
        if entry.name not in ("mqttgateway.py", "__pycache__", "dropin.cache"):
            (twisted / "plugins" / entry.name).symlink_to(entry)
    return view


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_editable_install_is_a_twistd_plugin_from_any_directory(tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, checkout / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = run([str(python), "-c", purelib], tmp_path)
    view = dependencies_without_project(tmp_path / "dependencies")
    Path(site.stdout.strip(), "dependencies.pth").write_text(f"{view}\n", encoding="utf-8")

    # The build backend comes from the package index (pip's build isolation).
    done = run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                "--no-deps", "-e", str(checkout)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run([str(python), "-c", TWISTD, "--help"], elsewhere)
    assert done.returncode == 0, done.stderr
    commands = done.stdout.partition("Commands:")[2]
    assert "mqttgateway" in commands, done.stdout

    done = run([str(python), "-c", TWISTD, "-n", "mqttgateway", "--help"], elsewhere)
    assert done.returncode == 0, done.stderr
    assert "-c, --config=" in done.stdout
    where = run([str(python), "-c", "import gateway; print(gateway.__file__)"], elsewhere)
    assert where.stdout.strip() == str(checkout / "gateway" / "__init__.py")

    # The command-line clients are console scripts of the same install.
    for kind in ("pub", "sub", "rr"):
        done = run([str(venv / "bin" / f"mqttgateway-{kind}"), "--version"], elsewhere)
        assert done.returncode == 1 and done.stdout.startswith(f"mqttgateway-{kind} version "), done

def test_ci_runs_the_readme_test_command():
    """``.ci/run`` runs README.rst's "Run the tests" command verbatim, so what a fresh
    machine needs for the tests is installed by one command, stated once."""
    readme = (REPO / "README.rst").read_text(encoding="utf-8")
    section = readme[readme.index("\nRun the tests\n"):]
    command = next(line.strip() for line in section.splitlines() if line.startswith("    apt-get"))
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in [line.strip() for line in script]
