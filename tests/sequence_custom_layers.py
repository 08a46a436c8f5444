"""A user's torch modules for the custom layers of keras.io's "Text classification with
Transformer" example, written as the Keras layers are (the same attribute names, sepconv
layers without input shapes: the loader builds them), passed to
``sepconv.load_keras_model`` as ``custom_objects=CUSTOM_OBJECTS`` by
tests/test_sequence_examples.py."""

from __future__ import annotations

import torch

import sepconv


class TokenAndPositionEmbedding(torch.nn.Module):
    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = sepconv.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = sepconv.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def forward(self, x):
        positions = torch.arange(x.shape[-1], device=x.device)
        return self.token_emb(x) + self.pos_emb(positions)


class TransformerBlock(torch.nn.Module):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = sepconv.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = torch.nn.Sequential(sepconv.Dense(ff_dim, activation="relu"),
                                       sepconv.Dense(embed_dim))
        self.layernorm1 = sepconv.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = sepconv.LayerNormalization(epsilon=1e-6)
        self.dropout1 = torch.nn.Dropout(rate)
        self.dropout2 = torch.nn.Dropout(rate)

    def forward(self, inputs):
        out1 = self.layernorm1(inputs + self.dropout1(self.att(inputs, inputs)))
        return self.layernorm2(out1 + self.dropout2(self.ffn(out1)))


CUSTOM_OBJECTS = {"TokenAndPositionEmbedding": TokenAndPositionEmbedding,
                  "TransformerBlock": TransformerBlock}
