"""A slow, obviously-correct reference of the MTLSTM language model (eval mode).

Written from the equations, one time step and one layer at a time, reading the model's
parameters by name. It shares no code with the library's forward pass, so tests can
use it as an oracle.
"""

import torch


def reference_lstm_lm(model, input_ids, hidden=None, cell=None):
    """Returns (logits (B, T, V), hidden list, cell list) for an eval-mode MTLSTMForCausalLM."""
    base = model.model
    x = base.embeddings.weight[input_ids].double()
    batch = input_ids.shape[0]
    sizes = model.config.hidden_sizes
    hidden = (
        [torch.zeros(batch, h, dtype=torch.float64) for h in sizes] if hidden is None else [h.double() for h in hidden]
    )
    cell = [torch.zeros(batch, h, dtype=torch.float64) for h in sizes] if cell is None else [c.double() for c in cell]
    for index, layer in enumerate(base.layers):
        size = sizes[index]
        w_ih, w_hh = layer.weight_ih.double(), layer.weight_hh.double()
        biases = layer.gate_biases
        # A gate's bias is the sum of its vectors: <gate> and, where it trains, <gate>_hh (PyTorch's bias_ih + bias_hh).
        named = dict(biases.named_parameters()) | dict(biases.named_buffers())
        b_i, b_f, b_g, b_o = (
            named[g].double() + named.get(g + "_hh", torch.zeros(())).double()
            for g in ("input_gate", "forget_gate", "cell_candidate", "output_gate")
        )
        h, c = hidden[index], cell[index]
        outputs = []
        for t in range(x.shape[1]):
            pre = x[:, t] @ w_ih.T + h @ w_hh.T
            i = torch.sigmoid(pre[:, :size] + b_i)
            f = torch.sigmoid(pre[:, size : 2 * size] + b_f)
            g = torch.tanh(pre[:, 2 * size : 3 * size] + b_g)
            o = torch.sigmoid(pre[:, 3 * size :] + b_o)
            c = f * c + i * g
            h = o * torch.tanh(c)
            outputs.append(h)
        hidden[index], cell[index] = h, c
        x = torch.stack(outputs, dim=1)
    logits = x @ model.lm_head.weight.double().T + model.lm_head.bias.double()
    return logits, hidden, cell
