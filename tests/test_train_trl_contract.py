"""Contract tests: every TRL attribute or behaviour the trainer relies on beyond TRL's documented API, as found in the
pinned trl 1.16.0. If one fails after an upgrade, the code named in the test's docstring needs another look."""

from __future__ import annotations

import inspect

import trl
from trl import GRPOConfig, GRPOTrainer


def test_pinned_version():
    assert trl.__version__ == "1.16.0"


def test_repeat_sampler_keeps_dataset_order_without_shuffle():
    """layout.py / resume.py: with shuffle_dataset=False the stream order is the training order."""
    from trl.trainer.utils import RepeatSampler

    sampler = RepeatSampler(range(6), mini_repeat_count=2, batch_size=3, repeat_count=1, shuffle=False)
    assert list(sampler) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_train_sampler_follows_shuffle_dataset_and_generation_batch():
    """layout.py: GRPOTrainer builds its RepeatSampler from shuffle_dataset, generation_batch_size and
    num_generations, each prompt's G copies in a row (so a process's slice holds whole groups when N divides P)."""
    source = inspect.getsource(GRPOTrainer._get_train_sampler)
    for needle in ("RepeatSampler(", "mini_repeat_count=self.num_generations",
                   "batch_size=self.args.generation_batch_size // self.num_generations",
                   "shuffle=self.shuffle_dataset"):
        assert needle in source


def test_dataloader_batch_is_per_device_batch_times_steps_per_generation():
    """layout.py: each process's generation batch (what the reward functions see) is this many completions."""
    source = inspect.getsource(GRPOTrainer.get_train_dataloader)
    assert "batch_size=self._train_batch_size * self.args.steps_per_generation" in source


def test_reward_functions_get_log_metric_trainer_state_and_extra_columns():
    """rewards.py: the kwargs TRL passes to a reward function."""
    source = inspect.getsource(GRPOTrainer._calculate_rewards)
    for needle in ('reward_kwargs["trainer_state"] = self.state', 'reward_kwargs["log_metric"] = self._log_metric',
                   "prompts=prompts, completions=completions, completion_ids=completion_ids_list",
                   "output_reward_func = [reward if reward is not None else torch.nan"):
        assert needle in source


def test_grpo_config_fields_we_set_exist():
    """trainer.py: GRPOConfig fields the recipe maps onto."""
    fields = GRPOConfig.__dataclass_fields__
    for name in ("shuffle_dataset", "num_generations", "generation_batch_size", "steps_per_generation",
                 "max_completion_length", "temperature", "top_p", "beta", "epsilon", "num_iterations",
                 "scale_rewards", "loss_type", "use_vllm", "vllm_mode", "vllm_server_base_url",
                 "vllm_gpu_memory_utilization", "vllm_tensor_parallel_size", "ds3_gather_for_generation",
                 "model_init_kwargs", "log_completions", "use_cpu", "bf16"):
        assert name in fields, name


def test_unwrap_model_for_generation_signature():
    """self_referee.generation_context: TRL's public unwrap helper."""
    from trl.models import unwrap_model_for_generation

    params = inspect.signature(unwrap_model_for_generation).parameters
    assert list(params)[:2] == ["model", "accelerator"]
    assert {"gather_deepspeed3_params", "gradient_checkpointing_kwargs"} <= set(params)


def test_distributed_backend_summons_fsdp1_params():
    """self_referee.generation_context: trl.distributed.DistributedBackend (not exported at the top level)."""
    from trl.distributed import DistributedBackend

    assert "module" in inspect.signature(DistributedBackend.summon_full_params).parameters
    generate = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "self._dist.summon_full_params(self.model_wrapped, recurse=False)" in generate
    assert "gather_deepspeed3_params=self.args.ds3_gather_for_generation" in generate


def test_vllm_helper_attributes():
    """self_referee.trainer_backend: trainer.vllm_generation, its vllm_client (main process, server mode) and
    its llm (colocate mode). vLLM cannot be installed here, so the source is checked."""
    from trl.generation.vllm_generation import VLLMGeneration

    assert "self.vllm_generation = VLLMGeneration(" in inspect.getsource(GRPOTrainer.__init__)
    init = inspect.getsource(VLLMGeneration._init_vllm)
    assert "self.vllm_client = VLLMClient(" in init and "self.llm = LLM(" in init
    from trl.generation.vllm_client import VLLMClient

    params = inspect.signature(VLLMClient.generate).parameters
    assert {"prompts", "n", "temperature", "top_p", "max_tokens"} <= set(params)


