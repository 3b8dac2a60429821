"""How one optimizer step's prompts and completions are cut into per-device batches, and which cuts are refused.

One optimizer step consumes exactly `prompts_per_step` prompts x `group_size` completions across all processes, and
generation happens once per step (TRL's `steps_per_generation` = gradient accumulation steps), so no completion is
ever reused from an older policy unless `num_iterations` asks for it.

Where the groups land (TRL 1.16): `RepeatSampler` yields each prompt `num_generations` times in a row, one global
generation batch (`generation_batch_size` = P x G) at a time; accelerate hands process r the r-th contiguous slice of
`per_device_train_batch_size x steps_per_generation` = P x G / N items, and the reward functions of process r see
exactly that slice. A slice boundary falls inside a group unless P x G / N is a multiple of G, i.e. unless N divides
P. A listwise or pairwise self-referee must see the whole group, so such layouts are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from urpo_kit.config.schema import Grpo
from urpo_kit.errors import UrpoError


class LayoutError(UrpoError):
    """A batch layout that TRL would reject, or that would split a self-judged group across processes."""


@dataclass(frozen=True)
class BatchLayout:
    num_processes: int
    per_device_train_batch_size: int     # completions per device per micro-batch
    gradient_accumulation_steps: int     # micro-batches per optimizer step
    steps_per_generation: int            # = gradient_accumulation_steps: generate once per optimizer step
    num_generations: int                 # G
    max_steps: int                       # optimizer steps (grpo.steps x num_iterations)

    @property
    def generation_batch_size(self) -> int:
        """Completions generated per step across processes: prompts_per_step x G."""
        return self.per_device_train_batch_size * self.num_processes * self.steps_per_generation

    @property
    def completions_per_process(self) -> int:
        return self.per_device_train_batch_size * self.steps_per_generation

    @property
    def whole_groups_per_process(self) -> bool:
        """True when every process sees only complete groups (see the module docstring)."""
        return self.completions_per_process % self.num_generations == 0

    def grpo_config_kwargs(self) -> dict[str, int]:
        return {
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "steps_per_generation": self.steps_per_generation,
            "num_generations": self.num_generations,
            "max_steps": self.max_steps,
        }


def batch_layout(grpo: Grpo, num_processes: int, *, whole_groups: bool) -> BatchLayout:
    """The layout for a recipe's `grpo` section on `num_processes` processes.

    `grpo.per_device_batch_size`, when set, fixes the micro-batch and the accumulation follows from it; otherwise
    `grpo.gradient_accumulation_steps` fixes the accumulation. `whole_groups` refuses layouts that split a group
    across processes (needed by a listwise or pairwise self-referee).
    """
    p, g = grpo.prompts_per_step, grpo.group_size
    total = p * g
    where = f"grpo.prompts_per_step={p} x grpo.group_size={g} = {total} completions per step"
    if total % num_processes:
        raise LayoutError(f"{where} cannot be split evenly over {num_processes} processes")
    per_process = total // num_processes
    if grpo.per_device_batch_size is not None:
        per_device = grpo.per_device_batch_size
        if per_process % per_device:
            raise LayoutError(f"{where} is {per_process} per process, not a multiple of "
                              f"grpo.per_device_batch_size={per_device}")
        accumulation = per_process // per_device
        if grpo.gradient_accumulation_steps not in (1, accumulation):
            raise LayoutError(f"grpo.gradient_accumulation_steps={grpo.gradient_accumulation_steps} contradicts "
                              f"grpo.per_device_batch_size={per_device} ({per_process} completions per process "
                              f"need {accumulation} micro-batches); set only one of them")
    else:
        accumulation = grpo.gradient_accumulation_steps
        if per_process % accumulation:
            raise LayoutError(f"{where} is {per_process} per process, not divisible into "
                              f"grpo.gradient_accumulation_steps={accumulation} micro-batches")
        per_device = per_process // accumulation
    layout = BatchLayout(num_processes, per_device, accumulation, accumulation, g, grpo.steps * grpo.num_iterations)
    if whole_groups and not layout.whole_groups_per_process:
        raise LayoutError(
            f"{where} on {num_processes} processes splits prompt groups across processes, and a listwise or "
            f"pairwise self-referee must see all {g} answers of a prompt: make grpo.prompts_per_step a multiple "
            f"of {num_processes}"
        )
    return layout
