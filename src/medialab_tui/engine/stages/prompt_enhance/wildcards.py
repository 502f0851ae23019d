"""Wildcard lists (`__name__` picks a line of `<data>/wildcards/name.txt`), read at submit.

Every list a stage can reach is read once, nested wildcards included, and kept
with the run, so a re-run draws from the same lines; lists that refer to each
other in a cycle are refused before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable

from medialab_tui.engine.stages.base import ResolveContext


def read_wildcards(
    names_in: Callable[[str], list[str]], ctx: ResolveContext
) -> dict[str, list[str]]:
    """Every wildcard list reachable from the context's prompts; `names_in(text)` gives
    the wildcard names a text (with the stage's template and hints) refers to."""
    folder = ctx.wildcards_dir
    todo = [n for p in ctx.prompts for n in names_in(p)]
    lists: dict[str, list[str]] = {}
    while todo:
        name = todo.pop(0)
        if name in lists:
            continue
        path = folder / f"{name}.txt"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ctx.error(f"wildcard __{name}__ needs {path}, which does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ctx.error(f"wildcard file {path} cannot be read ({exc})") from None
        lines = [ln.strip() for ln in text.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        if not lines:
            raise ctx.error(f"wildcard file {path} has no entries")
        lists[name] = lines
        todo += [n for line in lines for n in names_in(line)]
    refers = {name: {n for line in lines for n in names_in(line)} for name, lines in lists.items()}
    cycle = find_cycle(refers)
    if cycle:
        chain = " → ".join(f"__{n}__" for n in cycle)
        raise ctx.error(f"wildcards refer to each other in a cycle: {chain}")
    return lists


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle in `graph` (as the names along it, first repeated at the end), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []
