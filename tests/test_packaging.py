"""pyproject.toml's package list against the tree: every folder that holds code or data under
the mapped root folders is a listed package, so a wheel ships it and setuptools has nothing to
warn about (an unlisted data folder is installed with a warning, and later not at all)."""

import pathlib

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser as a package
    import tomli as tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOOL = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _tree_packages() -> set[str]:
    """Every folder under a mapped root that holds a file (``__pycache__`` aside), as a package."""
    found = set()
    for package, folder in TOOL["package-dir"].items():
        root = ROOT / folder
        for path in root.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc"):
                rel = path.parent.relative_to(root).parts
                found.add(".".join([package, *rel]))
    return found


def test_every_folder_with_files_is_a_listed_package():
    listed = set(TOOL["packages"])
    assert {"mcie.report.assets", "mcie.transforms.models.prompts"} <= listed
    assert _tree_packages() - listed == set()
    assert listed - _tree_packages() == set()  # no stale entry naming a removed folder


def test_every_data_file_is_package_data():
    """A non-Python file in a package folder is matched by that package's package-data globs
    (READMEs at a root folder are documentation, not shipped)."""
    data = TOOL["package-data"]
    missed = []
    for package, folder in TOOL["package-dir"].items():
        for path in (ROOT / folder).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            if path.name == "README.md" and path.parent == ROOT / folder:
                continue
            rel = path.parent.relative_to(ROOT / folder).parts
            pkg = ".".join([package, *rel])
            if not any(path.match(g) for g in data.get(pkg, [])):
                missed.append(str(path.relative_to(ROOT)))
    assert missed == []


def test_license_is_an_spdx_string():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
