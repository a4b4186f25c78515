"""edvis: see how an encoder-decoder CNN learns, one class map per class, epoch by epoch."""

__version__ = "0.1.0"
