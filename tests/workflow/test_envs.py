"""Per-rule conda environments: every rule has one, every file parses and pins its versions
(consistently with pyproject.toml), and each lists what its rules' scripts import or call."""

import ast
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import REPO

RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
# import name -> conda-forge package name
CONDA_NAME = {"sklearn": "scikit-learn", "yaml": "pyyaml", "ants": "antspyx", "matplotlib": "matplotlib-base",
              "xgboost": "xgboost", "PIL": "pillow"}
STDLIB = set(__import__("sys").stdlib_module_names)


def rules_with_envs():
    """(rule file, rule name, conda env path, script path) for every rule."""
    found = []
    for smk in RULE_FILES:
        text = smk.read_text()
        for block in re.split(r"^(?=rule |checkpoint )", text, flags=re.M)[1:]:
            name = re.match(r"(?:rule|checkpoint) (\w+)", block).group(1)
            conda = re.search(r'^\s+conda:\s*\n\s+"([^"]+)"', block, re.M)
            script = re.search(r'^\s+script:\s*\n\s+"([^"]+)"', block, re.M)
            found.append((smk, name, (smk.parent / conda.group(1)).resolve() if conda else None,
                          (smk.parent / script.group(1)).resolve() if script else None))
    return found


def imported_packages(script: Path, seen=None) -> set[str]:
    """Top-level third-party packages imported by a script and, transitively, by the sfc modules it uses."""
    seen = seen if seen is not None else set()
    if script in seen or not script.exists():
        return set()
    seen.add(script)
    packages = set()
    for node in ast.walk(ast.parse(script.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "sfc" else [])
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            base = script.parent
            module = (node.module or "").replace(".", "/")
            for target in [base / f"{module}.py", base / module / "__init__.py",
                           *[base / module / f"{a.name}.py" for a in node.names]]:
                packages |= imported_packages(target, seen)
        for name in names:
            top = name.split(".")[0]
            if top == "sfc":
                rel = name.split(".")[1:]
                sfc_dir = REPO / "workflow" / "scripts" / "sfc"
                for target in [sfc_dir.joinpath(*rel).with_suffix(".py"), sfc_dir.joinpath(*rel) / "__init__.py"]:
                    packages |= imported_packages(target, seen)
            elif top not in STDLIB and top != "snakemake":
                packages.add(CONDA_NAME.get(top, top))
    return packages


def env_packages(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text())
    pins = {}
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):  # a pip: section
            for pip_dep in dep.get("pip", []):
                name, _, version = pip_dep.partition("==")
                pins[name] = version
            continue
        name, _, version = dep.partition("=")
        pins[name.split("::")[-1]] = version
    return pins


def test_every_rule_has_a_conda_env_that_exists():
    missing = [f"{smk.name}:{name}" for smk, name, conda, _ in rules_with_envs() if conda is None or not conda.exists()]
    assert rules_with_envs() and missing == []


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_file_parses_and_pins_every_package(env):
    spec = yaml.safe_load(env.read_text())
    assert "conda-forge" in spec["channels"]
    unpinned = [name for name, version in env_packages(env).items()
                if name != "pip" and not re.match(r"^\d", version or "")]
    assert unpinned == []


@pytest.mark.parametrize("env", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_agree_with_pyproject(env):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pinned = dict(dep.split("==") for dep in pyproject["project"]["dependencies"])
    pinned = {CONDA_NAME.get(k, k): v for k, v in pinned.items()}
    pinned["xgboost"] = pinned.pop("xgboost-cpu", None)
    disagree = {name: (version, pinned[name]) for name, version in env_packages(env).items()
                if name in pinned and version != pinned[name]}
    assert disagree == {}


def test_each_env_lists_what_its_rules_import_and_call():
    problems = []
    for smk, name, conda, script in rules_with_envs():
        if conda is None or script is None:
            continue
        available = set(env_packages(conda))
        needed = imported_packages(script)
        if re.search(r"\bmrtrix\b", script.read_text()) or "sfc.mrtrix" in script.read_text():
            needed.add("mrtrix3")
        missing = sorted(needed - available)
        if missing:
            problems.append(f"{smk.name}:{name} ({conda.name}) lacks {missing}")
    assert problems == []
