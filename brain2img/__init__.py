"""brain2img: reconstruct the images a person saw from their brain recordings."""

__version__ = "0.1.0"
