"""PrometarWorld: a procedural image benchmark and a small CLIP pretrained on it.

No pretrained CLIP and no benchmark data can be downloaded everywhere, so the package ships a small but real
stand-in for "CLIP + a CoOp benchmark": a procedural world of rendered scenes, a small ``clip.model.CLIP``
contrastively pretrained on captioned scenes of that world (``prometar/assets/world_clip.pt``, loaded with
``load_clip("prometar-world")``), and a generator writing a benchmark in CoOp's JSON-split layout.

Modules: :mod:`.scenes` (attributes, scene sampling, renderer), :mod:`.corpus` (captions and the pretraining
batch stream), :mod:`.benchmark` (the 32 classes and the benchmark generator), :mod:`.pretraining` (the
contrastive pretraining loop and the saved weights), :mod:`.probe` (zero-shot accuracy and the linear probe), :mod:`.cli`.

Shipped model (``prometar/assets/world_clip.json`` has the details): ViT 40 px / patch 5, vision width 128 x 4
layers, text width 64 x 4 layers, embedding 64; 1000 steps of batch 128 (seed 0, 1 thread) took 26 min on a
shared 2-core CPU; 8.4 MB. Zero-shot ("a photo of a {}.") on the seed-0 test split of the shipped benchmark
(camera hue shift 30 degrees, hardness 0.75): base 48.3%, new 49.4% (chance 6.25%); a 16-shot linear probe on
its frozen image features reaches base 70.5%, new 76.2% (seeds 1-3): the features hold far more than the
class-name prompts use, as real CLIP's do (``bench/world.py``).

CLI::

    python -m prometar.world generate --root DATA [--seed S] [--hue-shift DEG --hardness H]
    python -m prometar.world pretrain --out prometar/assets/world_clip.pt [--steps N --seed S]
    python -m prometar.world zeroshot --root DATA [--weights PATH]
    python -m prometar.world probe --root DATA [--weights PATH --shots 16 --seed 1]
"""
from .benchmark import CLASSNAMES, DATASET_DIR, HARDNESS, HUE_SHIFT, SPLIT_FILE, generate_world
from .cli import main
from .corpus import make_caption
from .pretraining import WORLD_SHAPE, pretrain
from .probe import zeroshot_accuracy
from .scenes import COLOURS, IMAGE_SIZE, PATTERNS, SHAPES, render_scene, sample_scene

__all__ = [
    "SHAPES", "COLOURS", "PATTERNS", "CLASSNAMES", "WORLD_SHAPE", "DATASET_DIR", "SPLIT_FILE", "HUE_SHIFT", "HARDNESS",
    "IMAGE_SIZE",
    "render_scene", "sample_scene", "generate_world", "make_caption", "pretrain", "zeroshot_accuracy", "main",
]
