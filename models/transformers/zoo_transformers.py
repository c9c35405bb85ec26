"""Transformer fixtures: small plain-PyTorch models whose *structure* is realistic.

Four families the pruner must understand (attention heads, MLP neurons, hidden width):

- ``bert``  post-LN encoder, separate q/k/v Linears, additive 0/1 -> finfo.min padding mask,
            token + position + token-type embeddings, pooler + classifier.
- ``vit``   pre-LN encoder, Conv patch embedding, class token (Concat), learned positions.
- ``gpt2``  pre-LN decoder, *fused* qkv Linear split in three, causal mask sliced from a
            buffer, tanh-GELU MLP, tied LM head, KV cache (past/present per layer).
- ``llama`` RMSNorm (decomposed), SwiGLU MLP, RoPE (rotate_half), grouped-query attention
            (4 query heads share 2 KV heads via expand + reshape), no biases, untied LM head,
            KV cache holding the 2 KV heads.

The attention is written the way Hugging Face writes it (Linear -> view(B, T, H, D) ->
transpose -> q @ k^T scaled -> mask -> softmax(-1) -> @ v -> transpose -> reshape ->
Linear), so the exported graphs look like real exports; no Hugging Face code or weights
are used. Random weights (seed 0); every LayerNorm/RMSNorm gets random affine parameters
(weight U(0.5, 1.5), bias N(0, 0.1)) so norm folding bugs are not hidden by (1, 0).

Torch is needed only to (re)generate the fixtures; tests read the ONNX files.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SEED = 0
VOCAB = 128
MAX_POS = 64


def _split_heads(x: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """[B, T, H*D] -> [B, H, T, D] the usual way: view with the runtime B, T, then transpose."""
    new_shape = x.size()[:-1] + (heads, head_dim)
    return x.view(new_shape).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, T, D] -> [B, T, H*D]."""
    x = x.transpose(1, 2).contiguous()
    return x.reshape(x.size()[:-2] + (x.size(-2) * x.size(-1),))


# ------------------------------------------------------------------------------ BERT
class BertSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.num_heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x, ext_mask):
        q = _split_heads(self.query(x), self.num_heads, self.head_dim)
        k = _split_heads(self.key(x), self.num_heads, self.head_dim)
        v = _split_heads(self.value(x), self.num_heads, self.head_dim)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        scores = scores + ext_mask  # [B, 1, 1, T], 0 where attended, finfo.min where padded
        probs = F.softmax(scores, dim=-1)
        return _merge_heads(torch.matmul(probs, v))