def test_hf_generation_reads_generation_config_and_kwargs_each_step():
    """callbacks.RoleStepCallback: the HF path generates with `self.generation_config` and overrides the model's own
    config with `self.generation_kwargs` (both built once at init, read at every generation), and generation happens
    in `_prepare_inputs` of a step's first micro-batch, after the Trainer's `on_step_begin`. label_draws.LabelDraws
    recognises TRL's call by that `generation_config` object."""
    init = inspect.getsource(GRPOTrainer.__init__)
    assert "self.generation_config = GenerationConfig(**generation_kwargs" in init
    assert "self.generation_kwargs = generation_kwargs" in init
    generate = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "generation_kwargs=self.generation_kwargs" in generate
    assert "**generate_inputs, generation_config=self.generation_config" in generate
    prepare = inspect.getsource(GRPOTrainer._prepare_inputs)
    assert "self._step % generate_every == 0" in prepare


def test_the_loss_temperature_is_fixed_at_init_and_generation_reads_its_own():
    """trainer.step_generation: a label-drawing referee step sets `temperature` on the generation config only; the
    loss keeps reading log-probabilities at GRPOConfig.temperature, which TRL bakes into the fused LM head at init."""
    init = inspect.getsource(GRPOTrainer.__init__)
    assert "self.temperature = args.temperature" in init
    assert "temperature=self.temperature," in init  # add_fused_lm_head(..., temperature=self.temperature, ...)
    assert '"temperature": self.temperature,' in init  # the generation kwargs' copy, which the callback overrides


def test_text_prompts_are_tokenized_as_given_and_chat_prompts_get_a_new_turn():
    """trainer.trl_record: TRL applies the chat template to conversational prompts with add_generation_prompt=True,
    which would close a referee's prefill and open a new assistant turn; a text prompt is tokenized as it is."""
    source = inspect.getsource(GRPOTrainer._tokenize_prompts)
    assert "add_generation_prompt=True" in source
    assert 'prompt_ids = self.processing_class(text=prompts)["input_ids"]' in source


def test_hf_generation_calls_generate_on_the_unwrapped_policy():
    """trainer.make_trainer installs `fast_generate` on `trainer.model`: TRL's transformers generation calls
    `generate` on the model `unwrap_model_for_generation` yields, which is `accelerator.unwrap_model(model_wrapped)`
    (the PEFT model itself without DeepSpeed/FSDP wrapping)."""
    from trl.models import utils

    generate = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "prompt_completion_ids = unwrapped_model.generate(" in generate
    assert "unwrapped_model = accelerator.unwrap_model(model)" in inspect.getsource(utils._unwrap_model_for_generation)
    assert "_unwrap_model_for_generation(" in inspect.getsource(utils.unwrap_model_for_generation)


def test_the_trainer_builds_its_optimizer_from_optimizer_cls_and_kwargs():
    """trainer.make_trainer sets `optimizer_cls_and_kwargs` after construction (`grpo.optimizer_state: per_role`):
    `create_optimizer` reads the attribute when it builds the optimizer, and `get_optimizer_cls_and_kwargs` gives
    the class and arguments the training arguments name."""
    from transformers import Trainer

    create = inspect.getsource(Trainer.create_optimizer)
    assert "optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs" in create
    assert list(inspect.signature(Trainer.get_optimizer_cls_and_kwargs).parameters)[:2] == ["args", "model"]


def test_per_token_log_probabilities_have_the_signature_share_prompt_passes_replaces():
    """label_draws.share_prompt_passes replaces `_get_per_token_logps_and_entropies` on the trainer: TRL calls it on
    `self` for the loss, the reference model and the old policy, and returns (logps, entropies, aux_loss)."""
    params = list(inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters)
    assert params[:8] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size",
                          "compute_entropy", "compute_aux_loss"]
    source = inspect.getsource(GRPOTrainer)
    assert source.count("self._get_per_token_logps_and_entropies(") >= 3
    assert "return logps, entropies, aux_loss" in inspect.getsource(GRPOTrainer._get_per_token_logps_and_entropies)
