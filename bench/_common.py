"""Shared helpers of the benchmark scripts: import path, class names, clocks, memory, FLOPs, tables, JSON.

Nothing here measures by itself; the scripts decide what is timed. Importing this module makes `prometar`
importable from a source checkout (the repository root is put on `sys.path` when the package is not installed).
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent


def ensure_repo_on_path() -> None:
    """Make `import prometar` work when running from a checkout without `pip install`."""
    try:
        import prometar  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT))


ensure_repo_on_path()

import torch  # noqa: E402

from prometar.clip_loader import openai_clip  # noqa: E402

clip = openai_clip()  # OpenAI's package (never a host repository's `clip/` fork)

__all__ = ["REPO_ROOT", "class_names", "resolve_device", "sync", "time_call", "median", "flop_counter",
           "current_rss_mb", "peak_rss_mb", "cuda_peak_mb", "device_name", "format_table", "write_json",
           "set_threads", "env_info"]


# ---------------------------------------------------------------------------------------------- class names
_ADJECTIVES = (
    "great white", "tiger", "red", "black", "white", "golden", "grey", "spotted", "striped", "common",
    "American", "European", "African", "Indian", "Siberian", "Egyptian", "giant", "little", "lesser",
    "greater", "pink", "yellow", "blue", "green", "orange", "purple", "wild", "sea", "mountain", "desert",
    "snow", "water", "fire", "bearded", "crested", "long-horned", "ring-tailed", "three-toed", "king",
    "wire-haired", "English", "Japanese", "Scottish", "German", "Irish", "Tibetan", "electric", "wooden",
    "folding", "grand", "analog", "digital", "steel arch", "mountain bike", "barn", "wood", "garden",
)
_NOUNS = (
    "shark", "ray", "hen", "goldfinch", "jay", "magpie", "owl", "salamander", "newt", "frog", "turtle",
    "gecko", "iguana", "lizard", "chameleon", "alligator", "snake", "python", "viper", "scorpion", "spider",
    "grouse", "peacock", "parrot", "macaw", "cockatoo", "hummingbird", "toucan", "goose", "swan", "jellyfish",
    "anemone", "snail", "crab", "lobster", "stork", "flamingo", "heron", "crane", "pelican", "penguin",
    "whale", "terrier", "retriever", "spaniel", "setter", "hound", "poodle", "wolf", "fox", "cat", "leopard",
    "lion", "tiger", "bear", "mongoose", "beetle", "weevil", "bee", "ant", "grasshopper", "cricket", "mantis",
    "dragonfly", "butterfly", "moth", "starfish", "rabbit", "hamster", "squirrel", "beaver", "zebra", "boar",
    "bison", "ram", "antelope", "camel", "otter", "badger", "gorilla", "gibbon", "baboon", "lemur", "eel",
    "accordion", "ambulance", "apron", "backpack", "balloon", "barometer", "bassoon", "bathtub", "bicycle",
    "bookcase", "broom", "bucket", "candle", "canoe", "cardigan", "cello", "chainsaw", "church", "cleaver",
    "clock", "guitar", "fan", "chair", "piano", "bridge", "lily", "orchid", "primrose", "thistle", "poppy",
    "iris", "rose", "daisy", "mushroom", "pepper", "squash", "curry", "salad", "cake", "soup", "pie",
)
_COMPOUNDS = (
    "hermit crab", "sea lion", "guinea pig", "coffee mug", "fire engine", "garbage truck", "park bench",
    "pool table", "school bus", "space shuttle", "steam locomotive", "toilet tissue", "traffic light",
    "water tower", "wine bottle", "ice cream", "mashed potato", "bell pepper", "hot dog", "coral reef",
    "golf ball", "tennis ball", "sleeping bag", "shopping cart", "hair spray", "lab coat", "lawn mower",
)
_CAR_MAKES = (
    ("Aston Martin", ("V8 Vantage", "Virage", "DB9")), ("Audi", ("S4", "TT RS", "R8", "A5", "RS 4")),
    ("BMW", ("M3", "X5", "1 Series", "ActiveHybrid 5", "Z4")), ("Chevrolet", ("Corvette ZR1", "Silverado 1500",
     "Malibu Hybrid", "Express Cargo Van")), ("Dodge", ("Caliber", "Challenger SRT8", "Ram Pickup 3500")),
    ("Ford", ("F-150", "Mustang", "Focus", "E-Series Wagon Van")), ("Hyundai", ("Sonata Hybrid", "Elantra Touring")),
    ("Mercedes-Benz", ("SL-Class", "Sprinter Van", "C-Class")), ("Rolls-Royce", ("Phantom Drophead", "Ghost")),
    ("Volkswagen", ("Golf", "Beetle")), ("Lamborghini", ("Aventador", "Diablo", "Gallardo LP 570-4 Superleggera")),
)
_CAR_BODIES = ("Convertible", "Coupe", "Sedan", "Hatchback", "Wagon", "SUV", "Crew Cab", "Van", "Minivan")
_AIRCRAFT = ("Boeing 737-{}00", "Airbus A3{}0", "Cessna {}72", "Embraer ERJ {}45", "Dash {}", "MD-{}0")
_ACTIONS = ("Apply", "Playing", "Jumping", "Riding", "Throwing", "Pole", "Band", "Blowing", "Brushing", "Cutting")
_ACTION_OBJECTS = ("Eye_Makeup", "Daf", "Jack", "Horse", "Discus", "Vault", "Marching", "Dry_Leaves", "Teeth",
                   "In_Kitchen", "Cello", "Rope", "Bike", "Frisbee")


def _one_name(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.40:
        return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    if kind < 0.55:
        return rng.choice(_NOUNS) if rng.random() < 0.5 else rng.choice(_COMPOUNDS)
    if kind < 0.65:
        return f"{rng.choice(_ADJECTIVES)} {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    if kind < 0.80:  # Stanford-Cars style: "2012 Aston Martin V8 Vantage Convertible"
        make, models = rng.choice(_CAR_MAKES)
        return f"{rng.randint(1991, 2012)} {make} {rng.choice(models)} {rng.choice(_CAR_BODIES)}"
    if kind < 0.88:  # FGVC-Aircraft style
        return rng.choice(_AIRCRAFT).format(rng.randint(1, 9))
    if kind < 0.95:  # UCF101 style (underscores become spaces in prompts)
        return f"{rng.choice(_ACTIONS)}_{rng.choice(_ACTION_OBJECTS)}"
    return f"{rng.choice(_COMPOUNDS)} {rng.choice(_NOUNS)}"


def class_names(n: int, seed: int = 0) -> List[str]:
    """`n` distinct, deterministic, plausible class names (ImageNet / Cars / Aircraft / UCF101-like).

    The same (n, seed) always gives the same list, and the first k names of a longer list are the list of k.
    """
    if n < 1:
        raise ValueError(f"need at least one class, got {n}")
    rng = random.Random(seed)
    names: List[str] = []
    seen = set()
    while len(names) < n:
        name = _one_name(rng)
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------- devices, clocks
def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda if available, else mps, else cpu; any other value is passed to `torch.device`."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that host clocks bracket it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `fn` takes, device work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def set_threads(n: Optional[int]) -> int:
    """Set torch's intra-op threads when `n` is given; return the number in use."""
    if n:
        torch.set_num_threads(int(n))
    return torch.get_num_threads()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine()
    return device.type


