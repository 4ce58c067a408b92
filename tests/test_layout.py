"""The repository's shape: imports run one way (no cycle among the project's modules, counting imports inside
functions), and the code stands on its own (no comment sends the reader to notes outside the repository)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGES = ("aqa", "train")
SCRIPTS = ("app.py",)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    files += [ROOT / script for script in SCRIPTS]
    return {module_name(path): path for path in files}


def imported(node: ast.AST, package: str) -> list[str]:
    """The module names an import statement names (`from a import b` names `a` and, if it is one, `a.b`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: up from the importing module's package
            parents = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parents + ([base] if base else []))
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, from every import statement, at module level or in a function."""
    modules = project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in imported(node, package):
                while target and target not in modules:  # `from aqa.x import f`: the module is aqa.x
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None: a depth-first search for a back edge."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_checker_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse("def f():\n    from aqa.cli import args\n")
    assert [imported(node, "aqa") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)] == [
        ["aqa.cli", "aqa.cli.args"]
    ]


def test_no_import_cycle_among_the_projects_modules():
    graph = import_graph()
    assert {"aqa.answering", "aqa.cli.main", "aqa.eval.run", "train.grpo", "app"} <= set(graph)
    assert "aqa.answering" in graph["aqa.eval.run"], "the graph sees the project's own imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_library_modules_never_import_the_command_line():
    """The CLI wires arguments to library calls: nothing in the library reaches back up into it. The app shares
    only its torch-free model and decoding flags."""
    graph = import_graph()
    command_line = {module for module in graph if module.startswith("aqa.cli")}
    command_line.add("aqa.__main__")  # `python -m aqa` is the command line too
    for module, targets in graph.items():
        if module not in command_line:
            allowed = {"aqa.cli.args", "aqa.cli"} if module.startswith("aqa.app") else set()
            assert targets & command_line <= allowed, module


def external_imports(path: Path) -> set[str]:
    """The top-level names of everything a file imports, at module level or in a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add(node.module or "")
    return names


def app_rooms() -> list[str]:
    """The app package's modules in the order its docstring gives them, each importing only those before it."""
    import aqa.app

    listing = aqa.app.__doc__.split("Imports run downward")[1]
    return [f"aqa.app.{line.split()[0]}" for line in listing.splitlines() if line.startswith("    ")]


def test_the_library_never_imports_the_app_or_gradio():
    """The app (aqa/app/, app.py) stands above the library: no library module imports it, or Gradio."""
    for name, path in project_modules().items():
        if name == "app" or name.startswith("aqa.app") or not name.startswith("aqa"):
            continue
        imports = external_imports(path)
        assert not {module for module in imports if module == "gradio" or module.startswith("gradio.")}, name
        assert not {module for module in imports if module.startswith("aqa.app")}, name


def test_the_app_is_rooms_whose_imports_run_downward():
    """Every module of aqa/app/ is a room of the docstring's list, no longer than ~300 lines, importing only the
    rooms above it; app.py is a thin entry point into them."""
    rooms = app_rooms()
    graph = import_graph()
    assert sorted(rooms) == sorted(name for name in graph if name.startswith("aqa.app.")), "every module listed"
    for number, room in enumerate(rooms):
        path = project_modules()[room]
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 300, f"{room} is over 300 lines"
        above = {other for other in graph[room] if other.startswith("aqa.app")} - {"aqa.app"}
        assert above <= set(rooms[:number]), f"{room} imports {sorted(above - set(rooms[:number]))}, not above it"
    entry = ROOT / "app.py"
    assert len(entry.read_text(encoding="utf-8").splitlines()) <= 30
    assert external_imports(entry) <= {"sys", "aqa.app", "aqa.app.launching"}


SOURCES = sorted(
    path
    for pattern in ("aqa/**/*.py", "train/**/*.py", "train/recipes/*.yaml", "bench/*.py", "bench/*.sh", "tests/*.py")
    for path in ROOT.glob(pattern)
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_comment_cites_notes_outside_the_repository(path):
    """A comment states the fact (and may link its public source); a user's clone has no team notes to look in."""
    text = path.read_text(encoding="utf-8")
    for note in ("FACTS" + ".md", "STYLE" + ".md"):
        assert note not in text, f"{path.name} cites {note}"


def app_drawing() -> str:
    """The app's structure as docs/app.md draws it (Mermaid): each room's arrows to the rooms it imports, and to the
    library (every `aqa` module outside aqa/app/), leaving out the arrows that a path through other rooms implies."""
    graph, rooms = import_graph(), app_rooms()
    names = {room: room.rpartition(".")[2] for room in rooms} | {"app": "entry"}
    arrows = set()
    for module, name in names.items():
        for target in graph[module]:
            if target in names and target != "app":
                arrows.add((name, names[target]))
            elif target.startswith("aqa") and not target.startswith("aqa.app"):
                arrows.add((name, "library"))
    after = {name: {b for a, b in arrows if a == name} for name in {*names.values(), "library"}}

    def implied(arrow) -> bool:
        start, end = arrow
        seen, stack = set(), [step for step in after[start] if step != end]
        while stack:
            step = stack.pop()
            if step == end:
                return True
            if step not in seen:
                seen.add(step)
                stack.extend(after[step])
        return False

    lines = ["flowchart TD", '    entry(["app.py"])', '    library[("aqa: the library")]']
    lines += [f"    {start} --> {end}" for start, end in sorted(arrows) if not implied((start, end))]
    return "\n".join(lines)


def test_the_drawing_of_the_app_is_its_import_graph():
    """docs/app.md draws the app's rooms and their imports: no circle, app.py on top, the library at the bottom. The
    drawing is the real graph's (this test prints the right one when it is not)."""
    text = (ROOT / "docs" / "app.md").read_text(encoding="utf-8")
    drawn = text.split("```mermaid\n", 1)[1].split("\n```", 1)[0]
    assert drawn == app_drawing(), f"docs/app.md should draw:\n{app_drawing()}"
    assert find_cycle(import_graph()) is None
