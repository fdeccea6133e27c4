"""The CLIP image encoder: open_clip models, weights, and grid + pooled outputs from one pass.

    spec = EncoderSpec(model="RN50x4", pretrained="openai")
    enc = load_encoder(spec, device="cuda")
    pooled, grid = enc.encode(enc.normalize(pixels))   # [B, D], [B, H*W, C]

ResNets (open_clip `ModifiedResNet`): `grid` is the layer4 map before the attention pool,
`pooled` is the attention-pool output, which is exactly what `encode_image` returns. At an
input size other than the model's own (`--image-size`, or `aspect` mode), the attention
pool's positional embedding is bicubically interpolated to the grid (the cls slot is kept).
ViTs: `grid` is the last block's patch tokens (after ln_post, as open_clip returns them with
output_tokens), `pooled` is `encode_image`.

Custom architectures: `--model-config FILE.json` registers an open_clip model config under
the file's stem (open_clip's own registry), which is how the tests run tiny random models.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal


from clipfeat.features.errors import ClipfeatError, UnreachableError

if TYPE_CHECKING:
    import torch

__all__ = ["EncoderError", "EncoderSpec", "EncoderShape", "Encoder", "load_encoder", "describe_encoder", "register_model_config", "file_sha256"]


class EncoderError(ClipfeatError):
    """A model/weights choice that cannot work (unknown name, missing file, no GPU)."""


@dataclass(frozen=True)
class EncoderSpec:
    model: str  # open_clip model name, e.g. "RN50x4", "ViT-B-32", or a --model-config stem
    pretrained: str | None = None  # open_clip pretrained tag, e.g. "openai" (downloads)
    checkpoint: str | None = None  # local weights file (state dict, .pt/.bin/.safetensors)
    model_config: str | None = None  # open_clip JSON config to register before creating
    image_size: int | None = None  # fixed mode: input side other than the model's own


@dataclass(frozen=True)
class EncoderShape:
    """What a model produces, known before any weights load (from a meta-device forward)."""

    kind: Literal["resnet", "vit"]
    image_size: int  # the model's native square input side
    pooled_dim: int  # D
    grid_channels: int  # C
    stride: int  # input pixels per grid cell (32 for CLIP ResNets, the patch size for ViTs)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    probe_grid: tuple[int, int] = (0, 0)  # (h, w) grid for the probed input size


def file_sha256(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def register_model_config(path: str) -> str:
    """Register an open_clip model config file under its stem; returns the model name."""
    import json

    import open_clip

    if not os.path.isfile(path):
        raise EncoderError(f"model config {path} not found")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except ValueError as e:
        raise EncoderError(f"model config {path} is not valid JSON ({e})") from None
    if not isinstance(cfg, dict) or "vision_cfg" not in cfg or "embed_dim" not in cfg:
        raise EncoderError(f"{path} is not an open_clip model config (needs embed_dim and vision_cfg)")
    name = os.path.splitext(os.path.basename(path))[0]
    if name not in open_clip.list_models():
        open_clip.add_model_config(path)
    return name


def _check_model(spec: EncoderSpec) -> None:
    import open_clip

    if spec.model_config:
        name = register_model_config(spec.model_config)
        if name != spec.model:
            raise EncoderError(f"--model-config registers {name!r} (the file's stem) but --model is {spec.model!r}; use --model {name}")
    models = open_clip.list_models()
    if spec.model not in models:
        close = difflib.get_close_matches(spec.model, models, n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `python -m open_clip list` style names, e.g. RN50x4, ViT-B-32"
        raise EncoderError(f"unknown model {spec.model!r}{hint}")
    if spec.pretrained and spec.checkpoint:
        raise EncoderError("pass either --pretrained TAG or --checkpoint FILE, not both")
    if not spec.pretrained and not spec.checkpoint:
        raise EncoderError("no weights: pass --pretrained TAG (e.g. openai) or --checkpoint FILE (random weights would give meaningless features)")
    if spec.checkpoint and not os.path.isfile(spec.checkpoint):
        raise EncoderError(f"checkpoint {spec.checkpoint} not found")
    if spec.pretrained:
        tags = open_clip.list_pretrained_tags_by_model(spec.model)
        if spec.pretrained not in tags:
            raise EncoderError(f"{spec.model} has no pretrained tag {spec.pretrained!r}; open_clip has: {', '.join(tags) or 'none'}")


def resolve_weights(spec: EncoderSpec) -> tuple[str, str]:
    """(local weights file, its sha256). A pretrained tag is downloaded into open_clip's cache."""
    _check_model(spec)
    path = spec.checkpoint or _download_pretrained(spec)
    return path, file_sha256(path)


