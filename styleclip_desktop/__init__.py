"""StyleCLIP Desktop: a local portrait editor driven by text, built on StyleGAN2 and CLIP."""

__version__ = "0.1.0"
