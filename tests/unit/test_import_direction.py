"""Imports run one way: models, stage specs, methods <- config, data <- inference <- tracking <- eval <- train <-
tune/serving/hub <- cli. Function-level imports count too (they hid a loop.py <-> run.py cycle)."""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "vitforge"
# Top-level part of vitforge -> layer. A module imports its own part or lower layers only.
LAYERS = {
    "": 0, "models": 0,
    "stage_specs": 1, "methods": 1,
    "config": 2, "data": 2,
    "inference": 3,
    "tracking": 4,
    "eval": 5,
    "train": 6,
    "tune": 7, "serving": 7, "quickstart": 7, "submit": 7, "hub": 7,
    "cli_util": 8,
    "cli_serve": 9, "cli_data": 9,
    "cli": 10,
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        mod = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vitforge":
                graph[mod].add(node.module)
            elif isinstance(node, ast.Import):
                graph[mod] |= {a.name for a in node.names if a.name.split(".")[0] == "vitforge"}
    return graph


def part(mod: str) -> str:
    return mod.split(".")[1] if "." in mod else ""


def test_every_part_has_a_layer() -> None:
    parts = {part(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert parts <= LAYERS.keys(), f"give these a layer: {sorted(parts - LAYERS.keys())}"


def test_no_upward_or_sideways_import() -> None:
    bad = [
        f"{a} -> {b}"
        for a, targets in imports().items()
        for b in targets
        if part(a) != part(b) and LAYERS[part(b)] >= LAYERS[part(a)]
    ]
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_no_import_cycle() -> None:
    graph = imports()
    known = set(graph) | {m for t in graph.values() for m in t}

    def resolve(name: str) -> str:  # "vitforge.data" may be a package: its __init__ is the module
        return name if name in known else name.rsplit(".", 1)[0]

    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(mod: str, stack: list[str]) -> list[str] | None:
        state[mod] = 1
        for nxt in sorted(resolve(t) for t in graph.get(mod, ())):
            if nxt == mod:
                continue
            if state.get(nxt) == 1:
                return [*stack, mod, nxt]
            if nxt not in state and (cycle := visit(nxt, [*stack, mod])):
                return cycle
        state[mod] = 2
        return None

    for mod in sorted(graph):
        if mod not in state and (cycle := visit(mod, [])):
            raise AssertionError("import cycle: " + " -> ".join(cycle[cycle.index(cycle[-1]) :]))


def test_train_functions_read_in_one_screen() -> None:
    """No function in train/ over 60 lines (the driver and the loop read top to bottom)."""
    long = [
        f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in (PACKAGE / "train").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert not long, long


# Packages that are slow to import or belong to an optional extra: a function may import these (or a
# vitforge module that imports one at module level) so that `vitforge --help`, the models and the
# losses start without them. Everything else is imported at the top of the module.
HEAVY = {"ray", "mlflow", "deepspeed", "torch", "safetensors", "matplotlib", "sklearn", "scipy", "fastapi",
         "starlette", "pyarrow", "datasets", "transformers", "psutil", "swagger_ui_bundle", "rich", "optuna",
         "httpx", "uvicorn", "typer"}  # fmt: skip


def module_level_imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        names: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            for n in [node, *(ast.walk(node) if isinstance(node, ast.If | ast.Try) else ())]:
                if isinstance(n, ast.ImportFrom) and n.module:
                    names.add(n.module)
                elif isinstance(n, ast.Import):
                    names |= {a.name for a in n.names}
        out[module_name(path)] = names
    return out


def test_function_level_imports_are_heavy_or_optional() -> None:
    top = module_level_imports()
    memo: dict[str, bool] = {}

    def heavy(mod: str, seen: tuple[str, ...] = ()) -> bool:
        if mod.split(".")[0] != "vitforge":
            return mod.split(".")[0] in HEAVY
        mod = mod if mod in top else mod.rsplit(".", 1)[0]
        if mod not in memo and mod not in seen:
            memo[mod] = any(heavy(t, (*seen, mod)) for t in top.get(mod, ()))
        return memo.get(mod, False)

    light = []
    for path in PACKAGE.rglob("*.py"):
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for n in ast.walk(fn):
                names = [n.module] if isinstance(n, ast.ImportFrom) and n.module else []
                names += [a.name for a in n.names] if isinstance(n, ast.Import) else []
                light += [f"{module_name(path)}:{n.lineno} {name}" for name in names if not heavy(name)]
    assert not light, "import these at the top of the module (not heavy, not optional):\n" + "\n".join(light)
