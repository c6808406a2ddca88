"""
dspark native core (torch-free; tensors cross as DLPack)
"""
from __future__ import annotations
import collections.abc
import typing
__all__: list[str] = ['LoadMonitor', 'PrefixScheduler', 'SpsTable', 'built_with_cuda', 'built_with_cutlass', 'built_with_openmp', 'check_verify_attention_indices', 'check_verify_structure', 'cpu_isa', 'cpu_num_threads', 'cuda_archs', 'cuda_device_count', 'draft_step', 'verify_attention', 'verify_batch']
class SpsTable:
    """
    Step-rate curve SPS(B); see dspark.SpsTable.
    """
    @staticmethod
    def from_step_times(tokens: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], step_seconds: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], interpolation: typing.SupportsInt | typing.SupportsIndex = 0) -> SpsTable:
        ...
    def __init__(self, tokens: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], steps_per_second: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex], interpolation: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    def sps(self, tokens: typing.SupportsFloat | typing.SupportsIndex) -> float:
        ...
    def sps_many(self, tokens: collections.abc.Sequence[typing.SupportsFloat | typing.SupportsIndex]) -> list[float]:
        ...
    def step_time(self, tokens: typing.SupportsFloat | typing.SupportsIndex) -> float:
        ...
    @property
    def interpolation(self) -> int:
        ...
    @property
    def step_times(self) -> list[float]:
        ...
    @property
    def steps_per_second(self) -> list[float]:
        ...
    @property
    def tokens(self) -> list[float]:
        ...
class LoadMonitor:
    """
    Online SPS refinement; see dspark.LoadMonitor.
    """
    def __init__(self, initial: SpsTable, alpha: typing.SupportsFloat | typing.SupportsIndex, clip: typing.SupportsFloat | typing.SupportsIndex, init_scale: typing.SupportsFloat | typing.SupportsIndex, monotone: bool) -> None:
        ...
    def observe(self, tokens: typing.SupportsFloat | typing.SupportsIndex, step_seconds: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def table(self) -> SpsTable:
        ...
    @property
    def counts(self) -> list[int]:
        ...
    @property
    def num_clipped(self) -> int:
        ...
    @property
    def num_observations(self) -> int:
        ...
    @property
    def num_out_of_range(self) -> int:
        ...
class PrefixScheduler:
    """
    Algorithm 1 prefix walk; see dspark.PrefixScheduler.
    """
    @typing.overload
    def __init__(self, sps: SpsTable, early_stop: bool) -> None:
        ...
    @typing.overload
    def __init__(self, sps: LoadMonitor, early_stop: bool) -> None:
        ...
    def admit_top_k(self, confidences: typing.Any, capacity: typing.SupportsInt | typing.SupportsIndex, max_lengths: typing.Any, token_budget: typing.SupportsInt | typing.SupportsIndex, out: typing.Any) -> tuple:
        ...
    def capacity(self, confidences: typing.Any, max_lengths: typing.Any, token_budget: typing.SupportsInt | typing.SupportsIndex) -> int:
        ...
    def current_table(self) -> SpsTable:
        ...
    def schedule(self, confidences: typing.Any, max_lengths: typing.Any, token_budget: typing.SupportsInt | typing.SupportsIndex, out: typing.Any) -> tuple:
        """
        Writes lengths into out [R] int32; returns (tokens, expected_tokens, objective).
        """
    @property
    def early_stop(self) -> bool:
        ...
def check_verify_attention_indices(qo_indptr: typing.Any, block_table: typing.Any, kv_len: typing.Any, parents: typing.Any | None, num_tokens: typing.SupportsInt | typing.SupportsIndex, num_pages: typing.SupportsInt | typing.SupportsIndex, page_size: typing.SupportsInt | typing.SupportsIndex) -> tuple[int, int]:
    """
    Checks host index tensors of verify_attention; returns (max_qo_len, max_kv_len).
    """
def check_verify_structure(draft_tokens: typing.Any, draft_indptr: typing.Any, parents: typing.Any | None, vocab_size: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    O(N) structural checks of host index tensors; returns the deepest tree depth.
    """
def cpu_isa() -> str:
    """
    ISA variant of the CPU kernels chosen at run time.
    """
def cpu_num_threads() -> int:
    """
    Threads the CPU kernels use (OpenMP max threads).
    """
def cuda_device_count() -> tuple[int, int, str]:
    """
    (count, cuda error code, message); never raises, also without a driver.
    """
def draft_step(base_logits: typing.Any, w1: typing.Any, w2: typing.Any, anchors: typing.Any, temperature: typing.Any | None, seed: typing.Any, offset: typing.Any, hidden: typing.Any | None, conf_weight: typing.Any | None, conf_bias: typing.SupportsFloat | typing.SupportsIndex, candidates: typing.SupportsInt | typing.SupportsIndex, tokens: typing.Any, draft_logits: typing.Any, confidence: typing.Any | None, next_offset: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    """
    Low-level fused draft step on preallocated outputs; use dspark.draft_step.
    """
def verify_attention(q: typing.Any, k_cache: typing.Any, v_cache: typing.Any, qo_indptr: typing.Any, block_table: typing.Any, kv_len: typing.Any, parents: typing.Any | None, sm_scale: typing.SupportsFloat | typing.SupportsIndex, soft_cap: typing.SupportsFloat | typing.SupportsIndex, window_left: typing.SupportsInt | typing.SupportsIndex, max_qo_len: typing.SupportsInt | typing.SupportsIndex, max_kv_len: typing.SupportsInt | typing.SupportsIndex, out: typing.Any, lse: typing.Any | None, cuda_kernel: typing.SupportsInt | typing.SupportsIndex = 0, stream: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    """
    Low-level verify_attention on preallocated outputs; use dspark.verify_attention.
    """
def verify_batch(target: typing.Any, draft_tokens: typing.Any, draft_indptr: typing.Any, parents: typing.Any | None, draft_q: typing.Any | None, q_kind: typing.SupportsInt | typing.SupportsIndex, sampling: typing.SupportsInt | typing.SupportsIndex, temperature: typing.Any | None, top_k: typing.Any | None, top_p: typing.Any | None, min_p: typing.Any | None, seed: typing.Any, offset: typing.Any, max_emit: typing.Any | None, target_is_probs: bool, max_depth: typing.SupportsInt | typing.SupportsIndex, accept_len: typing.Any, num_emitted: typing.Any, tokens: typing.Any, final_token: typing.Any, final_is_bonus: typing.Any, path: typing.Any, last_row: typing.Any, next_offset: typing.Any, logprobs: typing.Any | None, stream: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    """
    Low-level verify_batch on preallocated outputs; use dspark.verify_batch.
    """
built_with_cuda: bool
built_with_cutlass: bool
built_with_openmp: bool
cuda_archs: str
