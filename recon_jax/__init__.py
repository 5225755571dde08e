"""recon_jax: single-view 3D point cloud reconstruction (Kim & Lee 2023) in JAX/Flax."""

__version__ = "0.1.0"
