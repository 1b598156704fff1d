"""The configuration: a typed tree of dataclasses, loaded from YAML and ``KEY=VALUE`` overrides.

A leaf of the package: it imports nothing else of distgan (and nothing heavier than PyYAML), so the CLI
can read and check a config before torch or Ray are imported.
"""

from distgan.config.augment_schema import AdaConfig, AugmentConfig
from distgan.config.errors import ConfigError, positive
from distgan.config.loading import load_config, parse_override, read_yaml, set_dotted, with_absolute_paths
from distgan.config.optim_schema import OptimConfig, OptimizerConfig, ScheduleConfig
from distgan.config.schema import PATH_KEYS, reuses_fakes
from distgan.config.schema import (Config, DataConfig, DeepSpeedConfig, DegradationConfig,
                                   EmaConfig, EngineConfig, EvalConfig, LossConfig, ModelConfig,
                                   PerceptualLossConfig, PixelLossConfig, RegularizerConfig, ScalingConfig,
                                   SchedulerConfig, TrackingConfig, TrainConfig, TuneConfig)
from distgan.config.scaling_schema import ElasticConfig
from distgan.config.stylegan_schema import StyleGAN2Config
from distgan.config.typed import build_section

__all__ = ["PATH_KEYS", "AdaConfig", "AugmentConfig", "Config", "ConfigError", "DataConfig", "DeepSpeedConfig",
           "DegradationConfig", "ElasticConfig", "EmaConfig", "EngineConfig", "EvalConfig", "LossConfig", "ModelConfig",
           "OptimConfig", "OptimizerConfig", "PerceptualLossConfig", "PixelLossConfig", "RegularizerConfig",
           "ScalingConfig", "ScheduleConfig", "SchedulerConfig", "StyleGAN2Config", "TrackingConfig", "TrainConfig", "TuneConfig",
           "build_section", "load_config", "parse_override", "positive", "read_yaml", "reuses_fakes",
           "set_dotted", "with_absolute_paths"]
