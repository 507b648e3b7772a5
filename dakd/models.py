"""The Teacher (several backbones fused by the Temporal Aggregation Module) and the Student (one backbone).

Both are :class:`AnomalyModel`: per-backbone projection to a common width ``d``, then ``layers``
disentangled attention layers (the TAM of the paper's Figure 3), fusion of the per-backbone outputs
into one per-segment feature, and an MLP head with a sigmoid giving one score per segment. With one
backbone the cross-content term has nothing to attend to, which makes the Student's attention
self-only; ``tam="none"`` is the paper's baseline (concatenated projected features, no attention).

For backbone t, with content vectors ``Qc = X_t Wq_t``, ``Kc = X_t Wk_t``, ``Vc = X_t Wv_t`` and
relative-position vectors ``Qr = P Wqr``, ``Kr = P Wkr`` from one shared table P of ``2k`` relative
positions (DeBERTa bucket ``delta(i, j) = clamp(i - j, -k, k - 1) + k``)::

    A_cc[i, j]  = Qc_i . Kc_j                               self content -> content
    A_cc'[i, j] = sum (or mean) over t' != t of Qc_i . Kc(t')_j      cross content -> content
    A_cp[i, j]  = Qc_i . Kr_delta(i, j)                     content -> position
    A_pc[i, j]  = Kc_j . Qr_delta(j, i)                     position -> content
    H_t = softmax((sum of the active terms) / sqrt(n_terms * d_head)) Vc

(the scale is DeBERTa's sqrt(3 d) generalised to the number of active terms: sqrt(4 d_head) with all
four), followed by an output projection, residual connection, LayerNorm and a feed-forward block.
Models never see labels and do not know the batch composition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    width: int = 128  # d: common width of every backbone after projection
    heads: int = 4
    layers: int = 1
    max_relative_distance: int = 4  # k
    tam: Literal["disentangled", "none"] = "disentangled"
    content_to_content: bool = True  # A_{c->c}
    cross_content: bool = True  # A_{c->c'} (teacher only: needs two backbones or more)
    content_to_position: bool = True  # A_{c->p}
    position_to_content: bool = True  # A_{p->c}
    cross_reduce: Literal["sum", "mean"] = "mean"
    fusion: Literal["concat", "mean"] = "mean"  # mean: chosen on the Ped2 dev splits (docs/results.md)
    feedforward: int = 256
    dropout: float = 0.1
    head_hidden: tuple[int, ...] = (128, 32)
    head_dropout: float = 0.6
    # Training only: each backbone's projected features are zeroed for a whole video with this probability
    # (independently per video and backbone, one backbone always kept), so that no view can carry the
    # Teacher alone and a weak view cannot drown a strong one.
    view_dropout: float = 0.0


@dataclass
class ModelOutput:
    scores: torch.Tensor  # [B, S] in [0, 1]
    features: torch.Tensor  # [B, S, F] the fused per-segment feature (what distillation matches)
    attention: dict[str, torch.Tensor] | None = None  # backbone -> [B, heads, S, S] of the last layer


def relative_buckets(length: int, k: int, device: torch.device | None = None) -> torch.Tensor:
    """``delta[i, j] = clamp(i - j, -k, k - 1) + k`` in ``[0, 2k)``, shape ``[S, S]``."""
    positions = torch.arange(length, device=device)
    return (positions[:, None] - positions[None, :]).clamp(-k, k - 1) + k


class DisentangledAttentionLayer(nn.Module):
    """One TAM layer over all backbones: each backbone attends with the four terms of the module doc."""

    def __init__(self, names: tuple[str, ...], config: ModelConfig):
        super().__init__()
        d = config.width
        if d % config.heads:
            raise ValueError(f"width {d} is not divisible by heads {config.heads}")
        self.names, self.config = names, config
        self.heads, self.head_width = config.heads, d // config.heads
        self.query = nn.ModuleDict({n: nn.Linear(d, d) for n in names})
        self.key = nn.ModuleDict({n: nn.Linear(d, d) for n in names})
        self.value = nn.ModuleDict({n: nn.Linear(d, d) for n in names})
        self.output = nn.ModuleDict({n: nn.Linear(d, d) for n in names})
        self.norm1 = nn.ModuleDict({n: nn.LayerNorm(d) for n in names})
        self.norm2 = nn.ModuleDict({n: nn.LayerNorm(d) for n in names})
        self.feedforward = nn.ModuleDict(
            {
                n: nn.Sequential(
                    nn.Linear(d, config.feedforward),
                    nn.GELU(),
                    nn.Dropout(config.dropout),
                    nn.Linear(config.feedforward, d),
                )
                for n in names
            }
        )
        # Shared by all backbones: projections of the relative-position table into Q^r and K^r.
        self.position_query = nn.Linear(d, d)
        self.position_key = nn.Linear(d, d)
        self.dropout = nn.Dropout(config.dropout)

    def active_terms(self) -> list[str]:
        c = self.config
        terms = [("self", c.content_to_content), ("c2p", c.content_to_position), ("p2c", c.position_to_content)]
        terms.insert(1, ("cross", c.cross_content and len(self.names) > 1))
        return [name for name, on in terms if on]

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, S, d] -> [B, h, S, dh]
        b, s, _ = x.shape
        return x.view(b, s, self.heads, self.head_width).transpose(1, 2)

    def attention_logits(
        self, queries: dict, keys: dict, name: str, position_queries: torch.Tensor, position_keys: torch.Tensor
    ) -> torch.Tensor:
        """Summed, scaled attention logits of backbone ``name``: ``[B, h, S, S]``."""
        q, k = queries[name], keys[name]
        length = q.shape[-2]
        terms = self.active_terms()
        if not terms:
            raise ValueError("every attention term is switched off; use tam: none instead")
        logits = torch.zeros(q.shape[:-1] + (length,), device=q.device, dtype=q.dtype)
        if "self" in terms:
            logits = logits + q @ k.transpose(-1, -2)
        if "cross" in terms:
            others = [queries[name] @ keys[other].transpose(-1, -2) for other in self.names if other != name]
            cross = torch.stack(others).sum(0)
            logits = logits + (cross / len(others) if self.config.cross_reduce == "mean" else cross)
        if "c2p" in terms or "p2c" in terms:
            delta = relative_buckets(length, self.config.max_relative_distance, q.device)
            index = delta.expand(*q.shape[:2], length, length)
            if "c2p" in terms:  # A[i, j] = Qc_i . Kr_{delta(i, j)}
                content_to_position = q @ position_keys.transpose(-1, -2)  # [B, h, S, 2k]
                logits = logits + torch.gather(content_to_position, -1, index)
            if "p2c" in terms:  # A[i, j] = Kc_j . Qr_{delta(j, i)}
                position_to_content = k @ position_queries.transpose(-1, -2)  # [B, h, S(j), 2k]
                logits = logits + torch.gather(position_to_content, -1, index).transpose(-1, -2)
        return logits / math.sqrt(len(terms) * self.head_width)

    def forward(
        self, inputs: dict[str, torch.Tensor], position_table: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        queries = {n: self._split(self.query[n](x)) for n, x in inputs.items()}
        keys = {n: self._split(self.key[n](x)) for n, x in inputs.items()}
        # [2k, d] -> [1, h, 2k, dh]
        position_queries = self._split(self.position_query(position_table)[None])
        position_keys = self._split(self.position_key(position_table)[None])
        outputs, attentions = {}, {}
        for name, x in inputs.items():
            logits = self.attention_logits(queries, keys, name, position_queries, position_keys)
            attention = logits.softmax(dim=-1)
            attentions[name] = attention
            values = self._split(self.value[name](x))
            mixed = (self.dropout(attention) @ values).transpose(1, 2).reshape(x.shape)
            hidden = self.norm1[name](x + self.dropout(self.output[name](mixed)))
            outputs[name] = self.norm2[name](hidden + self.dropout(self.feedforward[name](hidden)))
        return outputs, attentions


class AnomalyModel(nn.Module):
    """Scores segments from the features of one or more backbones.

    ``backbone_dims`` maps each backbone (in a fixed order) to its feature width. ``forward`` takes
    ``{backbone: [B, S, D_t]}`` and returns a :class:`ModelOutput`.
    """

    def __init__(self, backbone_dims: dict[str, int], config: ModelConfig):
        super().__init__()
        if not backbone_dims:
            raise ValueError("a model needs at least one backbone")
        self.names = tuple(backbone_dims)
        self.backbone_dims = dict(backbone_dims)
        self.config = config
        d = config.width
        self.projection = nn.ModuleDict(
            {
                n: nn.Sequential(nn.Linear(dim, d), nn.ReLU(), nn.Dropout(config.dropout))
                for n, dim in backbone_dims.items()
            }
        )
        if config.tam == "disentangled":
            self.position_table = nn.Parameter(torch.randn(2 * config.max_relative_distance, d) * 0.02)
            self.layers = nn.ModuleList(DisentangledAttentionLayer(self.names, config) for _ in range(config.layers))
        else:
            self.layers = nn.ModuleList()
        self.feature_dim = d * len(self.names) if config.fusion == "concat" else d
        head: list[nn.Module] = []
        width = self.feature_dim
        for hidden in config.head_hidden:
            head += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.head_dropout)]
            width = hidden
        head.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*head)

    def drop_views(self, hidden: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Zero each video's projected features of a backbone with probability ``view_dropout`` (``[B, S, d]``)."""
        first = next(iter(hidden.values()))
        keep = torch.rand(first.shape[0], len(self.names), device=first.device) >= self.config.view_dropout
        lost = ~keep.any(dim=1)  # a video that lost every view keeps one, at random
        if lost.any():
            pick = torch.randint(len(self.names), (int(lost.sum()),), device=first.device)
            keep[lost] = torch.nn.functional.one_hot(pick, len(self.names)).bool()
        return {n: h * keep[:, i, None, None].to(h.dtype) for i, (n, h) in enumerate(hidden.items())}

    def forward(self, features: dict[str, torch.Tensor], return_attention: bool = False) -> ModelOutput:
        missing = set(self.names) - set(features)
        if missing:
            raise KeyError(f"features of backbone(s) {sorted(missing)} are needed")
        hidden = {n: self.projection[n](features[n]) for n in self.names}
        if self.training and self.config.view_dropout > 0 and len(self.names) > 1:
            hidden = self.drop_views(hidden)
        attention = None
        for layer in self.layers:
            hidden, attention = layer(hidden, self.position_table)
        stacked = [hidden[n] for n in self.names]
        fused = torch.cat(stacked, dim=-1) if self.config.fusion == "concat" else torch.stack(stacked).mean(0)
        scores = torch.sigmoid(self.head(fused)).squeeze(-1)
        return ModelOutput(scores=scores, features=fused, attention=attention if return_attention else None)


def build_model(backbone_dims: dict[str, int], config: ModelConfig) -> AnomalyModel:
    return AnomalyModel(backbone_dims, config)
