"""Keys that recipes written for older TRL, transformers and alignment-handbook versions still carry.

Each was checked against the installed TRL 1.16 SFTConfig/DPOConfig/ModelConfig and transformers 5
TrainingArguments. The recipe loader answers one with what to write instead of a bare "unknown key".
RENAMED: the same setting under another name (the error shows the line to write); REMOVED: what replaced it.
"""

RENAMED_KEYS: dict[str, tuple[str, str]] = {  # old -> (new, since when)
    "max_seq_length": ("max_length", "in TRL 0.20"),
    "torch_dtype": ("dtype", "in transformers 5"),
    "evaluation_strategy": ("eval_strategy", "in transformers 4.46"),
    "preprocessing_num_workers": ("dataset_num_proc", "in TRL (the alignment-handbook name)"),
    "text_column": ("dataset_text_field", "in TRL's SFTConfig (the alignment-handbook name)"),
    "hub_model_revision": ("hub_revision", "in transformers TrainingArguments (the alignment-handbook name)"),
    "use_liger": ("use_liger_kernel", "in TRL (the transformers name)"),
}

# key -> (what happened to it, the fix); no semicolons: the problems of one recipe share a line
REMOVED_KEYS: dict[str, tuple[str, str]] = {
    "max_prompt_length": (
        "a DPO key here (TRL 1.x removed it from DPOConfig; our DPO recipes cut prompts with it)",
        "remove it from this recipe: SFT caps whole sequences with max_length",
    ),
    "max_completion_length": (
        "removed from DPOConfig in TRL 1.x",
        "use max_length with truncation_mode",
    ),
    "max_target_length": (
        "removed from DPOConfig in TRL 1.x",
        "use max_length",
    ),
    "setup_chat_format": (
        "removed in TRL 1.x",
        "set chat_template in the recipe, or rely on the Zephyr template fallback",
    ),
    "use_flash_attention_2": (
        "replaced by attn_implementation",
        "write attn_implementation: flash_attention_2",
    ),
    "overwrite_output_dir": (
        "removed in transformers 5",
        "remove it: a run resumes from output_dir checkpoints with resume_from_checkpoint",
    ),
    "logging_dir": (
        "removed in transformers 5",
        "remove it: tensorboard logs go under output_dir/runs",
    ),
    "warmup_ratio": (
        "removed in transformers 5",
        "write warmup_steps: 0.1, a value below 1 being a fraction of all steps",
    ),
    "dataset_mixer": (
        "replaced by dataset_mixture",
        "write dataset_mixture: {datasets: [{id, split, test_split, columns, weight}, ...]}",
    ),
    "dataset_splits": (
        "replaced by split and test_split on each dataset_mixture entry",
        "move the split names there",
    ),
    "dataset_configs": (
        "replaced by config on each dataset_mixture entry",
        "move the config names there",
    ),
    "dataset_name": (
        "TRL's single-dataset key is not used here",
        "write dataset_mixture: {datasets: [{id: NAME, split: train}]}",
    ),
    "dataset_config": (
        "TRL's single-dataset key is not used here",
        "write config on the dataset_mixture entry",
    ),
    "dataset_train_split": (
        "TRL's single-dataset key is not used here",
        "write split on the dataset_mixture entry",
    ),
    "dataset_test_split": (
        "TRL's single-dataset key is not used here",
        "write test_split on the dataset_mixture entry",
    ),
    "truncation_side": (
        "not a TRL key",
        "remove it: sequences longer than max_length are cut as truncation_mode says",
    ),
    "auto_insert_empty_system_msg": (
        "not a TRL key",
        "remove it: the chat template renders the messages as given, "
        "so add a system message to the data if the template needs one",
    ),
    "tokenizer_name_or_path": (
        "not a TRL key",
        "save the tokenizer with the model: it loads from model_name_or_path",
    ),
    "rpo_alpha": (
        "removed from DPOConfig in TRL 1.x",
        "write loss_type: [sigmoid, sft] with loss_weights: [1.0, ALPHA]",
    ),
    "ref_model_init_kwargs": (
        "removed from DPOConfig in TRL 1.x",
        "remove it: the reference loads like the policy, see ref_mode and ref_model_name_or_path",
    ),
    "generate_during_eval": (
        "removed from DPOConfig in TRL 1.x",
        "remove it",
    ),
}
