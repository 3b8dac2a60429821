"""The referee role: render judgments, generate them with a backend, parse them into rankings and scores."""

from urpo_kit.config.schema import SamplingParams
from urpo_kit.referee.backends import Backend, HFBackend, VLLMColocateBackend, VLLMServerBackend
from urpo_kit.referee.judge import Judge, JudgeItem, Verdict

__all__ = ["Backend", "HFBackend", "Judge", "JudgeItem", "SamplingParams", "VLLMColocateBackend",
           "VLLMServerBackend", "Verdict"]
