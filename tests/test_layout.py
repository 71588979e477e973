"""The house, as docs/DESIGN.md draws it: one package whose sub-packages are the layers, imports
that point only down and make no cycle, nothing heavy where it must stay light, and a design
page that names only what exists. The layers and rules are read from DESIGN.md itself (its layer
diagram and rules table), so the page and this test cannot drift apart."""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import pytest
from helpers.entrypoints import REPO, run_python

PACKAGE = REPO / "sotddsp"
DESIGN = REPO / "docs" / "DESIGN.md"
PLUGIN = "hydra_plugins.sot_sweep"


# ---------------------------------------------------------------------------------------------
# DESIGN.md, parsed
# ---------------------------------------------------------------------------------------------


@cache
def design_text() -> str:
    return DESIGN.read_text()


@cache
def design_layers() -> dict[str, tuple[str, ...]]:
    """{layer folder: dotted modules}, lowest first, from the diagram under "## The layers": a line
    ``<name>  sotddsp/<folder>/  mod mod ...`` starts a layer, indented lines continue it,
    ``(+ ...)`` adds the folders or paths it names outside the package (hydra_plugins/…)."""
    section = design_text().split("## The layers", 1)[1]
    diagram = section.split("```", 2)[1]
    layers: dict[str, list[str]] = {}
    current = None
    for line in diagram.splitlines():
        start = re.match(r"\s*\w+\s+sotddsp/(\w+)/\s*(.*)$", line)
        if start:
            current = start.group(1)
            layers[current] = []
            rest = start.group(2)
        elif current is not None and line.startswith(" " * 10) and line.strip():
            rest = line.strip()
        else:
            continue
        for extra in re.findall(r"\(\+\s*([^)]*)\)", rest):
            layers[current] += [p.replace("/", ".") for p in re.findall(r"hydra_plugins/\w+", extra)]
        rest = re.sub(r"\([^)]*\)", "", rest)
        layers[current] += [f"sotddsp.{current}.{name}" for name in rest.split()]
    return {folder: tuple(modules) for folder, modules in reversed(layers.items())}


@cache
def layer_of() -> dict[str, int]:
    return {m: rank for rank, modules in enumerate(design_layers().values()) for m in modules}


@cache
def design_rules() -> dict[str, list[str]]:
    """{rule: [module or folder paths]} from the table with the header ``| rule | applies to |``."""
    table = design_text().split("| rule | applies to |", 1)[1].split("\n\n", 1)[0]
    rules = {}
    for row in table.strip().splitlines()[1:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        rules[cells[0]] = re.findall(r"`([^`]+)`", cells[1])
    return rules


def modules_under(path: str) -> list[str]:
    """The dotted package modules a rules-table path names: ``core/`` (a layer), ``data/files.py``,
    ``sotddsp/`` (everything), ``hydra_plugins/sot_sweep``."""
    if path.startswith("hydra_plugins"):
        return [PLUGIN]
    path = path.removeprefix("sotddsp/").rstrip("/")
    everything = sorted(layer_of())
    if not path:
        return everything
    dotted = "sotddsp." + path.removesuffix(".py").replace("/", ".")
    return [m for m in everything if m == dotted or m.startswith(dotted + ".")]


# ---------------------------------------------------------------------------------------------
# the code, parsed
# ---------------------------------------------------------------------------------------------


def module_file(module: str) -> Path:
    path = REPO / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def package_modules() -> set[str]:
    """Every module of sotddsp (sub-package __init__ files excluded) and the Hydra plugin."""
    found = {PLUGIN}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] != "__init__":
            found.add(".".join(parts))
    return found


