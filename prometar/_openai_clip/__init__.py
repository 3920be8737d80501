"""OpenAI's ``clip`` package (pip ``openai-clip``) imported under the private name ``prometar._openai_clip``.

CoOp-family repositories (MaPLe, PromptSRC, the official ProMetaR code) ship a modified ``clip/`` package at
their root, so inside such a checkout ``import clip`` gives the fork, whose ``build_model`` needs an extra
argument and whose classes differ. This package makes this project independent of that: its ``__path__`` is
OpenAI's installed ``clip`` folder, so ``prometar._openai_clip.model.CLIP`` is OpenAI's class read from OpenAI's
file, while ``sys.modules['clip']`` (whatever the host imports) is never read or changed.

The folder is found from the installed distribution's file list (``openai-clip``, or ``clip`` when installed from
OpenAI's GitHub repository), else from ``sys.path`` entries other than the current folder / the running script's
folder; a candidate is accepted only when its ``model.build_model`` takes the state dict alone (the forks add
``design_details``). Use it through :func:`prometar.clip_loader.openai_clip`.
"""
from __future__ import annotations

import ast
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional, Tuple

INSTALL_HINT = "install it with `pip install openai-clip` (or `pip install git+https://github.com/openai/CLIP.git`)"


def _build_model_arity(folder: Path) -> Optional[int]:
    """Number of parameters of ``build_model`` in ``folder/model.py`` (None when absent or unreadable)."""
    try:
        tree = ast.parse((folder / "model.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "build_model":
            return len(node.args.posonlyargs) + len(node.args.args) + len(node.args.kwonlyargs)
    return None


def _is_openai_clip(folder: Path) -> bool:
    return (folder / "__init__.py").is_file() and (folder / "clip.py").is_file() and _build_model_arity(folder) == 1


def _from_distributions() -> List[Path]:
    from importlib import metadata

    found = []
    for dist_name in ("openai-clip", "clip"):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            if file.as_posix() == "clip/__init__.py":
                found.append(Path(dist.locate_file(file)).resolve().parent)
    return found


def _host_folders() -> set:
    """Folders a host's own ``clip/`` shadows from: the current folder and the running script's folder."""
    folders = set()
    try:
        folders.add(Path.cwd().resolve())
    except OSError:  # the current folder was removed
        pass
    if sys.path and sys.path[0]:
        folders.add(Path(sys.path[0]).resolve())
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file:
        folders.add(Path(main_file).resolve().parent)
    return folders


def locate() -> Tuple[Optional[Path], List[str]]:
    """OpenAI's installed ``clip`` folder (or None) and a note for every candidate that was rejected."""
    rejected: List[str] = []
    seen = set()
    for folder in _from_distributions():
        seen.add(folder)
        if _is_openai_clip(folder):
            return folder, rejected
        rejected.append(f"{folder} (installed distribution, but not OpenAI's files)")
    skip = _host_folders()
    for entry in sys.path:
        try:
            base = Path(entry or os.getcwd()).resolve()
        except OSError:
            continue
        folder = base / "clip"
        if folder in seen or not (folder / "__init__.py").is_file():
            continue
        seen.add(folder)
        if base in skip:
            rejected.append(f"{folder} (the host checkout's own copy, next to the running script)")
        elif _is_openai_clip(folder):
            return folder, rejected
        else:
            arity = _build_model_arity(folder)
            why = "its build_model needs extra arguments" if arity and arity > 1 else "no OpenAI build_model"
            rejected.append(f"{folder} (a modified fork: {why})")
    return None, rejected


def resolve() -> Path:
    """OpenAI's ``clip`` folder; ImportError saying it is not installed (and what was found instead) if absent."""
    folder, rejected = locate()
    if folder is None:
        seen = "; found only: " + "; ".join(rejected) if rejected else ""
        raise ImportError(f"OpenAI's CLIP package (`clip`, pip name `openai-clip`) is not installed{seen}. "
                          f"prometar builds its model with OpenAI's unmodified CLIP, never with a repository's own "
                          f"`clip/` fork: {INSTALL_HINT}.", name=__name__)
    return folder


#: The folder OpenAI's ``clip`` package is read from.
OPENAI_CLIP_DIR: Path = resolve()
__path__ = [str(OPENAI_CLIP_DIR)]  # submodules (clip, model, simple_tokenizer) are OpenAI's files

with warnings.catch_warnings():  # openai-clip imports pkg_resources (deprecated in setuptools >= 67)
    warnings.simplefilter("ignore")
    try:
        from .clip import *  # noqa: E402,F401,F403  (available_models, load, tokenize, as `import clip` gives)
        from . import clip, model, simple_tokenizer  # noqa: E402,F401
    except ImportError as _exc:
        _hint = (" (openai-clip imports pkg_resources, which setuptools 81 removed: pip install 'setuptools<81')"
                 if "pkg_resources" in str(_exc) else "")
        raise ImportError(f"OpenAI's CLIP package at {OPENAI_CLIP_DIR} failed to import: {_exc}{_hint}",
                          name=__name__) from _exc

