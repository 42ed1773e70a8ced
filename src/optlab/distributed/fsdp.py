"""FSDP2 as a pure data-parallel strategy: every rank keeps 1/world_size of each sharded block.

Lightning's ModelParallelStrategy reads data_parallel_size="auto" as the number of nodes (it is
built for 2-D tensor x data parallelism); here "auto" means all ranks, which is what
`strategy=fsdp trainer.devices=N` should mean. The sharding itself is `fully_shard` in
ImageClassifier.configure_model. Runs on CPU (gloo) as well as GPU (nccl).
"""

from lightning.pytorch.strategies import ModelParallelStrategy


class FSDP2Strategy(ModelParallelStrategy):
    """`strategy=fsdp`: Lightning's ModelParallelStrategy, data-parallel by default: tensor_parallel_size=1
    (Lightning's "auto" is every device of a node) and data_parallel_size="auto" resolved to all ranks (over
    the tensor-parallel size) when the environment is set up, not to the number of nodes."""

    def __init__(self, data_parallel_size="auto", tensor_parallel_size=1, **kwargs):
        super().__init__(data_parallel_size=data_parallel_size, tensor_parallel_size=tensor_parallel_size, **kwargs)

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto":
            tp = 1 if self._tensor_parallel_size == "auto" else self._tensor_parallel_size
            self._data_parallel_size = max(1, self.num_nodes * self.num_processes // tp)
        super().setup_environment()
