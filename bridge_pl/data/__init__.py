"""Datasets: rows of (question, answer) built from problems, files on disk, statistics.

Pure-Python submodules (no torch, fast to import; `bridge data ...` uses only these):

* `bridge_pl.data.records`: dataset rows from problems (plain / no-CoT / BRIDGE answers, PP-Aug and
  RC-Aug copies) and re-rendering of existing rows (ours or the official iGSM-reasoning files);
* `bridge_pl.data.io`: writing a dataset directory (``data.jsonl`` or ``data.parquet`` plus
  ``dataset_config.json``) and reading ours, single files, or the official ``save_to_disk`` layout;
* `bridge_pl.data.stats`: the measured properties of a dataset (paper_spec §A.4, §A.7 tables).

Torch-based pieces (tokenization, collation, LightningDataModules) live in their own submodules and are
imported only by name, so this package stays light: nothing is imported eagerly here.
"""
