"""open_clip (pip ``open_clip_torch``) imported from its installed folder under the private name
``prometar._open_clip``.

Some CLIP prompt-learning repositories ship their own ``open_clip/`` copy at their root, so inside such a checkout
``import open_clip`` may give that copy. As for OpenAI's package (``prometar._openai_clip``), this package's
``__path__`` is the installed distribution's folder, so ``prometar._open_clip.factory`` is the installed file and
``sys.modules['open_clip']`` is never read or changed. Use it through :func:`prometar.open_clip_loader.open_clip`;
importing it raises ImportError (saying how to install the extra) when ``open_clip_torch`` is absent.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

INSTALL_HINT = "install it with `pip install open_clip_torch` (or `pip install -e \".[open_clip]\"` in a checkout)"


def _installed_folder() -> Path:
    try:
        dist = metadata.distribution("open_clip_torch")
    except metadata.PackageNotFoundError:
        raise ImportError(f"open_clip models need the optional package open_clip_torch, which is not installed: "
                          f"{INSTALL_HINT}.", name=__name__) from None
    for file in dist.files or ():
        if file.as_posix() == "open_clip/__init__.py":
            return Path(dist.locate_file(file)).resolve().parent
    raise ImportError(f"the installed open_clip_torch {dist.version} has no open_clip/__init__.py; reinstall it: "
                      f"{INSTALL_HINT}.", name=__name__)


#: The folder open_clip is read from.
OPEN_CLIP_DIR: Path = _installed_folder()
__path__ = [str(OPEN_CLIP_DIR)]  # submodules (factory, model, transformer, ...) are the installed files

from . import factory, model, modified_resnet, pretrained, tokenizer, transform, transformer  # noqa: E402
from .version import __version__  # noqa: E402,F401
