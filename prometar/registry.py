"""Named registries for the project's extension points (prompt learners, training engines).

One entry holds everything about one choice: its name, the callable that builds or runs it, the options it
accepts and a one-line help text. Config checks and command-line choices read the names from the registry, so
adding a choice is one decorated function or class::

    @LEARNERS.register("CoOp", options={"n_ctx_text": "N_CTX_TEXT", "ctx_init": "CTX_INIT"}, help="...")
    class CoOpLearner(PromptLearner): ...

A registry is a read-only mapping from name to :class:`Entry`; iterating it gives the names in registration order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence

__all__ = ["Entry", "Registry"]


@dataclass(frozen=True)
class Entry:
    """One registered choice.

    name: the name users write (config value, ``--flag`` choice).
    target: the class or function the name selects.
    options: the keyword options ``target`` accepts, each mapped to the config key it is read from (or to
        ``None`` when no config key feeds it).
    help: one line for ``--help`` texts and docs.
    """

    name: str
    target: Callable[..., Any]
    options: Mapping[str, Optional[str]] = field(default_factory=dict)
    help: str = ""

    def check_options(self, kwargs: Mapping[str, Any], what: str) -> None:
        """Raise ``TypeError`` naming every option of ``kwargs`` this entry does not accept, and the valid ones."""
        unknown = sorted(set(kwargs) - set(self.options))
        if unknown:
            raise TypeError(f"{what} {self.name!r} has no option {', '.join(map(repr, unknown))}; its options are "
                            f"{', '.join(self.options) or 'none'}")

    def options_from(self, node: Any) -> Dict[str, Any]:
        """The entry's options read from a config node (``node.<KEY>`` for every option mapped to a key)."""
        return {opt: getattr(node, key) for opt, key in self.options.items() if key is not None}


class Registry(Mapping[str, Entry]):
    """Name -> :class:`Entry`, filled with :meth:`register`.

    kind: what the entries are ("learner", "engine"), for messages.
    setting: where users choose an entry (a config key or a command-line flag), for messages.
    """

    def __init__(self, kind: str, setting: str):
        self.kind = kind
        self.setting = setting
        self._entries: Dict[str, Entry] = {}

    def register(self, name: str, *, options: Optional[Mapping[str, Optional[str]]] = None,
                 help: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a class or function under ``name``; a name can be registered once."""
        def add(target: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice ({self._entries[name].target!r} and "
                                 f"{target!r})")
            self._entries[name] = Entry(name, target, dict(options or {}), help)
            return target
        return add

    def get_entry(self, name: str) -> Entry:
        """The entry of ``name``; an unknown name raises ``KeyError`` naming the setting and the valid names."""
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r} ({self.setting}); choose one of {', '.join(self._entries)}")
        return self._entries[name]

    def names(self) -> Sequence[str]:
        """Registered names, in registration order."""
        return tuple(self._entries)

    def __getitem__(self, name: str) -> Entry:
        return self.get_entry(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
