"""SeparableConv1D in a few lines: the R-style composition, a penalty and a constraint.

Trains a two-block network on ItalyPowerDemand (bundled with an installed package, read
offline) for 30 epochs in well under a minute on a laptop CPU.

    python examples/italy_power_demand.py

The data file comes with the main job's extra: pip install "sepconv[train]".
"""

import torch
import torch.nn.functional as F

import sepconv
from sepconv import datasets

torch.manual_seed(0)
torch.set_num_threads(1)

data = datasets.load("ItalyPowerDemand")            # (cases, 24 steps, 1 channel)
norm = datasets.Normalizer.fit(data.x_train)
x_train, y_train = torch.from_numpy(norm(data.x_train)), torch.from_numpy(data.y_train)
x_test, y_test = torch.from_numpy(norm(data.x_test)), torch.from_numpy(data.y_test)

# keras_model_sequential() %>% layer_separable_conv_1d(...) %>% ... in R reads:
model = torch.nn.Sequential()
sepconv.layer_separable_conv_1d(model, filters=16, kernel_size=5, padding="same",
                                activation="relu", input_shape=(None, data.n_channels),
                                depthwise_regularizer="l2")          # penalty 0.01 * sum(w^2)
sepconv.layer_separable_conv_1d(model, filters=16, kernel_size=3, padding="same",
                                activation="relu", pointwise_constraint="max_norm")
model.append(torch.nn.Flatten())                                    # (batch, 24 * 16)
model.append(torch.nn.Linear(24 * 16, data.n_classes))
model(x_train[:1])                                  # creates the second block's weights

optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
for epoch in range(30):
    for idx in torch.randperm(len(x_train)).split(16):
        loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
        loss = loss + sepconv.regularization_loss(model)    # Keras adds model.losses
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()                                    # max_norm is applied here

model.eval()
with torch.no_grad():
    accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
print(f"ItalyPowerDemand test accuracy: {100 * accuracy:.1f}% "
      f"({len(x_test)} test cases; FCN in Ismail Fawaz et al. 2019: 96.1%)")
