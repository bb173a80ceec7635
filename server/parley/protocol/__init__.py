"""Protocol v1: frame schemas and codecs. Pure functions and data; no I/O."""
