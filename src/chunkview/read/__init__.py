"""The read engine the front ends share: metadata, chunk layouts, selection planning, decoding."""
