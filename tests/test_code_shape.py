"""Shape rules of the package's code, read from the source (nothing is imported)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "prometar"
#: The longest function (or method) the package may have, in lines, its signature and docstring included.
MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_the_limit():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them):\n" + "\n".join(long)
