"""The zoo's models: name, family, configs (``tiny`` for CI, the paper's big size on
request) and forms (spelling x loop form). See ``lt2.models.looped`` for what the config
fields and spellings mean."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..models.looped import LoopedConfig

LOOP_FORMS = ("loop", "unrolled")


@dataclass(frozen=True)
class Form:
    """One ONNX file of a model: ``<spelling>_<loop_form>.onnx``."""

    spelling: str
    loop_form: str

    @property
    def file(self) -> str:
        return f"{self.spelling}_{self.loop_form}.onnx"

    @property
    def unrolled(self) -> bool:
        return self.loop_form == "unrolled"


@dataclass(frozen=True)
class ZooModel:
    name: str
    family: str  # lt2_full_gdn | lt2_gdn_dsa | looped_gdn | lt2_swa | ouro
    description: str
    tiny: LoopedConfig
    big: LoopedConfig
    big_label: str  # the size the big config stands for ("1.3b", "1.4b")
    spellings: tuple = ("standard",)

    @property
    def forms(self) -> list[Form]:
        return [Form(sp, lf) for sp in self.spellings for lf in LOOP_FORMS]

    def config(self, size: str) -> LoopedConfig:
        if size == "tiny":
            return self.tiny
        if size in ("1.3b", "1.4b", "big"):
            return self.big
        raise ValueError(f"unknown size {size!r} (tiny, 1.3b)")


def _every_fifth_full(n: int, full: str = "attn") -> tuple:
    """LT2's ``interleaved:4:1:gdn:full`` layout: layer i is full attention iff i % 5 == 4."""
    return tuple(full if i % 5 == 4 else "gdn" for i in range(n))


def _gdn_dsa(n: int) -> tuple:
    """GDN + DSA interleaved: even layers GDN, odd layers DSA."""
    return tuple("gdn" if i % 2 == 0 else "dsa" for i in range(n))


# Tiny sizes: d 64, vocab 256, T 2 (Ouro 3), FFN 16, RoPE tables for 64 positions; each
# form stays near 300 KB. Big sizes: lt2-models.md section 4 (weights generated with
# fast_init, never committed).
_TINY = LoopedConfig(ffn_hidden=16)
_BIG = LoopedConfig(
    d_model=2048, vocab=128256, n_loops=4, mixers=_every_fifth_full(21), gdn_heads=16, gdn_k=96, gdn_v=192,
    attn_q_heads=16, attn_kv_heads=16, attn_head_dim=128, ffn_hidden=5632, max_positions=8192, fast_init=True,
)
_R = dataclasses.replace

ZOO: list[ZooModel] = [
    ZooModel(
        "lt2_full_gdn", "lt2_full_gdn",
        "LT2-hybrid Full+GDN: layer i full attention iff i % 5 == 4, else GDN (K=8, V=16); interleaved RoPE theta 1e4; "
        "per-loop residual rho; final RMSNorm once; tied LM head.",
        _R(_TINY, mixers=_every_fifth_full(5), seed=11),
        _BIG, "1.3b", ("standard", "ms", "decomposed"),
    ),
    ZooModel(
        "lt2_full_gdn_keqv_gate", "lt2_full_gdn",
        "LT2-hybrid Full+GDN with K = V = 8 GDN heads, GQA attention (4 query / 2 KV heads of 8 dims) and the sigmoid "
        "output gate attn * sigmoid(x W_gate).",
        _R(_TINY, mixers=_every_fifth_full(5), gdn_k=8, gdn_v=8, attn_q_heads=4, attn_kv_heads=2, attn_head_dim=8,
           attn_output_gate=True, seed=12),
        _R(_BIG, gdn_k=128, gdn_v=128, attn_kv_heads=4, attn_output_gate=True), "1.3b", ("standard", "decomposed"),
    ),
    ZooModel(
        "lt2_full_gdn_gva", "lt2_full_gdn",
        "LT2-hybrid Full+GDN with grouped values (Qwen3-Next style): 2 query/key heads, 4 value heads, K = V = 8 "
        "(key head h serves value heads 2h, 2h+1).",
        _R(_TINY, mixers=_every_fifth_full(5), gdn_v_heads=4, gdn_k=8, gdn_v=8, seed=13),
        _R(_BIG, gdn_heads=16, gdn_v_heads=32, gdn_k=128, gdn_v=128), "1.3b", ("standard", "ms"),
    ),
    ZooModel(
        "lt2_gdn_dsa", "lt2_gdn_dsa",
        "LT2-hybrid GDN+DSA: even layers GDN, odd layers LT2's DSA (lt2::LightningIndexer mean_dot, 2 heads x 16 score dims, "
        "top_k 4; lt2::SparseAttention over a 48-dim latent, values = its first 32 dims, one KV head).",
        _R(_TINY, mixers=_gdn_dsa(4), dsa_heads=2, dsa_score_dim=16, dsa_value_dim=32, dsa_tail_dim=16, dsa_top_k=4, seed=27),
        _R(_BIG, mixers=_gdn_dsa(21), dsa_heads=16, dsa_score_dim=64, dsa_value_dim=512, dsa_tail_dim=64, dsa_top_k=2048),
        "1.3b", ("standard", "decomposed"),
    ),
    ZooModel(
        "looped_gdn", "looped_gdn",
        "Pure looped GDN: every layer GDN (3 layers), per-loop residual rho, final RMSNorm once, tied LM head.",
        _R(_TINY, mixers=("gdn",) * 3, seed=15),
        _R(_BIG, mixers=("gdn",) * 21), "1.3b", ("standard",),
    ),
    ZooModel(
        "lt2_swa", "lt2_swa",
        "LT2-hybrid SWA+GDN: as lt2_full_gdn but the attention layer uses a sliding window of 4 tokens "
        "(the current one and 3 predecessors).",
        _R(_TINY, mixers=_every_fifth_full(5, "swa"), window=4, seed=16),
        _R(_BIG, mixers=_every_fifth_full(21, "swa"), window=512), "1.3b", ("standard", "ms", "decomposed"),
    ),
    ZooModel(
        "ouro", "ouro",
        "Ouro-style looped transformer: all layers full attention (4 x 16 MHA), rotate-half RoPE theta 1e6, sandwich "
        "RMSNorms, final RMSNorm at the end of every loop, exit gate per loop, untied LM head; outputs logits (last loop) "
        "and exit_probs [B, L, T]. T = 3 so every case of the exit arithmetic occurs.",
        _R(_TINY, mixers=("attn", "attn"), n_loops=3, attn_q_heads=4, attn_kv_heads=4, attn_head_dim=16, rope_interleaved=False,
           rope_theta=1e6, loop_residual=False, sandwich_norm=True, final_norm_every_loop=True, exit_gate=True, tied_head=False,
           decomposed_mask="trilu", seed=17),
        LoopedConfig(
            d_model=2048, vocab=49152, n_loops=4, mixers=("attn",) * 24, attn_q_heads=16, attn_kv_heads=16, attn_head_dim=128,
            ffn_hidden=5632, max_positions=65536, rope_interleaved=False, rope_theta=1e6, loop_residual=False, sandwich_norm=True,
            final_norm_every_loop=True, exit_gate=True, tied_head=False, decomposed_mask="trilu", fast_init=True,
        ),
        "1.4b", ("standard", "decomposed"),
    ),
]


def get(name: str) -> ZooModel:
    for m in ZOO:
        if m.name == name:
            return m
    raise KeyError(f"no zoo model {name!r}; have {[m.name for m in ZOO]}")
