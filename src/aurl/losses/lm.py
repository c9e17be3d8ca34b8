"""Loss terms over next-token logits: cross-entropy on the data, distillation from a teacher.

Each is a pure function of tensors. Targets equal to ``ignore_index`` (PAD) count for nothing,
and every mean is over the targets that count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def target_count(targets: torch.Tensor, ignore_index: int = 0) -> torch.Tensor:
    """How many targets count (not ``ignore_index``): the denominator of the means here."""
    return (targets != ignore_index).sum()


def next_token_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = 0
) -> torch.Tensor:
    """Mean cross-entropy (nats per token) of ``logits`` (B, T, V) against ``targets`` (B, T)."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=ignore_index
    )


def distillation(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 2.0,
    ignore_index: int = 0,
) -> torch.Tensor:
    """KL(teacher || student) of the distributions softened by ``temperature``, per token.

    Scaled by ``temperature**2`` so its gradients keep the size of the cross-entropy's as the
    temperature changes (Hinton et al., 2015). Both logits are (B, T, V); positions whose
    target is ``ignore_index`` are left out.
    """
    keep = (targets != ignore_index).reshape(-1)
    v = student_logits.size(-1)
    s = F.log_softmax(student_logits.reshape(-1, v)[keep].float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.reshape(-1, v)[keep].float() / temperature, dim=-1)
    kl = F.kl_div(s, t, log_target=True, reduction="sum") / max(int(keep.sum()), 1)
    return kl * temperature**2
