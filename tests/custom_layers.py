"""A user's torch modules for the custom Keras layers of Keras' "Text classification with
Transformer" example (``TokenAndPositionEmbedding``, ``TransformerBlock``), written with
sepconv layers as a user porting that model would; tests/test_model_files_custom.py loads
the Keras files with ``custom_objects=CUSTOM_OBJECTS``.  Submodules carry the Keras
layer's attribute names; sepconv layers get their input shapes at construction."""

from __future__ import annotations

import torch

import sepconv


class TokenAndPositionEmbedding(torch.nn.Module):
    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = sepconv.Embedding(vocab_size, embed_dim)
        self.pos_emb = sepconv.Embedding(maxlen, embed_dim)

    def forward(self, x):
        positions = torch.arange(x.shape[-1], device=x.device)
        return self.token_emb(x) + self.pos_emb(positions)


class TransformerBlock(torch.nn.Module):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        shape = (None, None, embed_dim)
        self.att = sepconv.MultiHeadAttention(num_heads, embed_dim, query_shape=shape,
                                              value_shape=shape)
        self.ffn = torch.nn.Sequential(
            sepconv.Dense(ff_dim, activation="relu", input_shape=(embed_dim,)),
            sepconv.Dense(embed_dim, input_shape=(ff_dim,)))
        self.layernorm1 = sepconv.LayerNormalization(epsilon=1e-6, input_shape=(embed_dim,))
        self.layernorm2 = sepconv.LayerNormalization(epsilon=1e-6, input_shape=(embed_dim,))
        self.scale = torch.nn.Parameter(torch.ones(embed_dim))  # the layer's own weight
        self.dropout1 = torch.nn.Dropout(rate)
        self.dropout2 = torch.nn.Dropout(rate)

    def forward(self, inputs):
        out1 = self.layernorm1(inputs + self.dropout1(self.att(inputs, inputs)))
        return self.layernorm2(out1 + self.dropout2(self.ffn(out1))) * self.scale


def scaled_tanh(x):
    """A custom activation function, by name in the file."""
    return 1.7159 * torch.tanh(2.0 * x / 3.0)


CUSTOM_OBJECTS = {"TokenAndPositionEmbedding": TokenAndPositionEmbedding,
                  "TransformerBlock": TransformerBlock, "scaled_tanh": scaled_tanh}


class NormBlock(torch.nn.Module):
    """Batch normalisation before a dense layer: in an ``.h5`` file Keras lists the
    trainable weights of both first, the moving statistics last."""

    def __init__(self, units, channels):
        super().__init__()
        self.norm = sepconv.BatchNormalization(input_shape=(None, channels))
        self.proj = sepconv.Dense(units, input_shape=(channels,))

    def forward(self, x):
        return self.proj(self.norm(x))


CUSTOM_OBJECTS["NormBlock"] = NormBlock