@cache
def imported_modules(module: str) -> frozenset[str]:
    """Every module an import statement of ``module`` names, at any depth (lazy ones too), with
    ``from package import module`` resolved to the module."""
    tree = ast.parse(module_file(module).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def project_imports(module: str) -> set[str]:
    """The package modules (and the plugin) that ``module`` imports."""
    known = package_modules()
    return {name for name in imported_modules(module) if name in known and name != module}


# ---------------------------------------------------------------------------------------------
# the layers
# ---------------------------------------------------------------------------------------------


def test_the_layers_are_the_package_folders() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert list(design_layers()) == ["core", "dsp", "data", "model", "apps"]
    assert folders == set(design_layers())


def test_every_module_has_a_layer_and_every_named_module_exists() -> None:
    drawn = set(layer_of())
    found = package_modules()
    assert found - drawn == set(), f"modules DESIGN.md's diagram does not draw: {found - drawn}"
    assert drawn - found == set(), f"modules DESIGN.md draws that do not exist: {drawn - found}"


@pytest.mark.parametrize("module", sorted(package_modules()))
def test_imports_point_down(module: str) -> None:
    rank = layer_of()[module]
    upward = sorted(name for name in project_imports(module) if layer_of()[name] > rank)
    assert not upward, f"{module} imports the higher layer(s) of {upward}"


def test_imports_make_no_cycle() -> None:
    """Tarjan's strongly connected components of the module import graph: all of size one."""
    graph = {m: sorted(project_imports(m)) for m in sorted(package_modules())}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == [], f"import cycles: {cycles}"


def test_sub_packages_import_nothing() -> None:
    """Importing a layer imports no module of it: each is a docstring. The package itself
    imports nothing at module level either: its API names (``sotddsp.load_model``, ...) are
    imported on first use, inside its ``__getattr__``."""
    for init in [PACKAGE / "__init__.py", *PACKAGE.glob("*/__init__.py")]:
        tree = ast.parse(init.read_text())
        scope = tree.body if init.parent == PACKAGE else list(ast.walk(tree))
        assert not [n for n in scope if isinstance(n, ast.Import | ast.ImportFrom)
                    and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")], init


def test_importing_the_package_loads_nothing_until_its_api_is_used() -> None:
    done = run_python(
        "import sys, sotddsp\n"
        "print(sorted(m for m in sys.modules if m.startswith(('sotddsp.', 'torch', 'lightning'))))\n"
        "from sotddsp.model import loader, pitch\n"
        "assert sotddsp.load_model is loader.load_model and sotddsp.PitchModel is pitch.PitchModel\n"
        "assert sotddsp.PitchTrack is pitch.PitchTrack and 'load_model' in dir(sotddsp)\n",
        check=True)
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# the rules table
# ---------------------------------------------------------------------------------------------


def test_the_rules_table_states_the_rules_checked_here() -> None:
    assert set(design_rules()) == {
        "imports no Lightning", "loads neither torch nor Lightning when imported",
        "imports nothing of `dsp/`", "never edits `sys.path`",
    }


def test_rule_imports_no_lightning() -> None:
    modules = [m for path in design_rules()["imports no Lightning"] for m in modules_under(path)]
    assert len(modules) >= 10
    offenders = sorted(m for m in modules if any(
        name.split(".")[0] in ("lightning", "pytorch_lightning") for name in imported_modules(m)))
    assert offenders == []


def test_rule_imports_nothing_of_dsp() -> None:
    modules = [m for path in design_rules()["imports nothing of `dsp/`"] for m in modules_under(path)]
    assert modules
    for module in modules:
        assert not any(n.startswith("sotddsp.dsp") for n in imported_modules(module)), module


def test_rule_never_edits_sys_path() -> None:
    """The editable install makes the package importable from anywhere."""
    for path in design_rules()["never edits `sys.path`"]:
        root = REPO / path
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        assert files, path
        for file in files:
            tree = ast.parse(file.read_text())
            edits = [n.lineno for n in ast.walk(tree)
                     if (isinstance(n, ast.Attribute) and n.attr == "path"
                         and isinstance(n.value, ast.Name) and n.value.id == "sys")
                     or (isinstance(n, ast.Constant) and n.value == "PYTHONPATH")]
            assert edits == [], f"{file} touches sys.path or PYTHONPATH at lines {edits}"


def test_rule_light_modules_load_neither_torch_nor_lightning(tmp_path: Path) -> None:
    """Hydra imports every hydra_plugins.* module whenever any Hydra app starts. One fresh
    process imports each light module in turn and reports the first that brought torch in."""
    modules = [m for path in design_rules()["loads neither torch nor Lightning when imported"]
               for m in modules_under(path)]
    assert len(modules) >= 8
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    heavy = sorted(m for m in ('torch', 'lightning') if m in sys.modules)\n"
        "    if heavy:\n"
        "        print(name, heavy)\n"
        "        break\n"
        "else:\n"
        "    print('none')\n"
    )
    done = run_python(script, cwd=tmp_path, timeout=None, check=True)
    assert done.stdout.strip() == "none", done.stdout


# ---------------------------------------------------------------------------------------------
# everything DESIGN.md names exists
# ---------------------------------------------------------------------------------------------


def test_every_path_design_names_exists() -> None:
    """Backticked paths (``model/checkpoints.py``, ``sotddsp/configs/``, ``csrc/sot_merge.h``,
    ``scripts/demo.py`` ...), relative to the repository or to the package."""
    tokens = set(re.findall(r"`([\w./-]+(?:\.py|\.h|\.c|\.yaml|\.json|\.ckpt|\.sh|/))`",
                            design_text()))
    missing = []
    for token in sorted(tokens):
        if "/" not in token or token.startswith("../"):  # a file name, or the shared folder
            continue
        candidates = [REPO / token, PACKAGE / token, REPO / "scripts" / token]
        if not any(c.exists() for c in candidates):
            missing.append(token)
    assert missing == [], f"paths DESIGN.md names that do not exist: {missing}"


def _bullets() -> list[tuple[str, str]]:
    """(module path, bullet text) for each ``- `layer/module.py`: ...`` bullet."""
    out = []
    for match in re.finditer(r"^- `(\w+/\w+\.py)`:(.*?)(?=^- |^#|\Z)", design_text(),
                             flags=re.DOTALL | re.MULTILINE):
        out.append((match.group(1), match.group(2)))
    return out


def test_every_name_a_module_bullet_lists_exists() -> None:
    """In each module's bullet, the backticked functions and classes (``name(`` ...), CamelCase
    and UPPER_CASE names are attributes of that module, or methods of one of its classes."""
    bullets = _bullets()
    assert len(bullets) >= 25
    missing = []
    for path, text in bullets:
        module = importlib.import_module("sotddsp." + path.removesuffix(".py").replace("/", "."))
        for token in re.findall(r"`([^`]+)`", text):
            name = re.match(r"([A-Za-z_]\w*)(\(|$)", token)
            if name is None:
                continue
            word = name.group(1)
            if name.group(2) == "(" or word[0].isupper():
                if word in ("Tensor", "B", "N", "T", "K", "Q", "F") or word.startswith("ORIGINAL_KEY"):
                    continue
                classes = [v for v in vars(module).values() if isinstance(v, type)]
                if not hasattr(module, word) and not any(hasattr(c, word) for c in classes):
                    missing.append(f"{path}: {word}")
    assert missing == [], f"names DESIGN.md lists that the modules lack: {missing}"


def test_every_module_dot_name_design_names_exists() -> None:
    """``run_cli_main``-style references written ``module.name`` (``command_line.run_cli_main``,
    ``data.synthetic.SynthSettings``) resolve."""
    from sotddsp.core.class_paths import ALIASES

    leaves = {m.rsplit(".", 1)[1]: m for m in layer_of() if m.startswith("sotddsp.")}
    missing = []
    for token, first, second in re.findall(r"`((?:sotddsp\.)?(?:\w+\.)?(\w+)\.(\w+))`",
                                           design_text()):
        if token in ALIASES or first not in leaves:  # an old class path, or not ours
            continue
        if not hasattr(importlib.import_module(leaves[first]), second):
            missing.append(token)
    assert missing == [], missing


def test_the_commands_table_matches_the_scripts_and_the_console_scripts() -> None:
    """Each row of DESIGN.md's commands table: the app, its thin script in the checkout (which
    calls the app's ``cli``) and its console script in pyproject.toml; every app but the sweep
    builds ``cli`` with ``command_line.console_script``."""
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    rows = re.findall(r"^\| `apps/(\w+)\.py`[^|]*\| `python (\w+\.py)` \| `([\w-]+)` \|$",
                      design_text(), flags=re.MULTILINE)
    apps = {p.stem for p in (PACKAGE / "apps").glob("*.py") if p.stem != "__init__"}
    assert {app for app, _, _ in rows} == apps
    assert {console for _, _, console in rows} == set(scripts)
    for app, script, console in rows:
        assert scripts[console] == f"sotddsp.apps.{app}:cli", console
        assert f"from sotddsp.apps.{app} import cli" in (REPO / script).read_text(), script
        if app != "sweep":
            assert "cli = console_script(main" in module_file(f"sotddsp.apps.{app}").read_text()