WEIGHTS_HINT = ("pass --checkpoint FILE (the weights downloaded elsewhere), or check the network "
                "(offline: fill the Hugging Face cache and set HF_HUB_OFFLINE=1)")


def _download_pretrained(spec: EncoderSpec) -> str:
    """open_clip's download of a pretrained tag (Hugging Face Hub, else the tag's URL); a failure
    is one EncoderError line. When the hub cannot be reached at all (no network), the download
    runs in huggingface_hub's offline mode: a cached copy is still used, and a missing one fails
    at once instead of after ~45 s of retries (whose log lines are silenced either way)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained)
    hub = bool(cfg.get("hf_hub")) and open_clip.pretrained.has_hf_hub()
    source = f"hf-hub:{cfg['hf_hub'].rstrip('/')}" if hub else cfg.get("url", "")
    reason = None
    with _hub_quiet() as hub_constants:
        user_offline = hub and hub_constants.HF_HUB_OFFLINE
        unreachable = hub and not user_offline and not _reachable(hub_constants.ENDPOINT)
        try:
            with _hub_offline(hub_constants if unreachable else None):
                path = open_clip.download_pretrained(cfg)
        except Exception as e:  # noqa: BLE001 - urllib, huggingface_hub and open_clip raise many kinds
            if user_offline:
                reason = f"HF_HUB_OFFLINE is set and they are not in the Hugging Face cache {hub_constants.HF_HUB_CACHE}"
            elif unreachable:
                reason = f"{hub_constants.ENDPOINT} cannot be reached and they are not in the Hugging Face cache"
            else:
                first = (str(e).strip().splitlines() or [""])[0]
                reason = f"{type(e).__name__}: {first[:160]}{'…' if len(first) > 160 else ''}"
            path = None
    if not path:
        reason = reason or "open_clip gave no file"
        raise UnreachableError(f"cannot download {spec.model} weights {spec.pretrained!r} from {source} ({reason}); {WEIGHTS_HINT}")
    return path


def _reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to `url`'s host opens (True behind a proxy: it resolves names for us)."""
    import socket
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or urllib.request.getproxies():
        return True
    try:
        socket.create_connection((parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)), timeout=timeout).close()
    except OSError:  # unknown host, refused, no route, timed out
        return False
    return True


@contextlib.contextmanager
def _hub_quiet():
    """huggingface_hub's constants (None without it), with its retry warnings silenced."""
    try:
        from huggingface_hub import constants
    except ImportError:
        constants = None
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield constants
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _hub_offline(constants):
    """huggingface_hub's offline mode (as HF_HUB_OFFLINE=1) for the block; no-op for None."""
    if constants is None:
        yield
        return
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _preprocess_cfg(spec: EncoderSpec) -> dict:
    """open_clip's preprocessing for this model + tag (the model config, then the tag's cfg)."""
    import dataclasses

    import open_clip
    from open_clip.transform import PreprocessCfg

    out = dataclasses.asdict(PreprocessCfg())
    model_cfg = open_clip.get_model_config(spec.model) or {}
    out.update({k: v for k, v in (model_cfg.get("preprocess_cfg") or {}).items() if k in out})
    if spec.pretrained:
        tag_cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained) or {}
        out.update({k: v for k, v in tag_cfg.items() if k in out})
    return out


def _forced_size(spec: EncoderSpec) -> int | None:
    """Input size to build the model at. ViTs take theirs at construction (open_clip resizes
    the positional embedding while loading weights); ResNets are built at their own size and
    interpolate the attention pool's embedding at run time."""
    import open_clip

    layers = open_clip.get_model_config(spec.model)["vision_cfg"].get("layers")
    return None if isinstance(layers, (list, tuple)) else spec.image_size


