"""Model merging with mergekit's semantics, streamed tensor by tensor.

A merge recipe reads like a mergekit config (``merge_method``, ``models`` or ``slices``, ``base_model``,
``parameters`` with scalars, per-layer gradients and ``filter`` entries, ``dtype``). The inputs' safetensors shards are
read one tensor at a time and the output's shards are written as each tensor is produced, so the peak memory is a
small multiple of the largest tensor, not of the model. Inputs whose architectures, shapes or tokenizers differ are
refused unless the recipe says which tokenizer to take.

- :mod:`merging.params`: parameter values (scalar, gradient, filters) resolved per tensor.
- :mod:`merging.methods`: the merge arithmetic on tensors.
- :mod:`merging.config`: the recipe's fields and its structured entries, validated strictly.
- :mod:`merging.inputs`: model directories, their tensors, and the compatibility checks.
- :mod:`merging.shards`: the streaming safetensors writer.
- :mod:`merging.run`: planning, the dry run and the merge itself.
"""
