"""The LightningDataModules under one import path, for YAML configs and LightningCLI.

    data:
      class_path: bridge_pl.data.datamodules.SFTDataModule      # SFT data on disk
      class_path: bridge_pl.data.datamodules.IGSMDataModule     # SFT data generated while training (or
                                                                # problems from a file, answered on the fly)
      class_path: bridge_pl.data.datamodules.PromptPoolDataModule  # RL / evaluation prompts

Imports torch, lightning and transformers; `bridge_pl.data` itself does not import this module.
"""

from bridge_pl.data.igsm import IGSMDataModule
from bridge_pl.data.prompt_pool import PromptPoolDataModule
from bridge_pl.data.sft import SFTDataModule

__all__ = ["IGSMDataModule", "PromptPoolDataModule", "SFTDataModule"]
