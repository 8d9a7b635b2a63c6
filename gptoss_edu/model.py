"""The one model of the course: GPT-2 or gpt-oss (or any step between) by its config."""

from __future__ import annotations

import math

import torch
from torch import nn

from . import mxfp4
from .attention import Attention, KVCache
from .config import ModelConfig
from .mlp import make_mlp
from .moe import MoE
from .norms import make_norm
from .rotary import Rotary

BACKENDS = ("torch", "triton")


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, layer: int, packed_experts: bool = False) -> None:
        super().__init__()
        self.attn_norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg, layer)
        self.mlp_norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.mlp = MoE(cfg, packed_experts) if cfg.is_moe else make_mlp(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """x [B, T, d_model] plus attention, then plus the MLP; ``rope`` and ``cache`` are attention's."""
        x = x + self.drop(self.attn(self.attn_norm(x), rope, cache))
        x = x + self.drop(self.mlp(self.mlp_norm(x)))
        return x


def check_token_ids(lowest: int, highest: int, vocab_size: int) -> None:
    """Refuse token ids outside 0..vocab_size-1 (an embedding lookup would fail, on a GPU with a device assert)."""
    if lowest < 0 or highest >= vocab_size:
        bad = lowest if lowest < 0 else highest
        raise ValueError(f"token id {bad} is outside the vocabulary (0..{vocab_size - 1}): was it made by "
                         "another tokenizer?")


class GPT(nn.Module):
    """Token ids [B, T] to next-token logits [B, T, vocab]."""

    def __init__(self, cfg: ModelConfig, packed_experts: bool = False) -> None:
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            hint = f": preset({cfg!r}) gives that config" if isinstance(cfg, str) else ""
            raise TypeError(f"GPT takes a ModelConfig, got a {type(cfg).__name__}{hint}")
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_embed = nn.Embedding(cfg.context_length, cfg.d_model) if cfg.positions == "learned" else None
        self.rotary = Rotary(cfg) if cfg.positions != "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i, packed_experts) for i in range(cfg.n_layers))
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.backend = "torch"
        if not any(p.is_meta for p in self.parameters()):
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02) -> None:
        """GPT-2's initialisation: N(0, std), output projections (packed experts' too) scaled by 1/sqrt(2 * layers)."""
        out_std = std / math.sqrt(2 * self.config.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("bias") or "sinks" in name:
                p.zero_()
            elif "norm" in name:
                p.fill_(1.0)
            else:
                is_out_proj = name.endswith(("o_proj.weight", "fc_out.weight", "down_proj.weight", "experts.down_proj"))
                p.normal_(0.0, out_std if is_out_proj else std)
        for m in self.modules():
            if getattr(m, "packed", False):  # random packed experts: quantize random dense ones
                for w in ("gate_up_proj", "down_proj"):
                    blocks = getattr(m, f"{w}_blocks")
                    scale = out_std if w == "down_proj" else std  # as the dense experts' down_proj
                    dense = torch.randn(*blocks.shape[:-2], blocks.shape[-2] * 32, device=blocks.device) * scale
                    b, s = mxfp4.quantize(dense)
                    blocks.copy_(b)
                    getattr(m, f"{w}_scales").copy_(s)

    # ---- running ------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, cache: KVCache | None = None, last_only: bool = False) -> torch.Tensor:
        """Logits [B, T, vocab]; with ``cache`` the ids continue the cached positions.

        ``last_only`` gives only the last position's logits, [B, 1, vocab]: all that generation needs
        after a prompt, whose every position's logits would take T x vocab numbers (for gpt-oss-20b,
        a 2,048-token prompt's 0.8 GB in bf16).
        """
        start = cache.length if cache is not None else 0
        self._check_input_ids(input_ids, start)
        T = input_ids.shape[1]
        positions = torch.arange(start, start + T, device=input_ids.device)
        x = self.embed(input_ids)
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions)
        x = self.drop(x)
        rope = self.rotary(positions, x.dtype) if self.rotary is not None else None
        for block in self.blocks:
            x = block(x, rope, cache)
        if cache is not None:  # every layer wrote positions start..start+T-1: the cache moves on once, after all
            cache.length += T
        if last_only:
            x = x[:, -1:]
        return self.logits(x)

    def _check_input_ids(self, input_ids: torch.Tensor, start: int) -> None:
        """Refuse ids that are not [batch, tokens] of integers in the vocabulary, or that overrun the context."""
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a tensor [batch, tokens], got a {type(input_ids).__name__}: "
                            "torch.tensor([ids]) makes one from a list of ids")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"input_ids must be an int64 or int32 tensor of token ids (ids.long() converts one), "
                             f"got {input_ids.dtype} {tuple(input_ids.shape)}")
        if input_ids.dim() != 2:
            fix = " (ids[None] adds the batch dimension)" if input_ids.dim() == 1 else ""
            raise ValueError(f"input_ids must be [batch, tokens], got {input_ids.dim()}-D {tuple(input_ids.shape)}{fix}")
        T = input_ids.shape[1]
        if input_ids.numel() == 0:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} holds no tokens: give at least one sequence of one")
        if input_ids.device.type == "cpu":  # elsewhere the check would wait for the device at every step
            check_token_ids(*(int(v) for v in torch.aminmax(input_ids)), self.config.vocab_size)
        if start + T > self.config.context_length:
            raise ValueError(f"{start + T} positions exceed the context length of {self.config.context_length} "
                             f"({self.config.name}): shorten the prompt or generate fewer tokens")

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The final norm and the unembedding: hidden states [B, T, d_model] to logits [B, T, vocab]."""
        return self.lm_head(self.norm(x))

    def new_cache(self, batch_size: int = 1, max_len: int | None = None) -> KVCache:
        """An empty KV cache on this model's device and dtype."""
        p = self.embed.weight
        if max_len is None:
            max_len = self.config.context_length
        elif isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len is the positions the cache holds, a whole number >= 1 (None: the model's "
                             f"context, {self.config.context_length}), got {max_len!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size is the sequences the cache holds, a whole number >= 1, got {batch_size!r}")
        return KVCache(self.config, batch_size, max_len, p.device, p.dtype)

    def set_backend(self, backend: str) -> "GPT":
        """Run RMSNorm, attention and the experts on 'torch' (readable) or 'triton' (kernels)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "triton":
            from gptoss_kernels import require_triton

            require_triton(self.embed.weight.device)
            if self.embed.weight.dtype not in (torch.float32, torch.bfloat16, torch.float16):
                raise ValueError(f"the Triton kernels take float32, bfloat16 or float16, and this model is "
                                 f"{str(self.embed.weight.dtype).removeprefix('torch.')}: convert it first "
                                 "(model.float()), or keep the PyTorch path, which runs any dtype")
        for m in self.modules():
            if hasattr(m, "backend"):
                m.backend = backend
        return self

    def num_parameters(self) -> int:
        """Parameters and packed expert bytes counted as the weights they stand for."""
        n = sum(p.numel() for p in self.parameters())
        for m in self.modules():
            if getattr(m, "packed", False):
                n += sum(b.numel() * 2 for name, b in m.named_buffers() if name.endswith("_blocks"))
        return n
