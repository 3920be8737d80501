"""Shared fixtures: small CLIPs saved in OpenAI's format and loaded through the real loading path."""
import os
import warnings

import pytest
import torch

# Small models run fastest single-threaded, and a busy 2-core machine is not oversubscribed.
torch.set_num_threads(int(os.environ.get("PROMETAR_TEST_THREADS", "1")))

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


@pytest.fixture(scope="session")
def small_clip_path(tmp_path_factory):
    """A random 'small' CLIP (2 heads per tower, 3 layers) saved as an OpenAI state-dict file (fp16)."""
    from prometar.clip_loader import build_clip, save_clip

    path = tmp_path_factory.mktemp("clip") / "small.pt"
    return save_clip(build_clip("small", seed=0), path)


@pytest.fixture
def small_clip(small_clip_path):
    """Fresh fp32 copy of the small CLIP, loaded with `load_clip`."""
    from prometar.clip_loader import load_clip

    return load_clip(small_clip_path, precision="fp32")