def _kind(model) -> str:
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    if isinstance(model.visual, ModifiedResNet):
        return "resnet"
    if isinstance(model.visual, VisionTransformer):
        return "vit"
    raise EncoderError(f"{type(model.visual).__name__} image towers are not supported; use a CLIP ResNet (RN50…) or ViT")


def describe_encoder(spec: EncoderSpec, *, probe_hw: tuple[int, int] | None = None) -> EncoderShape:
    """Output dims and preprocessing of `spec`'s model, without loading weights.

    probe_hw: an input (H, W) whose grid size to report as `probe_grid` (ResNets; default: the
    square input the model will see in fixed mode).
    """
    import open_clip
    import torch

    _check_model(spec)
    cfg = open_clip.get_model_config(spec.model)
    native = cfg["vision_cfg"].get("image_size", 224)
    native = native[0] if isinstance(native, (list, tuple)) else native
    with torch.device("meta"), _quiet_open_clip():  # no weights on purpose: silence its warning
        model = open_clip.create_model(spec.model, force_image_size=_forced_size(spec), device="meta")
        kind = _kind(model)
        enc = Encoder(model, kind=kind, device="meta", mean=(0.0,) * 3, std=(1.0,) * 3)
        size = spec.image_size or native
        pooled, grid = enc.encode(torch.zeros(1, 3, size, size))
        stride = size // enc.last_hw[0]
        if probe_hw and kind == "resnet":  # a ViT's grid is its patch count at its own size
            enc.encode(torch.zeros(1, 3, *probe_hw))
    pre = _preprocess_cfg(spec)
    return EncoderShape(
        kind=kind, image_size=native, pooled_dim=pooled.shape[-1], grid_channels=grid.shape[-1], stride=stride,
        mean=tuple(pre["mean"]), std=tuple(pre["std"]), interpolation=pre["interpolation"], resize_mode=pre["resize_mode"],
        probe_grid=enc.last_hw,
    )


