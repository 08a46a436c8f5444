"""Keras layers on torch modules: one base (``base.Layer``), one file per family.

Every public ``Layer`` subclass registers itself in ``base.KERAS_CLASSES`` under its Keras
class name; ``__all__`` is that table, so a class added to a family file is exported (and
loadable from model files) with no change here beyond importing its file.
"""

from .base import KERAS_CLASSES, Layer
from .separable import SeparableConv1D, SeparableConv2D
from .conv import Conv1D, Conv2D, Conv3D
from .conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from .depthwise import DepthwiseConv1D, DepthwiseConv2D
from .reshaping import (Cropping1D, Cropping2D, Cropping3D, Resizing, UpSampling1D,
                        UpSampling2D, UpSampling3D, ZeroPadding1D, ZeroPadding2D,
                        ZeroPadding3D)
from .conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN
from .rnn import RNN, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells
# The plain Keras layers a model file needs (core.py, normalization.py, pooling.py,
# merging.py).
from .core import (Activation, ActivityRegularization, AlphaDropout, Dense, Dropout, ELU,
                   EinsumDense, Embedding, Flatten, GaussianDropout, GaussianNoise, Identity,
                   InputLayer, LeakyReLU, Permute, PReLU, ReLU, RepeatVector, Rescaling,
                   Reshape, Softmax, SpatialDropout1D, SpatialDropout2D, SpatialDropout3D,
                   ThresholdedReLU, TimeDistributed)
from .normalization import (BatchNormalization, GroupNormalization, LayerNormalization,
                            Normalization, UnitNormalization)
from .pooling import (AveragePooling1D, AveragePooling2D, AveragePooling3D,
                      GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D,
                      GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPooling1D,
                      MaxPooling2D, MaxPooling3D)
from .merging import Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract
from .masking import Masking, Sequential
from .attention import AdditiveAttention, Attention, MultiHeadAttention
from .cudnn import CuDNNGRU, CuDNNLSTM
from .audio import MelSpectrogram, STFTSpectrogram
from .attention import GroupQueryAttention  # noqa: F401  (Keras 3 only)
from .normalization import RMSNormalization  # noqa: F401  (Keras 3's)
from .pooling import (AdaptiveAveragePooling1D, AdaptiveAveragePooling2D,  # noqa: F401
                      AdaptiveAveragePooling3D, AdaptiveMaxPooling1D, AdaptiveMaxPooling2D,
                      AdaptiveMaxPooling3D)  # Keras 3's
from .locally_connected import LocallyConnected1D, LocallyConnected2D  # tf-keras'
from .aliases import *  # noqa: F401,F403  (Keras' alias names: Convolution1D, MaxPool2D, ...)
from .aliases import __all__ as _aliases
from .preprocessing import (CategoryEncoding, Discretization, Hashing, IntegerLookup,
                            StringLookup, TextVectorization)
from .augmentation import (CenterCrop, RandomBrightness, RandomContrast,  # noqa: F401
                           RandomCrop, RandomFlip, RandomHeight, RandomRotation,
                           RandomTranslation, RandomWidth, RandomZoom)
from .lambda_layer import Lambda  # noqa: F401
from .spectral import SpectralNormalization  # wrapper (spectral.py)
from .hashed_crossing import HashedCrossing  # hashed_crossing.py
from .applications import CustomScaleLayer, LayerScale, StochasticDepth  # noqa: F401
from .reversible_embedding import ReversibleEmbedding  # noqa: F401  (Keras 3's)
from .augmentation3 import *  # noqa: F401,F403  (Keras 3's image preprocessing layers)

CORE_LAYERS = ["InputLayer", "Dense", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU",
               "Softmax", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
               "GaussianNoise", "Flatten", "Reshape", "Permute", "RepeatVector", "Embedding",
               "TimeDistributed", "BatchNormalization", "LayerNormalization", "MaxPooling1D",
               "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
               "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
               "GlobalMaxPooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
               "GlobalAveragePooling3D", "Add", "Subtract", "Multiply", "Average", "Maximum",
               "Minimum", "Concatenate"]

__all__ = ["Layer"] + sorted(KERAS_CLASSES)
__all__ += ["Sequential"]  # masking.py: a torch.nn.Sequential that carries masks
__all__ += _aliases  # aliases.py: Keras' other names of the same classes