class BertLayer(nn.Module):
    """Post-LN: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, hidden: int, heads: int, ffn: int):
        super().__init__()
        self.attention = BertSelfAttention(hidden, heads)
        self.attention_output = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Linear(hidden, ffn)
        self.output = nn.Linear(ffn, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x, ext_mask):
        x = self.attention_norm(x + self.attention_output(self.attention(x, ext_mask)))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class Bert(nn.Module):
    def __init__(self, vocab=VOCAB, hidden=64, heads=4, ffn=128, layers=2, max_pos=MAX_POS, type_vocab=2,
                 num_labels=2):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(max_pos, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.embeddings_norm = nn.LayerNorm(hidden, eps=1e-12)
        # Hugging Face keeps position ids and default token-type ids as buffers sliced to T.
        self.register_buffer("position_ids", torch.arange(max_pos).unsqueeze(0), persistent=False)
        self.register_buffer("token_type_ids", torch.zeros(1, max_pos, dtype=torch.long), persistent=False)
        self.layers = nn.ModuleList([BertLayer(hidden, heads, ffn) for _ in range(layers)])
        self.pooler = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, input_ids, attention_mask):
        seq = input_ids.size(1)
        pos = self.position_ids[:, :seq]
        tt = self.token_type_ids[:, :seq].expand_as(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(tt) + self.position_embeddings(pos)
        x = self.embeddings_norm(x)
        ext = attention_mask[:, None, None, :].to(x.dtype)
        ext = (1.0 - ext) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, ext)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return self.classifier(pooled)


# ------------------------------------------------------------------------------- ViT
class VitAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.num_heads, self.head_dim = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x):
        q = _split_heads(self.query(x), self.num_heads, self.head_dim)
        k = _split_heads(self.key(x), self.num_heads, self.head_dim)
        v = _split_heads(self.value(x), self.num_heads, self.head_dim)
        probs = F.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim), dim=-1)
        return self.out(_merge_heads(torch.matmul(probs, v)))


class VitBlock(nn.Module):
    """Pre-LN: x = x + Attn(LN(x)); x = x + MLP(LN(x))."""

    def __init__(self, hidden: int, heads: int, mlp: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, eps=1e-6)
        self.attn = VitAttention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, eps=1e-6)
        self.fc1 = nn.Linear(hidden, mlp)
        self.fc2 = nn.Linear(mlp, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, image=32, patch=4, channels=3, hidden=64, heads=4, mlp=128, layers=2, num_classes=10):
        super().__init__()
        n = (image // patch) ** 2
        self.patch_embed = nn.Conv2d(channels, hidden, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, hidden) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, hidden) * 0.5)
        self.blocks = nn.ModuleList([VitBlock(hidden, heads, mlp) for _ in range(layers)])
        self.norm = nn.LayerNorm(hidden, eps=1e-6)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, pixel_values):
        x = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)  # [B, 64 patches, hidden]
        cls = self.cls_token.expand(x.size(0), -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


# ------------------------------------------------------------------------------ GPT-2
class Gpt2Attention(nn.Module):
    """Fused qkv projection (GPT-2's c_attn) split into q, k, v; causal mask from a tril buffer."""

    def __init__(self, hidden: int, heads: int, max_pos: int):
        super().__init__()
        self.num_heads, self.head_dim, self.hidden = heads, hidden // heads, hidden
        self.c_attn = nn.Linear(hidden, 3 * hidden)
        self.c_proj = nn.Linear(hidden, hidden)
        self.register_buffer("bias", torch.tril(torch.ones(max_pos, max_pos, dtype=torch.bool)).view(
            1, 1, max_pos, max_pos), persistent=False)

    def forward(self, x, past_key, past_value):
        q, k, v = self.c_attn(x).split(self.hidden, dim=2)
        q = _split_heads(q, self.num_heads, self.head_dim)
        k = _split_heads(k, self.num_heads, self.head_dim)
        v = _split_heads(v, self.num_heads, self.head_dim)
        k = torch.cat((past_key, k), dim=-2)
        v = torch.cat((past_value, v), dim=-2)
        present = (k, v)
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        q_len, k_len = q.size(-2), k.size(-2)
        causal = self.bias[:, :, k_len - q_len:k_len, :k_len]
        w = torch.where(causal, w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
        w = F.softmax(w, dim=-1)
        return self.c_proj(_merge_heads(torch.matmul(w, v))), present


class Gpt2Block(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp: int, max_pos: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-5)
        self.attn = Gpt2Attention(hidden, heads, max_pos)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-5)
        self.c_fc = nn.Linear(hidden, mlp)
        self.mlp_proj = nn.Linear(mlp, hidden)

    def forward(self, x, past_key, past_value):
        a, present = self.attn(self.ln_1(x), past_key, past_value)
        x = x + a
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x, present


class Gpt2(nn.Module):
    """forward(input_ids, past_key_0, past_value_0, ...) -> (logits, present_key_0, present_value_0, ...)."""

    def __init__(self, vocab=VOCAB, hidden=64, heads=4, mlp=256, layers=2, max_pos=MAX_POS):
        super().__init__()
        self.num_layers, self.num_heads, self.head_dim, self.num_kv_heads = layers, heads, hidden // heads, heads
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(max_pos, hidden)
        self.h = nn.ModuleList([Gpt2Block(hidden, heads, mlp, max_pos) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(hidden, eps=1e-5)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied

    def forward(self, input_ids, *past):
        past_len = past[0].size(-2)
        pos = torch.arange(past_len, past_len + input_ids.size(-1), dtype=torch.long, device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(pos.unsqueeze(0))
        presents = []
        for i, block in enumerate(self.h):
            x, (k, v) = block(x, past[2 * i], past[2 * i + 1])
            presents += [k, v]
        return (self.lm_head(self.ln_f(x)), *presents)


# ------------------------------------------------------------------------------ Llama
class RMSNorm(nn.Module):
    def __init__(self, hidden: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, KVH, T, D] -> [B, KVH * n_rep, T, D] (Hugging Face's expand + reshape, = repeat_interleave on dim 1)."""
    b, kvh, t, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, kvh, n_rep, t, d).reshape(b, kvh * n_rep, t, d)


class LlamaAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.scaling = head_dim ** -0.5
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)

    def forward(self, x, cos, sin, mask, past_key, past_value):
        q = _split_heads(self.q_proj(x), self.num_heads, self.head_dim)
        k = _split_heads(self.k_proj(x), self.num_kv_heads, self.head_dim)
        v = _split_heads(self.v_proj(x), self.num_kv_heads, self.head_dim)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, D]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat((past_key, k), dim=-2)
        v = torch.cat((past_value, v), dim=-2)
        present = (k, v)  # the cache holds the KV heads, before repeat
        n_rep = self.num_heads // self.num_kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling + mask
        w = F.softmax(w, dim=-1)
        return self.o_proj(_merge_heads(torch.matmul(w, v))), present


class LlamaBlock(nn.Module):
    def __init__(self, hidden, heads, kv_heads, head_dim, intermediate, eps):
        super().__init__()
        self.input_layernorm = RMSNorm(hidden, eps)
        self.self_attn = LlamaAttention(hidden, heads, kv_heads, head_dim)
        self.post_attention_layernorm = RMSNorm(hidden, eps)
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x, cos, sin, mask, past_key, past_value):
        a, present = self.self_attn(self.input_layernorm(x), cos, sin, mask, past_key, past_value)
        x = x + a
        h = self.post_attention_layernorm(x)
        x = x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))
        return x, present