@contextlib.contextmanager
def _quiet_open_clip():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class Encoder:
    """A loaded image tower. `encode` takes normalised NCHW input, returns (pooled, grid)."""

    def __init__(self, clip_model, *, kind: str, device, mean, std, half: bool = False) -> None:
        import torch

        self.visual = clip_model.visual.eval().requires_grad_(False)
        self.kind = kind
        self.device = torch.device(device)
        self.half = half
        self.dtype = torch.float16 if half else torch.float32
        if kind == "vit":
            self.visual.output_tokens = True  # forward returns (pooled, patch tokens)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.last_hw: tuple[int, int] = (0, 0)
        self._pos_cache: dict[tuple[int, int], object] = {}
        self.graphs = False  # CUDA graphs per input shape (see _encode_graphed); workers turn it on
        self.graph_batch = 0
        self._graphs: dict = {}

    def normalize(self, pixels) -> "torch.Tensor":
        """uint8 [B, H, W, 3] (numpy or tensor, any device) -> normalised [B, 3, H, W] on the device.

        Same arithmetic as torchvision's ToTensor + Normalize (x / 255, then (x - mean) / std,
        in float32), so CPU outputs match open_clip's preprocessing exactly.
        """
        import torch

        x = torch.as_tensor(pixels).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div(255)  # NHWC uint8 -> NCHW float in [0, 1]
        x = x.sub_(self.mean).div_(self.std)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x.to(self.dtype)

    def encode(self, x) -> tuple["torch.Tensor", "torch.Tensor"]:
        """x [B, 3, H, W] -> pooled [B, D], grid [B, h*w, C]; `last_hw` = (h, w)."""
        import torch

        if self.graphs and x.is_cuda:
            return self._encode_graphed(x)
        with torch.inference_mode():
            return self._encode(x)

    def _encode(self, x):
        if self.kind == "resnet":
            v = self.visual
            f = v.layer4(v.layer3(v.layer2(v.layer1(v.stem(x)))))  # [B, C, h, w]
            h, w = f.shape[-2:]
            pooled = self._attention_pool(f)
            grid = f.flatten(2).transpose(1, 2)  # NCHW -> N(HW)C
        else:
            pooled, grid = self.visual(x)  # [B, D], [B, h*w, C]
            ph, pw = self.visual.patch_size
            h, w = x.shape[-2] // ph, x.shape[-1] // pw
        self.last_hw = (int(h), int(w))
        return pooled, grid

    def _encode_graphed(self, x):
        """The forward replayed from a CUDA graph captured once per input shape: one launch
        instead of hundreds, so a worker whose Python threads are busy (decode results,
        shard writes) does not starve the GPU between kernels. A short batch is padded to
        the captured size (rows are independent in eval mode) and the outputs sliced."""
        import torch

        b, shape = x.shape[0], tuple(x.shape[1:])
        entry = self._graphs.get(shape)
        if entry is None or entry[1].shape[0] < b:
            static_in = torch.zeros((max(b, self.graph_batch),) + shape, dtype=x.dtype, device=x.device)
            if x.is_contiguous(memory_format=torch.channels_last):
                static_in = static_in.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(2):  # warm-up on a side stream, as graph capture requires
                        self._encode(static_in)
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static_out = self._encode(static_in)
            entry = self._graphs[shape] = (graph, static_in, static_out, self.last_hw)
        graph, static_in, (pooled, grid), hw = entry
        with torch.inference_mode():
            static_in[:b].copy_(x)
            if b < static_in.shape[0]:
                static_in[b:].zero_()
            graph.replay()
        self.last_hw = hw
        return pooled[:b].clone(), grid[:b].clone()

    def _attention_pool(self, f):
        """The ResNet attention pool on f [B, C, h, w] -> [B, D], at any grid size."""
        import torch
        import torch.nn.functional as F

        pool = self.visual.attnpool
        native = int(round((pool.positional_embedding.shape[0] - 1) ** 0.5))
        h, w = f.shape[-2:]
        if (h, w) == (native, native):
            return pool(f)  # the model's own code path: bit-identical to encode_image
        pos = self._pos_cache.get((h, w))
        if pos is None:
            pe = pool.positional_embedding  # [1 + s*s, C]
            spatial = pe[1:].reshape(1, native, native, -1).permute(0, 3, 1, 2).float()  # 1 C s s
            spatial = F.interpolate(spatial, size=(h, w), mode="bicubic", align_corners=False)
            pos = torch.cat([pe[:1].float(), spatial.permute(0, 2, 3, 1).reshape(h * w, -1)]).to(pe.dtype)
            self._pos_cache[(h, w)] = pos
        x = f.flatten(2).permute(2, 0, 1)  # NCHW -> (HW)NC
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)  # (1+HW)NC: mean token first
        x = x + pos[:, None, :].to(x.dtype)
        out, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=pool.num_heads,
            q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
            use_separate_proj_weight=True, training=False, need_weights=False,
        )
        return out[0]  # [B, D]: the mean token's output


def load_encoder(spec: EncoderSpec, *, device: str = "cpu", weights: str | None = None,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> Encoder:
    """Create the model and load its weights (`weights`: a resolved local file, else from spec).

    Half precision on CUDA, float32 on CPU. mean/std: normalisation other than the model's
    open_clip config (a preset's), or None.
    """
    import open_clip
    import torch

    _check_model(spec)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EncoderError("--device cuda was asked but this machine has no usable GPU; use --device cpu")
    source = weights or spec.checkpoint or spec.pretrained
    try:
        model = open_clip.create_model(spec.model, pretrained=source, force_image_size=_forced_size(spec), device="cpu")
    except RuntimeError as e:
        raise EncoderError(f"weights {source} do not fit model {spec.model}: {str(e).splitlines()[0]}") from None
    kind = _kind(model)
    pre = _preprocess_cfg(spec)
    half = device.startswith("cuda")
    model = model.to(device=device, dtype=torch.float16 if half else torch.float32)
    if half:
        model = model.to(memory_format=torch.channels_last)
    return Encoder(model, kind=kind, device=device, mean=mean or pre["mean"], std=std or pre["std"], half=half)
