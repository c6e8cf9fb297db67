"""Datasets: rows built from problems, files on disk, prompt formats, encoding and the DataModules.

Pure-Python submodules (no torch, fast to import; `bridge data ...` uses only these):

* `bridge_pl.data.records`: dataset rows from problems (plain / no-CoT / BRIDGE answers, PP-Aug and
  RC-Aug copies) and re-rendering of existing rows (ours or the official iGSM-reasoning files);
* `bridge_pl.data.io`: writing a dataset directory (``data.jsonl`` or ``data.parquet`` plus
  ``dataset_config.json``) and reading ours, single files, or the official ``save_to_disk`` layout;
* `bridge_pl.data.pipeline`: whole datasets: generate (in worker processes), augment, verify, stats;
* `bridge_pl.data.stats`: the measured properties of a dataset (paper_spec §A.4, §A.7 tables);
* `bridge_pl.data.prompts`: the system prompt, the chat templates, the RL prompt and the SFT conversation;
* `bridge_pl.data.rows`: rows with their file locations, and checks that list every bad row;
* `bridge_pl.data.corpus`: the text the project tokenizer is trained on.

Token-level pieces (transformers, torch; no Lightning): `encoding` (chat tokenizer, conversations and prompts to
ids, fit-to-length, padding), `prompt_sets` (prompt sets for evaluation and probes), `collate` (batches, packing,
length buckets), `loaders` (batch plans, resumable loaders). Lightning pieces, one file per DataModule:
`sft` (`SFTDataModule`), `igsm` (`IGSMDataModule`), `prompt_pool` (`PromptPoolDataModule`); `datamodules`
gathers the three for YAML ``class_path``. Nothing is imported eagerly here, so this package stays light.
"""