class Llama(nn.Module):
    """forward(input_ids, past_key_0, past_value_0, ...) -> (logits, present_key_0, present_value_0, ...)."""

    def __init__(self, vocab=VOCAB, hidden=64, heads=4, kv_heads=2, intermediate=128, layers=2, rope_theta=10000.0,
                 eps=1e-6):
        super().__init__()
        self.num_layers, self.num_heads, self.num_kv_heads = layers, heads, kv_heads
        self.head_dim = hidden // heads
        self.embed_tokens = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList([LlamaBlock(hidden, heads, kv_heads, self.head_dim, intermediate, eps)
                                     for _ in range(layers)])
        self.norm = RMSNorm(hidden, eps)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)  # untied
        inv_freq = 1.0 / (rope_theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, input_ids, *past):
        past_len = past[0].size(-2)
        seq = input_ids.size(-1)
        total = past_len + seq
        positions = torch.arange(past_len, total, dtype=torch.long, device=input_ids.device)
        # RoPE angles computed from the positions (Hugging Face's LlamaRotaryEmbedding).
        freqs = positions[:, None].float() * self.inv_freq[None, :]  # [T, D/2]
        emb = torch.cat((freqs, freqs), dim=-1)  # [T, D]
        cos = emb.cos()[None].expand(input_ids.size(0), -1, -1)
        sin = emb.sin()[None].expand(input_ids.size(0), -1, -1)
        # Causal additive mask [1, 1, T, past + T]: 0 where key position <= query position, finfo.min elsewhere.
        key_pos = torch.arange(total, device=input_ids.device)
        allowed = key_pos[None, :] <= positions[:, None]
        mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
        mask = mask[None, None]
        x = self.embed_tokens(input_ids)
        presents = []
        for i, layer in enumerate(self.layers):
            x, (k, v) = layer(x, cos, sin, mask, past[2 * i], past[2 * i + 1])
            presents += [k, v]
        return (self.lm_head(self.norm(x)), *presents)


# ---------------------------------------------------------------------------- build
ZOO = {
    "bert": Bert,
    "vit": ViT,
    "gpt2": Gpt2,
    "llama": Llama,
}
KV_CACHE = {"gpt2", "llama"}


def _randomise_norms(model: nn.Module, g: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, (nn.LayerNorm, RMSNorm)):
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))


def build(name: str, seed: int = SEED) -> nn.Module:
    """The model in eval mode, deterministic for a given seed."""
    torch.manual_seed(seed)
    model = ZOO[name]()
    _randomise_norms(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def input_names(name: str, model: nn.Module) -> list[str]:
    if name == "bert":
        return ["input_ids", "attention_mask"]
    if name == "vit":
        return ["pixel_values"]
    return ["input_ids"] + [f"past_{kv}_{i}" for i in range(model.num_layers) for kv in ("key", "value")]


def output_names(name: str, model: nn.Module) -> list[str]:
    if name in KV_CACHE:
        return ["logits"] + [f"present_{kv}_{i}" for i in range(model.num_layers) for kv in ("key", "value")]
    return ["logits"]


def example_inputs(name: str, model: nn.Module, batch: int, seq: int, past: int = 3,
                   g: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """Random inputs. bert: 0/1 mask with the last token of sample 0 padded (when batch > 1 and seq > 1)."""
    g = g if g is not None else torch.Generator().manual_seed(seed_for(batch, seq, past))
    if name == "vit":
        return (torch.randn(batch, 3, 32, 32, generator=g),)
    ids = torch.randint(0, VOCAB, (batch, seq), generator=g)
    if name == "bert":
        mask = torch.ones(batch, seq, dtype=torch.long)
        if batch > 1 and seq > 1:
            mask[0, -1] = 0
            mask[-1, seq // 2:] = 0
        return ids, mask
    shape = (batch, model.num_kv_heads, past, model.head_dim)
    cache = tuple(torch.randn(shape, generator=g) for _ in range(2 * model.num_layers))
    return (ids, *cache)


def seed_for(batch: int, seq: int, past: int) -> int:
    return 1000 + 100 * batch + 10 * seq + past
