"""Shared command-line pieces: ``--config FILE[:ARG]`` with ``--config.SECTION.FIELD=VALUE``."""

from __future__ import annotations

import argparse

import ml_collections

from recon_jax import configs

__all__ = ["add_config_arguments", "config_from_args"]


def add_config_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--config", default=default,
                        help=f"config file FILE.py or FILE.py:ARG (default {default}); override "
                        "any field with --config.SECTION.FIELD=VALUE, e.g. "
                        "--config.model.encoder=resnet18")


def config_from_args(args: argparse.Namespace) -> ml_collections.ConfigDict:
    """The config of ``args.config`` with ``args.overrides`` applied (both checked)."""
    config = configs.load_config_file(args.config)
    configs.apply_overrides(config, args.overrides)
    return config
