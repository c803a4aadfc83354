"""EMA weights, also under sharding.

The rule is timm's ``ModelEmaV3`` with warm-up: after step s the EMA moves towards the model by
1 - d_s, d_s = min(decay, 1 - (1 + (s - 1))^(-2/3)) (d_1 = 0: the first update copies), over
every floating-point entry of the state dict (integer buffers are copied), with one foreach lerp.
Each process keeps the EMA of what it holds: all weights, or under FSDP2 its shards, updated
without communication (an FSDP2 module cannot be deep-copied, so the EMA is kept as tensors).
Its state (checkpoints, the exported ``ema/``) is gathered to full tensors, and a loaded state
is sharded again.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor, distribute_tensor


def local(value: torch.Tensor) -> torch.Tensor:
    """This process's part of a (possibly sharded) tensor."""
    return value.to_local() if isinstance(value, DTensor) else value


class Ema:
    """EMA of ``model``'s state dict; ``state_dict`` names entries ``module.<name>``, as timm's
    ``ModelEmaV3`` does, so checkpoints of either load into the other."""

    def __init__(self, model: torch.nn.Module, decay: float, use_warmup: bool = True, power: float = 2 / 3):
        self.decay, self.use_warmup, self.power = decay, use_warmup, power
        self.reference = model.state_dict()  # the model's tensors: shapes and shardings
        self.shadow = {name: local(value).detach().clone() for name, value in self.reference.items()}

    def get_decay(self, step: int) -> float:
        step = max(0, step - 1)
        if step <= 0:
            return 0.0
        return min(self.decay, 1 - (1 + step) ** -self.power) if self.use_warmup else self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        weight = 1.0 - self.get_decay(step)
        shadows, values = [], []
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                shadows.append(self.shadow[name])
                values.append(local(value))
            else:
                self.shadow[name].copy_(local(value))
        torch._foreach_lerp_(shadows, values, weight=weight)

    def weights(self) -> dict[str, torch.Tensor]:
        """The EMA weights as full tensors, named as the model's (a collective when sharded:
        every process calls it)."""
        full = {}
        for name, value in self.reference.items():
            shadow = self.shadow[name]
            if isinstance(value, DTensor):
                shadow = DTensor.from_local(
                    shadow, value.device_mesh, value.placements, shape=value.shape, stride=value.stride()
                ).full_tensor()
            full[name] = shadow
        return full

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"module.{name}": value for name, value in self.weights().items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = {name.removeprefix("module."): value for name, value in state.items()}
        for name, value in self.reference.items():
            full = state[name].to(self.shadow[name].device)
            if isinstance(value, DTensor):  # keep this process's shard of the full tensor
                full = distribute_tensor(full, value.device_mesh, value.placements).to_local()
            self.shadow[name].copy_(full)