def env_info(device: torch.device) -> Dict[str, object]:
    return {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}


# ---------------------------------------------------------------------------------------------- memory
def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB = 2**20 bytes)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10  # bytes on macOS, KiB on Linux


def current_rss_mb() -> float:
    """Current resident set size (Linux /proc; falls back to the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def cuda_peak_mb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


# ---------------------------------------------------------------------------------------------- FLOPs
def _sdpa_forward_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def flop_counter():
    """`FlopCounterMode` that also counts the CPU fused-attention kernels.

    torch's registry covers the CUDA SDPA kernels (flash / efficient / cudnn) but not
    `_scaled_dot_product_flash_attention_for_cpu` (+ backward), which is what `F.scaled_dot_product_attention`
    runs on CPU: without these formulas, CPU counts would miss every fused attention while still counting the
    explicit matmul attention of the double-differentiable path, biasing ProMetaR/IVLP ratios. Same formulas as
    torch's for the CUDA kernels (causal masking not discounted, as torch does).
    """
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    mapping = {}
    for name, fn in (("_scaled_dot_product_flash_attention_for_cpu", _sdpa_forward_flops),
                     ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_backward_flops)):
        op = getattr(aten, name, None)
        if op is not None:
            mapping[op] = fn
    return FlopCounterMode(display=False, custom_mapping=mapping)


# ---------------------------------------------------------------------------------------------- output
def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        if abs(value) >= 1e-3:
            return f"{value:.4f}"
        return f"{value:.2e}"
    return str(value)


def format_table(rows: Iterable[Dict[str, object]], columns: Sequence[tuple]) -> str:
    """Plain-text table; `columns` = [(key, header), ...]."""
    header = [h for _, h in columns]
    body = [[_fmt(row.get(k, float("nan"))) for k, _ in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in body]
    return "\n".join(out)


def _finite(obj: object) -> object:
    """NaN / inf -> None (strict JSON), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: os.PathLike, obj: object) -> Path:
    """Write strict JSON (NaN -> null) atomically (temporary file, then rename); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path
