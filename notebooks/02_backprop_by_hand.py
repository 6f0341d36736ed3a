# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. Backpropagation by hand
#
# A network small enough to print every number: 2 inputs, 2 hidden neurons, 2 outputs, sigmoid everywhere, and
# the squared error
#
# $$E = \tfrac12 \sum_k (y_k - a_k)^2 .$$
#
# One training step: the forward pass, the error, the backward pass (every δ and every ∂E/∂w), and one update
# $w \leftarrow w - \eta\,\partial E/\partial w$. Then the same numbers from `manual` and from PyTorch's autograd.

# %%
import numpy as np
import torch

import manual
import manual.nn
import torch_ref

np.set_printoptions(precision=6, suppress=True)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


x = np.array([0.05, 0.10])                 # the input
W1 = np.array([[0.15, 0.20],               # hidden layer: W1[j, i] is the weight from input i to hidden neuron j
               [0.25, 0.30]])
b1 = np.array([0.35, 0.35])
W2 = np.array([[0.40, 0.45],               # output layer: W2[k, j] from hidden neuron j to output k
               [0.50, 0.55]])
b2 = np.array([0.60, 0.60])
label = 1                                  # the class; its one-hot target is y = (0, 1)
y = np.eye(2)[label]
eta = 0.5                                  # the learning rate η

# %% [markdown]
# ## Forward pass
# $z^{(1)} = W_1 x + b_1$, $a^{(1)} = \sigma(z^{(1)})$, $z^{(2)} = W_2 a^{(1)} + b_2$, $a^{(2)} = \sigma(z^{(2)})$.

# %%
z1 = W1 @ x + b1
a1 = sigmoid(z1)
z2 = W2 @ a1 + b2
a2 = sigmoid(z2)
E = 0.5 * np.sum((y - a2) ** 2)
for name, value in [("z1", z1), ("a1", a1), ("z2", z2), ("a2", a2)]:
    print(f"{name} = {value}")
print(f"E = ½Σ(y − a)² = {E:.6f}")

# %% [markdown]
# ## Backward pass
#
# The chain rule, one layer at a time. At the output, δ = ∂E/∂z:
#
# $$\delta^{(2)}_k = -(y_k - a^{(2)}_k)\,\sigma'(z^{(2)}_k), \qquad \sigma'(z) = \sigma(z)(1 - \sigma(z)),$$
#
# and each weight's gradient is its δ times the activation it multiplies:
# $\partial E/\partial W^{(2)}_{kj} = \delta^{(2)}_k\, a^{(1)}_j$ — for one weight,
# $\partial E/\partial w = -(y - a)\,f'(z)\,x$. The hidden layer's δ collects what it sent forward:
#
# $$\delta^{(1)}_j = \Big(\sum_k W^{(2)}_{kj}\,\delta^{(2)}_k\Big)\,\sigma'(z^{(1)}_j).$$

# %%
delta2 = -(y - a2) * a2 * (1 - a2)
dW2 = np.outer(delta2, a1)
db2 = delta2
delta1 = (W2.T @ delta2) * a1 * (1 - a1)
dW1 = np.outer(delta1, x)
db1 = delta1
for name, value in [("δ2", delta2), ("∂E/∂W2", dW2), ("∂E/∂b2", db2), ("δ1", delta1), ("∂E/∂W1", dW1),
                    ("∂E/∂b1", db1)]:
    print(f"{name} =\n{value}")

# %% [markdown]
# One weight spelled out: $W^{(2)}_{00}$, from hidden neuron 0 to output 0.

# %%
by_formula = -(y[0] - a2[0]) * a2[0] * (1 - a2[0]) * a1[0]
print(f"∂E/∂W2[0,0] = -(y0 - a0)·σ'(z0)·a1_0 = -({y[0]} - {a2[0]:.6f})·{a2[0] * (1 - a2[0]):.6f}·{a1[0]:.6f} "
      f"= {by_formula:.6f}")
assert np.isclose(by_formula, dW2[0, 0])

# %% [markdown]
# ## The same numbers from `manual`
#
# `manual.nn.Sequential` holds the same parameters under torch's state-dict keys; `loss_and_grads` with the loss
# `"mse"` puts a sigmoid on the outputs and returns ½Σ(y − a)² averaged over the batch — a batch of one here, so
# it is exactly E.

# %%
model = manual.nn.Sequential(manual.nn.Linear(2, 2), manual.nn.Sigmoid(), manual.nn.Linear(2, 2))
model.load_state_dict({"0.weight": W1, "0.bias": b1, "2.weight": W2, "2.bias": b2})
loss, grads = manual.nn.loss_and_grads(model, x[None, :], np.array([label]), "mse")
print(f"manual: E = {loss:.6f}")
for key, value in grads.items():
    print(f"{key:9} {value.ravel()}")
mine = {"0.weight": dW1, "0.bias": db1, "2.weight": dW2, "2.bias": db2}
assert np.isclose(loss, E)
assert all(np.allclose(grads[k], mine[k], rtol=1e-12, atol=0) for k in mine)

# %% [markdown]
# ## And from PyTorch's autograd
#
# `torch_ref.mirror(model)` is the same network made of `torch.nn` modules; autograd differentiates it.

# %%
twin = torch_ref.mirror(model)
criterion = torch_ref.Criterion("mse")
torch_loss = criterion(twin(torch.from_numpy(x[None, :])), torch.tensor([label]))
torch_loss.backward()
print(f"autograd: E = {torch_loss.item():.6f}")
for key, param in twin.named_parameters():
    print(f"{key:9} {param.grad.numpy().ravel()}   |autograd − by hand| ≤ "
          f"{np.abs(param.grad.numpy() - mine[key]).max():.1e}")
    assert np.allclose(param.grad.numpy(), mine[key], rtol=1e-12, atol=0)

# %% [markdown]
# ## One update
#
# $w \leftarrow w - \eta\,\partial E/\partial w$ with η = 0.5, by hand and with `manual.optim.SGD`; the error
# goes down.

# %%
W1_new, b1_new, W2_new, b2_new = W1 - eta * dW1, b1 - eta * db1, W2 - eta * dW2, b2 - eta * db2
print("W2 after one step:\n", W2_new)
manual.optim.SGD(model.params, lr=eta).step(grads)
assert np.allclose(model.state_dict()["2.weight"], W2_new) and np.allclose(model.state_dict()["0.weight"], W1_new)
E_new = 0.5 * np.sum((y - sigmoid(W2_new @ sigmoid(W1_new @ x + b1_new) + b2_new)) ** 2)
print(f"E before: {E:.6f}, after one step: {E_new:.6f}")
assert E_new < E and np.isclose(manual.nn.loss_value(model, x[None, :], np.array([label]), "mse"), E_new)
