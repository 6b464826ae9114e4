"""feedmux."""
